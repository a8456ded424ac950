from __future__ import annotations

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError


def test_onnxruntime_runner(default_model):
    pytest.importorskip("onnxruntime")
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(default_model)
    with pytest.raises(TegraAIError, match="before activate"):
        runner.infer({"input": np.zeros((1, 1, 8, 8), np.float32)})
    with runner:
        meta = runner.input_metadata()
        assert meta[0].name == "input" and meta[0].shape == (None, 1, 8, 8) and meta[0].dtype == "float32"
        out = runner.infer({"input": np.zeros((3, 1, 8, 8), np.float32)})
        assert out["logits"].shape == (3, 10)
        with pytest.raises(TegraAIError, match=r"shape \[3, 8, 8\]"):
            runner.infer({"input": np.zeros((3, 8, 8), np.float32)})
        with pytest.raises(TegraAIError, match="missing input.*unknown x"):
            runner.infer({"x": np.zeros((1, 1, 8, 8), np.float32)})
    assert not runner.active


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_runner_matches_onnxruntime(tmp_path, default_model):
    """On a Jetson: the built engine's logits match ONNX Runtime's within FP16 tolerance."""
    from tegra_ai import models
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.spec import BuildOptions
    from tegra_ai.trt.builder import build_engine, write_engine
    from tegra_ai.spec import parse_profile

    r = build_engine(default_model, BuildOptions(profiles=[parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]),
                     show_progress=False)
    write_engine(r, str(tmp_path / "d.engine"))
    x, y = models.load_samples("val")
    feed = {"input": (x[:64].astype(np.float32) / 255.0)[:, None]}
    with OnnxRuntimeRunner(default_model) as ref, TensorRTRunner(str(tmp_path / "d.engine")) as trt:
        a, b = ref.infer(feed)["logits"], trt.infer(feed)["logits"]
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.98
