"""Issue #18 part 3 on TensorRT 11 (strongly typed only, no FP16/INT8 builder flags): the
float parts of a Q/DQ model are converted to FP16 before the build, in the one place every
caller goes through (``trt.builder.parse_network``), with Q/DQ nodes, their scales and the
layers the accuracy gate kept in float left FP32; on 8.5-10.x the FP16 flag does it instead.
Run under the TensorRT stand-in of every release (tests/fake_trt.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fake_trt import make_fake_trt  # noqa: E402
from tegra_ai import platform  # noqa: E402
from tegra_ai.onnx_fp16 import KEEP_FP32_METADATA, convert_fp16  # noqa: E402
from tegra_ai.spec import BuildOptions  # noqa: E402
from tegra_ai.trt import compat  # noqa: E402

ORIN = platform.DeviceFacts("8.7", "Orin", "p3767-0005", "36.4.3")


def target(monkeypatch, name):
    library, version, bindings = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    trt = make_fake_trt(feats, surface=bindings, version=version, inputs=[("x", (1, 3, 8, 8))],
                        outputs=[("y", (1, 4, 8, 8))])
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: ORIN)
    return trt, feats


def qdq_model(path, gate=("gate_conv",)):
    """x -> Q/DQ -> Conv(int8 weights through DQ) -> Relu -> Conv "float_conv" -> Conv "gate_conv"
    -> y: one quantized layer, one float layer, one the gate kept in float (metadata)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp"),
             numpy_helper.from_array(rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8), "wq"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wzp"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.2, "w_float"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.2, "w_gate")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xdq"], name="dq0"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], name="dqw", axis=0),
             helper.make_node("Conv", ["xdq", "w"], ["c0"], name="qconv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu"),
             helper.make_node("Conv", ["r0", "w_float"], ["c1"], name="float_conv", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w_gate"], ["y"], name="gate_conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if gate:
        helper.set_model_props(model, {KEEP_FP32_METADATA: json.dumps(list(gate))})
    onnx.save(model, path)
    return str(path)


def qdq_casts(model) -> list:
    """The tensors Cast right before a QuantizeLinear/DequantizeLinear or right after one."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    qdq = ("QuantizeLinear", "DequantizeLinear")
    return sorted(n.input[0] for n in model.graph.node if n.op_type == "Cast" and (
        (n.input[0] in producer and producer[n.input[0]].op_type in qdq)
        or any(r.op_type in qdq for r in readers.get(n.output[0], []))))


def _types(model_bytes):
    m = onnx.load_from_string(model_bytes)
    return {i.name: i.data_type for i in m.graph.initializer}, m


@pytest.mark.parametrize("name", sorted(compat.API_TARGETS))
def test_qdq_float_parts_fp16_where_the_release_has_no_fp16_flag(monkeypatch, tmp_path, name):
    from tegra_ai.trt.builder import build_engine

    model = qdq_model(tmp_path / "q.onnx")
    trt, feats = target(monkeypatch, name)
    r = build_engine(model, BuildOptions(precision="int8"), show_progress=False)
    inits, parsed = _types(trt._fake.parsed_models[-1])
    fp = r.sidecar.float_precision
    if feats.weak_typing:  # 8.5-10.x: the model as it is, weakly typed with FP16 + INT8
        assert fp["path"] == "fp16-flag" and r.sidecar.builder_flags == ["FP16", "INT8"]
        assert inits["w_float"] == TensorProto.FLOAT and trt._fake.calls.count(("parse", model)) == 1
        return
    # TensorRT 11: the stand-in has no BuilderFlag.FP16/INT8 (as NvInfer.h release/11.1), so none is set
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP16
    assert r.sidecar.builder_flags == [] and r.sidecar.strongly_typed and trt._fake.config._flags == []
    assert fp["path"] == "fp16-copy" and fp["kept_fp32"] == ["gate_conv"] and "FP16" in fp["why"]
    assert ("parse", model) not in trt._fake.calls          # an FP16 copy was parsed, in a temporary directory
    assert inits["w_float"] == TensorProto.FLOAT16          # the unquantized layer: FP16
    assert inits["w_gate"] == TensorProto.FLOAT             # kept in float by the gate: FP32
    # Q/DQ scales FP16 (the opset raised 13 -> 19), as Model Optimizer writes them: no Cast pairs.
    # q0 quantizes the FP32 graph input as it is (FP32 scale holding the FP16 value), dq0 reads
    # the FP16 copy of that scale: no Cast anywhere around the Q/DQ.
    assert inits["ws"] == inits["s_fp16"] == TensorProto.FLOAT16 and inits["s"] == TensorProto.FLOAT
    nodes = {n.name: n for n in parsed.graph.node}
    assert nodes["q0"].input[:2] == ["x", "s"] and nodes["dq0"].input[1] == "s_fp16"
    assert next(o.version for o in parsed.opset_import if o.domain in ("", "ai.onnx")) == 19
    assert qdq_casts(parsed) == []
    assert inits["wq"] == TensorProto.INT8
    kinds = {n.name: n.op_type for n in parsed.graph.node}
    assert kinds["q0"] == "QuantizeLinear" and kinds["dqw"] == "DequantizeLinear"
    assert any("accuracy gate kept in float" in n for n in r.notes)


@pytest.mark.parametrize("precision,path", [("fp32", "model-types"), ("auto", "fp16-copy"), ("best", "fp16-copy")])
def test_qdq_on_11_fp32_keeps_the_model_types(monkeypatch, tmp_path, precision, path):
    from tegra_ai.trt.builder import build_engine

    model = qdq_model(tmp_path / "q.onnx", gate=())
    trt, _ = target(monkeypatch, "trt-11")
    r = build_engine(model, BuildOptions(precision=precision), show_progress=False)
    assert r.sidecar.float_precision["path"] == path and "kept_fp32" not in r.sidecar.float_precision
    inits, _ = _types(trt._fake.parsed_models[-1])
    assert inits["w_float"] == (TensorProto.FLOAT if path == "model-types" else TensorProto.FLOAT16)


def test_qdq_conversion_runs_in_onnxruntime_like_the_original(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    src = qdq_model(tmp_path / "q.onnx")
    out = str(tmp_path / "q.fp16.onnx")
    summary = convert_fp16(src, out, qdq=True)
    assert summary["gate_fp32"] == ["gate_conv"] and "gate_conv" in summary["kept_fp32"]
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    a, b = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for p in (src, out))
    # FP16 scales differ from the FP32 ones by up to 2**-11 relative, which moves a few values across
    # a quantization step: max 0.34 % of the largest output, cosine 0.999998 (FP32 scales: 0.02 %)
    assert np.abs(a - b).max() <= 1e-2 * np.abs(a).max()
    assert float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.99999


def test_qdq_fp16_scales_run_like_fp32_scales_and_fall_back_where_the_opset_stays(monkeypatch, tmp_path):
    """ONNX QuantizeLinear-13 / DequantizeLinear-13 take float scales only; from opset 19 the
    scale has the data's type. Raised to 19, the copy's Q/DQ run in FP16 with FP16 scales (no
    Cast pair around each) and match the FP32-scale form in ONNX Runtime; where the opset cannot
    be raised, the Q/DQ and their scales stay FP32 behind Casts and the summary says why."""
    from onnx import version_converter

    from tegra_ai.trt.builder import build_engine

    src = qdq_model(tmp_path / "q.onnx", gate=())
    target(monkeypatch, "trt-11")
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    fp16 = str(tmp_path / "s16.onnx")
    summary = convert_fp16(src, fp16, qdq=True)
    assert summary["qdq_scales"] == "fp16" and summary["opset"] == 19 and summary["qdq_scales_fp32_why"] is None
    m16 = onnx.load(fp16)
    onnx.checker.check_model(m16, full_check=True)
    assert {i.name: i.data_type for i in m16.graph.initializer}["ws"] == TensorProto.FLOAT16
    assert qdq_casts(m16) == []

    def fail(*a, **k):
        raise RuntimeError("No Adapter For QuantizeLinear")
    monkeypatch.setattr(version_converter, "convert_version", fail)
    fp32 = str(tmp_path / "s32.onnx")
    summary = convert_fp16(src, fp32, qdq=True)
    assert summary["qdq_scales"] == "fp32" and summary["opset"] == 13
    r = build_engine(src, BuildOptions(precision="int8"), show_progress=False)  # the build says so
    assert any(n.startswith("Q/DQ scales stay FP32 behind Casts: opset 13 could not be raised to 19") for n in r.notes)
    assert "could not be raised to 19" in summary["qdq_scales_fp32_why"] and "No Adapter" in summary["qdq_scales_fp32_why"]
    m32 = onnx.load(fp32)
    onnx.checker.check_model(m32, full_check=True)
    assert {i.name: i.data_type for i in m32.graph.initializer}["s"] == TensorProto.FLOAT
    assert qdq_casts(m32) == ["w", "xdq"]  # both DQ outputs cast to FP16 for the Conv
    ort = pytest.importorskip("onnxruntime")
    a, b = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for p in (fp32, fp16))
    assert np.abs(a - b).max() <= 1e-2 * np.abs(a).max()  # a few values one quantization step apart
    assert float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.99999


def test_a_scale_fp16_cannot_hold_keeps_its_qdq_fp32(tmp_path):
    """A weight scale below FP16's smallest normal number (2**-14; a dead channel's) would
    lose its precision or become 0 in FP16: that DequantizeLinear stays FP32 (a Cast after it),
    the others go FP16."""
    src = qdq_model(tmp_path / "q.onnx", gate=())
    m = onnx.load(src)
    ws = next(i for i in m.graph.initializer if i.name == "ws")
    ws.CopyFrom(numpy_helper.from_array(np.array([0.01, 0.01, 1e-6, 0.01], np.float32), "ws"))
    onnx.save(m, src)
    out = str(tmp_path / "o.onnx")
    summary = convert_fp16(src, out, qdq=True)
    assert summary["qdq_scales"] == "fp16" and summary["qdq_fp32_scale_nodes"] == ["dqw"]
    c = onnx.load(out)
    types = {i.name: i.data_type for i in c.graph.initializer}
    assert types["ws"] == TensorProto.FLOAT and types["s_fp16"] == TensorProto.FLOAT16
    assert qdq_casts(c) == ["w"]  # dqw's FP32 output into the FP16 Conv


def test_plain_convert_fp16_still_refuses_qdq(tmp_path):
    from tegra_ai.errors import TegraAIError

    with pytest.raises(TegraAIError, match="has Q/DQ nodes") as exc:
        convert_fp16(qdq_model(tmp_path / "q.onnx"), str(tmp_path / "o.onnx"))
    assert exc.value.exit_code == 2 and not (tmp_path / "o.onnx").exists()


def test_gate_metadata_naming_no_node_is_refused(tmp_path):
    from tegra_ai.errors import TegraAIError

    src = qdq_model(tmp_path / "q.onnx", gate=("no_such_node",))
    with pytest.raises(TegraAIError, match="no_such_node") as exc:
        convert_fp16(src, str(tmp_path / "o.onnx"), qdq=True)
    assert exc.value.exit_code == 2 and not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("raw", ["not json", '{"a": 1}', "[1, 2]"])
def test_gate_metadata_that_is_not_a_list_of_names_is_refused(monkeypatch, tmp_path, raw):
    """Also on the device: the build on TensorRT 11 fails with one line (exit 2), nothing parsed."""
    from tegra_ai.errors import TegraAIError
    from tegra_ai.trt.builder import build_engine

    src = qdq_model(tmp_path / "q.onnx", gate=())
    m = onnx.load(src)
    helper.set_model_props(m, {KEEP_FP32_METADATA: raw})
    onnx.save(m, src)
    trt, _ = target(monkeypatch, "trt-11")
    with pytest.raises(TegraAIError, match="not a JSON list of node names") as exc:
        build_engine(src, BuildOptions(precision="int8"), show_progress=False)
    assert exc.value.exit_code == 2 and trt._fake.parsed_models == []


def test_quantize_records_the_gates_float_layers_for_the_fp16_copy(tmp_path):
    """quantize(keep_float=...) (what quant.fallback's gate passes) names those layers in the
    model's metadata; the user's --exclude does not (those are the user's, not kept FP32)."""
    pytest.importorskip("onnxruntime")
    from tegra_ai.quant.qdq import quantize

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    src = str(tmp_path / "m.onnx")
    onnx.save(m, src)
    calib = tmp_path / "c.npz"
    np.savez(calib, x=rng.random((8, 3, 8, 8)).astype(np.float32))
    gated, excluded = str(tmp_path / "gated.onnx"), str(tmp_path / "excluded.onnx")
    quantize(src, str(calib), gated, keep_float=["conv2"], method="minmax")
    quantize(src, str(calib), excluded, exclude=["conv2"], method="minmax")
    assert {p.key: p.value for p in onnx.load(gated).metadata_props}[KEEP_FP32_METADATA] == '["conv2"]'
    assert KEEP_FP32_METADATA not in {p.key for p in onnx.load(excluded).metadata_props}
    for path, conv2_weights in ((gated, TensorProto.FLOAT), (excluded, TensorProto.FLOAT16)):
        out = path + ".fp16.onnx"
        convert_fp16(path, out, qdq=True)
        types = {i.name: i.data_type for i in onnx.load(out).graph.initializer}
        assert types["w2"] == conv2_weights


@pytest.mark.rtx
@pytest.mark.parametrize("precision,path", [("int8", "fp16-copy"), ("fp32", "model-types")])
def test_real_tensorrt_rtx_builds_the_fp16_copy_of_a_qdq_model(monkeypatch, tmp_path, precision, path):
    """TensorRT-RTX (strongly typed only, no FP16 flag, like TensorRT 11) parses and builds the
    converted Q/DQ model: FP16 Q/DQ with FP16 scales at opset 19 (NvInfer.h: an FP16 scale
    must match the Q input's / DQ output's type), FP16 float layers, the gate's layer FP32. The engine cannot run here (no GPU); its accuracy is ONNX Runtime's above."""
    from tegra_ai.trt.builder import build_engine

    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")
    r = build_engine(qdq_model(tmp_path / "q.onnx"), BuildOptions(precision=precision), show_progress=False)
    assert len(r.engine) > 1000 and r.sidecar.strongly_typed and r.sidecar.builder_flags == []
    assert r.sidecar.float_precision["path"] == path
    assert r.sidecar.float_precision.get("kept_fp32") == (["gate_conv"] if path == "fp16-copy" else None)


def _two_conv_qdq(path, channels=256, int8_weights=True):
    """Two 3x3 Convs (channels -> channels, 1.18 M weights) with Q/DQ on their inputs, and their
    weights INT8 behind DequantizeLinear, or float."""
    rng = np.random.default_rng(0)
    q = [rng.integers(-100, 100, (channels, channels, 3, 3)).astype(np.int8) for _ in range(2)]
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp"),
             numpy_helper.from_array(np.full(channels, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "wzp")]
    nodes = []
    for i, (src, dst) in enumerate((("x", "r0"), ("r0", "y"))):
        nodes += [helper.make_node("QuantizeLinear", [src, "s", "zp"], [f"q{i}"], name=f"q{i}"),
                  helper.make_node("DequantizeLinear", [f"q{i}", "s", "zp"], [f"dq{i}"], name=f"dq{i}")]
        if int8_weights:
            inits.append(numpy_helper.from_array(q[i], f"wq{i}"))
            nodes.append(helper.make_node("DequantizeLinear", [f"wq{i}", "ws", "wzp"], [f"w{i}"], name=f"dqw{i}", axis=0))
        else:
            inits.append(numpy_helper.from_array(q[i].astype(np.float32) * 0.01, f"w{i}"))
        conv_out = f"c{i}" if i == 0 else dst
        nodes.append(helper.make_node("Conv", [f"dq{i}", f"w{i}"], [conv_out], name=f"conv{i}", pads=[1, 1, 1, 1]))
        if i == 0:
            nodes.append(helper.make_node("Relu", [conv_out], [dst], name="relu"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


@pytest.mark.rtx
def test_real_tensorrt_rtx_keeps_int8_weights_behind_the_casts(monkeypatch, tmp_path):
    """What the engine stores says what TensorRT made of the copy (TensorRT-RTX 1.7, strongly
    typed, CPU-only build): 1.18 M INT8 weights behind a DequantizeLinear with an FP16 scale
    (FP16 output) -> Conv stay INT8 (the engine is no larger than the unconverted Q/DQ model's,
    measured 1,607,492 vs 1,732,756 B; 1,607,572 B in the FP32-scale form, DequantizeLinear ->
    Cast(FP16) -> Conv), while float weights become FP16 in the copy (2.78 MB against 5.14 MB)."""
    from tegra_ai.trt.builder import build_engine

    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")
    size = {}
    for weights in ("int8", "float"):
        model = _two_conv_qdq(tmp_path / f"{weights}.onnx", int8_weights=weights == "int8")
        for precision in ("fp32", "int8"):
            r = build_engine(model, BuildOptions(precision=precision), show_progress=False)
            size[weights, r.sidecar.float_precision["path"]] = len(r.engine)
    weight_bytes = 2 * 256 * 256 * 9
    assert size["float", "model-types"] - size["float", "fp16-copy"] > 1.5 * weight_bytes   # FP32 -> FP16 weights
    assert size["int8", "fp16-copy"] <= size["int8", "model-types"]                          # INT8 weights kept
    assert size["float", "fp16-copy"] - size["int8", "fp16-copy"] > 0.7 * weight_bytes      # FP16 vs INT8 weights
