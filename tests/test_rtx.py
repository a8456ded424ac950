"""Real TensorRT-family builds through our compat module, with TensorRT-RTX (CPU-only,
ahead of time for SM86). Its engines cannot be loaded here; loading stays for full
TensorRT on a Jetson."""

from __future__ import annotations

import json
import os

import pytest

from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.spec import BuildOptions
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.trt.builder import build_engine
from tegra_ai.spec import parse_profile

pytestmark = pytest.mark.rtx


@pytest.fixture(autouse=True)
def _use_rtx(monkeypatch):
    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt_rtx")


def opts(*shapes, **kw):
    return BuildOptions(profiles=[parse_profile(s) for s in shapes], **kw)


def test_build_with_two_profiles_and_sidecar(dynamic_model, tmp_path):
    tc = str(tmp_path / "timing.cache")
    r = build_engine(dynamic_model, opts("input:1x3x32x32:2x3x64x64:4x3x128x128", "input:8x3x16x16:8x3x32x32:8x3x32x32"),
                     timing_cache=tc, show_progress=False)
    assert len(r.engine) > 1000
    sc = r.sidecar.to_dict()
    assert sc["tensorrt"]["flavor"] == "tensorrt-rtx" and sc["device"]["compute_capability"] == "8.6"
    assert len(sc["profiles"]) == 2 and sc["profiles"][0][0]["max"] == [4, 3, 128, 128]
    assert sc["strongly_typed"] is True and sc["builder_flags"] == []
    # TensorRT-RTX made timing caches no-ops: the build says so and writes none.
    assert any("timing cache unsupported" in n for n in r.notes) and not os.path.exists(tc)
    r2 = build_engine(dynamic_model, opts("input:1x3x32x32:2x3x64x64:4x3x128x128", "input:8x3x16x16:8x3x32x32:8x3x32x32"),
                      timing_cache=tc, show_progress=False)
    assert r2.sidecar.cache_key == sc["cache_key"]


def test_target_architecture_changes_key(static_model):
    a = build_engine(static_model, BuildOptions(), show_progress=False)
    b = build_engine(static_model, BuildOptions(compute_capability="8.0"), show_progress=False)
    assert b.sidecar.device["compute_capability"] == "8.0" and a.sidecar.cache_key != b.sidecar.cache_key


def test_workspace_limit_is_applied(static_model):
    r = build_engine(static_model, BuildOptions(workspace=16 << 20), show_progress=False)
    assert r.sidecar.options.workspace == 16 << 20


def test_missing_profile_for_dynamic_input(dynamic_model):
    with pytest.raises(TegraAIError, match=r"dynamic input\(s\) input \[\?, 3, \?, \?\] need --shapes"):
        build_engine(dynamic_model, BuildOptions(), show_progress=False)


def test_fp16_on_strongly_typed_only_builds_a_host_converted_model(static_model):
    # No FP16 flag on TensorRT-RTX / TensorRT 11: the builder converts the model first (tegra_ai.onnx_fp16).
    r = build_engine(static_model, BuildOptions(precision="fp16"), show_progress=False)
    assert r.sidecar.builder_flags == [] and r.sidecar.strongly_typed is True
    assert any("FP16 copy of the model" in n for n in r.notes)
    assert r.sidecar.options.precision == "fp16"


def test_parser_error_names_the_node(model_factory):
    from onnx import helper

    bad = model_factory("bad.onnx", input_dims=(1, 3, 8, 8),
                        extra_nodes=[helper.make_node("Reshape", ["output", "output"], ["r"], name="broken_reshape")])
    with pytest.raises(TegraAIError, match="ONNX parser rejected bad.onnx"):
        build_engine(bad, BuildOptions(), show_progress=False)


def test_ensure_builds_then_hits(tmp_path, default_model):
    sha, files = model_digest(default_model)
    add_to_bundle(str(tmp_path / "b"), "digits", files, sha, opts("input:1x1x8x8:8x1x8x8:64x1x8x8"))
    s1 = ensure([str(tmp_path / "b")], str(tmp_path / "c"), show_progress=False, log=lambda m: None)
    s2 = ensure([str(tmp_path / "b")], str(tmp_path / "c"), show_progress=False, log=lambda m: None)
    assert (s1["built"], s2["hits"], s2["built"]) == (1, 1, 0)
    sidecar = json.load(open(s1["models"][0]["engine"] + ".json"))
    assert sidecar["cache_key"] == s1["models"][0]["key"]
