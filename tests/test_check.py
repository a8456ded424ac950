"""Host preflight against JetPack targets, on models the tests generate."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError

from tegra_ai.onnx_tools.check import check_model
from tegra_ai.onnx_tools.targets import op_table_for, resolve_target

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def codes(report, severity="error"):
    return [f.code for f in report.findings if f.severity == severity]


def check(path, target="jetpack6"):
    return check_model(path, resolve_target(target), use_parser=False)


def test_targets():
    assert resolve_target("jetpack5").tensorrt[:2] == (8, 5)
    assert resolve_target("jetpack6").tensorrt[:2] == (10, 3)
    assert resolve_target("trt-10.16").tensorrt == (10, 16)
    assert op_table_for((10, 3))["tensorrt_version"] == "10.1"
    with pytest.raises(Exception, match="unknown target"):
        resolve_target("jetpack9")


def test_default_model_passes_everywhere(default_model):
    for t in ("jetpack5", "jetpack6", "jetpack7"):
        r = check(default_model, t)
        assert r.ok, [f.message for f in r.findings]
        assert r.inputs[0]["dims"] == ["N", 1, 8, 8]


def test_dynamic_dims_get_suggested_profiles(dynamic_model):
    r = check(dynamic_model)
    assert r.ok and r.suggested_shapes == "input:1x3x320x320:1x3x640x640:8x3x1280x1280"


def test_opset_too_new_for_jetpack5(model_factory):
    path = model_factory("new.onnx", opset=19, input_dims=(1, 3, 8, 8))
    assert "opset" in codes(check(path, "jetpack5"))
    assert "opset" not in codes(check(path, "jetpack6"))


def test_unsupported_operator_named_with_nodes(model_factory):
    table = op_table_for((8, 5))["operators"]
    unsupported = sorted(op for op, info in table.items() if not info["supported"])
    assert unsupported, "the 8.5 table lists unsupported operators"
    op = "Unique" if "Unique" in unsupported else unsupported[0]
    path = model_factory("u.onnx", input_dims=(1, 3, 8, 8), opset=13,
                         extra_nodes=[helper.make_node(op, ["output"], ["u"], name="the_bad_node")])
    r = check(path, "jetpack5")
    f = [f for f in r.findings if f.code == "operator"]
    assert f and op in f[0].message and f[0].nodes == ["the_bad_node"]


def test_custom_domain_needs_plugin(model_factory):
    path = model_factory("c.onnx", input_dims=(1, 3, 8, 8), domain_ops=[("com.example", "MyOp")])
    assert "custom-op" in codes(check(path), "warning")


def test_missing_external_data(model_factory):
    path = model_factory("e.onnx", external=True, input_dims=(1, 3, 8, 8))
    os.unlink(path + ".data")
    r = check(path)
    assert not r.ok and "files" in codes(r)


def test_corrupt_model(tmp_path):
    p = tmp_path / "c.onnx"
    p.write_bytes(b"\x08\x07garbage")
    with pytest.raises(TegraAIError, match="not a valid ONNX model") as exc:   # not a model: bad input
        check(str(p))
    assert exc.value.exit_code == 2


def test_empty_file_is_not_accepted_by_the_parser(tmp_path):
    p = tmp_path / "e.onnx"
    p.write_bytes(b"")
    with pytest.raises(TegraAIError, match="is empty") as exc:
        check(str(p))
    assert exc.value.exit_code == 2


def test_unknown_trt_release_is_refused():
    from tegra_ai.onnx_tools.targets import resolve_target

    with pytest.raises(TegraAIError, match="no facts for TensorRT 9.9.*trt-10.16") as exc:
        resolve_target("trt-9.9")
    assert exc.value.exit_code == 2
    assert resolve_target("trt-8.5").tensorrt == (8, 5)


def test_int64_and_double(model_factory):
    p = model_factory("d.onnx", input_dims=(1, 3, 8, 8), input_dtype=TensorProto.DOUBLE)
    assert "dtype" in codes(check(p))
    cast = helper.make_node("Cast", ["output"], ["as_int"], to=TensorProto.INT64, name="cast")
    p2 = model_factory("i.onnx", input_dims=(1, 3, 8, 8), extra_nodes=[cast],
                       initializers=[numpy_helper.from_array(np.array([1], np.int64), "k")])
    m = onnx.load(p2)
    m.graph.output.append(helper.make_tensor_value_info("as_int", TensorProto.INT64, [1, 4, 8, 8]))
    onnx.save(m, p2)
    assert "dtype" in codes(check(p2, "jetpack5"), "warning")
    assert "dtype" not in codes(check(p2, "jetpack6"), "warning")


def _qdq_model(tmp_path, zp_value, zp_type=TensorProto.INT8):
    np_type = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zp_type]
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(zp_value, np_type), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["output", "s", "zp"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq0")]
    from onnx_models import make_model

    return make_model(str(tmp_path / f"qdq{zp_value}{zp_type}.onnx"), input_dims=(1, 3, 8, 8), extra_nodes=nodes,
                      initializers=inits)


def test_qdq_constraints(tmp_path):
    assert check(_qdq_model(tmp_path, 0), "jetpack5").ok
    r = check(_qdq_model(tmp_path, 3), "jetpack5")
    assert any("symmetric" in f.message for f in r.findings if f.code == "qdq")
    r = check(_qdq_model(tmp_path, 128, TensorProto.UINT8), "jetpack5")
    assert any("uint8" in f.message for f in r.findings if f.code == "qdq")


@pytest.mark.rtx
def test_real_parser_reports_by_node(model_factory, monkeypatch):
    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")
    path = model_factory("bad.onnx", input_dims=(1, 3, 8, 8),
                         extra_nodes=[helper.make_node("Reshape", ["output", "output"], ["r"], name="broken_reshape")])
    r = check_model(path, resolve_target("jetpack6"))
    parser_errors = [f for f in r.findings if f.code == "parser" and f.severity == "error"]
    assert parser_errors and "TensorRT-RTX" in parser_errors[0].message


def test_resize_attributes_checked(model_factory):
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    cubic = helper.make_node("Resize", ["output", "", "scales"], ["up"], name="up_cubic", mode="cubic")
    p = model_factory("r.onnx", input_dims=(1, 3, 8, 8), extra_nodes=[cubic], initializers=inits)
    r = check(p, "jetpack5")
    f = [f for f in r.findings if f.code == "operator-attr"]
    assert f and "mode cubic" in f[0].message and f[0].nodes == ["up_cubic"]
    linear = helper.make_node("Resize", ["output", "", "scales"], ["up"], name="up_linear", mode="linear")
    p2 = model_factory("r2.onnx", input_dims=(1, 3, 8, 8), extra_nodes=[linear], initializers=inits)
    assert "operator-attr" not in codes(check(p2, "jetpack5"))


def _packaged_detector():
    """PP-OCRv4's text detector (DBNet, dynamic N x 3 x H x W), shipped inside the
    rapidocr-onnxruntime wheel: a real trained detector, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapidocr-onnxruntime (the real detector model) is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "ch_PP-OCRv4_det_infer.onnx")
    if not os.path.exists(path):
        pytest.skip("rapidocr-onnxruntime ships no detector model")
    return path


@pytest.mark.parametrize("target", ["jetpack5", "jetpack6"])
def test_real_detector_report(target):
    r = check(_packaged_detector(), target)
    assert r.ok, [f.message for f in r.findings if f.severity == "error"]
    assert r.opset == 12 and r.inputs[0]["dims"][1] == 3
    assert all(isinstance(d, str) for i, d in enumerate(r.inputs[0]["dims"]) if i != 1)
    assert r.suggested_shapes == "x:1x3x320x320:1x3x640x640:8x3x1280x1280"
    assert r.operators["Conv"] > 50 and "Resize" in r.operators
    assert any(f.code == "operator-notes" and f.message.startswith("Resize:") for f in r.findings)


@pytest.mark.rtx
def test_real_detector_builds_with_rtx(monkeypatch):
    from tegra_ai.spec import BuildOptions
    from tegra_ai.trt.builder import build_engine
    from tegra_ai.spec import parse_profile

    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")
    r = build_engine(_packaged_detector(), BuildOptions(profiles=[parse_profile("x:1x3x320x320:1x3x640x640:2x3x960x960")]),
                     show_progress=False)
    assert len(r.engine) > 1_000_000 and r.sidecar.profiles[0][0]["max"] == [2, 3, 960, 960]
