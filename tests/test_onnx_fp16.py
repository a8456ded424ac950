"""The FP16 converter's size rules on small generated models (issue #18 part 5; the public
models in tests/test_quant_public_models.py need the package index): Conv+BatchNormalization
folded in FP32, Resize data in FP16 with its scales FP32, data-movement ops following an FP32
input, no shape-inference value_info written."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tegra_ai.onnx_fp16 import convert_fp16, fold_batchnorm  # noqa: E402

F, H = TensorProto.FLOAT, TensorProto.FLOAT16


def save(path, nodes, inits, out_shape, inputs=(("x", [1, 3, 8, 8]),), opset=13, outputs=("y",)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(o, F, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def conv_bn(path, channels=16, bias=True, bn_as_constants=False):
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((channels, 3, 3, 3)).astype(np.float32),
              "gamma": rng.random(channels).astype(np.float32) + 0.5, "beta": rng.standard_normal(channels).astype(np.float32),
              "mean": rng.standard_normal(channels).astype(np.float32), "var": rng.random(channels).astype(np.float32) + 0.1}
    if bias:
        arrays["b"] = rng.standard_normal(channels).astype(np.float32)
    nodes, inits = [], []
    for k, v in arrays.items():
        if bn_as_constants and k != "w":  # PaddlePaddle exports hold them in Constant nodes
            nodes.append(helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k)))
        else:
            inits.append(numpy_helper.from_array(v, k))
    nodes += [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn", epsilon=1e-3),
              helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    return save(path, nodes, inits, None)


def run(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("bias,constants", [(True, False), (False, True)])
def test_batchnorm_folds_into_the_conv_in_fp32(tmp_path, bias, constants):
    src = conv_bn(tmp_path / "m.onnx", bias=bias, bn_as_constants=constants)
    m = onnx.load(src)
    assert fold_batchnorm(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Conv", "Relu"]  # the BN's Constant nodes went with it
    folded = str(tmp_path / "folded.onnx")
    onnx.save(m, folded)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(folded, x), run(src, x), rtol=1e-4, atol=1e-4)
    out = str(tmp_path / "m.fp16.onnx")
    convert_fp16(src, out)
    c = onnx.load(out)
    assert "BatchNormalization" not in {n.op_type for n in c.graph.node}
    assert {i.data_type for i in c.graph.initializer} == {H}
    y = run(src, x)
    assert np.abs(run(out, x) - y).max() <= 5e-3 * np.abs(y).max()


def test_batchnorm_not_folded_when_the_conv_output_has_other_readers(tmp_path):
    src = conv_bn(tmp_path / "m.onnx")
    m = onnx.load(src)
    m.graph.node.append(helper.make_node("Relu", ["c"], ["c2"], name="other"))
    assert fold_batchnorm(m) == 0
    m = onnx.load(src)
    assert fold_batchnorm(m, skip_nodes={"bn"}) == 0  # --keep-fp32 bn: left as it is


def test_keep_fp32_batchnorm_is_not_folded(tmp_path):
    src = conv_bn(tmp_path / "m.onnx")
    out = str(tmp_path / "o.onnx")
    summary = convert_fp16(src, out, keep_fp32=["BatchNormalization"])
    assert "bn" in summary["kept_fp32"] and "BatchNormalization" in {n.op_type for n in onnx.load(out).graph.node}


def test_resize_data_fp16_scales_fp32_and_no_value_info(tmp_path):
    """onnxconverter-common blocks Resize whole (two Casts around each); its scales input is
    tensor(float) only in ONNX, its data any type: only the scales stay FP32."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Resize", ["c", "", "scales"], ["r"], name="up", mode="nearest"),
             helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2"),
             helper.make_node("Flatten", ["c2"], ["y"], name="flat")]
    src = save(tmp_path / "m.onnx", nodes, inits, None)
    out = str(tmp_path / "o.onnx")
    summary = convert_fp16(src, out)
    c = onnx.load(out)
    types = {i.name: i.data_type for i in c.graph.initializer}
    assert types == {"w": H, "scales": F, "w2": H} and summary["kept_fp32"] == []
    assert [n.op_type for n in c.graph.node].count("Cast") == 2  # the input's and the output's
    assert not c.graph.value_info  # the converter's shape inference is not written
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    y = run(src, x)
    assert np.abs(run(out, x) - y).max() <= 5e-3 * np.abs(y).max()


def test_identity_after_a_kept_softmax_stays_fp32(tmp_path):
    """Softmax (kept FP32) -> Identity -> output: no FP32 -> FP16 -> FP32 round trip."""
    inits = [numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Reshape", ["c", "shape"], ["flat"], name="reshape"),
             helper.make_node("Softmax", ["flat"], ["p"], name="softmax", axis=1),
             helper.make_node("Identity", ["p"], ["y"], name="ident")]
    src = save(tmp_path / "m.onnx", nodes, inits, None)
    out = str(tmp_path / "o.onnx")
    convert_fp16(src, out)
    c = onnx.load(out)
    casts = [n for n in c.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and not any(n.output[0] == "y" for n in casts)  # input, Softmax's input
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(out, x), run(src, x), atol=2e-3)


def test_fp16_file_is_about_half(tmp_path):
    src = conv_bn(tmp_path / "m.onnx", channels=64, bn_as_constants=True)
    out = str(tmp_path / "o.onnx")
    convert_fp16(src, out)
    assert os.path.getsize(out) <= 0.55 * os.path.getsize(src)


def test_unfoldable_batchnorm_with_params_fp16_cannot_hold_keeps_its_values(tmp_path):
    """A BatchNormalization after a Conv whose weights come from a DequantizeLinear (a Q/DQ
    model: nothing to fold into) with running variances up to 9.8e7 (PP-OCRv4's detector):
    stored FP16 they were clamped to 65504 and the layer's output was wrong; rewritten to the
    same affine map with FP16-sized parameters it computes what FP32 does."""
    rng = np.random.default_rng(0)
    c = 8
    var = np.geomspace(1e7, 9.8e7, c).astype(np.float32)
    inits = [numpy_helper.from_array(rng.integers(-100, 100, (c, 3, 3, 3)).astype(np.int8), "wq"),
             numpy_helper.from_array(np.full(c, 20.0, np.float32), "ws"),  # weights ~ +-2000: outputs ~ 1e4
             numpy_helper.from_array(np.zeros(c, np.int8), "wzp"),
             numpy_helper.from_array(rng.random(c).astype(np.float32) + 0.5, "gamma"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 300, "mean"),
             numpy_helper.from_array(var, "var")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], name="dqw", axis=0),
             helper.make_node("Conv", ["x", "w"], ["cv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["cv", "gamma", "beta", "mean", "var"], ["y"], name="bn")]
    src = save(tmp_path / "m.onnx", nodes, inits, None)
    out = str(tmp_path / "o.onnx")
    convert_fp16(src, out, qdq=True)
    m = onnx.load(out)
    bn = next(n for n in m.graph.node if n.op_type == "BatchNormalization")
    params = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert all(np.abs(params[i]).max() < 65504 for i in bn.input[1:])
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    y = run(src, x)
    assert np.abs(run(out, x) - y).max() <= 5e-3 * np.abs(y).max()  # clamped: off by 18.5x the largest output
