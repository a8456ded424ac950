"""Plugins actually load: ``build --plugin`` and ``ensure`` (a manifest's plugins) load the
library on every TensorRT release (8.5 has no IPluginRegistry.load_library: ctypes +
``initTegraAIPlugins``), and ensure puts the same plugin digests in the key as the builder.

The library loaded through the 8.5 path is the plugin's compiled CUDA core (the
TensorRT-independent part of ``tegra_ai/plugin``) linked with a shim exporting the
plugin's C entry points, built with nvcc; without nvcc, a C-only shim built with cc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import types

import pytest

from tegra_ai import platform
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle, load_manifest
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions, Sidecar
from tegra_ai.trt import compat
from tegra_ai.trt.builder import BuildResult, engine_key, plugin_digests, plugin_file
from tegra_ai.util.hashing import sha256_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_DIR = os.path.join(ROOT, "scripts", "tegra_ai", "plugin")
ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
SHIM = r"""
#include <stdbool.h>
#include <stdint.h>
static int calls = 0;   /* static: libraries loaded RTLD_GLOBAL by other tests do not interpose */
bool initTegraAIPlugins(void) { calls++; return true; }
int tegra_ai_test_init_calls(void) { return calls; }
void* const* getPluginCreators(int32_t* nbCreators) { *nbCreators = 0; return 0; }
"""


def _compile(tmp_path, with_core: bool) -> str:
    shim = tmp_path / "shim.c"
    shim.write_text(SHIM)
    out = str(tmp_path / "libtegra_ai_plugin.so")
    if with_core:
        cmd = ["nvcc", "-shared", "-Xcompiler", "-fPIC", "-arch=sm_87", "-I", PLUGIN_DIR,
               os.path.join(PLUGIN_DIR, "preprocess_plugin_core.cu"), str(shim), "-o", out]
    else:
        cmd = ["cc", "-shared", "-fPIC", str(shim), "-o", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def plugin_so(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("plugin")
    if shutil.which("cc"):
        return _compile(tmp_path, with_core=False)
    if shutil.which("nvcc"):
        return _compile(tmp_path, with_core=True)
    pytest.skip("neither cc nor nvcc is installed: no plugin library can be built here")


def _registry_trt(with_load_library: bool):
    calls = []
    registry = types.SimpleNamespace()
    if with_load_library:
        registry.load_library = lambda path: calls.append(path) or object()
    return types.SimpleNamespace(get_plugin_registry=lambda: registry), calls


def test_trt85_loads_with_ctypes_and_registers_creators(plugin_so):
    feats = compat.features_for("8.5.2")
    assert not feats.registry_load_library
    trt, calls = _registry_trt(with_load_library=False)
    handle = compat.load_plugin_library(trt, feats, plugin_so)
    assert calls == []
    assert handle.tegra_ai_test_init_calls() >= 1                              # initTegraAIPlugins ran


@pytest.mark.nvcc
def test_trt85_path_with_the_compiled_plugin_core(tmp_path):
    path = _compile(tmp_path, with_core=True)
    handle = compat.load_plugin_library(_registry_trt(False)[0], compat.features_for("8.5.2"), path)
    assert hasattr(handle, "_ZN8tegra_ai8validateERKNS_22PreprocessPluginParamsE")   # the CUDA core is in it
    assert handle.tegra_ai_test_init_calls() == 1


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "10.16.2"])
def test_newer_releases_use_the_registry(plugin_so, version):
    trt, calls = _registry_trt(with_load_library=True)
    compat.load_plugin_library(trt, compat.features_for(version), plugin_so)
    assert calls == [plugin_so]


def test_registry_refusal_and_missing_file(plugin_so, tmp_path):
    registry = types.SimpleNamespace(load_library=lambda path: None)
    trt = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    with pytest.raises(TegraAIError, match="could not load plugin library"):
        compat.load_plugin_library(trt, compat.features_for("10.3.0"), plugin_so)
    with pytest.raises(TegraAIError, match="does not exist") as exc:
        compat.load_plugin_library(trt, compat.features_for("10.3.0"), str(tmp_path / "nope.so"))
    assert exc.value.exit_code == 2
    garbage = tmp_path / "libgarbage.so"
    garbage.write_bytes(b"not an ELF file")
    with pytest.raises(TegraAIError, match="cannot load plugin library"):
        compat.load_plugin_library(_registry_trt(False)[0], compat.features_for("8.5.2"), str(garbage))


def test_soname_resolves_to_the_file_the_loader_uses():
    path = plugin_file("libm.so.6")
    assert os.path.isabs(path) and os.path.isfile(path)
    assert plugin_digests(["libm.so.6"]) == {"libm.so.6": sha256_file(path)}
    with pytest.raises(TegraAIError, match="cannot find it"):
        plugin_file("libtegra_ai_no_such_library.so.9")


# --------------------------------------------------------------------------- ensure

@pytest.fixture
def plugin_bundle(tmp_path, static_model):
    lib = tmp_path / "lib" / "libtegra_ai_plugin.so"
    lib.parent.mkdir()
    lib.write_bytes(b"plugin build 1")
    out = str(tmp_path / "bundle")
    sha, files = model_digest(static_model)
    add_to_bundle(out, "net", files, sha, BuildOptions(precision="fp16", plugins=(str(lib),)), plugins=(str(lib),))
    return out, str(lib)


class RecordingBuilder:
    def __init__(self, loaded):
        self.loaded = loaded
        self.feats = compat.features_for("10.3.0.30")

    def __call__(self, entry):
        assert self.loaded == list(entry.plugins), "the plugin was not loaded before the build"
        _k, material = engine_key(entry.sha256, entry.options, self.feats, ORIN, plugin_digests(entry.plugins))
        return BuildResult(engine=b"engine", sidecar=Sidecar.new(material, build_seconds=0.0))


def run_with_plugins(bundle, cache, loaded):
    return ensure([bundle], cache, builder=RecordingBuilder(loaded), loader=None,
                  runtime=(compat.features_for("10.3.0.30"), lambda o: ORIN), load_plugin=loaded.append,
                  show_progress=False, log=lambda m: None)


def test_manifest_records_the_device_path(plugin_bundle):
    bundle, lib = plugin_bundle
    entry = load_manifest(os.path.join(bundle, "manifest.json"))[0]
    assert entry.plugins == (lib,) and entry.options.plugins == ("libtegra_ai_plugin.so",)


def test_ensure_loads_plugins_and_keys_their_digest(plugin_bundle, tmp_path):
    bundle, lib = plugin_bundle
    cache = str(tmp_path / "cache")
    loaded = []
    s = run_with_plugins(bundle, cache, loaded)
    assert s["exit_code"] == 0 and s["built"] == 1 and loaded == [lib]
    sc = Sidecar.load(s["models"][0]["engine"] + ".json")
    assert sc.key_material["plugins"] == {"libtegra_ai_plugin.so": sha256_file(lib)}
    assert run_with_plugins(bundle, cache, [])["hits"] == 1
    # a new build of the plugin library is a new engine
    with open(lib, "wb") as f:
        f.write(b"plugin build 2")
    s3 = run_with_plugins(bundle, cache, [])
    assert s3["built"] == 1 and s3["models"][0]["key"] != s["models"][0]["key"]


def test_missing_plugin_fails_that_model(plugin_bundle, tmp_path):
    bundle, lib = plugin_bundle
    os.unlink(lib)
    s = ensure([bundle], str(tmp_path / "cache"), builder=RecordingBuilder([]), loader=None,
               runtime=(compat.features_for("10.3.0.30"), lambda o: ORIN),
               load_plugin=lambda p: compat.load_plugin_library(None, compat.features_for("10.3.0.30"), p),
               show_progress=False, log=lambda m: None)
    assert s["exit_code"] == 1 and "does not exist" in s["models"][0]["error"]


@pytest.mark.parametrize("plugins,match", [
    (["relative/libp.so"], "relative path"),
    (["libp.txt"], "not a shared library"),
    ([3], "expected an absolute path"),
])
def test_manifest_plugin_entries_are_checked(plugin_bundle, plugins, match):
    bundle, _lib = plugin_bundle
    path = os.path.join(bundle, "manifest.json")
    m = json.load(open(path))
    m["models"][0]["request"]["plugins"] = plugins
    json.dump(m, open(path, "w"))
    with pytest.raises(TegraAIError, match=match):
        load_manifest(path)


def test_manifest_plugins_must_match_the_options(plugin_bundle):
    bundle, _lib = plugin_bundle
    path = os.path.join(bundle, "manifest.json")
    m = json.load(open(path))
    m["models"][0]["request"]["plugins"] = ["/usr/lib/other/libother.so"]
    json.dump(m, open(path, "w"))
    with pytest.raises(TegraAIError, match="do not match the build options"):
        load_manifest(path)


def test_a_plugin_shared_by_two_models_is_loaded_once(plugin_bundle, tmp_path, model_factory):
    bundle, lib = plugin_bundle
    other = model_factory("other.onnx", input_dims=(1, 3, 8, 8), op="Sigmoid")
    sha, files = model_digest(other)
    add_to_bundle(bundle, "other", files, sha, BuildOptions(plugins=(lib,)), plugins=(lib,))
    loaded = []
    s = run_with_plugins(bundle, str(tmp_path / "cache"), loaded)
    assert s["built"] == 2 and loaded == [lib]
