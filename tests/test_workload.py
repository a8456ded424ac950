"""CudaWorkloadRunner without a GPU: argument checks and metadata (the GPU behaviour is
tested in tests/gpu/test_workload_gpu.py)."""

import numpy as np
import pytest

from tegra_ai.backend.workload import SOURCE, CudaWorkloadRunner
from tegra_ai.errors import EXIT_USAGE, TegraAIError


def test_metadata_from_the_given_tensors():
    w = CudaWorkloadRunner(12.5, inputs={"images": ((1, 3, 4, 4), "float16")},
                           outputs={"scores": ((1, 10), np.float32), "ids": ((1,), "int32")})
    assert [(m.name, m.dtype, m.shape) for m in w.input_metadata()] == [("images", "float16", (1, 3, 4, 4))]
    assert [(m.name, m.dtype, m.shape) for m in w.output_metadata()] == [
        ("scores", "float32", (1, 10)), ("ids", "int32", (1,))]
    assert not w.active


@pytest.mark.parametrize("args, kwargs, message", [
    ((-1,), {}, "finite number >= 0"),
    ((float("nan"),), {}, "finite number >= 0"),
    (("fast",), {}, "number of microseconds"),
    ((1, {"x": ((1, 0), "float32")}), {}, "dimensions must be positive"),
    ((1, {"x": ((1, 2), "nosuchtype")}), {}, "expected (shape, dtype)"),
    ((1, {"x": (1, 2, 3)}), {}, "expected (shape, dtype)"),
    ((1, {"x": ((1,), "float32")}, {"x": ((1,), "float32")}), {}, "both an input and an output"),
    ((1,), {"blocks": 0}, "blocks must be >= 1"),
])
def test_bad_arguments(args, kwargs, message):
    with pytest.raises(TegraAIError) as err:
        CudaWorkloadRunner(*args, **kwargs)
    assert message in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_device_calls_need_activate():
    w = CudaWorkloadRunner(1.0)
    for call in (w.enqueue, w.upload, w.download, w.launches):
        with pytest.raises(TegraAIError, match="before activate"):
            call()
    with pytest.raises(TegraAIError, match="before activate"):
        w.infer({})


def test_kernel_compiles_with_nvrtc():
    loader = pytest.importorskip("tegra_ai.kernels.loader")
    try:
        archs = loader.nvrtc_supported_archs()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"NVRTC not usable here: {exc}")
    target = f"sm_{max(a for a in archs if a <= 90)}"
    image = loader.compile_nvrtc(SOURCE, "workload.cu", target)
    assert image[:4] == b"\x7fELF"  # a CUBIN
