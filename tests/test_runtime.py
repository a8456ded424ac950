"""Multi-model runtime on the CPU: futures, ordering, backpressure, per-request
errors, shutdown with requests in flight, and the ONNX Runtime path end to end."""

import threading
import time

import numpy as np
import pytest

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import TegraAIError
from tegra_ai.runtime import ModelRuntime


class SlowRunner(Runner):
    """Doubles its input after ``delay`` s; fails on negative input. Records its thread."""

    name = "slow"

    def __init__(self, delay=0.0, gate=None):
        super().__init__()
        self.delay, self.gate, self.threads, self.calls = delay, gate, set(), []

    def _activate(self):
        self.activated_on = threading.get_ident()

    def input_metadata(self):
        return [TensorMeta("x", "float32", (None,))]

    def _infer(self, feed):
        if self.gate is not None:
            self.gate.wait()
        time.sleep(self.delay)
        self.threads.add(threading.get_ident())
        x = np.asarray(feed["x"])
        self.calls.append(float(x[0]))
        if x[0] < 0:
            raise ValueError("negative input")
        return {"y": x * 2}


def test_futures_results_in_submission_order_per_model():
    r = SlowRunner()
    with ModelRuntime({"m": r}) as rt:
        futs = [rt.submit("m", {"x": np.array([i], np.float32)}) for i in range(50)]
        assert [f.result()["y"][0] for f in futs] == [2 * i for i in range(50)]
    assert r.calls == list(range(50))
    assert r.threads == {r.activated_on} and r.activated_on != threading.get_ident()
    assert not r.active  # deactivated on close


def test_models_run_concurrently():
    """Each model's request waits at a barrier for the other's: it passes only if the
    runtime runs the two models at the same time (no wall-clock threshold)."""
    barrier = threading.Barrier(2, timeout=10)

    class Meeting(SlowRunner):
        def _infer(self, feed):
            barrier.wait()
            return super()._infer(feed)
    with ModelRuntime({"a": Meeting(), "b": Meeting()}) as rt:
        fa, fb = rt.submit("a", {"x": np.ones(1, np.float32)}), rt.submit("b", {"x": np.ones(1, np.float32)})
        assert fa.result()["y"][0] == 2 and fb.result()["y"][0] == 2


def test_factory_workers_each_own_a_runner():
    made = []

    def factory():
        made.append(SlowRunner(0.05))
        return made[-1]
    with ModelRuntime({"m": factory}, workers=3) as rt:
        for f in [rt.submit("m", {"x": np.ones(1, np.float32)}) for _ in range(12)]:
            f.result()
    assert len(made) == 3 and all(len(r.threads) <= 1 for r in made)
    assert sum(len(r.calls) for r in made) == 12


def test_error_is_per_request():
    with ModelRuntime({"m": SlowRunner()}) as rt:
        good1 = rt.submit("m", {"x": np.array([1], np.float32)})
        bad = rt.submit("m", {"x": np.array([-1], np.float32)})
        wrong = rt.submit("m", {"nope": np.array([1], np.float32)})
        good2 = rt.submit("m", {"x": np.array([3], np.float32)})
        assert good1.result()["y"][0] == 2 and good2.result()["y"][0] == 6
        with pytest.raises(ValueError, match="negative"):
            bad.result()
        with pytest.raises(TegraAIError, match="missing x"):
            wrong.result()
        assert rt.stats()["m"]["failures"] == 2 and rt.stats()["m"]["requests"] == 4


def test_backpressure_bounded_queue():
    gate = threading.Event()
    with ModelRuntime({"m": SlowRunner(gate=gate)}, queue_size=2) as rt:
        futs = [rt.submit("m", {"x": np.ones(1, np.float32)}) for _ in range(3)]  # 1 running + 2 queued
        time.sleep(0.05)
        with pytest.raises(TegraAIError, match="queue full"):
            rt.submit("m", {"x": np.ones(1, np.float32)}, timeout=0.1)
        gate.set()
        assert all(f.result()["y"][0] == 2 for f in futs)


def test_close_finishes_accepted_requests_and_rejects_new_ones():
    r = SlowRunner(0.01)
    rt = ModelRuntime({"m": r}, queue_size=64)
    futs = [rt.submit("m", {"x": np.array([i], np.float32)}) for i in range(30)]
    rt.close()
    assert all(f.done() and not f.cancelled() for f in futs)
    assert [f.result()["y"][0] for f in futs] == [2 * i for i in range(30)]
    with pytest.raises(TegraAIError, match="closed"):
        rt.submit("m", {"x": np.ones(1, np.float32)})


def test_close_cancel_pending():
    gate = threading.Event()
    rt = ModelRuntime({"m": SlowRunner(gate=gate)}, queue_size=16)
    futs = [rt.submit("m", {"x": np.ones(1, np.float32)}) for _ in range(10)]
    time.sleep(0.05)
    threading.Timer(0.1, gate.set).start()
    rt.close(cancel_pending=True)
    assert futs[0].result()["y"][0] == 2          # the running one finished
    assert all(f.cancelled() for f in futs[1:])   # the queued ones were cancelled, none lost silently


def test_concurrent_submitters_and_close_lose_nothing():
    rt = ModelRuntime({"m": SlowRunner()}, queue_size=4)
    futs, lock = [], threading.Lock()

    def producer(k):
        for i in range(100):
            try:
                f = rt.submit("m", {"x": np.array([k * 1000 + i], np.float32)})
            except TegraAIError:
                return
            with lock:
                futs.append(f)
    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.02)
    rt.close()
    for t in threads:
        t.join()
    assert futs and all(f.done() for f in futs)  # every accepted request has its answer


def test_startup_failure_and_usage_errors():
    class Broken(SlowRunner):
        def _activate(self):
            raise TegraAIError("cannot read engine x.engine")
    with pytest.raises(TegraAIError, match="model b: cannot read engine"):
        ModelRuntime({"a": SlowRunner(), "b": Broken()})
    with pytest.raises(TegraAIError, match="at least one model"):
        ModelRuntime({})
    with pytest.raises(TegraAIError, match="need a factory"):
        ModelRuntime({"a": SlowRunner()}, workers=2)
    with ModelRuntime({"a": SlowRunner()}) as rt:
        with pytest.raises(TegraAIError, match="unknown model"):
            rt.submit("zzz", {})


def test_onnxruntime_digits_end_to_end():
    pytest.importorskip("onnxruntime")
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.models import DEFAULT_MODEL, load_samples
    from tegra_ai.preprocess.reference import preprocess_batch_reference
    from tegra_ai.models import load_preprocess_spec

    images, labels = load_samples("val")
    spec = load_preprocess_spec()
    x = preprocess_batch_reference(spec, list(images[:64])).astype(np.float32)
    with ModelRuntime({"digits": lambda: OnnxRuntimeRunner(DEFAULT_MODEL)}, workers=2) as rt:
        name = rt.models[0]
        futs = [rt.submit(name, {"input": x[i:i + 1]}) for i in range(64)]
        pred = [int(np.argmax(next(iter(f.result().values())))) for f in futs]
    assert np.mean(np.array(pred) == labels[:64]) > 0.9


# --- The pipeline's scheduling (tegra_ai.runtime.pipeline.stream_results) with stand-in
# lanes: the same code Pipeline.run runs, with "GPU work" that completes asynchronously
# a stated time after it was enqueued (serialized like one engine filling the GPU).

class _ClockGPU:
    def __init__(self, work_s):
        self.work_s, self.busy_until, self.lock = work_s, 0.0, threading.Lock()

    def enqueue(self):
        with self.lock:
            self.busy_until = max(time.perf_counter(), self.busy_until) + self.work_s
            return self.busy_until


class _StandInLane:
    def __init__(self, gpu):
        self.gpu, self.pending, self.deadline = gpu, None, None

    def start(self, index, image, serial):
        from tegra_ai.runtime.pipeline import FrameResult

        assert self.pending is None, "a lane was reused before its result was handed out"
        self.pending = FrameResult(index, outputs={"sum": int(np.asarray(image).sum())})
        self.deadline = self.gpu.enqueue()
        return self

    def wait(self):
        time.sleep(max(0.0, self.deadline - time.perf_counter()))

    sync = wait

    def finish(self):
        assert time.perf_counter() >= self.deadline, "result read before its work completed"
        r, self.pending = self.pending, None
        return r


def _stream(frames, streams=2, capacity=4, policy="block", work_s=0.002):
    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    gpu = _ClockGPU(work_s)
    stats = PipelineStats()
    gen = stream_results([_StandInLane(gpu) for _ in range(streams)], frames, stats=stats,
                         capacity=capacity, policy=policy)
    return gen, stats


@pytest.mark.parametrize("streams", [1, 2, 4])
def test_pipeline_result_does_not_wait_for_a_later_frame(streams):
    """A camera-like source hands over frame k+1 only once the consumer has frame k's
    result: the pipeline must deliver k when its work is done, not when frame k+N
    arrives to reuse its lane (the old behaviour: this source then stalls)."""
    delivered = [threading.Event() for _ in range(12)]
    waited_out = []

    def source():
        for k in range(12):
            if k and not delivered[k - 1].wait(timeout=2.0):
                waited_out.append(k - 1)
            yield np.full((4, 4), k, np.uint8)

    gen, stats = _stream(source(), streams=streams)
    got = []
    for r in gen:
        got.append(r.index)
        delivered[r.index].set()
    assert got == list(range(12))
    assert waited_out == [], f"results {waited_out} were held until a later frame arrived"
    assert stats.frames == 12 and len(stats.latency_ms) == 12


def test_pipeline_frame_order_with_uneven_completion():
    """Lanes finishing out of order (a later frame's work done first) still come out in
    frame order, each result with its own frame's data."""
    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    class Uneven(_StandInLane):
        def start(self, index, image, serial):
            super().start(index, image, serial)
            self.deadline = time.perf_counter() + (0.02 if index % 3 == 0 else 0.001)
            return self

    frames = [np.full((2, 2), k, np.uint8) for k in range(30)]
    stats = PipelineStats()
    out = list(stream_results([Uneven(_ClockGPU(0)) for _ in range(3)], frames, stats=stats, capacity=2, policy="block"))
    assert [r.index for r in out] == list(range(30))
    assert [r.outputs["sum"] for r in out] == [4 * k for k in range(30)]


def test_pipeline_block_policy_stalls_the_source_and_loses_nothing():
    pulled = []

    def source():
        for k in range(40):
            pulled.append(k)
            yield np.zeros((2, 2), np.uint8)

    gen, stats = _stream(source(), streams=2, capacity=3, policy="block")
    first = next(gen)
    # The consumer holds result 0: the reader fills the queue and then waits.
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline and len(pulled) < 40:
        time.sleep(0.01)
    assert len(pulled) <= 1 + 2 + 3 + 1, pulled   # in hand + lanes + queue + the one blocked on put
    rest = [r.index for r in gen]
    assert [first.index] + rest == list(range(40))
    assert stats.dropped_queue == 0 and stats.dropped_source == 0


def test_pipeline_drop_oldest_keeps_the_newest_and_counts_drops():
    source_done = threading.Event()

    def source():
        for k in range(50):
            yield np.full((2, 2), k, np.uint8)
        source_done.set()

    gen, stats = _stream(source(), streams=2, capacity=4, policy="drop-oldest")
    got = [next(gen).index]
    assert source_done.wait(timeout=10)   # a slow consumer: the whole source was read meanwhile
    got += [r.index for r in gen]
    assert got == sorted(got) and got[-1] == 49          # frame order; the newest frames kept
    assert stats.dropped_queue > 0 and len(got) + stats.dropped_queue == 50
    assert stats.summary()["dropped"] == {"queue": stats.dropped_queue, "source": 0}


def test_pipeline_counts_frames_the_source_lost():
    from tegra_ai.runtime.sources import Frame

    t = time.perf_counter()
    frames = [Frame(np.full((2, 2), s, np.uint8), t, s) for s in (0, 1, 4, 5, 9)]
    gen, stats = _stream(frames)
    out = list(gen)
    assert [r.index for r in out] == [0, 1, 4, 5, 9] and [r.outputs["sum"] for r in out] == [0, 4, 16, 20, 36]
    assert stats.dropped_source == 5 and stats.dropped_queue == 0
    assert all(r.latency_ms >= 0 for r in out)


def test_pipeline_source_error_after_earlier_frames():
    def source():
        for k in range(5):
            yield np.zeros((2, 2), np.uint8)
        raise TegraAIError("cannot read frame 5")

    gen, _ = _stream(source())
    got = []
    with pytest.raises(TegraAIError, match="frame 5"):
        for r in gen:
            got.append(r.index)
    assert got == list(range(5))


def test_pipeline_consumer_stopping_early_waits_for_the_gpu():
    lanes_seen = []

    class Watched(_StandInLane):
        def start(self, index, image, serial):
            lanes_seen.append(self)
            return super().start(index, image, serial)

    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    gpu = _ClockGPU(0.01)
    gen = stream_results([Watched(gpu) for _ in range(3)], (np.zeros((2, 2), np.uint8) for _ in range(100)),
                         stats=PipelineStats(), capacity=4, policy="block")
    next(gen)
    gen.close()
    assert time.perf_counter() >= max(lane.deadline for lane in lanes_seen)   # in-flight work finished
    assert all(lane.pending is None for lane in lanes_seen)


def test_pipeline_default_queue_policy_follows_the_source():
    from types import SimpleNamespace

    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import Pipeline

    live = sources.PacedSource([], fps=30)
    assert Pipeline._policy(SimpleNamespace(queue_policy=None), live) == "drop-oldest"
    assert Pipeline._policy(SimpleNamespace(queue_policy=None), [np.zeros(1)]) == "block"
    assert Pipeline._policy(SimpleNamespace(queue_policy="block"), live) == "block"


def test_pipeline_live_source_slow_consumer_drops_and_keeps_order():
    """PacedSource through the scheduling with the live policy: a consumer 6 frame
    periods slow loses the oldest queued frames, counted; latency runs from capture."""
    from tegra_ai.runtime import sources

    stamps = {}

    class Camera(sources.PacedSource):
        def __iter__(self):
            for f in super().__iter__():
                stamps[f.sequence] = f.timestamp
                yield f

    cam = Camera(sources.synthetic(40, 4, 4), fps=200)
    gen, stats = _stream(cam, streams=2, capacity=2, policy="drop-oldest", work_s=0.0005)
    got = []
    for r in gen:
        assert (time.perf_counter() - stamps[r.index]) * 1e3 >= r.latency_ms >= 0
        got.append(r.index)
        if len(got) <= 3:
            time.sleep(0.03)
    assert got == sorted(got) and got[-1] == 39
    assert stats.dropped_queue > 0 and stats.dropped_source == cam.dropped
    assert len(got) + stats.dropped_queue + stats.dropped_source == 40


class _Held:
    """A capture buffer: ``release`` (sources.Frame.release) must come exactly once, and
    for a frame read in place only after its lane is done with it. ``early`` records
    frames given back while their lane still held them (staged frames)."""

    def __init__(self, log, seq, early=None):
        self.log, self.seq, self.lane, self.early = log, seq, None, early

    def __call__(self):
        assert self.seq not in self.log, f"frame {self.seq} released twice"
        holding = self.lane is not None and self.lane.pending is not None and self.lane.pending.index == self.seq
        if holding and not getattr(self.lane, "staged", False):
            raise AssertionError(f"frame {self.seq} released while its lane reads it")
        if holding and self.early is not None:
            self.early.append(self.seq)
        self.log.append(self.seq)


def _ring_frames(released, early, n=60):
    from tegra_ai.runtime.sources import Frame

    t = time.perf_counter()
    return [Frame(np.full((2, 2), k, np.uint8), t, k, _Held(released, k, early)) for k in range(n)]


def _ring_lane(frames, staged):
    class Lane(_StandInLane):
        def start(self, index, image, serial):
            super().start(index, image, serial)
            self.staged = staged
            frames[index].release.lane = self
            return self
    return Lane(_ClockGPU(0.002))


@pytest.mark.parametrize("staged", [False, True])
def test_pipeline_gives_every_capture_buffer_back_once(staged):
    """Frames with a release (a capture ring's buffers) go back to the source exactly
    once: after the result for a frame read in place, right after start for a staged
    (copied) frame, and when dropped by drop-oldest."""
    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    released, early = [], []
    frames = _ring_frames(released, early)
    stats = PipelineStats()
    gen = stream_results([_ring_lane(frames, staged) for _ in range(2)], iter(frames), stats=stats,
                         capacity=3, policy="drop-oldest")
    got = [next(gen).index]
    time.sleep(0.05)                     # a slow consumer: the reader drops queued frames
    got += [r.index for r in gen]
    assert stats.dropped_queue > 0 and len(got) + stats.dropped_queue == 60
    assert sorted(released) == list(range(60))
    assert sorted(early) == (got if staged else [])


@pytest.mark.parametrize("staged", [False, True])
def test_pipeline_gives_capture_buffers_back_when_the_consumer_stops(staged):
    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    released, taken = [], []
    frames = _ring_frames(released, None)

    def source():
        for f in frames:
            taken.append(f.sequence)
            yield f

    gen = stream_results([_ring_lane(frames, staged) for _ in range(2)], source(), stats=PipelineStats(),
                         capacity=3, policy="block")
    next(gen)
    time.sleep(0.05)                     # lanes busy, the queue full, the reader blocked on one more
    gen.close()                          # in-flight, queued and the blocked frame come back
    assert len(taken) >= 4 and sorted(released) == taken


def test_pipeline_releases_a_frame_its_lane_rejects():
    from tegra_ai.runtime.pipeline import PipelineStats, stream_results

    released = []

    class Bad(_StandInLane):
        def start(self, index, image, serial):
            raise TegraAIError("frame does not fit")

    gen = stream_results([Bad(_ClockGPU(0))], _ring_frames(released, None, 1), stats=PipelineStats(), capacity=2,
                         policy="block")
    with pytest.raises(TegraAIError, match="does not fit"):
        list(gen)
    assert released == [0]
