"""Host INT8 (Q/DQ) and FP16 on real models: the embedded digits CNN with its real
calibration and held-out data, TensorRT's Q/DQ placement rules, the accuracy gate and
the mixed-precision fallback on a deliberately sensitive model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from badinput import invoke  # noqa: E402
from tegra_ai import models  # noqa: E402
from tegra_ai.cli.optimize import main  # noqa: E402
from tegra_ai.quant import compare as cmp  # noqa: E402
from tegra_ai.quant.fallback import quantize_with_gate  # noqa: E402
from tegra_ai.onnx_fp16 import convert_fp16  # noqa: E402
from tegra_ai.quant.qdq import check_for_target, quantize  # noqa: E402

MODEL = models.DEFAULT_MODEL


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory):
    """The embedded model's real calibration split and held-out split, preprocessed by its spec."""
    from tegra_ai.dataset.calibration import build_dataset

    d = tmp_path_factory.mktemp("digits")
    spec = models.load_preprocess_spec()
    build_dataset([models.DEFAULT_SAMPLES], str(d / "calib.npz"), spec, arrays=["calib_images"], show_progress=False)
    build_dataset([models.DEFAULT_SAMPLES], str(d / "val.npz"), spec, arrays=["val_images"], show_progress=False)
    _, labels = models.load_samples("val")
    np.save(d / "val_labels.npy", labels)
    return d


@pytest.fixture(scope="module")
def digits_int8(digits_data):
    out = str(digits_data / "digits.int8.onnx")
    res = quantize(MODEL, str(digits_data / "calib.npz"), out, target="jetpack6")
    return out, res


def qdq_nodes(path):
    m = onnx.load(path)
    return m, [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def test_digits_int8_accuracy_within_one_point(digits_data, digits_int8):
    path, res = digits_int8
    assert res.quantized_nodes == ["conv", "fc"] and res.samples == 256
    report = cmp.compare(MODEL, path, str(digits_data / "val.npz"), labels=str(digits_data / "val_labels.npy"),
                         gate=cmp.Gate(max_top1_drop=1.0))
    c = report["outputs"]["logits"]["classifier"]
    assert report["samples"] == 359 and report["passed"] is True
    assert c["reference_top1_accuracy"] > 0.95  # the FP32 model is a real, trained classifier
    assert abs(c["reference_top1_accuracy"] - c["candidate_top1_accuracy"]) * 100 <= 1.0
    assert 0.999 < report["outputs"]["logits"]["cosine"] < 1.0  # really quantized, and close
    assert "| logits |" in cmp.format_markdown(report) and "gate: PASSED" in cmp.format_markdown(report)


def test_qdq_follows_tensorrt_rules(digits_int8):
    path, _ = digits_int8
    m, qdq = qdq_nodes(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in qdq:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), "symmetric INT8 only"
    weight_dq = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")]
    assert {inits[n.input[1]].shape for n in weight_dq} == {(16,), (10,)}  # per output channel
    act_q = [n for n in qdq if n.op_type == "QuantizeLinear"]
    assert all(inits[n.input[1]].shape == () for n in act_q)  # per tensor
    # inputs of Conv/Gemm only; never the outputs of those layers; biases stay float
    dq_out = {n.output[0] for n in qdq if n.op_type == "DequantizeLinear"}
    consumers = [c for c in m.graph.node if set(c.input) & dq_out]
    assert {c.op_type for c in consumers} == {"Conv", "Gemm"}
    assert {n.input[0] for n in act_q} == {"input", "flat"}
    assert all(c.input[2] in inits and inits[c.input[2]].dtype == np.float32 for c in consumers)
    assert check_for_target(path, "jetpack6") == [] and check_for_target(path, "jetpack7") == []


def test_jetpack5_form(digits_data, tmp_path):
    out = str(tmp_path / "jp5.onnx")
    quantize(MODEL, str(digits_data / "calib.npz"), out, target="jetpack5", method="minmax")
    m, qdq = qdq_nodes(out)
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset <= 17
    # float weights behind Q->DQ pairs (what TensorRT 8.5's parser folds)
    q_inputs = {n.input[0] for n in qdq if n.op_type == "QuantizeLinear"}
    assert {"conv.weight", "fc.weight"} <= q_inputs
    assert check_for_target(out, "jetpack5") == []


def test_jetpack5_refuses_opset_18(tmp_path, digits_data):
    m = onnx.load(MODEL)
    m.opset_import[0].version = 18
    src = str(tmp_path / "o18.onnx")
    onnx.save(m, src)
    from tegra_ai.errors import TegraAIError

    with pytest.raises(TegraAIError, match="opset 18; TensorRT 8.5"):
        quantize(src, str(digits_data / "calib.npz"), str(tmp_path / "x.onnx"), target="jetpack5")
    assert not (tmp_path / "x.onnx").exists()


def residual_model(path):
    """Conv -> Relu -> Conv -> Add(residual with the first Relu) -> Relu."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3, "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["a"], name="residual"),
             helper.make_node("Relu", ["a"], ["y"], name="relu2")]
    g = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_residual_add_keeps_float_inputs_and_exclude(tmp_path):
    src = residual_model(str(tmp_path / "res.onnx"))
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.random.default_rng(1).random((32, 3, 8, 8)).astype(np.float32))
    out = str(tmp_path / "res.int8.onnx")
    res = quantize(src, str(calib), out)
    m, qdq = qdq_nodes(out)
    dq_out = {n.output[0] for n in qdq if n.op_type == "DequantizeLinear"}
    add = next(n for n in m.graph.node if n.op_type == "Add")
    # TensorRT's placement: the skip input (r1) quantized, the convolution's input (c2) float,
    # so Conv+Add fuse and run INT8 (developer guide: "quantize the residual input in skip connections")
    assert add.input[0] == "c2" and add.input[1] in dq_out, list(add.input)
    assert any("residual Add" in n for n in res.notes)
    assert res.quantized_nodes == ["conv1", "conv2"]
    res = quantize(src, str(calib), str(tmp_path / "ex.onnx"), exclude=["conv2"])
    assert res.quantized_nodes == ["conv1"] and res.excluded_nodes == ["conv2"]
    res = quantize(src, str(calib), str(tmp_path / "ex3.onnx"), exclude=["Relu", "conv1"])
    assert res.quantized_nodes == ["conv2"]


def test_fp16_conversion_keeps_io_and_sensitive_ops(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Softmax", ["m"], ["p"], name="softmax", axis=-1),
             helper.make_node("ReduceMean", ["p"], ["y"], name="mean", axes=[1], keepdims=1)]
    g = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1]),
                           helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 10])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    src = str(tmp_path / "f.onnx")
    onnx.save(m, src)
    out = str(tmp_path / "f16.onnx")
    s = convert_fp16(src, out)
    assert s["kept_fp32"] == ["mean", "softmax"]
    c = onnx.load(out)
    assert [i.type.tensor_type.elem_type for i in c.graph.input] == [TensorProto.FLOAT]
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in c.graph.output)
    assert next(i for i in c.graph.initializer if i.name == "w").data_type == TensorProto.FLOAT16
    x = rng.standard_normal((8, 16)).astype(np.float32)
    report = cmp.compare(src, out, {"x": x}, gate=cmp.Gate(min_cosine=0.999))
    assert report["passed"] and report["outputs"]["p"]["max_abs"] < 1e-2


def test_digits_fp16_real_numbers(digits_data, tmp_path):
    out = str(tmp_path / "digits.fp16.onnx")
    convert_fp16(MODEL, out)
    r = cmp.compare(MODEL, out, str(digits_data / "val.npz"), labels=str(digits_data / "val_labels.npy"))
    c = r["outputs"]["logits"]["classifier"]
    assert c["top1_agreement"] == 1.0 and r["outputs"]["logits"]["cosine"] > 0.99999 and r["passed"] is None


def sensitive_model(path):
    """x -> Gemm 'embed' -> Mul (channel 0 x 1000) -> Gemm 'head' (ignores channel 0) -> Gemm 'out'.

    The head's input has one huge channel: per-tensor INT8 crushes the small channels the
    head actually uses, so quantizing 'head' ruins the output; the others are harmless."""
    rng = np.random.default_rng(3)
    we = rng.standard_normal((16, 16)).astype(np.float32) / 4
    wh = rng.standard_normal((10, 16)).astype(np.float32) / 4
    wh[:, 0] = 0.0
    wo = rng.standard_normal((10, 10)).astype(np.float32) / 3
    scale = np.ones(16, np.float32)
    scale[0] = 1000.0
    inits = [numpy_helper.from_array(a, n) for a, n in ((we, "we"), (wh, "wh"), (wo, "wo"), (scale, "scale"))]
    nodes = [helper.make_node("Gemm", ["x", "we"], ["e"], name="embed", transB=1),
             helper.make_node("Relu", ["e"], ["er"], name="relu"),
             helper.make_node("Mul", ["er", "scale"], ["s"], name="spread"),
             helper.make_node("Gemm", ["s", "wh"], ["h"], name="head", transB=1),
             helper.make_node("Gemm", ["h", "wo"], ["y"], name="out", transB=1)]
    g = helper.make_graph(nodes, "sensitive", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_fallback_repairs_a_sensitive_model(tmp_path):
    src = sensitive_model(str(tmp_path / "s.onnx"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    np.savez(tmp_path / "gate.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    gate = cmp.Gate(min_cosine=0.95)
    plain = str(tmp_path / "plain.onnx")
    quantize(src, str(tmp_path / "calib.npz"), plain, method="minmax")
    before = cmp.compare(src, plain, str(tmp_path / "gate.npz"), gate=gate)
    assert before["passed"] is False and before["outputs"]["y"]["cosine"] < 0.9
    out = str(tmp_path / "s.int8.onnx")
    r = quantize_with_gate(src, str(tmp_path / "calib.npz"), out, str(tmp_path / "gate.npz"), gate, method="minmax")
    assert r["passed"] and r["kept_float"] == ["head"]
    assert r["quantized_layers"] == ["embed", "out"]
    assert r["steps"][0]["metrics"]["y"]["cosine"] < 0.9 < 0.95 <= r["steps"][-1]["metrics"]["y"]["cosine"]
    ranked = min(r["sensitivity"], key=lambda s: s["metrics"]["y"]["cosine"])
    assert ranked["node"] == "head"
    assert r["cost"]["layers_kept_float"] == 1 and 0 < r["cost"]["weights_kept_float"] < 1
    after = cmp.compare(src, out, str(tmp_path / "gate.npz"), gate=gate)
    assert after["passed"] and after["outputs"]["y"]["cosine"] > before["outputs"]["y"]["cosine"] + 0.1


def test_fallback_budget_exhausted_writes_nothing(tmp_path):
    src = sensitive_model(str(tmp_path / "s.onnx"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((32, 16)).astype(np.float32))
    res = invoke(main, ["quantize", src, "--calibration", "d.npz", "-o", "o.onnx", "--method", "minmax",
                        "--gate", "d.npz", "--min-cosine", "0.95", "--budget", "0", "--json", "--no-progress"],
                 str(tmp_path))
    assert res.code == 1 and json.loads(res.stdout)["passed"] is False and not (tmp_path / "o.onnx").exists()
    res = invoke(main, ["quantize", src, "--calibration", "d.npz", "-o", "o.onnx", "--method", "minmax",
                        "--gate", "d.npz", "--min-cosine", "0.95", "--markdown", "r.md", "--no-progress"], str(tmp_path))
    assert res.code == 0 and "1 kept in float (head;" in res.stdout and (tmp_path / "o.onnx").exists()
    assert "gate: PASSED" in (tmp_path / "r.md").read_text()


def test_labels_from_a_folder_dataset(digits_int8, tmp_path):
    """Images in class sub-folders -> calibration-dataset -> compare --labels DATA.npz."""
    import cv2

    from tegra_ai.dataset.calibration import build_dataset

    x, y = models.load_samples("val")
    for i, (img, label) in enumerate(zip(x[:60], y[:60])):
        os.makedirs(tmp_path / "val" / str(label), exist_ok=True)
        cv2.imwrite(str(tmp_path / "val" / str(label) / f"{i:03d}.png"), img)
    build_dataset([str(tmp_path / "val")], str(tmp_path / "val.npz"), models.load_preprocess_spec(), show_progress=False)
    r = cmp.compare(MODEL, digits_int8[0], str(tmp_path / "val.npz"), labels=str(tmp_path / "val.npz"))
    c = r["outputs"]["logits"]["classifier"]
    assert r["samples"] == 60 and c["reference_top1_accuracy"] > 0.9  # labels line up with the samples


def test_compare_gate_exit_codes(digits_data, digits_int8, tmp_path):
    path, _ = digits_int8
    d = str(digits_data)
    ok = invoke(main, ["compare", MODEL, path, "--data", f"{d}/val.npz", "--labels", f"{d}/val_labels.npy",
                       "--max-top1-drop", "1", "--min-cosine", "0.999", "--json"], str(tmp_path))
    assert ok.code == 0 and json.loads(ok.stdout)["passed"] is True
    fail = invoke(main, ["compare", MODEL, path, "--data", f"{d}/val.npz", "--min-cosine", "0.9999999",
                         "--markdown", "r.md"], str(tmp_path))
    assert fail.code == 1 and "gate: FAILED" in fail.stdout and "cosine" in (tmp_path / "r.md").read_text()
    nogate = invoke(main, ["compare", MODEL, path, "--data", f"{d}/val.npz"], str(tmp_path))
    assert nogate.code == 0 and "gate" not in nogate.stdout
    bad = invoke(main, ["compare", MODEL, path, "--data", f"{d}/val_labels.npy"], str(tmp_path))
    assert bad.code == 2


def test_quantize_cli_json(digits_data, tmp_path):
    r = invoke(main, ["quantize", MODEL, "--calibration", f"{digits_data}/calib.npz", "-o", "q.onnx", "--target",
                      "jetpack5", "--method", "percentile", "--json", "--no-progress"], str(tmp_path))
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["quantized_nodes"] == ["conv", "fc"] and d["method"] == "percentile" and d["opset"] <= 17


def test_box_agreement():
    # two images, yolo layout (N, 4+C, A): 3 anchors, 2 classes
    ref = np.zeros((2, 6, 3), np.float32)
    ref[0, :4, 0] = [10, 10, 4, 4]
    ref[0, 4, 0] = 0.9
    ref[0, :4, 1] = [30, 30, 6, 6]
    ref[0, 5, 1] = 0.8
    ref[0, :4, 2] = [10.2, 10, 4, 4]  # duplicate of anchor 0, suppressed by NMS
    ref[0, 4, 2] = 0.7
    cand = ref.copy()
    cand[0, 0, 1] += 4  # second box moved off: IoU < 0.5
    det_r = cmp.yolo_detections(ref, 0.25, 0.45)
    det_c = cmp.yolo_detections(cand, 0.25, 0.45)
    assert len(det_r[0][0]) == 2 and len(det_r[1][0]) == 0
    a = cmp.box_agreement(det_r, det_c)
    assert (a["matched"], a["precision"], a["recall"]) == (1, 0.5, 0.5)
    rep = cmp.compare_outputs({"o": ref}, {"o": cand}, detections="yolo")
    assert cmp.evaluate_gate(rep, cmp.Gate(min_box_recall=0.9)) == ["o: box recall 0.5000 < 0.9"]


def test_qat_without_torch_names_the_extra(monkeypatch):
    import builtins

    from tegra_ai.errors import MissingDependencyError
    from tegra_ai.quant import qat

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    with pytest.raises(MissingDependencyError, match=r"meta-tegra-ai\[qat\]"):
        qat.digits_module()
    with pytest.raises(MissingDependencyError):
        qat.insert_quantizers(None, [], backend="torch")


# ---------------------------------------------------------------- issue #18: calibration and batches

def test_entropy_threshold_is_tensorrts_kl_search():
    """2048-bin |x| histogram, 128 quantized bins, minimal KL (GTC 2017): a Gaussian with a
    few far outliers gets a threshold well below its max; a uniform distribution keeps its max."""
    from tegra_ai.quant.calibrate import entropy_threshold

    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(0, 1, 200_000), [40.0, -45.0, 50.0]]))
    t = entropy_threshold(*np.histogram(x, bins=2048))
    assert 2.5 < t < 8.0 and t < 0.2 * x.max()
    u = np.abs(rng.uniform(-1, 1, 100_000))
    assert entropy_threshold(*np.histogram(u, bins=2048)) == pytest.approx(u.max(), rel=1e-3)


def _activation_scales(path):
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1}


def test_entropy_scales_differ_from_minmax(digits_data, digits_int8, tmp_path):
    """ONNX Runtime's default Entropy (128 bins = 128 quantized bins) was bit-identical to
    min-max; TensorRT's 2048-bin search picks tighter thresholds on the real model's activations."""
    out = str(tmp_path / "minmax.onnx")
    quantize(MODEL, str(digits_data / "calib.npz"), out, method="minmax")
    ent, mm = _activation_scales(digits_int8[0]), _activation_scales(out)
    assert ent.keys() == mm.keys() and len(ent) >= 2
    inner = [k for k in ent if k != "input"]  # the [0, 1] image input is near-uniform: KL keeps its max
    differ = [k for k in inner if abs(ent[k] - mm[k]) > 0.05 * mm[k]]
    assert inner and differ == inner, (ent, mm)
    assert all(ent[k] <= mm[k] * (1 + 1e-6) for k in ent)  # a KL threshold never exceeds the max


def _dense_model(path, batch):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("method", ["entropy", "minmax"])
def test_dynamic_batch_calibrates_on_every_sample(tmp_path, method):
    """A dynamic batch takes all samples (10 < the default batch of 16 used to be refused);
    a static batch says how many samples it left out instead of dropping them silently."""
    from tegra_ai.quant.qdq import batches, used_samples

    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.random.default_rng(1).random((10, 8)).astype(np.float32))
    res = quantize(_dense_model(str(tmp_path / "dyn.onnx"), "N"), str(calib), str(tmp_path / "dyn.int8.onnx"),
                   method=method)
    assert res.samples == 10 and res.quantized_nodes == ["mm"]
    np.savez(tmp_path / "c37.npz", x=np.random.default_rng(1).random((37, 8)).astype(np.float32))
    res = quantize(str(tmp_path / "dyn.onnx"), str(tmp_path / "c37.npz"), str(tmp_path / "dyn37.onnx"), method=method)
    assert res.samples == 37  # 16 + 16 + 5: the smaller last batch is calibrated too
    feed = {"x": np.zeros((37, 8), np.float32)}
    assert [len(b["x"]) for b in batches(feed, onnx.load(str(tmp_path / "dyn.onnx")))] == [16, 16, 5]
    res = quantize(_dense_model(str(tmp_path / "st.onnx"), 4), str(calib), str(tmp_path / "st.int8.onnx"),
                   method=method)
    assert res.samples == 8 and any("2 of 10 samples left out" in n for n in res.notes)
    notes = []
    assert used_samples(batches(feed, onnx.load(str(tmp_path / "st.onnx")), notes=notes)) == 36 and notes


def _constant_weight_model(path):
    """A PaddlePaddle-style graph: Conv weights in Constant nodes, an FP32 Cast of its own,
    a Softmax that stays FP32."""
    rng = np.random.default_rng(0)
    nodes, c = [], 3
    for k in range(3):
        w = (rng.standard_normal((32, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        nodes.append(helper.make_node("Constant", [], [f"w{k}"], name=f"w{k}_const", value=numpy_helper.from_array(w)))
        nodes.append(helper.make_node("Conv", ["x" if k == 0 else f"r{k - 1}", f"w{k}"], [f"c{k}"], name=f"conv{k}",
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"a{k}"], name=f"relu{k}"))
        nodes.append(helper.make_node("Cast", [f"a{k}"], [f"r{k}"], name=f"cast{k}", to=TensorProto.FLOAT))
        c = 32
    nodes.append(helper.make_node("Softmax", ["r2"], ["y"], name="softmax", axis=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 16, 16])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_fp16_converts_constant_weights_and_folds_casts(tmp_path):
    """Weights held in Constant nodes become FP16 (the file roughly halves instead of growing)
    and the Casts left are the ones a boundary needs (into FP16 after the input, back to FP32
    before the Softmax), not one per weight nor a pair around each of the model's own Casts."""
    import onnxruntime as ort

    src = _constant_weight_model(str(tmp_path / "m.onnx"))
    out = str(tmp_path / "m.fp16.onnx")
    convert_fp16(src, out)
    assert os.path.getsize(out) <= 0.55 * os.path.getsize(src)
    m = onnx.load(out)
    consts = [n for n in m.graph.node if n.op_type == "Constant"]
    assert all(a.t.data_type == TensorProto.FLOAT16 for n in consts for a in n.attribute)
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2, [(n.input[0], n.output[0]) for n in casts]
    x = np.random.default_rng(2).random((1, 3, 16, 16)).astype(np.float32)
    ref = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == np.float32 and np.abs(ref - got).max() < 2e-2


def test_yolo_bottleneck_add_quantizes_the_skip(tmp_path):
    """A YOLOv8 C2f bottleneck: Split -> (Conv -> SiLU) x2 -> Add(split part, SiLU). The Add's
    skip input (the Split output, also the first Conv's input) gets Q/DQ; the SiLU side stays float."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.2).astype(np.float32), f"w{k}")
             for k in (1, 2)] + [numpy_helper.from_array(np.array([4, 4], np.int64), "split")]
    nodes = [helper.make_node("Split", ["x", "split"], ["s0", "s1"], name="split", axis=1)]
    src = "s1"
    for k in (1, 2):
        nodes += [helper.make_node("Conv", [src, f"w{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]),
                  helper.make_node("Sigmoid", [f"c{k}"], [f"g{k}"], name=f"sig{k}"),
                  helper.make_node("Mul", [f"c{k}", f"g{k}"], [f"m{k}"], name=f"silu{k}")]
        src = f"m{k}"
    nodes += [helper.make_node("Add", ["s1", "m2"], ["a"], name="bottleneck_add"),
              helper.make_node("Concat", ["s0", "a"], ["y"], name="cat", axis=1)]
    g = helper.make_graph(nodes, "c2f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], inits)
    path = str(tmp_path / "c2f.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.savez(tmp_path / "c.npz", x=rng.random((8, 8, 8, 8)).astype(np.float32))
    quantize(path, str(tmp_path / "c.npz"), str(tmp_path / "q.onnx"))
    m, qdq = qdq_nodes(str(tmp_path / "q.onnx"))
    dq_out = {n.output[0] for n in qdq if n.op_type == "DequantizeLinear"}
    add = next(n for n in m.graph.node if n.op_type == "Add")
    assert add.input[0] in dq_out and add.input[1] == "m2", list(add.input)


def test_compare_pads_a_static_batch_instead_of_refusing(tmp_path):
    """10 samples on a model with a static batch of 4: compare runs 4 + 4 + 2 (the last batch
    padded, its padding dropped) and every sample's output is the model's, none left out."""
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.quant.compare import run_model

    path = _dense_model(str(tmp_path / "st.onnx"), 4)
    w = numpy_helper.to_array(onnx.load(path).graph.initializer[0])
    x = np.random.default_rng(2).random((10, 8)).astype(np.float32)
    with OnnxRuntimeRunner(path) as runner:
        out = run_model(runner, {"x": x})
    assert out["y"].shape == (10, 4)
    np.testing.assert_allclose(out["y"], x @ w, rtol=1e-5, atol=1e-5)
