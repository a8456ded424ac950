"""Model recipes (tensorrt_engine.bbclass): the example recipe's do_compile and do_install
run as BitBake runs them, with this repository's tensorrt-optimize as the native tool;
the engine task with a builder (a stand-in Jetson); and the task's signature, computed
the way BitBake's siggen computes it (what decides whether the task runs again)."""

import json
import os
import sys

import pytest

import emulate

pytestmark = pytest.mark.yocto

RECIPE = "recipes-ai/tegra-ai-model-digits/tegra-ai-model-digits_0.1.0.bb"
SCRIPTS = os.path.join(emulate.ROOT, "scripts")


def native_tool(tmp_path):
    """tensorrt-optimize-native: this repository's CLI (bundle, check, verify-cache need no TensorRT)."""
    bindir = tmp_path / "native-bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / "tensorrt-optimize"
    tool.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s -c 'import sys; from tegra_ai.cli.optimize import main; "
                    "sys.exit(main())' \"$@\"\n" % (SCRIPTS, sys.executable))
    tool.chmod(0o755)
    return {"PATH": str(bindir) + os.pathsep + os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}


def parse(tmp_path, series="scarthgap", **conf):
    try:
        return emulate.parse(RECIPE, tmp_path / "work", series, conf)
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)


@pytest.mark.parametrize("series", emulate.SERIES)
def test_bundle_and_install_as_bitbake_runs_them(tmp_path, series):
    d = parse(tmp_path, series, TEGRA_AI_ONNX_CHECK="0")
    env = native_tool(tmp_path)
    emulate.unpack(d)
    out = emulate.run(d, "do_compile", env=env).stdout
    assert "will be built on the device at first boot" in out
    emulate.run(d, "do_install", env=env)
    files = emulate.installed_files(d)
    bundle = "/usr/share/tegra-ai/models/tegra-ai-model-digits"
    assert bundle + "/manifest.json" in files
    manifest = json.load(open(d.getVar("D") + bundle + "/manifest.json"))
    (model,) = manifest["models"]
    # the bundle holds the request the class wrote, whole (its model now the bundle's copy)
    request = json.load(open(os.path.join(d.getVar("TEGRA_AI_REQUEST_DIR"), "digits.json")))
    assert request["options"]["precision"] == "fp16" and request["options"]["workspace"] == 64 << 20
    assert model["name"] == "digits" and model["request"] == dict(request, model="digits/digits.onnx")
    split = emulate.package_split(d, files)
    assert list(split) == [d.getVar("PN")], split.get(None)


def engines_lib():
    import tegra_ai_layer.engines as engines     # on the path through the layer's addpylib (emulate.parse)
    return engines


CLASS_OPTIONS = {"precision": "int8", "calibration": "digits.calib", "timing_cache": "digits.timing",
                 "contexts": "2", "opt_level": "3", "strongly_typed": "0"}
# the same options as `tensorrt-optimize` flags (with the recipe's own shapes and workspace)
CLI_FLAGS = ["--precision", "int8", "--calibration-cache", "digits.calib", "--timing-cache", "digits.timing",
             "--contexts", "2", "--opt-level", "3", "--shapes", "input:1x1x8x8:8x1x8x8:32x1x8x8", "--workspace", "64M"]


def test_class_request_is_the_clis_request(tmp_path, monkeypatch):
    """Varflags -> the class's request file -> `bundle --request` -> the manifest -> the
    request ensure builds: the same request and cache key as `tensorrt-optimize build`
    and `bundle` construct from the same options given as flags."""
    from tegra_ai.cache.manifest import load_manifest
    from tegra_ai.cli import optimize
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.platform import DeviceFacts
    from tegra_ai.trt import compat
    from tegra_ai.trt.builder import engine_key

    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="0")
    for flag, value in CLASS_OPTIONS.items():
        d.setVarFlag("TEGRA_AI_MODEL_digits", flag, value)
    env = native_tool(tmp_path)
    emulate.unpack(d)
    src = d.getVar("TEGRA_AI_SRCDIR")
    with open(os.path.join(src, "digits.calib"), "wb") as f:
        f.write(b"TRT-8500-EntropyCalibration2\ninput: 3c010a14\n")
    with open(os.path.join(src, "digits.timing"), "wb") as f:
        f.write(b"timings")
    emulate.run(d, "do_compile", env=env)
    (entry,) = load_manifest(os.path.join(d.getVar("TEGRA_AI_BUNDLE_DIR"), "manifest.json"))

    monkeypatch.chdir(src)
    parser = optimize.build_parser()
    built = optimize._request_from_args(parser.parse_args(["build", "digits.onnx"] + CLI_FLAGS))
    bundled = optimize._request_from_args(parser.parse_args(["bundle", "digits.onnx", "--out", "o"] + CLI_FLAGS))
    assert built == bundled
    # the bundle holds that request whole, its files the bundle's copies
    copies = os.path.join(d.getVar("TEGRA_AI_BUNDLE_DIR"), "digits")
    assert entry.request == built.replace(model=os.path.join(copies, "digits.onnx"),
                                          calibration_cache=os.path.join(copies, "calibration.cache"),
                                          timing_cache=os.path.join(copies, "timing.cache"))
    feats, facts = compat.features_for("10.3.0.30"), DeviceFacts("8.7", "Orin", "p3767-0005", "36.4.3", 8, "12.6")
    key = engine_key(model_digest("digits.onnx")[0], built.options, feats, facts)[0]
    # first-boot ensure keys and builds exactly that request (its timing cache: the cache's own)
    from tegra_ai.cache import build_child
    from tegra_ai.cache.ensure import ensure
    from tegra_ai.errors import TegraAIError
    handed = []

    def build_in_child(request, **kw):
        handed.append(request)
        raise TegraAIError("stand-in: no TensorRT here")
    monkeypatch.setattr(build_child, "build_in_child", build_in_child)
    summary = ensure([d.getVar("TEGRA_AI_BUNDLE_DIR")], str(tmp_path / "cache"), loader=None, show_progress=False,
                     runtime=(feats, lambda options: facts), log=lambda m: None)
    assert summary["models"][0]["key"] == key
    assert handed == [entry.request.replace(timing_cache=os.path.join(summary["cache"], "timing.cache"))]
    # an option changed in the recipe changes the request (and so the key)
    d.setVarFlag("TEGRA_AI_MODEL_digits", "opt_level", "4")
    (path,) = engines_lib().write_requests(d)
    with open(path) as f:
        assert json.load(f)["options"]["opt_level"] == 4


def test_calibration_not_fetched_stops_the_task_naming_the_variable(tmp_path):
    """The request is constructed after do_unpack (the calibration cache is hashed): a file
    SRC_URI did not bring stops do_compile with one line naming the variable, no bundle."""
    import logging

    import bb
    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="0")
    d.setVarFlag("TEGRA_AI_MODEL_digits", "precision", "int8")
    d.setVarFlag("TEGRA_AI_MODEL_digits", "calibration", "digits.calib")
    emulate.unpack(d)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("BitBake").addHandler(handler)
    try:
        with pytest.raises(bb.BBHandledException):
            emulate.run(d, "do_compile", env=native_tool(tmp_path))
    finally:
        logging.getLogger("BitBake").removeHandler(handler)
    (line,) = [m for m in messages if "TEGRA_AI_MODEL_digits" in m]
    assert "calibration cache" in line and "digits.calib does not exist" in line and "\n" not in line
    assert not os.path.exists(d.getVar("TEGRA_AI_BUNDLE_DIR"))


def test_preflight_runs_at_build_time(tmp_path):
    """TEGRA_AI_ONNX_CHECK = "1": `bundle --target trt-10.3` checks the ONNX (onnx needed)."""
    pytest.importorskip("onnx", reason="the preflight needs the onnx package (pip install onnx)")
    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="1")
    assert "--target trt-10.3" in d.getVar("tensorrt_engine_do_compile") or d.getVar("TEGRA_AI_BUNDLE_TARGET")
    env = native_tool(tmp_path)
    emulate.unpack(d)
    emulate.run(d, "do_compile", env=env)
    # an ONNX the target cannot run fails the build, not the first boot
    bad = os.path.join(d.getVar("TEGRA_AI_SRCDIR"), "digits.onnx")
    with open(bad, "wb") as f:
        f.write(b"not an onnx model")
    res = emulate.run(d, "do_compile", env=env, check=False)
    assert res.returncode != 0


# --- the engine task with a builder -------------------------------------------

# The builder Jetson's `tensorrt-optimize ensure`: the real ensure (cache, keys, prune
# policies, JSON summary on stdout) with only TensorRT's engine build replaced, since
# there is no Jetson GPU here. Facts as this Jetson reports them (platform.detect).
FAKE_ENSURE = r'''
import argparse, json, os, sys
sys.path.insert(0, %(scripts)r)
from tegra_ai import platform
from tegra_ai.cache.ensure import ensure
from tegra_ai.spec import Sidecar
from tegra_ai.trt import compat
from tegra_ai.trt.builder import BuildResult, engine_key
p = argparse.ArgumentParser()
p.add_argument("command")
p.add_argument("--manifest", action="append")
p.add_argument("--cache")
p.add_argument("--prune", default="stale")
p.add_argument("--json", action="store_true")
args = p.parse_args()
with open(%(log)r, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
feats = compat.features_for(%(trt)r)
facts = platform.DeviceFacts("8.7", "Orin", "p3767-0005", %(l4t)r, 8, "12.6")
def build(entry):
    with open(%(log)r, "a") as log:
        log.write("built %%s for L4T %%s\n" %% (entry.name, facts.l4t_release))
    _key, material = engine_key(entry.sha256, entry.options, feats, facts)
    return BuildResult(engine=b"engine for L4T " + facts.l4t_release.encode(), sidecar=Sidecar.new(material))
summary = ensure(args.manifest, args.cache, prune=args.prune, builder=build, loader=None,
                 runtime=(feats, lambda options: facts), show_progress=False, log=lambda m: None)
print(json.dumps(summary))
sys.exit(summary["exit_code"])
'''


def builder(tmp_path, trt="10.3.0.30", probe_ok=True, l4t="36.5.0", name="jetson-bin"):
    """A stand-in Jetson reached with 'sh -c': python3 (the facts probe) and the ensure tool."""
    bindir = tmp_path / name
    bindir.mkdir()
    log = tmp_path / "builder.log"
    ensure = bindir / "fake-ensure"
    ensure.write_text("#!%s\n%s" % (sys.executable, FAKE_ENSURE % {"scripts": SCRIPTS, "log": str(log), "trt": trt,
                                                                    "l4t": l4t}))
    ensure.chmod(0o755)
    if probe_ok:
        # The probe of a matching Jetson records what it was asked; the builder's other
        # python3 calls (the list of engines to send back) run in a real Python.
        py = bindir / "python3"
        py.write_text("#!/bin/sh\ncase \"$2\" in *'builder mismatch'*) shift 2; echo \"probe $*\" >> %s; exit 0;; esac\n"
                      "exec %s \"$@\"\n" % (log, sys.executable))
        py.chmod(0o755)
    return bindir, ensure, log


def test_builder_builds_once_and_keeps_a_persistent_cache(tmp_path):
    bindir, ensure, log = builder(tmp_path)
    cache = tmp_path / "builder-cache"
    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="0", TEGRA_AI_ENGINE_BUILDER="sh -c",
              TEGRA_AI_ENGINE_BUILDER_TOOL=str(ensure), TEGRA_AI_ENGINE_BUILDER_CACHE=str(cache))
    env = native_tool(tmp_path)
    env["PATH"] = str(bindir) + os.pathsep + env["PATH"]
    emulate.unpack(d)
    emulate.run(d, "do_compile", env=env)
    emulate.run(d, "do_install", env=env)
    text = log.read_text()
    # the builder was asked for the image's facts before it built
    assert "probe 10.3.0 8.7 36.5.0 " in text
    assert text.count("built digits") == 1 and "--prune unlisted" in text
    seed = "/usr/share/tegra-ai/engines/digits/"
    installed = emulate.installed_files(d)
    assert any(f.startswith(seed) and f.endswith(".engine") for f in installed)
    assert None not in emulate.package_split(d, installed)
    # the cache is per MACHINE, L4T release and bundle and stays on the builder: a second run is a hit
    assert (cache / "jetson-orin-nano-devkit" / "l4t-36.5.0" / "tegra-ai-model-digits" / "digits").is_dir()
    emulate.run(d, "do_compile", env=env)
    assert log.read_text().count("built digits") == 1


def _seed_engines(d):
    seed = d.getVar("D") + "/usr/share/tegra-ai/engines/digits"
    return sorted(os.path.join(seed, f) for f in os.listdir(seed) if f.endswith(".engine"))


def test_builder_sequence_across_a_bsp_upgrade(tmp_path):
    """Image on L4T 36.4.3, then the BSP upgrade to 36.5.0 (builder Jetson re-flashed with it),
    then a rebuild of the old release's image: every image gets exactly its release's engine,
    verify-cache passes each time, and nothing is built twice. (Before the builder cache was
    per release, the upgrade's build got the 36.4.3 engine that ensure's A/B-aware prune keeps
    back with its own, and verify-cache failed the build.)"""
    cache = tmp_path / "builder-cache"
    env = native_tool(tmp_path)
    path = env["PATH"]
    builds = {}
    for step, l4t in enumerate(("36.4.3", "36.5.0", "36.4.3")):
        work = tmp_path / ("step%d" % step)
        work.mkdir()
        bindir, ensure, log = builder(work, l4t=l4t)
        d = parse(work, TEGRA_AI_ONNX_CHECK="0", TEGRA_AI_ENGINE_BUILDER="sh -c", L4T_VERSION=l4t,
                  TEGRA_AI_ENGINE_BUILDER_TOOL=str(ensure), TEGRA_AI_ENGINE_BUILDER_CACHE=str(cache))
        env["PATH"] = str(bindir) + os.pathsep + path
        emulate.unpack(d)
        res = emulate.run(d, "do_compile", env=env, check=False)
        assert res.returncode == 0, res.stdout[-3000:]
        emulate.run(d, "do_install", env=env)
        (engine,) = _seed_engines(d)
        assert open(engine, "rb").read() == b"engine for L4T " + l4t.encode()
        assert json.load(open(engine + ".json"))["key_material"]["device"]["l4t_release"] == l4t
        builds[step] = log.read_text().count("built digits")
    assert builds == {0: 1, 1: 1, 2: 0}      # the old release's engine was still in its own folder
    for l4t in ("36.4.3", "36.5.0"):
        assert (cache / "jetson-orin-nano-devkit" / ("l4t-" + l4t) / "tegra-ai-model-digits" / "digits").is_dir()


def test_builder_of_another_platform_is_refused_before_building(tmp_path):
    """The probe on a machine that is not the image's Jetson (this one) stops the task."""
    bindir, ensure, log = builder(tmp_path, probe_ok=False)
    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="0", TEGRA_AI_ENGINE_BUILDER="sh -c",
              TEGRA_AI_ENGINE_BUILDER_TOOL=str(ensure), TEGRA_AI_ENGINE_BUILDER_CACHE=str(tmp_path / "c"))
    env = native_tool(tmp_path)
    env["PATH"] = str(bindir) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = SCRIPTS  # the builder's tegra_ai
    emulate.unpack(d)
    res = emulate.run(d, "do_compile", env=env, check=False)
    assert res.returncode != 0
    assert "builder mismatch: it has" in res.stdout and "compute capability" in res.stdout
    assert not log.exists() or "built" not in log.read_text()


@pytest.mark.parametrize("builder_facts, differs", [
    ({"trt": "8.5.2.2"}, "TensorRT version differs"),
    ({"l4t": "36.4.0"}, "L4T release differs"),
])
def test_engines_of_another_platform_are_refused(tmp_path, builder_facts, differs):
    """verify-cache after the build: a builder that passed the probe but built elsewhere."""
    bindir, ensure, _log = builder(tmp_path, **builder_facts)
    d = parse(tmp_path, TEGRA_AI_ONNX_CHECK="0", TEGRA_AI_ENGINE_BUILDER="sh -c",
              TEGRA_AI_ENGINE_BUILDER_TOOL=str(ensure), TEGRA_AI_ENGINE_BUILDER_CACHE=str(tmp_path / "c"))
    env = native_tool(tmp_path)
    env["PATH"] = str(bindir) + os.pathsep + env["PATH"]
    emulate.unpack(d)
    res = emulate.run(d, "do_compile", env=env, check=False)
    assert res.returncode != 0 and "refusing the engines" in res.stdout and differs in res.stdout


# --- task flags and signature -------------------------------------------------

SSH = "ssh -o BatchMode=yes root@orin-ref"


def test_builder_task_has_network_and_a_lock_only_with_a_builder(tmp_path):
    d = parse(tmp_path)
    assert d.getVarFlag("do_compile", "network") is None
    d = parse(tmp_path, TEGRA_AI_ENGINE_BUILDER=SSH)
    assert d.getVarFlag("do_compile", "network") == "1"
    assert d.getVarFlag("do_compile", "nostamp") is None
    locks = d.getVarFlag("do_compile", "lockfiles").split()
    assert len(locks) == 1 and locks[0].startswith(d.getVar("TMPDIR") + "/tegra-ai-engine-builder-")


def test_builder_task_gets_the_ssh_agent(tmp_path):
    d = parse(tmp_path, TEGRA_AI_ENGINE_BUILDER=SSH, SSH_AUTH_SOCK="/run/user/1000/agent.sock")
    # from BitBake's original environment (BB_ORIGENV), as its git fetcher takes it
    script = emulate.script(d, "tensorrt_engine_build_on_builder")
    assert 'sock="/run/user/1000/agent.sock"' in script and 'export SSH_AUTH_SOCK="$sock"' in script


@pytest.fixture
def signature(tmp_path):
    def sig(**conf):
        conf.setdefault("TEGRA_AI_ENGINE_BUILDER", SSH)
        d = parse(tmp_path, **conf)
        for k, v in conf.items():
            if "[" in k:
                var, flag = k[:-1].split("[")
                d.setVarFlag(var, flag, v)
        return emulate.task_hash(d, "do_compile")
    return sig


def test_signature_is_stable(signature):
    assert signature() == signature()


@pytest.mark.parametrize("change", [
    {"TEGRA_AI_MODEL_digits[precision]": "fp32"},          # an option (a varflag)
    {"TEGRA_AI_MODEL_digits[shapes]": "input:1x1x8x8"},
    {"TEGRA_AI_ENGINE_PRECISION": "fp32", "TEGRA_AI_MODEL_digits[precision]": ""},
    {"L4T_VERSION": "36.4.3"},                             # the BSP
    {"TEGRA_CUDA_ARCHITECTURE": "72"},                     # the GPU
    {"PREFERRED_VERSION_tensorrt-core": "10.3.1.1-1"},     # TensorRT
    {"MACHINE": "jetson-agx-orin-devkit"},                 # the module
    {"TEGRA_AI_ENGINE_BUILDER": ""},                       # engines on first boot instead
])
def test_signature_follows_the_real_inputs(signature, change):
    assert signature(**change) != signature()


@pytest.mark.parametrize("flag, value", [("opt_level", "3"), ("contexts", "2"), ("workspace", "128M"),
                                         ("strongly_typed", "1")])
def test_an_option_changes_the_request_and_the_signature(tmp_path, signature, flag, value):
    """Every build option reaches the request file, and the bundle task's signature."""
    def request(**flags):
        d = parse(tmp_path)
        for k, v in flags.items():
            d.setVarFlag("TEGRA_AI_MODEL_digits", k, v)
        reqdir = str(tmp_path / "req")
        (path,) = engines_lib().write_requests(d, srcdir=str(tmp_path), reqdir=reqdir)
        with open(path) as f:
            return f.read()
    assert request(**{flag: value}) != request()
    assert signature(**{"TEGRA_AI_MODEL_digits[%s]" % flag: value}) != signature()


@pytest.mark.parametrize("change", [
    {"TEGRA_AI_ENGINE_BUILDER": "ssh -o BatchMode=yes root@orin-ref-2"},
    {"TEGRA_AI_ENGINE_BUILDER_CACHE": "/data/builder-cache"},
    {"SSH_AUTH_SOCK": "/tmp/ssh-XYZ/agent.1234"},
])
def test_signature_ignores_what_does_not_change_engines(signature, change):
    assert signature(**change) == signature()


def test_bundle_without_builder_is_shared_by_machines_of_one_bsp(signature):
    """Engines built on first boot: the bundle (models, options, the BSP's TensorRT) is the
    same for every machine of one BSP, so the task is too; with a builder the engines are
    the machine's (PACKAGE_ARCH = MACHINE_ARCH, MACHINE in the signature)."""
    first_boot = dict(TEGRA_AI_ENGINE_BUILDER="")
    assert signature(MACHINE="jetson-agx-orin-devkit", **first_boot) == signature(**first_boot)
    # scarthgap-l4t-r35.x: Xavier and Orin, one TensorRT
    assert signature(TEGRA_CUDA_ARCHITECTURE="72", L4T_VERSION="35.6.0", **first_boot) == signature(**first_boot)
    assert signature(**{"TEGRA_AI_MODEL_digits[precision]": "fp32"}, **first_boot) != signature(**first_boot)
    assert signature(MACHINE="jetson-agx-orin-devkit") != signature()


def test_user_recipe_example_parses(tmp_path):
    """docs/examples/my-detector_1.0.bb, as a user's layer would hold it."""
    try:
        d = emulate.parse("docs/examples/my-detector_1.0.bb", tmp_path / "work", "scarthgap")
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    compile_ = d.getVar("tensorrt_engine_do_compile")
    assert "--request %s/detector.json" % d.getVar("TEGRA_AI_REQUEST_DIR") in compile_
    assert "--name detector --preprocess" in compile_ and "--precision" not in compile_
    (spec,) = engines_lib().parse_models(d)
    assert (spec.precision, spec.calibration, spec.workspace) == ("int8", "detector.calib", 1 << 30)
    assert spec.shapes == ["images:1x3x640x640:1x3x640x640:4x3x640x640"]
    assert "tegra-ai-tools-native" in d.getVar("DEPENDS")


@pytest.mark.parametrize("series", ["scarthgap", "master"])
def test_ensemble_recipe_bundle_and_install(tmp_path, series):
    try:
        d = emulate.parse("recipes-ai/tegra-ai-model-ensemble/tegra-ai-model-ensemble_0.1.0.bb", tmp_path / "work",
                          series, {"TEGRA_AI_ONNX_CHECK": "0"})
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    env = native_tool(tmp_path)
    emulate.unpack(d)
    emulate.run(d, "do_compile", env=env)
    emulate.run(d, "do_install", env=env)
    files = emulate.installed_files(d)
    assert "/usr/share/tegra-ai/models/tegra-ai-model-ensemble/manifest.json" in files
    assert "/usr/share/tegra-ai/ensembles/digits-ensemble.json" in files
    split = emulate.package_split(d, files)
    assert list(split) == [d.getVar("PN")], split.get(None)
