"""Our TensorRT code against NVIDIA's own Python bindings, per release.

The API surfaces (tests/trt_api, extracted by tools/trt-api-surface from the pybind11
sources of each release branch) drive a strict stand-in of the ``tensorrt`` module
(fake_trt.py): under every target of ``compat.API_TARGETS`` the real flows run (build
with every option, calibrate, inspect, run), and anything the release's bindings lack
raises as the real module would. A static scan cross-checks every TensorRT attribute our
modules touch against the union of the surfaces, and the mutation checks prove the
stand-in catches the mistakes it exists for."""

from __future__ import annotations

import ast
import ctypes
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from fake_trt import (DEVICE_RANGES, ENGINE_MAGIC, load_surface, make_fake_trt, surface_for, surface_releases,
                      synchronize_current)
from tegra_ai import platform
from tegra_ai.spec import BuildOptions
from tegra_ai.errors import TegraAIError
from tegra_ai.trt import compat
from tegra_ai.spec import parse_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "scripts", "tegra_ai")
ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
PROFILE = [parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]
TARGETS = sorted(compat.API_TARGETS)


def target(monkeypatch, name, **kw):
    library, version, bindings = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    trt = make_fake_trt(feats, surface=bindings, version=version, **kw)
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: ORIN)
    return trt, feats


class HostBuffer:
    """tegra_ai.cuda.driver.DeviceBuffer on the host (the stand-in never dereferences it;
    its addresses are registered as device memory, fake_trt.DEVICE_RANGES). ``live``
    counts buffers not freed."""
    _next = [0x10000]
    live = 0

    def __init__(self, nbytes):
        self.nbytes, self.ptr = int(nbytes), HostBuffer._next[0]
        HostBuffer._next[0] += max(256, self.nbytes)
        DEVICE_RANGES[:] = [(0x10000, HostBuffer._next[0])]
        self.data = None
        self.freed = False
        HostBuffer.live += 1

    def __int__(self):
        return self.ptr

    def free(self):
        if not self.freed:
            self.freed = True
            HostBuffer.live -= 1

    def upload(self, array, stream=0, offset=0):
        self.data = np.array(array)
        return self

    def download(self, array, stream=0, offset=0):
        array[...] = 0
        return array


class HostStream:
    """tegra_ai.cuda.driver.Stream stand-in; ``live`` counts streams not destroyed."""
    live = 0

    def __init__(self):
        HostStream.live += 1
        self.destroyed = False

    def __int__(self):
        return 7

    def destroy(self):
        if not self.destroyed:
            self.destroyed = True
            HostStream.live -= 1


@pytest.fixture
def host_cuda(monkeypatch):
    from tegra_ai.cuda import driver

    monkeypatch.setattr(driver, "DeviceBuffer", HostBuffer)
    monkeypatch.setattr(driver, "Stream", HostStream)
    monkeypatch.setattr(driver, "stream_synchronize", synchronize_current)


@pytest.fixture
def qdq_model(tmp_path):
    from onnx import helper, numpy_helper

    from onnx_models import make_model

    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["output", "s", "zp"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq0")]
    return make_model(str(tmp_path / "qdq.onnx"), input_dims=("N", 1, 8, 8), extra_nodes=nodes, initializers=inits)


def a_shared_library() -> str:
    """Some real shared library already mapped into this process (for the ctypes plugin path)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if ".so" in os.path.basename(path) and os.path.isfile(path):
                return path
    pytest.skip("no shared library found in /proc/self/maps")


# --------------------------------------------------------------------------- the surfaces

def test_surfaces_are_what_the_readme_says():
    readme = open(os.path.join(ROOT, "tests", "trt_api", "README.md")).read()
    assert surface_releases() == ["8.5", "8.6", "10.3", "10.13", "10.16", "11.1"]
    for release in surface_releases():
        s = load_surface(release)
        assert s["format"] == "tegra-ai-trt-api-surface" and s["release"] == release
        assert re.fullmatch(r"[0-9a-f]{40}", s["commit"]) and s["commit"] in readme and s["branch"] in readme
        assert s["tensorrt_version"].startswith(release + ".")
        assert {"Builder", "IBuilderConfig", "INetworkDefinition", "OnnxParser", "Runtime", "ICudaEngine",
                "IExecutionContext", "IOptimizationProfile", "ILogger", "Logger"} <= set(s["classes"])
        assert s["enums"]["ILogger.Severity"]["members"]["ERROR"] == 1


def test_every_api_target_has_its_surface():
    for name, (library, version, bindings) in compat.API_TARGETS.items():
        assert bindings in surface_releases(), name
        assert compat.parse_version(version)[:2] >= compat.parse_version(bindings)[:2], name
    assert compat.API_TARGETS["jetpack7"] == ("10.16.2", "10.16.2", "10.13")


def test_jetpack_targets_agree_with_api_targets():
    with open(os.path.join(PKG, "data", "jetpack_targets.json")) as f:
        jp = {k: v for k, v in json.load(f).items() if isinstance(v, dict)}
    for name, t in jp.items():
        library, _version, bindings = compat.API_TARGETS[name]
        assert t["tensorrt"] == library
        assert t["python_bindings"].rsplit(".", 1)[0] == bindings or t["python_bindings"].startswith(bindings + ".")


@pytest.mark.parametrize("version,release", [("8.5.2", "8.5"), ("8.6.1", "8.6"), ("10.3.0", "10.3"), ("10.12", "10.13"),
                                             ("10.16.2", "10.16"), ("11.0", "11.1"), ("11.2", "11.1")])
def test_surface_routing(version, release):
    assert surface_for(compat.parse_version(version)) == release


def _members(s, cls):
    spec = s["classes"].get(cls)
    if spec is None:
        return set()
    out = set(spec["methods"]) | set(spec["properties"])
    for b in spec["bases"]:
        out |= _members(s, b)
    return out


@pytest.mark.parametrize("release", surface_releases())
def test_fact_table_matches_the_binding_sources(release):
    """Every fact of compat.FEATURES that the Python API shows, against NVIDIA's sources."""
    s = load_surface(release)
    f = compat.features_for(s["tensorrt_version"])
    enum = {k: set(v["members"]) for k, v in s["enums"].items()}
    seen = {
        "strongly_typed": "STRONGLY_TYPED" in enum["NetworkDefinitionCreationFlag"],
        "weak_typing": {"FP16", "INT8"} <= enum["BuilderFlag"],
        "int8_calibrators": "IInt8EntropyCalibrator2" in s["classes"] and "int8_calibrator" in _members(s, "IBuilderConfig"),
        "memory_pool_limit": "set_memory_pool_limit" in _members(s, "IBuilderConfig"),
        "builder_optimization_level": "builder_optimization_level" in _members(s, "IBuilderConfig"),
        "hardware_compatibility": "hardware_compatibility_level" in _members(s, "IBuilderConfig"),
        "progress_monitor": "IProgressMonitor" in s["classes"] and "progress_monitor" in _members(s, "IBuilderConfig"),
        "engine_inspector": "create_engine_inspector" in _members(s, "ICudaEngine"),
        "tensor_io_api": {"num_io_tensors", "get_tensor_name", "get_tensor_profile_shape"} <= _members(s, "ICudaEngine"),
        "timing_cache": "create_timing_cache" in _members(s, "IBuilderConfig"),
        "plugin_v3": "IPluginV3" in s["classes"],
        "registry_load_library": "load_library" in _members(s, "IPluginRegistry"),
        "bf16": "BF16" in enum["BuilderFlag"],
        "parser_error_node_name": "node_name" in _members(s, "ParserError"),
        "dla": "DLA" in enum["DeviceType"],
    }
    for name, present in seen.items():
        assert getattr(f, name) is present, f"compat says {name}={getattr(f, name)} for {release}; the bindings say {present}"
    # a flag we set must exist; one we do not need may still be there (deprecated)
    assert not f.explicit_batch_flag or "EXPLICIT_BATCH" in enum["NetworkDefinitionCreationFlag"]
    assert not f.strongly_typed_flag or "STRONGLY_TYPED" in enum["NetworkDefinitionCreationFlag"]
    if f.strongly_typed and not f.strongly_typed_flag:  # 11.x: the flag is there, deprecated, value 0
        assert s["enums"]["NetworkDefinitionCreationFlag"]["members"]["STRONGLY_TYPED"] == 0


# --------------------------------------------------------------------------- library version

@pytest.mark.parametrize("release", surface_releases())
def test_infer_lib_version_decoding_follows_the_headers(release):
    """getInferLibVersion()'s encoding is documented per release in NvInferRuntime*.h."""
    s = load_surface(release)
    fmt = s["infer_lib_version_format"].rstrip(".")
    major, minor, patch = compat.parse_version(s["tensorrt_version"])[:3]
    for version in [(major, minor, patch), (major, minor, 9)]:
        expr = re.sub(r"\b(?:TENSORRT_|TENSOR_)?MAJOR\b", str(version[0]), fmt)
        expr = re.sub(r"\b(?:TENSORRT_|TENSOR_)?MINOR\b", str(version[1]), expr)
        expr = re.sub(r"\b(?:TENSORRT_|TENSOR_)?PATCH\b", str(version[2]), expr)
        assert re.fullmatch(r"[\d\s()*+]+", expr), expr
        assert compat.decode_infer_lib_version(eval(expr)) == version  # noqa: S307 - digits and + * only


def test_library_version_through_ctypes(tmp_path):
    """A library exporting getInferLibVersion, mapped into the process, is read via ctypes."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in libnvinfer")
    src = tmp_path / "v.c"
    src.write_text("int getInferLibVersion(void) { return 101602; }\n")
    lib = tmp_path / "libtegra_ai_test_nvinfer.so.10"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    assert compat.infer_library_version(None, stem="libtegra_ai_test_nvinfer.so") is None  # not loaded yet
    ctypes.CDLL(str(lib))
    assert compat.infer_library_version(None, stem="libtegra_ai_test_nvinfer.so") == (10, 16, 2)


def test_library_version_falls_back_to_bindings(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.16.2.10"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setenv("TEGRA_AI_TENSORRT", "tensorrt")
    _trt, feats = compat.load()
    assert feats.library_version == (10, 16, 2, 10) and feats.library_version_string == "10.16.2.10"
    compat.reset_for_tests()
    monkeypatch.setattr(compat, "infer_library_version", lambda module: (10, 16, 2))
    fake.__version__ = "10.13.3.9"
    _trt, feats = compat.load()
    assert feats.version == (10, 13, 3, 9) and feats.library_version == (10, 16, 2)
    assert feats.to_dict()["library_version"] == "10.16.2"
    assert feats.describe() == "TensorRT 10.13.3.9 (libnvinfer 10.16.2)"
    assert compat.features_for("10.16.2").describe() == "TensorRT 10.16.2"


# --------------------------------------------------------------------------- flows per target

@pytest.mark.parametrize("name", TARGETS)
def test_build_inspect_run_under_every_target(monkeypatch, tmp_path, default_model, host_cuda, name):
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.trt.builder import build_engine, write_engine
    from tegra_ai.trt.inspect import format_inspection, inspect_engine

    trt, feats = target(monkeypatch, name, dla_cores=2)
    precision = "fp16" if feats.weak_typing else "fp32"
    tc = tmp_path / "timing.cache"
    lib = a_shared_library()
    r = build_engine(default_model, BuildOptions(precision=precision, profiles=PROFILE, workspace=1 << 28, opt_level=3,
                                                 dla_core=1, gpu_fallback=True, plugins=(lib,)),
                     timing_cache=str(tc), plugins=(lib,), show_progress=True)
    f = trt._fake
    assert [x.name for x in f.config._flags] == (["FP16"] if feats.weak_typing else []) + ["GPU_FALLBACK"]
    assert f.config.default_device_type == trt.DeviceType.DLA and f.config.DLA_core == 1
    if feats.builder_optimization_level:
        assert f.config.builder_optimization_level == 3
    else:  # 8.5 has no such property: a note, not an AttributeError
        assert not hasattr(f.config, "builder_optimization_level") and any("--opt-level ignored" in n for n in r.notes)
    assert tc.read_bytes() == b"TIMING"
    assert (("load_library", a_shared_library()) in f.calls) is feats.registry_load_library
    assert (("set", "IBuilderConfig", "progress_monitor") in f.calls) is feats.progress_monitor
    assert r.engine.startswith(ENGINE_MAGIC)
    engine = tmp_path / "m.engine"
    write_engine(r, str(engine))

    info = inspect_engine(str(engine))
    assert [(t["name"], t["mode"], t["dtype"], t["shape"]) for t in info["io"]] == [
        ("input", "input", "float32", [-1, 1, 8, 8]), ("logits", "output", "float32", [-1, 10])]
    assert info["profiles"] == [[{"name": "input", "min": [1, 1, 8, 8], "opt": [8, 1, 8, 8], "max": [64, 1, 8, 8]}]]
    assert info["precision_summary"] == {"fp16" if feats.weak_typing else "fp32": 1}
    # get_engine_stat exists in the 10.14+ bindings only: probed, never assumed from the version
    assert ("weights_bytes" in info) is hasattr(trt.ICudaEngine, "get_engine_stat")
    assert "input" in format_inspection(info)

    with TensorRTRunner(str(engine)) as runner:
        out = runner.infer({"input": np.ones((3, 1, 8, 8), np.float32)})
    assert out["logits"].shape == (3, 10) and ("execute", 7) in f.calls
    with TensorRTRunner(str(engine)) as runner, pytest.raises(TegraAIError, match="outside what") as exc:
        runner.infer({"input": np.ones((65, 1, 8, 8), np.float32)})  # outside the profile
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("name", TARGETS)
def test_check_parser_and_ensure_loader_under_every_target(monkeypatch, tmp_path, default_model, name):
    from tegra_ai.cache.ensure import default_loader
    from tegra_ai.onnx_tools.check import check_model
    from tegra_ai.onnx_tools.targets import resolve_target
    from tegra_ai.trt.builder import build_engine, write_engine

    trt, feats = target(monkeypatch, name)
    report = check_model(default_model, resolve_target("jetpack6"))
    assert report.parser == feats.describe() and any(f.code == "parser" for f in report.findings)
    trt, feats = target(monkeypatch, name, parse_errors=[("Unsupported operator Foo", "foo_1", 3)])
    report = check_model(default_model, resolve_target("jetpack6"))
    errors = [f for f in report.findings if f.code == "parser" and f.severity == "error"]
    assert errors and errors[0].nodes == (["foo_1"] if feats.parser_error_node_name else ["#3"])

    trt, feats = target(monkeypatch, name)
    engine = tmp_path / "e.engine"
    write_engine(build_engine(default_model, BuildOptions(profiles=PROFILE), show_progress=False), str(engine))
    default_loader()(str(engine))  # deserializes
    engine.write_bytes(b"garbage")
    with pytest.raises(TegraAIError, match="does not belong to"):   # the one loader checks the sidecar first
        default_loader()(str(engine))
    os.unlink(str(engine) + ".json")
    with pytest.raises(TegraAIError, match="could not load this engine"):
        default_loader()(str(engine))


@pytest.mark.parametrize("name", TARGETS)
def test_implicit_int8_calibration_under_every_target(monkeypatch, tmp_path, default_model, host_cuda, name):
    from tegra_ai.trt.builder import build_engine

    trt, feats = target(monkeypatch, name)
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).random((16, 1, 8, 8), np.float32))
    cache = tmp_path / "calib.cache"
    opts = BuildOptions(precision="int8", profiles=PROFILE)
    if not feats.int8_calibrators:
        assert not hasattr(trt, "IInt8EntropyCalibrator2") and not hasattr(trt, "IInt8Calibrator")
        with pytest.raises(TegraAIError) as exc:
            build_engine(default_model, opts, calibration_data=str(calib), show_progress=False)
        assert exc.value.exit_code == 2
        return
    r = build_engine(default_model, opts, calibration_data=str(calib), calibration_cache=str(cache),
                     calibration_batch=8, show_progress=False)
    f = trt._fake
    assert f.calibration == [("batch", 1), ("batch", 1)] and cache.read_bytes() == b"CALIBRATION"
    assert f.config._calibration_profile._shapes["input"] == ((8, 1, 8, 8),) * 3
    assert "INT8" in r.sidecar.builder_flags
    # second build: the cache alone
    trt, _ = target(monkeypatch, name)
    build_engine(default_model, opts, calibration_cache=str(cache), show_progress=False)
    assert trt._fake.calibration == [("cache", b"CALIBRATION")]


@pytest.mark.parametrize("name", TARGETS)
def test_qdq_model_under_every_target(monkeypatch, qdq_model, name):
    from tegra_ai.trt.builder import build_engine

    trt, feats = target(monkeypatch, name)
    r = build_engine(qdq_model, BuildOptions(precision="int8", profiles=PROFILE), show_progress=False)
    flags = trt.NetworkDefinitionCreationFlag
    if feats.weak_typing:  # 8.5-10.x: weakly typed with INT8 + FP16, so the float parts run FP16, not FP32
        assert r.sidecar.builder_flags == ["FP16", "INT8"] and not r.sidecar.strongly_typed
        assert r.sidecar.float_precision["path"] == "fp16-flag"
        assert trt._fake.network._flags == (1 << int(flags.EXPLICIT_BATCH) if feats.explicit_batch_flag else 0)
    elif feats.strongly_typed_flag:
        assert r.sidecar.strongly_typed and trt._fake.network._flags == 1 << int(flags.STRONGLY_TYPED)
    else:
        assert r.sidecar.strongly_typed and trt._fake.network._flags == 0


@pytest.mark.parametrize("name", TARGETS)
def test_profile_errors_are_usage_errors(monkeypatch, default_model, name):
    from tegra_ai.trt.builder import build_engine
    from tegra_ai.spec import InputShapes

    trt, _ = target(monkeypatch, name)
    # our own check refuses a wrong rank before TensorRT sees it
    with pytest.raises(TegraAIError, match="rank 3, the model's input has rank 4") as exc:
        build_engine(default_model, BuildOptions(profiles=[parse_profile("input:1x8x8:1x8x8:1x8x8")]),
                     show_progress=False)
    assert exc.value.exit_code == 2
    # what TensorRT's set_shape raises (RuntimeError) becomes one usage error
    builder = trt.Builder(trt.Logger())
    with pytest.raises(TegraAIError, match=r"shapes of input .*opt is inconsistent") as exc:
        compat.add_optimization_profile(builder, builder.create_builder_config(),
                                        [InputShapes("input", (4, 1, 8, 8), (2, 1, 8, 8), (8, 1, 8, 8))])
    assert exc.value.exit_code == 2
    # a profile that leaves a dynamic input out: TensorRT's build fails with its own message
    config = builder.create_builder_config()
    compat.add_optimization_profile(builder, config, [InputShapes("other", (1,), (1,), (1,))])
    assert builder.build_serialized_network(builder.create_network(0), config) is None
    assert (trt.ILogger.Severity.ERROR, "Optimization profile 0 does not define the shape of input input") in trt._fake.log


@pytest.mark.parametrize("release", surface_releases())
def test_stand_in_is_exactly_the_surface(release):
    s = load_surface(release)
    trt = make_fake_trt(compat.features_for(s["tensorrt_version"]), surface=release)
    for cls, spec in s["classes"].items():
        obj = getattr(trt, cls)
        for m in spec["methods"]:
            assert hasattr(obj, m) or m in obj._methods, f"{release}: {cls}.{m}"
    for enum, spec in s["enums"].items():
        owner = trt
        for part in enum.split("."):
            owner = getattr(owner, part)
        assert {m: (v.value) for m, v in owner.__members__.items()} == spec["members"], enum
    assert set(s["functions"]) <= set(dir(trt))
    for missing in ("NoSuchClass", "IInt8Calibrator" if "IInt8Calibrator" not in s["classes"] else "Nope"):
        assert not hasattr(trt, missing)
    logger = trt.Logger()
    with pytest.raises(AttributeError):
        logger.no_such_attribute = 1
    with pytest.raises(AttributeError):
        trt.BuilderFlag.NO_SUCH_FLAG


def test_set_shape_raises_like_the_binding(monkeypatch):
    trt, _ = target(monkeypatch, "jetpack6")
    p = trt.Builder(trt.Logger()).create_optimization_profile()
    with pytest.raises(RuntimeError, match="opt is inconsistent"):
        p.set_shape("x", (4, 3), (2, 3), (8, 3))
    with pytest.raises(RuntimeError, match="max is inconsistent"):
        p.set_shape("x", (1, 3), (2, 3), (2, 3, 1))
    with pytest.raises(TypeError):
        p.set_shape("x", (1, 3), (2, 3), maximum=(8, 3))


def test_bad_data_gives_none_like_the_binding(monkeypatch):
    trt, feats = target(monkeypatch, "jetpack6")
    config = trt.Builder(trt.Logger()).create_builder_config()
    assert config.create_timing_cache(b"garbage") is None and config.create_timing_cache(b"") is not None
    runtime = trt.Runtime(trt.Logger())
    assert runtime.deserialize_cuda_engine(b"garbage") is None
    with pytest.raises(TegraAIError, match="could not load this engine"):
        compat.deserialize(trt, feats, trt.Logger(), b"garbage")
    other, _ = target(monkeypatch, "jetpack5")
    data = other.Builder(other.Logger()).build_serialized_network(*_net_and_config(other))
    assert data.startswith(ENGINE_MAGIC) and runtime.deserialize_cuda_engine(data) is None  # another release


def _net_and_config(trt):
    b = trt._fake.builder or trt.Builder(trt.Logger())
    net = b.create_network(0)
    config = b.create_builder_config()
    p = b.create_optimization_profile()
    p.set_shape("input", (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8))
    config.add_optimization_profile(p)
    return net, config


def test_interface_subclasses_must_call_the_base_init(monkeypatch):
    trt, _ = target(monkeypatch, "jetpack6")

    class Good(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.anything = 1  # Python subclasses have a __dict__

    class Bad(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            self.anything = 1

    assert Good().anything == 1
    with pytest.raises(TypeError, match="must be called when overriding __init__"):
        Bad()
    with pytest.raises(TypeError, match="No constructor defined"):
        trt.IBuilderConfig()


def test_plugin_registry_per_release(monkeypatch, tmp_path):
    lib = a_shared_library()
    trt, feats = target(monkeypatch, "jetpack5")
    assert not hasattr(trt.get_plugin_registry(), "load_library") and not feats.registry_load_library
    assert compat.load_plugin_library(trt, feats, lib) is not None  # ctypes, RTLD_GLOBAL
    trt, feats = target(monkeypatch, "trt-8.6")
    assert compat.load_plugin_library(trt, feats, lib) is not None and ("load_library", lib) in trt._fake.calls
    trt._fake.plugin_load_fails = True
    with pytest.raises(TegraAIError, match="could not load plugin library"):
        compat.load_plugin_library(trt, feats, lib)


# --------------------------------------------------------------------------- mutations

def _parse_failure(monkeypatch, default_model, name):
    from tegra_ai.trt.builder import build_engine

    target(monkeypatch, name, parse_errors=[("Unsupported operator Foo", "foo_1", 3)])
    build_engine(default_model, BuildOptions(profiles=PROFILE), show_progress=False)


def test_mutation_node_name_on_85_is_caught(monkeypatch, default_model):
    def wrong(parser):
        return [(parser.get_error(i).node_name(), parser.get_error(i).desc()) for i in range(parser.num_errors)]

    with pytest.raises(TegraAIError, match="node foo_1"):  # fine on 10.x ...
        _parse_failure(monkeypatch, default_model, "jetpack6")
    monkeypatch.setattr(compat, "parser_errors", wrong)
    with pytest.raises(AttributeError, match="node_name"):  # ... not on 8.5
        _parse_failure(monkeypatch, default_model, "jetpack5")


def test_mutation_strongly_typed_on_86_is_caught(monkeypatch, default_model):
    from tegra_ai.trt.builder import build_engine

    original = compat.create_network

    def wrong(trt, feats, builder, strongly_typed):
        builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        return original(trt, feats, builder, strongly_typed)

    monkeypatch.setattr(compat, "create_network", wrong)
    target(monkeypatch, "jetpack6")
    build_engine(default_model, BuildOptions(profiles=PROFILE), show_progress=False)
    target(monkeypatch, "trt-8.6")
    with pytest.raises(AttributeError, match="STRONGLY_TYPED"):
        build_engine(default_model, BuildOptions(profiles=PROFILE), show_progress=False)


def test_mutation_explicit_batch_on_11_is_caught(monkeypatch):
    trt, feats = target(monkeypatch, "trt-10.16")
    trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # deprecated, still there in 10.x
    trt, feats = target(monkeypatch, "trt-11")
    with pytest.raises(AttributeError):
        trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP16


def test_mutation_load_library_on_85_is_caught(monkeypatch):
    lib = a_shared_library()
    trt, feats = target(monkeypatch, "jetpack5")
    wrong = compat.features_for("8.6.1")  # a table that claimed load_library on 8.5
    with pytest.raises(AttributeError, match="load_library"):
        compat.load_plugin_library(trt, wrong, lib)


def test_mutation_version_instead_of_probe_on_meta_tegra_master(monkeypatch, tmp_path, default_model):
    """jetpack7's bindings say 10.16 but are 10.13's: deciding by version breaks there."""
    from tegra_ai.trt.builder import build_engine, write_engine
    from tegra_ai.trt.inspect import inspect_engine

    def by_version(trt, engine):
        if compat.load()[1].version >= (10, 14):
            return {"weights_bytes": int(engine.get_engine_stat(trt.EngineStat.TOTAL_WEIGHTS_SIZE))}
        return {}

    monkeypatch.setattr(compat, "engine_weights", by_version)
    for name, fails in (("trt-10.16", False), ("jetpack7", True)):
        target(monkeypatch, name)
        engine = tmp_path / f"{name}.engine"
        write_engine(build_engine(default_model, BuildOptions(profiles=PROFILE), show_progress=False), str(engine))
        if fails:
            with pytest.raises(AttributeError, match="get_engine_stat"):
                inspect_engine(str(engine))
        else:
            assert inspect_engine(str(engine))["weights_bytes"] == 4096


def test_mutation_wrong_keyword_is_caught(monkeypatch):
    trt, feats = target(monkeypatch, "jetpack6")
    config = trt.Builder(trt.Logger()).create_builder_config()
    compat.set_workspace(trt, feats, config, 1 << 20)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size=1 << 20)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(config.create_timing_cache(b""))  # ignore_mismatch has no default
    with pytest.raises(AttributeError, match="read-only"):
        trt.Builder(trt.Logger()).num_DLA_cores = 1


# --------------------------------------------------------------------------- static scan

# Variables that hold TensorRT objects in our modules (plus self.<same> in the runner).
TRT_OBJECTS = {"engine", "config", "builder", "network", "parser", "context", "runtime", "profile", "inspector",
               "registry", "err", "cache", "monitor", "calibrator"}
# Same names holding our own objects: (file, variable) -> what it is.
OWN_OBJECTS = {("trt/inspect.py", "inspector"): "the engine inspector's JSON, parsed into a dict",
               ("cache/ensure.py", "cache"): "our engine cache directory (tegra_ai.cache)"}


def _package_files():
    for root, _dirs, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(root, name), PKG)


def _trt_modules():
    """Modules that hold TensorRT objects: trt/, the runner, and whoever calls compat.load()."""
    out = []
    for rel in _package_files():
        text = open(os.path.join(PKG, rel)).read()
        if rel.startswith("trt/") or rel == "backend/tensorrt.py" or "compat.load()" in text:
            out.append(rel)
    return sorted(out)


SCANNED = sorted(_package_files())  # trt.<...> chains everywhere; TRT_OBJECTS in _trt_modules() only


def _union():
    names, members, keywords = set(), set(), {}
    for release in surface_releases():
        s = load_surface(release)
        for cls, spec in s["classes"].items():
            names.add(cls)
            members |= set(spec["methods"]) | set(spec["properties"]) | set(spec["static_methods"])
            for m, sigs in list(spec["methods"].items()) + list(spec["static_methods"].items()):
                for sig in sigs:
                    keywords.setdefault(m, set()).update(sig.get("args") or [])
        for enum, spec in s["enums"].items():
            names.update(enum.split("."))
            members |= set(spec["members"])
        names |= set(s["functions"]) | set(s["python_functions"])
        for fn, sigs in s["functions"].items():
            for sig in sigs:
                keywords.setdefault(fn, set()).update(sig.get("args") or [])
    return names, members, keywords


def _rtx_names():
    rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX names are checked against the installed module")
    out = set(dir(rtx))
    for v in vars(rtx).values():
        if isinstance(v, type):
            out |= set(dir(v))
    return out


def _uses():
    """(file, line, kind, name, function node) for every TensorRT attribute our modules touch."""
    holders = set(_trt_modules())
    for rel in SCANNED:
        path = os.path.join(PKG, rel)
        tree = ast.parse(open(path).read(), path)
        funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

        def owner(node):
            best = None
            for fn in funcs:
                if fn.lineno <= node.lineno <= (fn.end_lineno or fn.lineno) and (best is None or fn.lineno > best.lineno):
                    best = fn
            return best

        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain, cur = [], node
                while isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                    cur = cur.value
                chain.reverse()
                if isinstance(cur, ast.Name) and cur.id == "trt":
                    for i, attr in enumerate(chain):
                        yield rel, node.lineno, "module" if i == 0 else "member", attr, owner(node)
                    continue
                base = node.value
                if rel not in holders:
                    continue
                if isinstance(base, ast.Name) and base.id in TRT_OBJECTS and (rel, base.id) not in OWN_OBJECTS:
                    yield rel, node.lineno, "member", node.attr, owner(node)
                elif (isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "self"
                      and base.attr in TRT_OBJECTS and rel.startswith("backend/")):
                    yield rel, node.lineno, "member", node.attr, owner(node)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                target_ = node.args[0]
                if isinstance(target_, ast.Name) and (target_.id == "trt" or (target_.id in TRT_OBJECTS and rel in holders)):
                    yield rel, node.lineno, "probe", node.args[1].value, owner(node)


def test_every_trt_attribute_we_touch_exists_in_some_release():
    names, members, keywords = _union()
    known = names | members
    rtx = None
    missing = []
    for rel, line, kind, attr, _fn in _uses():
        if attr.startswith("__") or attr in known:
            continue
        rtx = rtx if rtx is not None else _rtx_names()
        if attr not in rtx:
            missing.append(f"{rel}:{line}: {attr}")
    assert missing == []


def _signatures():
    sigs = {}
    for release in surface_releases():
        s = load_surface(release)
        for cls, spec in s["classes"].items():
            for m, overloads in list(spec["methods"].items()) + list(spec["static_methods"].items()):
                sigs.setdefault(m, []).extend(overloads)
            sigs.setdefault(cls, []).extend(spec["methods"].get("__init__", []))  # trt.Builder(logger)
        for fn, overloads in s["functions"].items():
            sigs.setdefault(fn, []).extend(overloads)
    return sigs


def test_calls_we_make_fit_some_signature():
    """Keyword names and positional arity of every TensorRT call in our modules."""
    sigs = _signatures()
    bad = []
    for rel in _trt_modules():
        path = os.path.join(PKG, rel)
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            base = node.func.value
            root = base.id if isinstance(base, ast.Name) else (base.attr if isinstance(base, ast.Attribute) else None)
            name = node.func.attr
            if root not in TRT_OBJECTS | {"trt"} or (rel, root) in OWN_OBJECTS or name not in sigs:
                continue
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            npos, kws = len(node.args), {k.arg for k in node.keywords}

            def fits(sig):
                if sig.get("args") is None:
                    return not kws and sig.get("nargs") in (None, npos)
                names = sig["args"]
                return npos <= len(names) and kws <= set(names[npos:]) and all(
                    a in kws or a in sig.get("defaults", {}) for a in names[npos:])
            if not any(fits(sig) for sig in sigs[name]):
                bad.append(f"{rel}:{node.lineno}: {name}({npos} positional, keywords {sorted(kws)})")
    assert bad == []


def test_attributes_newer_than_meta_tegra_bindings_are_probed():
    """What the 10.16 bindings have and 10.13's lack may only be used behind a hasattr in
    the same function: jetpack7's __version__ says 10.16 over the 10.13 API."""
    old, new = load_surface("10.13"), load_surface("10.16")

    def everything(s):
        out = set(s["classes"]) | set(s["functions"])
        for spec in s["classes"].values():
            out |= set(spec["methods"]) | set(spec["properties"])
        for enum, spec in s["enums"].items():
            out |= {enum.split(".")[-1]} | set(spec["members"])
        return out

    newer = everything(new) - everything(old)
    assert {"get_engine_stat", "set_builder_config"} <= newer  # the extractor sees the differences
    used, unguarded = set(), []
    for rel, line, kind, attr, fn in _uses():
        if kind == "probe" or attr not in newer:
            continue
        used.add(attr)
        probes = {c.args[1].value for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                  and c.func.id == "hasattr" and len(c.args) >= 2 and isinstance(c.args[1], ast.Constant)} if fn else set()
        if attr not in probes:
            unguarded.append(f"{rel}:{line}: {attr}")
    assert unguarded == []
    assert "get_engine_stat" in used  # the scan does see our one 10.14+ call


def test_the_scan_covers_every_module_holding_tensorrt_objects():
    assert {"trt/compat.py", "trt/builder.py", "trt/calibrator.py", "trt/inspect.py", "backend/tensorrt.py",
            "cache/ensure.py", "onnx_tools/check.py"} <= set(_trt_modules())
    assert sum(1 for u in _uses() if u[0] == "onnx_tools/check.py") > 3  # it parses with TensorRT's parser


def test_no_private_stand_in_attributes_in_the_package():
    for rel in SCANNED:
        assert "_fake" not in open(os.path.join(PKG, rel)).read(), rel
