from __future__ import annotations

import numpy as np
import pytest

from tegra_ai import models


def test_samples_and_spec():
    x, y = models.load_samples("val")
    assert x.dtype == np.uint8 and x.shape[1:] == (8, 8) and len(x) == len(y) > 300
    cx, _ = models.load_samples("calib")
    assert len(cx) == 256
    spec = models.load_preprocess_spec()
    assert spec.input_format == "gray8" and spec.output_shape == (1, 8, 8)


def test_model_is_trained():
    ort = pytest.importorskip("onnxruntime")
    x, y = models.load_samples("val")
    s = ort.InferenceSession(models.DEFAULT_MODEL, providers=["CPUExecutionProvider"])
    logits = s.run(None, {"input": (x.astype(np.float32) / 255.0)[:, None]})[0]
    assert (logits.argmax(1) == y).mean() > 0.95
