"""Our builder's control flow against each TensorRT release's API surface (a recording
stand-in, see fake_trt.py). Real builds: test_rtx.py (TensorRT-RTX) and, on a Jetson,
the tests marked 'tensorrt'."""

from __future__ import annotations

import pytest

from fake_trt import make_fake_trt
from tegra_ai import platform
from tegra_ai.spec import BuildOptions
from tegra_ai.errors import TegraAIError
from tegra_ai.trt import compat
from tegra_ai.trt.builder import build_engine
from tegra_ai.spec import parse_profile

ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
PROFILE = [parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]


def use(monkeypatch, version, facts=ORIN, **kw):
    feats = compat.features_for(version)
    trt = make_fake_trt(feats, **kw)
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: facts)
    return trt


@pytest.fixture
def qdq_model(tmp_path):
    import numpy as np
    from onnx import helper, numpy_helper

    from onnx_models import make_model

    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["output", "s", "zp"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq0")]
    return make_model(str(tmp_path / "qdq.onnx"), input_dims=("N", 1, 8, 8), extra_nodes=nodes, initializers=inits)


def build(model, **opts):
    return build_engine(model, BuildOptions(profiles=PROFILE, **opts), show_progress=False)


def flag_names(config):
    return [f.name for f in config._flags]


@pytest.mark.parametrize("version,net_flags,precision,builder_flags,monitor", [
    ("8.5.2", 1 << 0, "fp16", ["FP16"], False),        # EXPLICIT_BATCH = 0 is required on 8.x
    ("10.3.0", 0, "fp16", ["FP16"], True),
    ("10.3.0", 0, "int8-qdq", ["FP16", "INT8"], True),  # Q/DQ: weakly typed, float parts FP16 (not FP32)
    ("10.3.0", 1 << 1, "int8-qdq-strong", [], True),    # --strongly-typed: STRONGLY_TYPED = 1
    ("10.16.2", 0, "best", ["FP16"], True),
    ("11.0.0", 0, "fp32", [], True),                   # 11.x: always strongly typed, flag ignored
    ("11.0.0", 0, "auto", [], True),
])
def test_flags_per_release(monkeypatch, default_model, qdq_model, version, net_flags, precision, builder_flags,
                           monitor):
    trt = use(monkeypatch, version)
    model = qdq_model if "-qdq" in precision else default_model
    strong = {"strongly_typed": True} if precision.endswith("-strong") else {}
    r = build(model, precision=precision.split("-")[0], workspace=1 << 28, **strong)
    f = trt._fake
    assert f.network._flags == net_flags
    assert flag_names(f.config) == builder_flags
    assert {p.name: v for p, v in f.config._pools.items()} == {"WORKSPACE": 1 << 28}
    assert f.config._profiles[0]._shapes["input"] == ((1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8))
    assert (("set", "IBuilderConfig", "progress_monitor") in f.calls) is monitor
    assert f.config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    assert r.sidecar.tensorrt["version"] == version and r.sidecar.device["l4t_release"] == "36.4.3"


def test_auto_precision_is_fp16_with_weak_typing(monkeypatch, default_model):
    trt = use(monkeypatch, "10.3.0")
    build(default_model, precision="auto")
    # auto on weak-typing releases means FP16 (the fast default on Jetson)
    assert flag_names(trt._fake.config) == ["FP16"]


def test_opt_level_needs_86(monkeypatch, default_model):
    trt = use(monkeypatch, "8.5.2")
    r = build(default_model, precision="fp16", opt_level=4)
    assert any("no builder optimization level" in n for n in r.notes)
    trt = use(monkeypatch, "10.3.0")
    build(default_model, precision="fp16", opt_level=4)
    assert trt._fake.config.builder_optimization_level == 4


def test_timing_cache_round_trip(monkeypatch, default_model, tmp_path):
    trt = use(monkeypatch, "10.3.0")
    tc = tmp_path / "t.cache"
    tc.write_bytes(b"OLD")
    r = build_engine(default_model, BuildOptions(profiles=PROFILE), timing_cache=str(tc), show_progress=False)
    # TensorRT returns None for a cache it cannot read: we start a fresh one and say so
    assert ("create_timing_cache", b"OLD") in trt._fake.calls and tc.read_bytes() == b"TIMING"
    assert any("another TensorRT version or GPU" in n for n in r.notes)
    trt = use(monkeypatch, "10.3.0")
    r = build_engine(default_model, BuildOptions(profiles=PROFILE), timing_cache=str(tc), show_progress=False)
    assert ("create_timing_cache", b"TIMING") in trt._fake.calls and not any("timing cache" in n for n in r.notes)


def test_dla(monkeypatch, default_model):
    trt = use(monkeypatch, "10.3.0", dla_cores=2)
    build(default_model, precision="fp16", dla_core=1, gpu_fallback=True)
    c = trt._fake.config
    assert (c.default_device_type, c.DLA_core) == (trt.DeviceType.DLA, 1) and "GPU_FALLBACK" in flag_names(c)
    use(monkeypatch, "10.3.0", dla_cores=2)
    with pytest.raises(TegraAIError, match="DLA cores 0..1"):
        build(default_model, precision="fp16", dla_core=2)
    use(monkeypatch, "10.16.2", facts=platform.DeviceFacts("11.0", "Thor"), dla_cores=0)
    with pytest.raises(TegraAIError, match="has no DLA"):
        build(default_model, precision="fp16", dla_core=0)
    use(monkeypatch, "10.3.0", dla_cores=2)
    with pytest.raises(TegraAIError, match="the DLA runs FP16 or INT8 only"):
        build(default_model, precision="fp32", dla_core=0)


def test_out_of_memory(monkeypatch, default_model):
    use(monkeypatch, "10.3.0", build_result=None, errors_on_build=["Requested amount of GPU memory (1073741824 bytes) "
                                                                   "could not be allocated. There may not be enough free memory"])
    with pytest.raises(TegraAIError, match="out of GPU memory") as exc:
        build(default_model, precision="fp16")
    assert "lower --workspace" in exc.value.hint


def test_parser_errors_by_node(monkeypatch, default_model):
    # 8.5's ParserError has node() (an index) only; 9.3+ names the node
    use(monkeypatch, "8.5.2", parse_errors=[("Unsupported operator Foo", "foo_1", 3)])
    with pytest.raises(TegraAIError, match="node #3: Unsupported operator Foo"):
        build(default_model)
    use(monkeypatch, "10.3.0", parse_errors=[("Unsupported operator Foo", "foo_1", 3)])
    with pytest.raises(TegraAIError, match="node foo_1: Unsupported operator Foo"):
        build(default_model)
    use(monkeypatch, "10.3.0", parse_errors=[("Invalid graph", "", -1)])
    with pytest.raises(TegraAIError) as exc:
        build(default_model)
    assert exc.value.message == "TensorRT's ONNX parser rejected digits.onnx: Invalid graph"


def test_no_gpu_on_build_host(monkeypatch, default_model):
    use(monkeypatch, "10.3.0", facts=None)
    with pytest.raises(TegraAIError, match="never on an x86 build host") as exc:
        build(default_model)
    assert exc.value.exit_code == 69


def test_engine_from_other_release_refused(monkeypatch, default_model, tmp_path):
    from tegra_ai.trt.builder import write_engine
    from tegra_ai.trt.inspect import inspect_engine

    use(monkeypatch, "10.3.0")
    engine = tmp_path / "d.engine"
    write_engine(build(default_model, precision="fp16"), str(engine))
    use(monkeypatch, "8.5.2")
    with pytest.raises(TegraAIError, match="built with tensorrt 10.3.0, this machine has TensorRT 8.5.2"):
        inspect_engine(str(engine))
    # without a sidecar, TensorRT's own refusal becomes one line too
    (tmp_path / "d.engine.json").unlink()
    engine.write_bytes(b"not this release")
    with pytest.raises(TegraAIError, match="another TensorRT version"):
        inspect_engine(str(engine), with_layers=False)


def test_sidecar_records_outputs(monkeypatch, default_model):
    """The exporters (Triton, DeepStream) describe outputs from the sidecar: dims None where dynamic."""
    use(monkeypatch, "10.3.0", outputs=(("logits", (-1, 10)), ("boxes", (-1, 84, 8400))))
    sc = build(default_model, precision="fp16").sidecar
    assert sc.outputs == [{"name": "logits", "dims": [None, 10], "dtype": "float32"},
                          {"name": "boxes", "dims": [None, 84, 8400], "dtype": "float32"}]
    assert sc.to_dict()["outputs"] == sc.outputs
