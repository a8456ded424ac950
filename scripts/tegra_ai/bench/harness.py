"""The timing loop, as trtexec runs it: warm-up by time, then at least ``duration_s``
seconds and ``iterations`` queries; per query the host enqueue time and, through CUDA
events, the H2D / compute / D2H split. Results in trtexec's ``--exportTimes`` layout
go to :func:`tegra_ai.bench.stats.analyze`.

Device runners (TensorRT, the CUDA workload) expose ``upload(stream)``,
``enqueue(stream)``, ``download(stream)`` and ``fork()`` (own buffers / execution
context for another stream). Each stream keeps two queries in flight: the host enqueues
query i+1 before it waits for query i, so the GPU does not idle while the host reads
the events. With ``cuda_graph`` each (stream, slot) pair replays a graph holding the
copies, the compute and the timing events (external event-record nodes), so a query is
one ``cuGraphLaunch``. Host runners (ONNX Runtime) are timed around ``infer``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from tegra_ai.bench import stats
from tegra_ai.errors import EXIT_USAGE, TegraAIError

log = logging.getLogger("tegra_ai.bench.harness")
DEPTH = 2  # queries in flight per stream


@dataclass
class BenchConfig:
    warmup_ms: float = 200.0        # trtexec --warmUp default
    duration_s: float = 3.0         # trtexec --duration default
    iterations: int = 10            # trtexec --iterations default (a minimum, as there)
    streams: int = 1
    cuda_graph: bool = False
    transfers: bool = True
    spin_wait: bool = False
    percentiles: tuple = stats.DEFAULT_PERCENTILES
    noisy_cv: float = stats.NOISY_CV

    def validate(self) -> "BenchConfig":
        def bad(msg):
            return TegraAIError(msg, exit_code=EXIT_USAGE)
        if not (math.isfinite(self.warmup_ms) and self.warmup_ms >= 0):
            raise bad(f"--warmup must be >= 0 ms, got {self.warmup_ms}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise bad(f"--duration must be >= 0 s, got {self.duration_s}")
        if self.iterations < 1:
            raise bad(f"--iterations must be >= 1, got {self.iterations}")
        if not 1 <= self.streams <= 64:
            raise bad(f"--streams must be between 1 and 64, got {self.streams}")
        for p in self.percentiles:
            if not 0 <= p <= 100:
                raise bad(f"--percentile {p} is not in [0, 100]")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        return d


def is_device_runner(runner) -> bool:
    return all(callable(getattr(runner, m, None)) for m in ("upload", "enqueue", "download", "fork"))


# --- host runners ----------------------------------------------------------------------

def run_host(runner, feed: dict, config: BenchConfig, progress=None) -> list:
    """Traces of ``runner.infer(feed)`` timed on the host clock (no transfers: the
    whole call is the compute)."""
    if config.streams != 1 or config.cuda_graph:
        raise TegraAIError(f"{runner.name} runs on the host: --streams and --cuda-graph need a GPU backend",
                           exit_code=EXIT_USAGE)
    now = time.perf_counter
    end_warm = now() + config.warmup_ms / 1000.0
    while now() < end_warm:
        runner.infer(feed)
    t0 = now()
    traces = []
    while True:
        a = now()
        runner.infer(feed)
        b = now()
        sa, sb = (a - t0) * 1e3, (b - t0) * 1e3
        traces.append({"startEnqMs": sa, "endEnqMs": sb, "startH2dMs": sa, "endH2dMs": sa, "startComputeMs": sa,
                       "endComputeMs": sb, "startD2hMs": sb, "endD2hMs": sb})
        if progress is not None and len(traces) % 64 == 0:
            progress.update(f"{len(traces)} queries")
        if b - t0 >= config.duration_s and len(traces) >= config.iterations:
            return traces


# --- device runners --------------------------------------------------------------------

class _Slot:
    """One query's resources on one stream: four timing events (and its graph)."""

    def __init__(self, blocking: bool):
        from tegra_ai.cuda.driver import Event

        self.events = [Event(blocking=blocking) for _ in range(4)]  # h2d start, h2d end, compute end, d2h end
        self.graph = None
        self.enq = None      # (host start, host end) seconds; None when idle


class _Lane:
    """A stream with its runner (own buffers) and DEPTH slots."""

    def __init__(self, runner, config: BenchConfig):
        from tegra_ai.cuda.driver import Stream

        self.runner, self.config = runner, config
        self.stream = Stream()
        self.slots = [_Slot(blocking=not config.spin_wait) for _ in range(DEPTH)]
        self.next = 0
        if config.cuda_graph:
            for slot in self.slots:
                self._capture(slot)

    def _work(self, slot, stream, record):
        r, e, transfers = self.runner, slot.events, self.config.transfers
        record(e[0], stream)
        if transfers:
            r.upload(stream)
        record(e[1], stream)
        r.enqueue(stream)
        record(e[2], stream)
        if transfers:
            r.download(stream)
        record(e[3], stream)

    def _capture(self, slot):
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import Graph, check, stream_handle

        drv = compat.driver()
        external = drv.CUevent_record_flags.CU_EVENT_RECORD_EXTERNAL

        def record(ev, stream):
            check(drv.cuEventRecordWithFlags(ev.handle, stream_handle(stream), external), "cuEventRecordWithFlags")

        slot.graph = Graph.capture(lambda s: self._work(slot, s, record), self.stream)

    def launch(self, slot):
        if slot.graph is not None:
            slot.graph.launch(self.stream)
        else:
            self._work(slot, self.stream, lambda ev, s: ev.record(s))


def _elapsed(drv, start, end) -> float:
    err, ms = drv.cuEventElapsedTime(start.handle, end.handle)
    if int(err) != 0:
        from tegra_ai.cuda.driver import error_name

        raise TegraAIError(f"cuEventElapsedTime failed: {error_name(err)}")
    return float(ms)


def run_device(runner, config: BenchConfig, progress=None) -> list:
    """Traces of an active device runner (``fork()``-ed once per extra stream)."""
    from tegra_ai.cuda import compat
    from tegra_ai.cuda.driver import Event, check

    drv = compat.driver()
    runners = [runner] + [runner.fork() for _ in range(config.streams - 1)]
    try:
        lanes = [_Lane(r, config) for r in runners]
        now = time.perf_counter

        def cycle(collect, ref, t0, traces):
            for lane in lanes:
                slot = lane.slots[lane.next]
                lane.next = (lane.next + 1) % DEPTH
                if slot.enq is not None:
                    _finish(slot, collect, ref, t0, traces)
                a = now()
                lane.launch(slot)
                slot.enq = (a, now())

        def _finish(slot, collect, ref, t0, traces):
            e = slot.events
            check(drv.cuEventSynchronize(e[3].handle), "cuEventSynchronize")
            if collect:
                h0, h1, c1, d1 = (_elapsed(drv, ref, ev) for ev in e)
                traces.append({"startEnqMs": (slot.enq[0] - t0) * 1e3, "endEnqMs": (slot.enq[1] - t0) * 1e3,
                               "startH2dMs": h0, "endH2dMs": h1, "startComputeMs": h1, "endComputeMs": c1,
                               "startD2hMs": c1, "endD2hMs": d1})
            slot.enq = None

        def drain(collect, ref, t0, traces):
            # finish the in-flight queries in the order they were enqueued
            order = []
            for lane in lanes:
                for k in range(DEPTH):
                    slot = lane.slots[(lane.next + k) % DEPTH]
                    if slot.enq is not None:
                        order.append(slot)
            for slot in sorted(order, key=lambda s: s.enq[0]):
                _finish(slot, collect, ref, t0, traces)

        end_warm = now() + config.warmup_ms / 1000.0
        warm = 0
        while now() < end_warm or warm < DEPTH:
            cycle(False, None, 0.0, None)
            warm += 1
        drain(False, None, 0.0, None)
        check(drv.cuCtxSynchronize(), "cuCtxSynchronize")

        ref = Event(blocking=False)
        ref.record(lanes[0].stream)
        ref.synchronize()
        t0 = now()
        traces = []
        while True:
            cycle(True, ref, t0, traces)
            if progress is not None and len(traces) % 256 == 0 and traces:
                progress.update(f"{len(traces)} queries")
            if now() - t0 >= config.duration_s and len(traces) + config.streams * DEPTH >= config.iterations:
                break
        drain(True, ref, t0, traces)
        traces.sort(key=lambda t: t["startH2dMs"])
        return traces
    finally:
        for r in runners[1:]:
            r.deactivate()


def random_feed(metas, shapes: dict | None = None, seed: int = 0) -> dict:
    """Random inputs for ``metas`` (TensorMeta); dynamic dimensions from ``shapes``
    ({name: dims}) or refused."""
    rng = np.random.default_rng(seed)
    shapes = shapes or {}
    feed = {}
    for m in metas:
        if m.name in shapes:
            dims = tuple(shapes[m.name])
            if len(dims) != len(m.shape) or any(d is not None and d != s for d, s in zip(m.shape, dims)):
                raise TegraAIError(f"--shapes {m.name}:{'x'.join(map(str, dims))} does not fit the model's input "
                                   f"{[d if d is not None else '?' for d in m.shape]}", exit_code=EXIT_USAGE)
        elif any(d is None for d in m.shape):
            raise TegraAIError(f"input {m.name!r} has dynamic dimensions "
                               f"{[d if d is not None else '?' for d in m.shape]}",
                               hint=f"give them with --shapes {m.name}:1x...", exit_code=EXIT_USAGE)
        else:
            dims = tuple(m.shape)
        dtype = np.dtype(m.dtype)
        if dtype.kind == "f":
            feed[m.name] = rng.random(dims, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            feed[m.name] = rng.integers(0, 2, dims).astype(bool)
        else:
            feed[m.name] = rng.integers(0, 8, dims).astype(dtype)
    return feed


def benchmark(runner, config: BenchConfig, feed: dict | None = None, batch: int = 1, progress=None,
              power=None) -> dict:
    """Run ``runner`` (active) and return :func:`stats.analyze`'s result plus
    ``"times"`` (the --exportTimes list), ``"config"`` and ``"power"``."""
    config.validate()
    device = is_device_runner(runner)
    if not device and feed is None:
        feed = random_feed(runner.input_metadata())
    if power is not None:
        power.start()
    try:
        traces = run_device(runner, config, progress) if device else run_host(runner, feed, config, progress)
    finally:
        power_summary = power.stop() if power is not None else None
    result = stats.analyze(traces, batch=batch, percentiles=config.percentiles,
                           transfers=config.transfers and device, noisy_cv=config.noisy_cv, device=device)
    if power_summary:
        per_query_mj = power_summary["avg_w"] * result["walltime_s"] / result["queries"] * 1000.0
        power_summary["energy_mj_per_query"] = per_query_mj
        power_summary["energy_mj_per_sample"] = per_query_mj / batch
    result["power"] = power_summary
    result["times"] = [stats.trace_to_times(t) for t in traces]
    result["config"] = config.to_dict()
    return result


def bare_loop_us(runner, iterations: int, stream=None, transfers: bool = True, graph=None) -> float:
    """Host microseconds per iteration of the plainest loop launching the same work as
    the harness (``run_async`` or one graph launch), synchronized once at the end: the
    baseline the harness overhead is measured against (benchmarks/bench_harness.py)."""
    from tegra_ai.cuda.driver import Stream

    s = stream if stream is not None else Stream()
    for _ in range(16):
        graph.launch(s) if graph is not None else runner.run_async(s, transfers)
    s.synchronize()
    t = time.perf_counter()
    if graph is not None:
        for _ in range(iterations):
            graph.launch(s)
    else:
        for _ in range(iterations):
            runner.run_async(s, transfers)
    s.synchronize()
    return (time.perf_counter() - t) / iterations * 1e6


__all__ = ["BenchConfig", "benchmark", "run_device", "run_host", "random_feed", "bare_loop_us", "is_device_runner"]
