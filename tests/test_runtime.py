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
