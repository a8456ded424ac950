"""The TensorRT fact table: what exists in which release. Pinned per version, so a
wrong edit of the table fails here rather than on a Jetson."""

from __future__ import annotations

import os
import re

import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.trt import compat

# version -> facts we promise (from the TensorRT release notes)
EXPECTED = {
    "8.5.2": dict(explicit_batch_flag=True, strongly_typed=False, weak_typing=True, weak_typing_deprecated=False,
                  int8_calibrators=True, int8_calibrators_deprecated=False, progress_monitor=False,
                  builder_optimization_level=False, plugin_v3=False, registry_load_library=False, tensor_io_api=True),
    "8.6.1": dict(explicit_batch_flag=True, strongly_typed=False, weak_typing=True, int8_calibrators=True,
                  progress_monitor=False, builder_optimization_level=True, plugin_v3=False, registry_load_library=True),
    "10.0.1": dict(explicit_batch_flag=False, strongly_typed=True, weak_typing=True, int8_calibrators=True,
                   int8_calibrators_deprecated=False, progress_monitor=True, plugin_v3=True),
    "10.3.0.30": dict(explicit_batch_flag=False, strongly_typed=True, weak_typing=True, weak_typing_deprecated=False,
                      int8_calibrators=True, int8_calibrators_deprecated=True, progress_monitor=True),
    "10.12.0": dict(weak_typing=True, weak_typing_deprecated=True, int8_calibrators=True),
    "10.16.2.10": dict(weak_typing=True, weak_typing_deprecated=True, int8_calibrators=True,
                       int8_calibrators_deprecated=True),
    "11.0.0": dict(explicit_batch_flag=False, strongly_typed=True, weak_typing=False, weak_typing_deprecated=False,
                   int8_calibrators=False, int8_calibrators_deprecated=False, progress_monitor=True, plugin_v3=True),
}


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_fact_table(version):
    feats = compat.features_for(version)
    for name, value in EXPECTED[version].items():
        assert getattr(feats, name) is value, f"{name} on TensorRT {version}"


def test_strongly_typed_only_from_11_and_rtx():
    assert not compat.features_for("10.16").strongly_typed_only
    assert compat.features_for("11.2").strongly_typed_only
    rtx = compat.features_for("1.7.1.116", compat.FLAVOR_RTX)
    assert rtx.strongly_typed_only and not rtx.int8_calibrators and not rtx.dla and rtx.is_rtx


def test_older_than_85_refused():
    with pytest.raises(TegraAIError, match="older than the oldest supported"):
        compat.features_for("8.4.1")


@pytest.mark.parametrize("version,precision,qdq,calib,strong,flags", [
    ("8.5.2", "fp16", False, False, False, ["FP16"]),
    ("8.5.2", "int8", True, False, False, ["FP16", "INT8"]),  # Q/DQ on 8.5: weak typing, INT8 + FP16 float parts
    ("8.5.2", "best", True, False, False, ["FP16", "INT8"]),
    ("8.5.2", "int8", False, True, False, ["FP16", "INT8"]),  # implicit INT8 + FP16 (trtexec --int8 --fp16)
    ("10.3", "int8", False, True, False, ["FP16", "INT8"]),   # implicit INT8 on 10.x: no FP32 fallback either
    ("10.3", "fp16", False, False, False, ["FP16"]),
    ("10.3", "int8", True, False, False, ["FP16", "INT8"]),   # Q/DQ on 10.x: weakly typed, float parts FP16
    ("10.3", "best", False, False, False, ["FP16"]),          # best without calibration leaves INT8 off
    ("11.0", "fp32", False, False, True, []),
    ("11.0", "auto", False, False, True, []),
    ("11.0", "int8", True, False, True, []),
    ("10.3", "auto", False, False, False, ["FP16"]),
    ("8.5.2", "auto", True, False, False, ["FP16", "INT8"]),
    ("1.7", "auto", False, False, True, []),
])
def test_resolve_typing(version, precision, qdq, calib, strong, flags):
    feats = compat.features_for(version, compat.FLAVOR_RTX if version == "1.7" else compat.FLAVOR_TENSORRT)
    out = compat.resolve_typing(feats, precision, qdq, None, calib)
    assert out["strongly_typed"] is strong
    assert out["flags"] == flags


@pytest.mark.parametrize("version,precision,qdq,calib,match", [
    ("11.0", "best", False, False, "weakly typed builder flags"),   # fp16 converts (fp16_copy); best does not
    ("11.0", "int8", False, True, "needs a Q/DQ"),
    ("10.3", "int8", False, False, "needs calibration data"),
    ("1.7", "best", False, False, "weakly typed builder flags"),
])
def test_impossible_precisions(version, precision, qdq, calib, match):
    flavor = compat.FLAVOR_RTX if version == "1.7" else compat.FLAVOR_TENSORRT
    with pytest.raises(TegraAIError, match=match):
        compat.resolve_typing(compat.features_for(version, flavor), precision, qdq, None, calib)


@pytest.mark.parametrize("version,flavor,precision,qdq,strong,copy", [
    ("11.0", compat.FLAVOR_TENSORRT, "fp16", False, None, True),     # float model, --precision fp16
    ("11.0", compat.FLAVOR_TENSORRT, "fp32", False, None, False),
    ("11.0", compat.FLAVOR_TENSORRT, "auto", False, None, False),    # auto: the model's own types
    ("11.0", compat.FLAVOR_TENSORRT, "auto", True, None, True),      # Q/DQ: float parts FP16 as on 10.x
    ("11.0", compat.FLAVOR_TENSORRT, "int8", True, None, True),
    ("11.0", compat.FLAVOR_TENSORRT, "best", True, None, True),
    ("11.0", compat.FLAVOR_TENSORRT, "fp32", True, None, False),     # asked for FP32 float parts
    ("1.7", compat.FLAVOR_RTX, "int8", True, None, True),
    ("10.16", compat.FLAVOR_TENSORRT, "int8", True, None, False),    # the FP16 flag does it
    ("10.3", compat.FLAVOR_TENSORRT, "int8", True, True, False),     # --strongly-typed where flags exist: as asked
])
def test_fp16_copy_only_where_no_fp16_flag(version, flavor, precision, qdq, strong, copy):
    feats = compat.features_for(version, flavor)
    out = compat.resolve_typing(feats, precision, qdq, strong, False)
    assert out["fp16_copy"] is copy and compat.fp16_copy_for_build(feats, precision, qdq) is (copy and feats.strongly_typed_only)
    assert (out["float_precision"]["path"] == "fp16-copy") is copy
    assert not out["strongly_typed"] or out["flags"] == []


def test_strongly_typed_refused_on_85():
    with pytest.raises(TegraAIError, match="no strongly typed networks"):
        compat.resolve_typing(compat.features_for("8.5.2"), "fp32", False, True, False)


def test_deprecation_notes():
    notes = compat.resolve_typing(compat.features_for("10.13"), "fp16", False, None, False)["notes"]
    assert any("deprecates the weak-typing flags FP16" in n for n in notes)
    notes = compat.resolve_typing(compat.features_for("10.3"), "int8", False, None, True)["notes"]
    assert any("deprecates implicit INT8 calibration" in n for n in notes)


class _Enum:
    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


@pytest.mark.parametrize("version,strong,expected", [
    ("8.5.2", False, 1 << 0),     # EXPLICIT_BATCH (value 0) is required on 8.x
    ("10.3", False, 0),           # explicit batch is implicit (the flag is deprecated)
    ("10.3", True, 1 << 1),       # STRONGLY_TYPED (value 1)
    ("10.16", True, 1 << 1),
    ("11.0", True, 0),            # always strongly typed; STRONGLY_TYPED is value 0 there, deprecated, ignored
])
def test_create_network_flags(version, strong, expected):
    from fake_trt import make_fake_trt

    feats = compat.features_for(version)
    trt = make_fake_trt(feats)
    network = compat.create_network(trt, feats, trt.Builder(trt.Logger()), strong)
    assert network._flags == expected


def test_rtx_compute_capability_targets():
    rtx = compat.features_for("1.7", compat.FLAVOR_RTX)

    class Config:
        def set_compute_capability(self, cc, index):
            self.cc = (cc, index)

    class FakeRtx:
        ComputeCapability = _Enum(SM86="SM86", SM80="SM80")

    cfg = Config()
    assert compat.set_rtx_compute_capability(FakeRtx, rtx, cfg, None) == "8.6"
    assert cfg.cc == ("SM86", 0) and cfg.num_compute_capabilities == 1
    with pytest.raises(TegraAIError, match="Jetson"):
        compat.set_rtx_compute_capability(FakeRtx, rtx, Config(), "8.7")
    with pytest.raises(TegraAIError, match="TensorRT-RTX ahead-of-time"):
        compat.set_rtx_compute_capability(FakeRtx, compat.features_for("10.3"), Config(), "8.6")


def test_no_version_comparisons_outside_compat():
    """The compat module is the only place that looks at TensorRT's version."""
    pkg = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "tegra_ai")
    offenders = []
    for root, _dirs, files in os.walk(pkg):
        for name in files:
            path = os.path.join(root, name)
            if not name.endswith(".py") or path.endswith(os.path.join("trt", "compat.py")):
                continue
            with open(path) as f:
                text = f.read()
            if re.search(r"(trt|tensorrt(_rtx)?)\.__version__", text):
                offenders.append(os.path.relpath(path, pkg))
    assert offenders == []


def test_load_reports_missing_tensorrt(monkeypatch):
    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt")
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TegraAIError) as exc:
        compat.load()
    assert exc.value.exit_code == 69 and "TensorRT is not available" in exc.value.message


def test_graph_instantiate_picks_the_name_of_the_installed_bindings(monkeypatch):
    """cuda-python 13 has no cuGraphInstantiateWithFlags; 11.x's cuGraphInstantiate took a log buffer."""
    from tegra_ai.cuda import compat as cuda_compat

    class Old:
        def cuGraphInstantiateWithFlags(self, g, f):
            return (0, ("with_flags", g, f))

        def cuGraphInstantiate(self, g, buf, size):
            raise AssertionError("11.x signature used")

    class New:
        def cuGraphInstantiate(self, g, f):
            return (0, ("flags", g, f))

    for mod, want in ((Old(), "with_flags"), (New(), "flags")):
        monkeypatch.setattr(cuda_compat, "driver", lambda mod=mod: mod)
        assert cuda_compat.graph_instantiate("g") == (0, (want, "g", 0))


def test_float_precision_recorded():
    """Which path the float (unquantized) layers take, for the sidecar: the FP16 flag where the
    release has it, the model's own types (FP32 for a Q/DQ model's float parts) on 11."""
    q10 = compat.resolve_typing(compat.features_for("10.3"), "int8", True, None, False)
    assert q10["float_precision"]["path"] == "fp16-flag" and any("run FP16" in n for n in q10["notes"])
    q11 = compat.resolve_typing(compat.features_for("11.0"), "int8", True, None, False)
    assert q11["float_precision"]["path"] == "fp16-copy" and q11["fp16_copy"] and "FP16" in q11["float_precision"]["why"]
    q11 = compat.resolve_typing(compat.features_for("11.0"), "fp32", True, None, False)
    assert q11["float_precision"]["path"] == "model-types" and "FP32" in q11["float_precision"]["why"]
    assert not q11["fp16_copy"]
    assert compat.resolve_typing(compat.features_for("10.3"), "fp32", False, None, False)["float_precision"]["path"] == "fp32"
