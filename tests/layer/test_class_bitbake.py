"""tensorrt_engine.bbclass parsed by BitBake's real parser and data store (bb from bitbake-setup).

openembedded-core is not available here, so the test recipes inherit only our class;
its logic lives in lib/tegra_ai_layer and is reached through conf/layer.conf's addpylib,
exactly as in a real build.
"""

import os
import re

import pytest

pytestmark = pytest.mark.yocto

GOOD = '''
inherit tensorrt_engine
SRC_URI = "file://det.onnx file://det.calib file://cls.onnx"
TEGRA_AI_MODELS = "det cls"
TEGRA_AI_MODEL_det = "det.onnx"
TEGRA_AI_MODEL_det[precision] = "int8"
TEGRA_AI_MODEL_det[calibration] = "det.calib"
TEGRA_AI_MODEL_det[shapes] = "images:1x3x64x64:2x3x64x64:4x3x64x64"
TEGRA_AI_MODEL_det[workspace] = "512M"
TEGRA_AI_MODEL_cls = "cls.onnx"
TEGRA_AI_MODEL_cls[dla_core] = "1"
TEGRA_AI_MODEL_cls[gpu_fallback] = "1"
'''


def test_layer_conf(bb_layer_data, root):
    d = bb_layer_data
    assert "tegra-ai" in d.getVar("BBFILE_COLLECTIONS").split()
    assert d.getVar("TEGRA_AI_LAYERDIR") == root
    # only the series it is parsed and yocto-check-layer'ed on (meta-tegra scarthgap*, master)
    assert d.getVar("LAYERSERIES_COMPAT_tegra-ai").split() == ["scarthgap", "blacksail"]
    assert set(d.getVar("LAYERDEPENDS_tegra-ai").split()) >= {"core", "tegra"}


def test_good_recipe(parse_recipe):
    d = parse_recipe(GOOD)
    assert "tegra-ai-tools-native" in d.getVar("DEPENDS")
    assert "tegra-ai-engines" in d.getVar("RDEPENDS:model-test")
    assert d.getVar("TEGRA_AI_TRT_VERSION") == "10.3.0.30"
    assert d.getVar("TEGRA_AI_COMPUTE_CAPABILITY") == "8.7"
    assert d.getVar("TEGRA_AI_BUNDLE_TARGET") == "trt-10.3"
    assert d.getVar("PACKAGE_ARCH") == "armv8a_tegra"
    compile_ = d.getVar("tensorrt_engine_do_compile")
    assert ("tensorrt-optimize bundle --request /build/work/model/build/tegra-ai-requests/det.json "
            "--out /build/work/model/build/tegra-ai-bundle --name det --target trt-10.3 --no-check") in compile_
    assert "--request /build/work/model/build/tegra-ai-requests/cls.json" in compile_
    # the requests are written first, by the task's python prefunc
    assert "tensorrt_engine_write_requests" in d.getVarFlag("do_compile", "prefuncs").split()
    # the default: no builder, engines on first boot
    assert "will be built on the device at first boot" in compile_
    assert d.getVarFlag("do_compile", "nostamp") is None
    # EXPORT_FUNCTIONS made the class's tasks the recipe's
    assert "tensorrt_engine_do_compile" in d.getVar("do_compile")
    assert "tensorrt_engine_do_install" in d.getVar("do_install")
    # prebuilt engines go to the read-only seed, which ensure --seed copies from
    install = d.getVar("tensorrt_engine_do_install")
    assert d.getVar("TEGRA_AI_ENGINE_SEED") == d.getVar("datadir") + "/tegra-ai/engines"
    assert "${D}" + d.getVar("TEGRA_AI_ENGINE_SEED") in install.replace(d.getVar("D"), "${D}")


def write_requests(d, tmp_path):
    """The bundle task's prefunc (tegra_ai_layer.engines.write_requests) on the parsed recipe,
    with its sources in tmp_path/src: {model: request JSON}."""
    import json

    import tegra_ai_layer.engines as engines
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for f in ("det.onnx", "cls.onnx"):
        (src / f).write_bytes(b"model")
    (src / "det.calib").write_bytes(b"TRT-8500-EntropyCalibration2\n")
    paths = engines.write_requests(d, srcdir=str(src), reqdir=str(tmp_path / "requests"))
    return {os.path.basename(p)[:-len(".json")]: json.load(open(p)) for p in paths}


def test_requests_hold_every_option(parse_recipe, tmp_path):
    requests = write_requests(parse_recipe(GOOD), tmp_path)
    det, cls = requests["det"], requests["cls"]
    assert det["model"] == "../src/det.onnx" and det["calibration_cache"] == "../src/det.calib"
    assert det["options"]["precision"] == "int8" and det["options"]["workspace"] == 512 << 20
    assert det["options"]["profiles"] == [[{"name": "images", "min": [1, 3, 64, 64], "opt": [2, 3, 64, 64],
                                            "max": [4, 3, 64, 64]}]]
    assert len(det["options"]["calibration_sha256"]) == 64
    assert (cls["options"]["precision"], cls["options"]["dla_core"], cls["options"]["gpu_fallback"]) == ("fp16", 1, True)


def test_varflag_precision_default(parse_recipe, tmp_path):
    d = parse_recipe(GOOD + 'TEGRA_AI_ENGINE_PRECISION = "fp32"\n')
    assert write_requests(d, tmp_path)["cls"]["options"]["precision"] == "fp32"


def test_bundle_step_passes_the_request_whole(parse_recipe):
    """The class's bundle lines name the request file and only what bundle alone takes: a
    build flag there (the class going back to a loose argv) fails this test."""
    import shlex

    from tegra_ai.cli.optimize import build_parser
    bundle = build_parser()._subparsers._group_actions[0].choices["bundle"]
    build_flags = {s for group in bundle._action_groups if group.title.startswith("build options")
                   for a in group._group_actions for s in a.option_strings}
    build_flags |= {"--timing-cache"}
    assert {"--precision", "--shapes", "--calibration-cache", "--plugin"} <= build_flags
    d = parse_recipe(GOOD + 'TEGRA_AI_MODEL_cls[preprocess] = "cls.json"\n'
                     'TEGRA_AI_MODEL_cls[timing_cache] = "cls.timing"\nTEGRA_AI_MODEL_cls[contexts] = "2"\n')
    lines = [shlex.split(ln) for ln in d.getVar("tensorrt_engine_do_compile").splitlines()
             if "tensorrt-optimize bundle" in ln]
    assert len(lines) == 2
    for argv in lines:
        flags = {a for a in argv if a.startswith("-")}
        assert "--request" in flags and not flags & build_flags, flags
        assert flags <= {"--request", "--out", "--name", "--preprocess", "--target", "--no-check"}, flags
        assert not [a for a in argv[2:] if a.endswith(".onnx")]      # no MODEL: it is in the request


def test_override_syntax_applies(parse_recipe, bb_layer_data):
    d = parse_recipe(GOOD + 'TEGRA_AI_MODELS:remove = "cls"\n')
    assert "--name cls" not in d.getVar("tensorrt_engine_do_compile")


@pytest.mark.parametrize("extra, message", [
    ('TEGRA_AI_MODEL_det[precision] = "fp8"\n', "TEGRA_AI_MODEL_det[precision]: 'fp8' is not one of"),
    ('TEGRA_AI_MODEL_cls[shapes] = "x:1x3:2x3"\n', "TEGRA_AI_MODEL_cls[shapes]"),
    ('TEGRA_AI_MODEL_cls[dla_core] = "16"\n', "TEGRA_AI_MODEL_cls[dla_core]: DLA core 16: expected 0..15"),
    ('TEGRA_AI_MODEL_det[calibration] = ""\n', "TEGRA_AI_MODEL_det[precision]: int8 needs calibration data"),
    ('TEGRA_AI_MODEL_cls[workspace] = "big"\n', "TEGRA_AI_MODEL_cls[workspace]"),
    ('TEGRA_AI_MODEL_cls[precison] = "fp16"\n', "TEGRA_AI_MODEL_cls[precison]: unknown option"),
    ('TEGRA_AI_MODELS += "seg"\n', "TEGRA_AI_MODEL_seg is not set"),
    ('TEGRA_AI_ENGINE_BUILDER = "local"\n', "an x86 build host cannot build Jetson engines"),
])
def test_bad_options_fail_at_parse_time(parse_recipe, extra, message, capsys):
    import bb
    with pytest.raises(bb.BBHandledException):
        parse_recipe(GOOD + extra)
    # bb.fatal logs the message: BitBake prints it as the parse error
    logged = capsys.readouterr()
    assert message in (logged.out + logged.err) or message in _last_bb_log()


def test_empty_model_list_fails(parse_recipe):
    import bb
    with pytest.raises(bb.BBHandledException):
        parse_recipe("inherit tensorrt_engine\n")


def test_builder_configured(parse_recipe):
    d = parse_recipe(GOOD + 'TEGRA_AI_ENGINE_BUILDER = "ssh -o BatchMode=yes root@orin-ref"\n')
    build = d.getVar("tensorrt_engine_build_on_builder")
    assert "ssh -o BatchMode=yes root@orin-ref 'set -e;" in build
    assert ("verify-cache /build/work/model/build/tegra-ai-engines --manifest /build/work/model/build/tegra-ai-bundle "
            "--trt-version 10.3.0 --compute-capability 8.7") in build
    assert "refusing the engines" in build
    assert d.getVar("PACKAGE_ARCH") == "jetson_orin_nano_devkit"
    # a real signature (test_emulate_model.py), not nostamp; ssh needs the network
    assert d.getVarFlag("do_compile", "nostamp") is None
    assert d.getVarFlag("do_compile", "network") == "1"


def test_builder_local_on_aarch64(parse_recipe, bb_layer_data):
    d = parse_recipe(GOOD + 'TEGRA_AI_ENGINE_BUILDER = "local"\nBUILD_ARCH = "aarch64"\n')
    assert "| sh -c 'set -e;" in d.getVar("tensorrt_engine_build_on_builder")


# --- capture of bb.fatal messages --------------------------------------------

_MESSAGES = []


@pytest.fixture(autouse=True)
def _capture_bb_log():
    import logging
    handler = logging.Handler()
    handler.emit = lambda record: _MESSAGES.append(record.getMessage())
    logger = logging.getLogger("BitBake")
    logger.addHandler(handler)
    del _MESSAGES[:]
    yield
    logger.removeHandler(handler)


def _last_bb_log():
    return "\n".join(_MESSAGES)


def test_layer_conf_changes_nothing_global(root):
    """conf/layer.conf sets only this layer's own variables (and appends its own names to
    BitBake's lists): a build that adds the layer but uses none of its recipes parses and
    hashes every other recipe as before (yocto-check-layer's test_signatures)."""
    import bb.data
    import bb.parse
    d = bb.data.init()
    d.setVar("LAYERDIR", root)
    before = set(d.keys())
    bb.parse.handle(os.path.join(root, "conf", "layer.conf"), d, True, baseconfig=True)
    ours = re.compile(r"^(TEGRA_AI_|BBFILE_(COLLECTIONS|PATTERN_tegra-ai|PRIORITY_tegra-ai)$|LAYER[A-Z_]+_tegra-ai$|"
                      r"FEATURE_PACKAGES_tegra-ai)")
    shared = {"BBPATH", "BBFILES", "BBFILES_DYNAMIC", "BBFILE_COLLECTIONS", "BB_BASEHASH_IGNORE_VARS", "LAYERDIR",
              "FILE"}  # FILE: set by the parser itself
    changed = sorted(k for k in set(d.keys()) - before if not k.startswith("__") and not ours.match(k))
    assert set(changed) <= shared, changed
    # the shared lists only gain this layer's own entries
    assert d.getVar("BB_BASEHASH_IGNORE_VARS").split() == ["TEGRA_AI_LAYERDIR"]
    assert all(p.startswith(root) for p in d.getVar("BBFILES").split())
