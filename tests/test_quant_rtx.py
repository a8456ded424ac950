"""The host-made Q/DQ INT8 and FP16 models go through a real TensorRT-family parser and
builder (TensorRT-RTX, CPU-only, strongly typed like TensorRT 11). The engines cannot run
here; their accuracy is what `compare` measures on ONNX Runtime and, on a Jetson, on
TensorRT itself."""

from __future__ import annotations

import numpy as np
import pytest

from tegra_ai import models
from tegra_ai.spec import BuildOptions
from tegra_ai.trt.builder import build_engine
from tegra_ai.spec import parse_profile

pytestmark = pytest.mark.rtx
pytest.importorskip("onnxruntime")

DIGITS_PROFILE = [parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]


@pytest.fixture(autouse=True)
def _use_rtx(monkeypatch):
    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    from tegra_ai.dataset.calibration import build_dataset

    p = str(tmp_path_factory.mktemp("c") / "calib.npz")
    build_dataset([models.DEFAULT_SAMPLES], p, models.load_preprocess_spec(), arrays=["calib_images"],
                  show_progress=False)
    return p


@pytest.mark.parametrize("target", ["jetpack6", "jetpack7", "jetpack5"])
def test_qdq_digits_builds_strongly_typed(tmp_path, calib, target):
    from tegra_ai.quant.qdq import quantize

    out = str(tmp_path / "q.onnx")
    quantize(models.DEFAULT_MODEL, calib, out, target=target)
    r = build_engine(out, BuildOptions(profiles=DIGITS_PROFILE), show_progress=False)
    assert len(r.engine) > 1000 and r.sidecar.qdq is True and r.sidecar.strongly_typed is True


def test_fp16_digits_builds_strongly_typed(tmp_path):
    from tegra_ai.onnx_fp16 import convert_fp16

    out = str(tmp_path / "f16.onnx")
    convert_fp16(models.DEFAULT_MODEL, out)
    r = build_engine(out, BuildOptions(profiles=DIGITS_PROFILE), show_progress=False)
    assert len(r.engine) > 1000 and r.sidecar.strongly_typed is True and r.sidecar.builder_flags == []


def test_residual_qdq_and_fp16_build(tmp_path):
    from test_quant import residual_model

    from tegra_ai.onnx_fp16 import convert_fp16
    from tegra_ai.quant.qdq import quantize

    src = residual_model(str(tmp_path / "res.onnx"))
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(1).random((16, 3, 8, 8)).astype(np.float32))
    quantize(src, str(tmp_path / "c.npz"), str(tmp_path / "q.onnx"))
    convert_fp16(src, str(tmp_path / "f.onnx"))
    prof = [parse_profile("x:1x3x8x8:4x3x8x8:8x3x8x8")]
    for m in ("q.onnx", "f.onnx"):
        r = build_engine(str(tmp_path / m), BuildOptions(profiles=prof), show_progress=False)
        assert len(r.engine) > 1000
