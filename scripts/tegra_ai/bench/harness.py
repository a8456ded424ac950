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
    """One query's resources on one stream: timing events (4 with copies: H2D start,
    H2D end, compute end, D2H end; 2 without: start, compute end) and its graph."""

    def __init__(self, blocking: bool, transfers: bool):
        from tegra_ai.cuda.driver import Event

        self.events = [Event(blocking=blocking) for _ in range(4 if transfers else 2)]
        self.handles = [e.handle for e in self.events]
        self.graph = None
        self.enq = None      # (host start, host end) seconds; None when idle


class _Lane:
    """A stream with its runner (own buffers) and DEPTH slots."""

    def __init__(self, runner, config: BenchConfig):
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import Stream, stream_handle

        self.drv = compat.driver()
        self.runner, self.config = runner, config
        self.stream = Stream()
        self.handle = stream_handle(self.stream)
        self.slots = [_Slot(blocking=not config.spin_wait, transfers=config.transfers) for _ in range(DEPTH)]
        self.next = 0
        drv = self.drv

        def record(ev, h):
            err = drv.cuEventRecord(ev, h)[0]
            if int(err):
                _fail("cuEventRecord", err)
        self._record = record
        if config.cuda_graph:
            # one plain run first: TensorRT applies deferred shape/profile work on its first
            # enqueue, which must not land inside the capture
            self._work(self.slots[0], record)
            check_sync = drv.cuStreamSynchronize(self.handle)[0]
            if int(check_sync):
                _fail("cuStreamSynchronize", check_sync)
            for slot in self.slots:
                self._capture(slot)

    def _work(self, slot, record):
        r, h = self.runner, self.handle
        if self.config.transfers:
            e0, e1, e2, e3 = slot.handles
            record(e0, h)
            r.upload(h)
            record(e1, h)
            r.enqueue(h)
            record(e2, h)
            r.download(h)
            record(e3, h)
        else:
            e0, e1 = slot.handles
            record(e0, h)
            r.enqueue(h)
            record(e1, h)

    def _capture(self, slot):
        from tegra_ai.cuda.driver import Graph, check

        drv = self.drv
        external = drv.CUevent_record_flags.CU_EVENT_RECORD_EXTERNAL

        def record(ev, h):
            check(drv.cuEventRecordWithFlags(ev, h, external), "cuEventRecordWithFlags")

        slot.graph = Graph.capture(lambda _s: self._work(slot, record), self.handle)
        slot.exec = slot.graph.exec

    def launch(self, slot):
        drv = self.drv
        if slot.graph is not None:
            err = drv.cuGraphLaunch(slot.exec, self.handle)[0]
            if int(err):
                _fail("cuGraphLaunch", err)
        else:
            self._work(slot, self._record)


def _fail(what, err):
    from tegra_ai.cuda.driver import error_name

    raise TegraAIError(f"{what} failed: {error_name(err)}")


def run_device(runner, config: BenchConfig, progress=None) -> list:
    """Traces of an active device runner (``fork()``-ed once per extra stream)."""
    from tegra_ai.cuda import compat
    from tegra_ai.cuda.driver import Event, check

    drv = compat.driver()
    elapsed, sync = drv.cuEventElapsedTime, drv.cuEventSynchronize
    if callable(getattr(runner, "prepare", None)):
        runner.prepare()   # allocations and shapes before any stream capture
    runners = [runner] + [runner.fork() for _ in range(config.streams - 1)]
    transfers = config.transfers
    try:
        lanes = [_Lane(r, config) for r in runners]
        now = time.perf_counter
        raw = []   # (enq start s, enq end s, event times ms...) per query

        def finish(slot, ref):
            hs = slot.handles
            err = sync(hs[-1])[0]
            if int(err):
                _fail("cuEventSynchronize", err)
            if ref is not None:
                ms = []
                for h in hs:
                    err, t = elapsed(ref, h)
                    if int(err):
                        _fail("cuEventElapsedTime", err)
                    ms.append(t)
                raw.append((slot.enq[0], slot.enq[1], *ms))
            slot.enq = None

        def cycle(ref):
            for lane in lanes:
                slot = lane.slots[lane.next]
                lane.next = (lane.next + 1) % DEPTH
                if slot.enq is not None:
                    finish(slot, ref)
                a = now()
                lane.launch(slot)
                slot.enq = (a, now())

        def drain(ref):
            # finish the in-flight queries in the order they were enqueued
            pending = [s for lane in lanes for s in lane.slots if s.enq is not None]
            for slot in sorted(pending, key=lambda s: s.enq[0]):
                finish(slot, ref)

        end_warm = now() + config.warmup_ms / 1000.0
        warm = 0
        while now() < end_warm or warm < DEPTH:
            cycle(None)
            warm += 1
        drain(None)
        check(drv.cuCtxSynchronize(), "cuCtxSynchronize")

        ref_event = Event(blocking=False)
        ref_event.record(lanes[0].stream)
        ref_event.synchronize()
        ref = ref_event.handle
        t0 = now()
        n_min = config.iterations - config.streams * DEPTH
        step = 0
        while True:
            cycle(ref)
            step += 1
            if progress is not None and step % 256 == 0:
                progress.update(f"{len(raw)} queries")
            if now() - t0 >= config.duration_s and len(raw) >= n_min:
                break
        drain(ref)
    finally:
        for r in runners[1:]:
            r.deactivate()
    traces = []
    for q in raw:
        if transfers:
            a, b, h0, h1, c1, d1 = q
        else:
            a, b, h0, c1 = q
            h1, d1 = h0, c1
        traces.append({"startEnqMs": (a - t0) * 1e3, "endEnqMs": (b - t0) * 1e3, "startH2dMs": float(h0),
                       "endH2dMs": float(h1), "startComputeMs": float(h1), "endComputeMs": float(c1),
                       "startD2hMs": float(c1), "endD2hMs": float(d1)})
    traces.sort(key=lambda t: t["startH2dMs"])
    return traces


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
