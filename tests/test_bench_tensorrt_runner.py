"""TensorRTRunner's device API (what model-benchmark's harness drives) under the strict
TensorRT stand-in of every API target: shapes fixed once, pinned host and device
buffers bound per execution context, one context per stream (fork), copies of the
right sizes on the given stream. CUDA is replaced by host stand-ins here; the real
thing runs in tests/gpu/test_bench_tensorrt_gpu.py on a Jetson."""

from __future__ import annotations

import numpy as np
import pytest

from fake_trt import synchronize_current
from test_trt_api_surface import PROFILE, TARGETS, HostBuffer, HostStream, target
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import BuildOptions


class HostPinned:
    """tegra_ai.cuda.driver.HostBuffer on plain host memory; ``live`` counts buffers not freed."""
    live = 0

    def __init__(self, shape, dtype, ordinal=0):
        self.shape, self.array = tuple(shape), np.zeros(shape, dtype)
        self.nbytes, self.ptr = self.array.nbytes, self.array.ctypes.data
        HostPinned.live += 1

    def free(self):
        if self.array is not None:
            HostPinned.live -= 1
        self.array = None


class FakeDriver:
    def __init__(self):
        self.copies = []

    def cuMemcpyHtoDAsync(self, dst, src, n, stream):
        self.copies.append(("h2d", dst, n, stream))
        return (0,)

    def cuMemcpyDtoHAsync(self, dst, src, n, stream):
        self.copies.append(("d2h", src, n, stream))
        return (0,)


@pytest.fixture
def host_device(monkeypatch):
    from tegra_ai.cuda import compat as cuda_compat, driver

    fake = FakeDriver()
    monkeypatch.setattr(driver, "DeviceBuffer", HostBuffer)
    monkeypatch.setattr(driver, "Stream", HostStream)
    monkeypatch.setattr(driver, "stream_synchronize", synchronize_current)
    monkeypatch.setattr(driver, "stream_handle", lambda s: int(s))
    monkeypatch.setattr(cuda_compat, "driver", lambda: fake)
    monkeypatch.setattr(driver, "HostBuffer", HostPinned)
    return fake


def _engine(tmp_path, default_model, contexts=1):
    from tegra_ai.trt.builder import build_engine, write_engine

    r = build_engine(default_model, BuildOptions(precision="fp32", profiles=PROFILE, contexts=contexts),
                     show_progress=False)
    path = str(tmp_path / "m.engine")
    write_engine(r, path)
    return path


@pytest.mark.parametrize("name", TARGETS)
def test_device_api_under_every_target(monkeypatch, tmp_path, default_model, host_device, name):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    trt, _feats = target(monkeypatch, name)
    engine = _engine(tmp_path, default_model, contexts=2)     # fork(): a second context, its own profile
    with TensorRTRunner(engine, shapes={"input": (8, 1, 8, 8)}) as runner:
        bufs = runner.host_buffers
        assert bufs["input"].shape == (8, 1, 8, 8) and bufs["logits"].shape == (8, 10)
        bufs["input"][...] = 0.5
        runner.run_async(11)
        assert [(c[0], c[2], c[3]) for c in host_device.copies] == [("h2d", 8 * 64 * 4, 11), ("d2h", 8 * 10 * 4, 11)]
        assert ("execute", 11) in trt._fake.calls
        other = runner.fork()
        assert other.context is not runner.context and other.engine is runner.engine
        assert np.all(other.host_buffers["input"] == 0.5)          # same inputs on every stream
        mine, theirs = runner.prepare()["device"], other.prepare()["device"]
        assert all(int(mine[n]) != int(theirs[n]) for n in mine)    # own device buffers
        host_device.copies.clear()
        other.run_async(12, transfers=False)
        assert host_device.copies == [] and ("execute", 12) in trt._fake.calls
        other.deactivate()
        # infer() binds its own buffers; the device API gets its own back
        out = runner.infer({"input": np.ones((3, 1, 8, 8), np.float32)})
        assert out["logits"].shape == (3, 10)
        assert tuple(runner.context.get_tensor_shape("input")) == (8, 1, 8, 8)


def test_device_api_shape_errors(monkeypatch, tmp_path, default_model, host_device):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    target(monkeypatch, TARGETS[-1])
    engine = _engine(tmp_path, default_model)
    with TensorRTRunner(engine) as runner, pytest.raises(TegraAIError, match="dynamic dimensions") as exc:
        runner.prepare()
    assert exc.value.exit_code == 2
    with TensorRTRunner(engine, shapes={"input": (65, 1, 8, 8)}) as runner, \
            pytest.raises(TegraAIError, match="outside the engine's profile") as exc:
        runner.prepare()
    assert exc.value.exit_code == 2
