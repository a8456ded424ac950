"""lib/tegra_ai_layer without BitBake: a dict-backed stand-in for the data store."""

import os

import pytest

from tegra_ai_layer import compat, engines
from tegra_ai_layer.engines import ModelConfigError


class FakeData(object):
    def __init__(self, values=None, flags=None):
        self.values = dict(values or {})
        self.flags = {k: dict(v) for k, v in (flags or {}).items()}

    def getVar(self, name, expand=True):
        return self.values.get(name)

    def getVarFlag(self, name, flag, expand=True):
        return self.flags.get(name, {}).get(flag)

    def getVarFlags(self, name, expand=False, internalflags=False):
        return dict(self.flags.get(name, {})) or None


def model(flags=None, onnx="m.onnx", **values):
    v = {"TEGRA_AI_MODELS": "m", "TEGRA_AI_MODEL_m": onnx}
    v.update(values)
    return FakeData(v, {"TEGRA_AI_MODEL_m": flags or {}})


def test_defaults():
    (spec,) = engines.parse_models(model())
    assert spec.name == "m" and spec.precision == "fp16" and spec.shapes == [] and spec.workspace is None


def test_all_options(tmp_path):
    d = model({"precision": "int8", "calibration": "m.calib", "shapes": "in:1x3:2x3:4x3,mask:1x1 in:8x3",
               "workspace": "256M", "dla_core": "0", "gpu_fallback": "1", "opt_level": "3",
               "timing_cache": "t.cache", "preprocess": "p.json"})
    (spec,) = engines.parse_models(d)
    assert spec.workspace == 256 << 20
    src, req = tmp_path / "src", tmp_path / "build" / "requests"
    src.mkdir()
    (src / "m.calib").write_bytes(b"TRT-8500-EntropyCalibration2\n")
    data = spec.request_json(str(src), str(req))
    # every build option and build input is in the request, files relative to its folder
    assert data["model"] == "../../src/m.onnx" and data["calibration_cache"] == "../../src/m.calib"
    assert data["timing_cache"] == "../../src/t.cache"
    o = data["options"]
    assert (o["precision"], o["workspace"], o["dla_core"], o["gpu_fallback"], o["opt_level"]) == (
        "int8", 256 << 20, 0, True, 3)
    assert len(o["profiles"]) == 2 and len(o["calibration_sha256"]) == 64
    # the bundle step's argv: the request file and what only bundle takes, no build flag
    args = spec.bundle_args("/req/m.json", "/out", "/src", target="trt-10.3", check=False)
    assert args == ["bundle", "--request", "/req/m.json", "--out", "/out", "--name", "m",
                    "--preprocess", "/src/p.json", "--target", "trt-10.3", "--no-check"]


@pytest.mark.parametrize("flags, values, message", [
    ({"precision": "fp8"}, {}, "TEGRA_AI_MODEL_m[precision]: 'fp8' is not one of"),
    ({}, {"TEGRA_AI_ENGINE_PRECISION": "half"}, "TEGRA_AI_ENGINE_PRECISION: 'half'"),
    ({"precision": "int8"}, {}, "int8 needs calibration data"),
    ({"precision": "fp16", "calibration": "c"}, {}, "TEGRA_AI_MODEL_m[calibration]: a calibration cache needs"),
    ({"precision": "int8", "qdq": "1", "calibration": "c"}, {}, "drop the calibration cache"),
    ({"qdq": "1"}, {}, "TEGRA_AI_MODEL_m[qdq]"),
    ({"qdq": "maybe"}, {}, "TEGRA_AI_MODEL_m[qdq]: 'maybe' is not a boolean"),
    ({"shapes": "input:1x3:2x3"}, {}, "TEGRA_AI_MODEL_m[shapes]"),
    ({"shapes": "input:4x3:2x3:1x3"}, {}, "min <= opt <= max"),
    ({"shapes": "input:1x3:1x3x2:1x3"}, {}, "different ranks"),
    ({"shapes": ":1x3"}, {}, "missing input name"),
    ({"shapes": "a:1x0"}, {}, "must be positive"),
    ({"shapes": "a:1,a:2"}, {}, "twice in one profile"),
    ({"workspace": "lots"}, {}, "TEGRA_AI_MODEL_m[workspace]: size 'lots': expected"),
    ({}, {"TEGRA_AI_ENGINE_WORKSPACE": "1X"}, "TEGRA_AI_ENGINE_WORKSPACE"),
    ({"dla_core": "16"}, {}, "TEGRA_AI_MODEL_m[dla_core]: DLA core 16: expected 0..15"),
    ({"dla_core": "x"}, {}, "expected an integer"),
    ({"gpu_fallback": "1"}, {}, "gpu_fallback only applies with"),
    ({"opt_level": "9"}, {}, "TEGRA_AI_MODEL_m[opt_level]"),
    ({"preprocess": "p.yaml"}, {}, "not a .json"),
    ({"timing_cache": "../x"}, {}, "leaves UNPACKDIR"),
    ({"strongly_typed": "1", "precision": "int8", "calibration": "c"}, {}, "strongly typed"),
    ({"precison": "fp16"}, {}, "TEGRA_AI_MODEL_m[precison]: unknown option"),
])
def test_bad_options_name_the_variable(flags, values, message):
    with pytest.raises(ModelConfigError) as e:
        engines.parse_models(model(flags, **values))
    assert message in str(e.value)


@pytest.mark.parametrize("values, message", [
    ({"TEGRA_AI_MODELS": ""}, "TEGRA_AI_MODELS is empty"),
    ({"TEGRA_AI_MODELS": "m m"}, "listed twice"),
    ({"TEGRA_AI_MODELS": "a/b"}, "not a valid model name"),
    ({"TEGRA_AI_MODELS": "other"}, "TEGRA_AI_MODEL_other is not set"),
    ({"TEGRA_AI_MODEL_m": "model.pb"}, "not an .onnx file"),
])
def test_bad_model_lists(values, message):
    with pytest.raises(ModelConfigError) as e:
        engines.parse_models(model(**values))
    assert message in str(e.value)


def test_bitbake_flags_are_not_options():
    (spec,) = engines.parse_models(model({"vardeps": "X", "doc": "the model"}))
    assert spec.precision == "fp16"


def test_qdq_int8_needs_no_calibration():
    (spec,) = engines.parse_models(model({"precision": "int8", "qdq": "1"}))
    data = spec.request_json("/s", "/s/req")
    assert data["options"]["precision"] == "int8" and data["calibration_cache"] is None
    assert data["options"]["calibration_sha256"] is None


@pytest.mark.parametrize("arch, cc", [("72", "7.2"), ("87", "8.7"), ("110", "11.0"), ("", ""), ("sm87", "")])
def test_compute_capability(arch, cc):
    assert engines.compute_capability(arch) == cc


@pytest.mark.parametrize("v, short, target", [
    ("10.3.0.30-1", "10.3.0", "trt-10.3"), ("8.5.2-1", "8.5.2", "trt-8.5"),
    ("10.16.2.10-1", "10.16.2", "trt-10.16"), ("10.16%", "10.16", "trt-10.16"), ("", "", "")])
def test_trt_versions(v, short, target):
    assert engines.short_trt_version(v) == short
    assert engines.bundle_target(v) == target


def test_guess_trt_version_from_recipes(tmp_path):
    gie = tmp_path / "meta-tegra" / "recipes-devtools" / "gie"
    gie.mkdir(parents=True)
    for name in ("tensorrt-core_10.3.0.30-1.bb", "tensorrt-core_8.5.2-1.bb", "tensorrt-plugins_10.3.0.bb"):
        (gie / name).write_text("")
    d = FakeData({"BBFILES": "%s/meta-tegra/recipes-*/*/*.bb" % tmp_path})
    assert engines.guess_trt_version(d) == "10.3.0.30"
    assert compat.recipe_available(d, "tensorrt-plugins") == "tensorrt-plugins"
    assert compat.recipe_available(d, "python3-cuda") == ""
    d.values["PREFERRED_VERSION_tensorrt-core"] = "8.5.2-1"
    assert engines.guess_trt_version(d) == "8.5.2"


def test_builder_on_x86_is_refused():
    d = model(TEGRA_AI_ENGINE_BUILDER="local", BUILD_ARCH="x86_64")
    with pytest.raises(ModelConfigError) as e:
        engines.check_builder(d)
    assert "an x86 build host cannot build Jetson engines" in str(e.value)


def test_builder_local_on_a_jetson():
    d = model(TEGRA_AI_ENGINE_BUILDER="local", BUILD_ARCH="aarch64")
    assert engines.check_builder(d) == "sh -c"


def test_builder_needs_target_description():
    d = model(TEGRA_AI_ENGINE_BUILDER="ssh root@orin", TEGRA_CUDA_ARCHITECTURE="87")
    with pytest.raises(ModelConfigError) as e:
        engines.check_builder(d)
    assert "TEGRA_AI_TRT_VERSION" in str(e.value)
    d.values["TEGRA_AI_TRT_VERSION"] = "10.3.0"
    assert engines.check_builder(d) == "ssh root@orin"
    cmd = engines.builder_command(d)
    assert cmd.startswith("ssh root@orin '") and "ensure --manifest" in cmd and "${" not in cmd


def test_no_builder_by_default():
    assert engines.check_builder(model()) == ""
    assert engines.builder_command(model()) == ""


def test_remote_script_round_trip(tmp_path):
    """The builder script really moves a bundle in and the chosen engines out (with a fake
    tensorrt-optimize that writes what ensure writes: engine, sidecar, model marker, and the
    JSON summary naming the engine on stdout); other files of the cache stay there."""
    import subprocess
    tool = tmp_path / "fake-optimize"
    tool.write_text("#!/bin/sh\n# fake: ensure --manifest B --cache E --json\n"
                    "mkdir -p \"$5/m\" \"$5/old\" && touch \"$5/m/.tegra-ai-model\" && echo old > \"$5/old/old-1.engine\" && "
                    "cp \"$3/manifest.json\" \"$5/m/m-abc.engine.json\" && echo engine > \"$5/m/m-abc.engine\" && "
                    "printf '{\"models\": [{\"name\": \"m\", \"engine\": \"%s\"}]}' \"$5/m/m-abc.engine\"\n")
    tool.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    script = engines.remote_ensure_script(str(tool))
    tar_in = subprocess.run(["tar", "-C", str(bundle), "-cf", "-", "."], stdout=subprocess.PIPE, check=True).stdout
    res = subprocess.run(["sh", "-c", script], input=tar_in, stdout=subprocess.PIPE, check=True)
    subprocess.run(["tar", "-C", str(out), "-xf", "-"], input=res.stdout, check=True)
    assert (out / "m" / "m-abc.engine").read_text() == "engine\n"
    assert sorted(os.listdir(out)) == ["m"]
    assert sorted(os.listdir(out / "m")) == [".tegra-ai-model", "m-abc.engine", "m-abc.engine.json"]


def test_absolute_file_checksums(tmp_path):
    f = tmp_path / "abs.onnx"
    f.write_text("x")
    d = FakeData({"TEGRA_AI_MODELS": "a b", "TEGRA_AI_MODEL_a": str(f), "TEGRA_AI_MODEL_b": "rel.onnx"})
    assert engines.absolute_file_checksums(d) == "%s:True" % f


def test_unpackdir():
    assert compat.unpackdir(FakeData({"WORKDIR": "/w"})) == "/w"
    assert compat.unpackdir(FakeData({"WORKDIR": "/w", "UNPACKDIR": "/w/sources"})) == "/w/sources"


def test_project_version(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[build-system]\nversion = "9"\n[project]\nname = "x"\nversion = "1.2.3"\n')
    assert compat.project_version(str(tmp_path)) == "1.2.3"
    assert compat.project_version(str(tmp_path / "missing")) == "0.0.0"


def test_proprietary_license():
    assert compat.proprietary_license(FakeData({"LAYERSERIES_CORENAMES": "scarthgap"})) == "Proprietary"
    assert compat.proprietary_license(FakeData({"LAYERSERIES_CORENAMES": "wrynose blacksail"})) == "LicenseRef-Proprietary"


def test_license_all_uses_each_series_operators():
    # scarthgap's oe.license parses only & | ( ): "AND" would be read as a license name; master
    # warns that "&" is an old syntax (oe.license.check_license_format)
    old, new = FakeData({"LAYERSERIES_CORENAMES": "scarthgap"}), FakeData({"LAYERSERIES_CORENAMES": "wrynose"})
    assert compat.license_all(old, "Apache-2.0", "Proprietary") == "Apache-2.0 & Proprietary"
    assert compat.license_all(new, "Apache-2.0", "LicenseRef-Proprietary") == "Apache-2.0 AND LicenseRef-Proprietary"
