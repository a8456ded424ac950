"""Issue #18 on real third-party models: PaddleOCR's PP-OCRv4 text detector and its
text-orientation classifier, as shipped in rapidocr-onnxruntime 1.4.4 on PyPI (Apache-2.0).
Downloaded once per session with ``pip download --no-deps`` into a cache directory (never
committed); skipped with the reason when the package index is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

from tegra_ai.onnx_fp16 import convert_fp16  # noqa: E402
from tegra_ai.quant.qdq import quantize  # noqa: E402

PACKAGE = "rapidocr-onnxruntime==1.4.4"
MODELS = {"cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "det": "ch_PP-OCRv4_det_infer.onnx"}


@pytest.fixture(scope="session")
def ocr_models(tmp_path_factory):
    cache = os.environ.get("TEGRA_AI_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("pypi-models"))
    os.makedirs(cache, exist_ok=True)
    out = {k: os.path.join(cache, v) for k, v in MODELS.items()}
    if all(os.path.isfile(p) for p in out.values()):
        return out
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", cache],
                       capture_output=True, text=True, timeout=300)
    wheels = [f for f in os.listdir(cache) if f.startswith("rapidocr_onnxruntime-1.4.4") and f.endswith(".whl")]
    if r.returncode or not wheels:
        pytest.skip(f"cannot download {PACKAGE} from the package index: {(r.stderr or r.stdout).strip()[-200:]}")
    with zipfile.ZipFile(os.path.join(cache, wheels[0])) as z:
        for k, name in MODELS.items():
            with z.open(f"rapidocr_onnxruntime/models/{name}") as src, open(out[k], "wb") as dst:
                dst.write(src.read())
    return out


def _activation_scales(path):
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1}


def test_orientation_classifier_entropy_and_dynamic_batch(ocr_models, tmp_path):
    """The classifier's batch is dynamic: 10 samples calibrate (all 10 of them, the old code
    refused them as "fewer than the static batch of 16"), and TensorRT's entropy thresholds
    differ from min-max on most activations (they were bit-identical)."""
    calib = tmp_path / "c.npz"
    rng = np.random.default_rng(0)
    np.savez(calib, x=rng.random((10, 3, 48, 192)).astype(np.float32))
    scales = {}
    for method in ("entropy", "minmax"):
        out = str(tmp_path / f"{method}.onnx")
        res = quantize(ocr_models["cls"], str(calib), out, method=method)
        assert res.samples == 10
        # its 18 two-input Adds are the SE convolutions' biases, exported as Add(Conv, Reshape(bias,
        # shape)): not residual, so no Q/DQ (the residual placement once quantized all 18 biases)
        assert not any("residual Add" in n for n in res.notes), res.notes
        q = onnx.load(out)
        from tegra_ai.quant.qdq import constant_tensors

        folded = constant_tensors(q.graph) - {i.name for i in q.graph.initializer} - {  # e.g. Reshape(bias, shape)
            o for n in q.graph.node if n.op_type == "Constant" for o in n.output}
        assert not [n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in folded]
        scales[method] = _activation_scales(out)
    ent, mm = scales["entropy"], scales["minmax"]
    common = ent.keys() & mm.keys()  # entropy also quantizes skip inputs whose scale only it calibrates
    assert len(common) > 50
    differ = sum(abs(ent[k] - mm[k]) > 1e-3 * mm[k] for k in common)
    assert differ > 0.6 * len(common), f"{differ} of {len(common)} scales differ"


def test_detector_fp16_halves_the_file(ocr_models, tmp_path):
    out = str(tmp_path / "det.fp16.onnx")
    convert_fp16(ocr_models["det"], out)
    assert os.path.getsize(out) <= 0.55 * os.path.getsize(ocr_models["det"])
    m = onnx.load(out)
    assert sum(n.op_type == "Cast" for n in m.graph.node) <= 16  # boundaries only (sensitive ops, IO)
