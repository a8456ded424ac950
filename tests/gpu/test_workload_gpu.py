"""The CUDA workload backend on a real GPU: the spin lasts what it says, copies move
the bytes, the kernel can be captured in a CUDA graph and several streams overlap."""

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _workload(duration_us, **kw):
    from tegra_ai.backend.workload import CudaWorkloadRunner

    return CudaWorkloadRunner(duration_us, inputs={"x": ((2, 3, 8, 8), "float16")},
                              outputs={"y": ((2, 10), "float32")}, **kw)


@pytest.mark.parametrize("duration_us", [50.0, 200.0, 1000.0])
def test_spin_lasts_the_requested_time(duration_us):
    with _workload(duration_us) as w:
        measured = w.calibrate(iterations=30)
    # globaltimer advances in steps of up to ~1 us; launch setup adds a few us on the GPU
    assert duration_us - 1.5 <= measured <= duration_us * 1.05 + 10, measured


def test_zero_duration_and_launch_counter():
    from tegra_ai.cuda.driver import Stream

    with _workload(0.0) as w:
        s = Stream()
        for _ in range(7):
            w.enqueue(s)
        assert w.launches() == 7
        assert w.calibrate(iterations=10) < 20.0


def test_infer_returns_outputs_and_checks_feed():
    from tegra_ai.errors import TegraAIError

    with _workload(10.0) as w:
        out = w.infer({"x": np.ones((2, 3, 8, 8), np.float16)})
        assert list(out) == ["y"] and out["y"].shape == (2, 10) and out["y"].dtype == np.float32
        assert not out["y"].any()  # outputs hold zeros
        assert w.launches() == 1
        with pytest.raises(TegraAIError):
            w.infer({"x": np.ones((1, 3, 8, 8), np.float16)})


def test_copies_move_the_bytes(rng):
    from tegra_ai.cuda import compat
    from tegra_ai.cuda.driver import Stream, check

    drv = compat.driver()
    with _workload(5.0) as w:
        s = Stream()
        data = rng.standard_normal((2, 3, 8, 8)).astype(np.float16)
        w.host_inputs["x"][...] = data
        w.upload(s)
        s.synchronize()
        back = np.empty_like(data)
        check(drv.cuMemcpyDtoH(back.ctypes.data, w.device_inputs["x"], back.nbytes))
        assert np.array_equal(back, data)
        check(drv.cuMemsetD32(w.device_outputs["y"], np.float32(2.5).view(np.uint32).item(), 20))
        w.download(s)
        s.synchronize()
        assert np.all(w.host_outputs["y"] == 2.5)


def test_graph_capture_replays_the_work():
    from tegra_ai.cuda.driver import Event, Graph, Stream

    with _workload(100.0) as w:
        s = Stream()
        graph = Graph.capture(lambda st: [w.run_async(st) for _ in range(5)], s)
        assert w.launches() == 0  # capture records, it does not run
        a, b = Event(), Event()
        a.record(s)
        for _ in range(3):
            graph.launch(s)
        b.record(s)
        ms = b.elapsed_ms(a)
        assert w.launches() == 15
        assert 1.5 - 0.01 <= ms <= 1.5 * 1.1 + 0.1, ms
        graph.destroy()


def test_streams_overlap():
    from tegra_ai.cuda.driver import Stream

    n, duration_us = 4, 2000.0
    with _workload(duration_us) as w:
        runners = [w] + [w.fork() for _ in range(n - 1)]
        streams = [Stream() for _ in range(n)]
        for r, s in zip(runners, streams):
            r.run_async(s)
        for s in streams:
            s.synchronize()
        t = time.perf_counter()
        for r, s in zip(runners, streams):
            r.run_async(s)
        for s in streams:
            s.synchronize()
        wall_ms = (time.perf_counter() - t) * 1e3
        assert [r.launches() for r in runners] == [2] * n
        for r in runners[1:]:
            r.deactivate()
    # one block each: four streams run side by side, not one after another (8 ms)
    assert wall_ms < 2 * duration_us / 1000, wall_ms
