"""No leaked CUDA streams, events, contexts or device memory across 1,000 fork/close
cycles of a device runner on a real GPU (the CUDA workload runner; the TensorRT runner's
execution contexts and profile slots are counted the same way under the strict stand-in in
tests/test_trt_runtime_rules.py)."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

IO = {"inputs": {"x": ((1, 3, 32, 32), "float32")}, "outputs": {"y": ((1, 100), "float32")}}
CYCLES = 1000


def test_fork_close_cycles_leak_nothing(monkeypatch):
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.cuda import compat, driver

    live = {"streams": 0, "events": 0}
    for cls, key in ((driver.Stream, "streams"), (driver.Event, "events")):
        init, destroy = cls.__init__, cls.destroy

        def counting_init(self, *a, _init=init, _key=key, **k):
            _init(self, *a, **k)
            live[_key] += 1

        def counting_destroy(self, _destroy=destroy, _key=key):
            if getattr(self, "handle", None) is not None:
                live[_key] -= 1
            _destroy(self)
        monkeypatch.setattr(cls, "__init__", counting_init)
        monkeypatch.setattr(cls, "destroy", counting_destroy)

    drv = compat.driver()
    with CudaWorkloadRunner(20.0, **IO) as runner:
        stream = driver.Stream()
        runner.run_async(stream)
        stream.synchronize()
        ctx_before = int(driver.check(drv.cuCtxGetCurrent(), "cuCtxGetCurrent"))
        free_before = driver.check(drv.cuMemGetInfo(), "cuMemGetInfo")[0]
        start = dict(live)
        for i in range(CYCLES):
            other = runner.fork()
            other.run_async(stream)
            if i % 100 == 0:
                other.infer({"x": np.ones((1, 3, 32, 32), np.float32)})    # its own stream, destroyed on close
            stream.synchronize()
            other.deactivate()
        free_after = driver.check(drv.cuMemGetInfo(), "cuMemGetInfo")[0]
        assert live == start, (start, live)
        assert int(driver.check(drv.cuCtxGetCurrent(), "cuCtxGetCurrent")) == ctx_before   # no new context
        # allocation granularity aside, nothing stays behind (1000 leaked forks would hold > 100 MiB)
        assert free_before - free_after < 4 << 20, (free_before, free_after)
        stream.destroy()
