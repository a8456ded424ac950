"""tegra_ai.spec: the one engine spec (options, grammar, key, sidecar) and the
architecture rules around it (dependency-free, no import cycles, no printing)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from tegra_ai import spec
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import BuildOptions, Sidecar, cache_key, key_material

PKG = os.path.join(os.path.dirname(__file__), "..", "scripts", "tegra_ai")
TRT = {"flavor": "tensorrt", "version": "10.13.3.9", "library_version": "10.16.2.10"}
THOR = {"compute_capability": "11.0", "sm_count": 20, "module": "p3834-0008", "cuda_version": "13.2",
        "l4t_release": "39.0.0"}


def golden_material():
    options = BuildOptions.from_request(precision="fp16", shapes=["images:1x3x320x320:1x3x640x640:4x3x1280x1280"],
                                        workspace="1.5G", opt_level=3, dla_core=None)
    return key_material("0" * 64, options, TRT, THOR, {"libtegra_ai_plugin.so": "1" * 64})


def test_golden_key():
    """Fixed inputs -> fixed digest. If this fails, every prebuilt engine and every cache on
    every device would be orphaned: bump KEY_FORMAT on purpose and update the digest here."""
    material = golden_material()
    assert material["format"] == spec.KEY_FORMAT == 3
    assert cache_key(material) == "c80e3046d4c479f7e47bde8f55aeff966d9a98d2599b9f551aa0f8bca6ccecce"


def test_key_canonical_regardless_of_plugin_and_option_order():
    a = key_material("0" * 64, BuildOptions(plugins=("b.so", "a.so")), TRT, THOR, {"b.so": "2" * 64, "a.so": "1" * 64})
    b = key_material("0" * 64, BuildOptions(plugins=("a.so", "b.so")), TRT, THOR, {"a.so": "1" * 64, "b.so": "2" * 64})
    assert cache_key(a) == cache_key(b)


def test_library_version_defaults_to_bindings_version():
    m = key_material("0" * 64, BuildOptions(), {"flavor": "tensorrt", "version": "10.3.0.30"}, THOR)
    assert m["tensorrt"]["library_version"] == "10.3.0.30"


@pytest.mark.parametrize("text, value", [("512M", 512 << 20), ("1.5G", 3 << 29), ("2GiB", 2 << 30), ("1048576", 1 << 20),
                                         ("64K", 64 << 10), ("1T", 1 << 40), (4096, 4096)])
def test_sizes(text, value):
    assert spec.parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "-1M", "0", "1X", "1.5.5G", True])
def test_bad_sizes(text):
    with pytest.raises(TegraAIError) as e:
        spec.parse_size(text)
    assert e.value.exit_code == 2


@pytest.mark.parametrize("name", ["yolo", "yolo-v8.s_int8+qdq", "A1"])
def test_good_names(name):
    assert spec.check_model_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "../x", "a/b", "a b", "-x", None, 3, "x" * 129])
def test_bad_names(name):
    with pytest.raises(TegraAIError):
        spec.check_model_name(name)


def test_options_round_trip_and_validation():
    o = BuildOptions.from_request(precision="int8", shapes=["x:1x3x8x8:2x3x8x8:4x3x8x8,y:1x1"], workspace="2G",
                                  dla_core=1, gpu_fallback=True, opt_level=5, plugins=["/usr/lib/libp.so"])
    d = o.to_dict()
    assert d["workspace"] == 2 << 30 and d["plugins"] == ["libp.so"] and d["profiles"][0][1]["name"] == "y"
    assert BuildOptions.from_dict(json.loads(json.dumps(d))) == o
    assert o.shapes_args() == ["x:1x3x8x8:2x3x8x8:4x3x8x8,y:1x1"]


@pytest.mark.parametrize("d, words", [
    ({"precision": "fp8"}, "precision 'fp8'"),
    ({"profiles": "x:1x3"}, "expected a list of profiles"),
    ({"profiles": [[{"name": "x", "min": [1], "opt": [2], "max": [1]}]]}, "min <= opt <= max"),
    ({"profiles": [[{"name": "x", "min": [1], "opt": ["a"], "max": [1]}]]}, "list of positive integers"),
    ({"workspace": "huge"}, "size 'huge'"),
    ({"dla_core": -1}, "DLA core -1"),
    ({"gpu_fallback": True}, "only applies with a DLA core"),
    ({"gpu_fallback": "yes"}, "expected true or false"),
    ({"opt_level": 6}, "optimization level 6"),
    ({"calibration_sha256": "abc"}, "sha256"),
    ({"plugins": "lib.so"}, "list of library file names"),
    ({"compute_capability": "sm87"}, "M.m"),
    ({"bogus": 1}, "unknown build option"),
    ([], "expected an object"),
])
def test_options_from_bad_json(d, words):
    with pytest.raises(TegraAIError) as e:
        BuildOptions.from_dict(d)
    assert words in str(e.value) and e.value.exit_code == 2


def test_calibration_hashed_from_paths(tmp_path):
    data = tmp_path / "calib.npz"
    data.write_bytes(b"one")
    a = BuildOptions.from_request(precision="int8", calibration=str(data))
    data.write_bytes(b"two")
    b = BuildOptions.from_request(precision="int8", calibration=str(data))
    assert a.calibration_sha256 and a.calibration_sha256 != b.calibration_sha256
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(TegraAIError, match="no .npy files"):
        BuildOptions.from_request(precision="int8", calibration=str(d))
    with pytest.raises(TegraAIError, match="does not exist"):
        BuildOptions.from_request(precision="int8", calibration_cache=str(tmp_path / "missing.cache"))


def test_sidecar_round_trip_and_tamper_detection(tmp_path):
    material = golden_material()
    sc = Sidecar.new(material, model="m.onnx", build_seconds=1.5).with_engine(str(tmp_path / "m.engine"), b"ENGINE")
    path = tmp_path / "m.engine.json"
    path.write_text(json.dumps(sc.to_dict()))
    back = Sidecar.load(str(path))
    assert back.cache_key == cache_key(material) and back.engine_size == 6 and back.device["module"] == THOR["module"]
    assert back.tensorrt["library_version"] == "10.16.2.10" and back.options.workspace == 3 << 29
    bad = sc.to_dict()
    bad["key_material"]["device"]["compute_capability"] = "8.7"
    path.write_text(json.dumps(bad))
    with pytest.raises(TegraAIError, match="does not match its key material"):
        Sidecar.load(str(path))
    for content, words in [("[]", "expected a JSON object"), ("{", "not valid JSON"), ('{"format": "x"}', "not a tegra-ai"),
                           (json.dumps(dict(sc.to_dict(), version=1)), "version 1")]:
        path.write_text(content)
        with pytest.raises(TegraAIError, match=words):
            Sidecar.load(str(path))


def test_sidecar_path_cannot_collide():
    assert spec.sidecar_path("app.engine") == "app.engine.json"
    assert spec.sidecar_path("eng.json") == "eng.json.json"


# --------------------------------------------------------------------------- architecture

def _modules():
    out = {}
    for root, _dirs, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tegra_ai"):
            yield node.module
            for a in node.names:
                yield f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("tegra_ai"):
                    yield a.name


def _package(mod):
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def test_no_import_cycles_between_packages():
    """Every import (module level or inside a function) between the package's sub-packages
    forms a DAG: spec at the bottom, the CLI at the top."""
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        src = _package(mod)
        for target in _imports(path):
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            dst = _package(target)
            if dst != src and target in mods:
                graph.setdefault(src, set()).add(dst)
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_spec_is_dependency_free():
    """BitBake imports tegra_ai.spec at parse time: nothing beyond the standard library."""
    code = ("import sys; import tegra_ai.spec; "
            "bad = [m for m in ('numpy', 'onnx', 'tensorrt', 'tensorrt_rtx', 'onnxruntime', 'cuda') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_never_prints():
    """Only the CLI writes to stdout; the library logs or returns data."""
    offenders = []
    for mod, path in _modules().items():
        if mod.startswith("tegra_ai.cli") or mod.endswith("make_digits"):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{mod}:{node.lineno}")
    assert not offenders, offenders


def test_one_definition_of_each_rule():
    """The grammar and key live in spec alone: no second size/shape/key parser in the
    package or the layer."""
    root = os.path.join(PKG, "..", "..")
    needles = ["def parse_size", "def parse_input_shapes", "def cache_key", "def key_material", "KEY_FORMAT =",
               "def check_model_name", "def parse_version"]
    hits = []
    for base in (PKG, os.path.join(root, "lib")):
        for dirpath, _d, files in os.walk(base):
            for f in files:
                if f.endswith(".py"):
                    text = open(os.path.join(dirpath, f)).read()
                    for n in needles:
                        # kernels/loader.py's cache_key names NVRTC's compiled-kernel cache, not engines
                        if n in text and f != "spec.py" and not (f == "loader.py" and n == "def cache_key"):
                            hits.append(f"{f}: {n}")
    # The layer's parse_size is a thin wrapper naming the variable; it must call spec's.
    hits = [h for h in hits if h != "engines.py: def parse_size"]
    assert not hits, hits
    lib = open(os.path.join(root, "lib", "tegra_ai_layer", "engines.py")).read()
    assert "_spec.parse_size" in lib and "_spec.parse_profile" in lib


def test_fp16_copy_recipe_is_in_the_key_of_strongly_typed_releases_only(monkeypatch):
    """TensorRT 11 / RTX may parse an FP16 copy the converter makes: a new converter recipe
    means new engines there, and changes no key of 8.5-10.x (whose parser sees the model)."""
    from tegra_ai import onnx_fp16
    from tegra_ai.platform import DeviceFacts
    from tegra_ai.trt import compat
    from tegra_ai.trt.builder import engine_key

    facts = DeviceFacts(compute_capability="11.0", device_name="Thor")
    opts = BuildOptions.from_request(precision="int8")
    keys = {}
    for version in ("10.3.0.30", "11.1.0"):
        feats = compat.features_for(version)
        before, material = engine_key("0" * 64, opts, feats, facts)
        monkeypatch.setattr(onnx_fp16, "RECIPE", "tegra-ai-fp16/next")
        after, _ = engine_key("0" * 64, opts, feats, facts)
        monkeypatch.undo()
        keys[version] = (before != after, "transform" in material)
    assert keys == {"10.3.0.30": (False, False), "11.1.0": (True, True)}
