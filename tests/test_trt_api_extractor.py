"""tools/trt-api-surface on a small synthetic TensorRT branch: the pybind11 and header
constructs it must read (so a regenerated surface means what the README says)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "trt-api-surface")

CORE_CPP = r'''
#include "ForwardDeclarations.h"
namespace tensorrt {
namespace lambdas {
static const auto set_shape = [](IOptimizationProfile& self, std::string const& input, Dims const& mn) { /* a, b */ };
static auto const create_cache = [](IBuilderConfig& self, py::buffer& data) { return nullptr; };
} // namespace lambdas

void bindCore(py::module& m)
{
    py::class_<ILogger, PyLogger> baseLogger{m, "ILogger", ILoggerDoc::descr};
    py::enum_<ILogger::Severity>(baseLogger, "Severity", py::arithmetic())
        .value("ERROR", ILogger::Severity::kERROR)
        .value("WARNING", ILogger::Severity::kWARNING)
        .export_values();
    baseLogger.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);

    py::class_<DefaultLogger, ILogger>(m, "Logger")
        .def(py::init<ILogger::Severity>(), "min_severity"_a = ILogger::Severity::kWARNING);

    py::class_<IOptimizationProfile, std::unique_ptr<IOptimizationProfile, py::nodelete>>(m, "IOptimizationProfile")
        .def("set_shape", lambdas::set_shape, "input"_a, "min"_a)
        .def("__bool__", &IOptimizationProfile::isValid);

    py::class_<IBuilderConfig>(m, "IBuilderConfig")
        .def("create_timing_cache", lambdas::create_cache, "serialized_timing_cache"_a)
        .def("set_flag", &IBuilderConfig::setFlag, "flag"_a)
        .def("get_flag", &IBuilderConfig::getFlag)
        .def("reset", [](IBuilderConfig& self) { self.reset(); })
        .def("set_calibration_profile", utils::deprecateMember(&IBuilderConfig::setCalibrationProfile, "x"), "profile"_a)
        .def("set_timing_cache", utils::deprecateMemberInTrtRtxOnly(&IBuilderConfig::setTimingCache, "y"), "cache"_a,
            "ignore_mismatch"_a)
        .def_property("DLA_core", &IBuilderConfig::getDLACore, &IBuilderConfig::setDLACore)
        .def_property("device_memory", nullptr, &lambdas::create_cache)
        .def_property_readonly("num_optimization_profiles", &IBuilderConfig::getNbOptimizationProfiles)
        .def("get_engine_stat", &IBuilderConfig::getStat, py::arg("stat") = EngineStat::kTOTAL);

    py::enum_<BuilderFlag>(m, "BuilderFlag", py::arithmetic{})
        .value("FP16", BuilderFlag::kFP16)
        .value("INT8", BuilderFlag::kINT8)
        .value("TF32", BuilderFlag::kTF32);

#if EXPORT_ALL_BINDINGS
    py::class_<IBuilder>(m, "Builder")
        .def(py::init(&nvinfer1::createInferBuilder), "logger"_a)
        .def("create_network", &IBuilder::createNetworkV2, "flags"_a = 0U);
#endif
#if ENABLE_INETWORK_SERIALIZE
    py::class_<INetworkSerializer>(m, "NetworkSerializer");
#endif

    m.def("get_plugin_registry", &getPluginRegistry, py::return_value_policy::reference);
    m.def("init_libnvinfer_plugins", &initLibNvInferPlugins, "logger"_a, "namespace"_a);
}
} // namespace tensorrt
'''

NVINFER_H = r'''
namespace nvinfer1 {
enum class BuilderFlag : int32_t
{
    kFP16 = 0, //!< comment, with a comma
    kINT8,
    kDEBUG TRT_DEPRECATED_ENUM = 4,
    kTF32 = 1 << 3,
};
class ILogger
{
public:
    enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2 };
    virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0;
};
class IBuilderConfig
{
public:
    bool getFlag(BuilderFlag builderFlag) const noexcept { return mImpl->getFlag(builderFlag); }
};
extern "C" TENSORRTAPI nvinfer1::IPluginRegistry* getPluginRegistry() noexcept;
}
//! \brief Return the library version number.
//!
//! The format is as for TENSORRT_VERSION: (MAJOR * 100 + MINOR) * 100 + PATCH
//!
extern "C" TENSORRTAPI int32_t getInferLibVersion() noexcept;
'''

VERSION_H = "#define NV_TENSORRT_MAJOR 9 //!< major\n#define NV_TENSORRT_MINOR 9\n#define NV_TENSORRT_PATCH 1\n"
INIT_PY = "from .tensorrt import *\n\ndef volume(iterable):\n    pass\n\ndef _private():\n    pass\n"


def load_tool():
    loader = importlib.machinery.SourceFileLoader("trt_api_surface", TOOL)
    spec = importlib.util.spec_from_loader("trt_api_surface", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path / "src"
    files = {"python/src/infer/pyCore.cpp": CORE_CPP, "include/NvInfer.h": NVINFER_H,
             "include/NvInferVersion.h": VERSION_H, "python/packaging/bindings_wheel/tensorrt/__init__.py": INIT_PY}
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["init", "-q", "-b", "release/9.9"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(work), *cmd], check=True, env=env, capture_output=True)
    return str(work / ".git")


def test_extracts_the_constructs(repo, tmp_path):
    tool = load_tool()
    out = tmp_path / "out"
    assert tool.main(["--git-dir", repo, "--release", "9.9=release/9.9", "--out", str(out)]) == 0
    s = json.load(open(out / "surface-9.9.json"))
    assert s["tensorrt_version"] == "9.9.1" and s["branch"] == "release/9.9" and len(s["commit"]) == 40
    c = s["classes"]
    assert c["Logger"]["bases"] == ["ILogger"]
    assert c["Logger"]["methods"]["__init__"] == [{"args": ["min_severity"],
                                                    "defaults": {"min_severity": "ILogger::Severity::kWARNING"}}]
    assert c["ILogger"]["methods"] == {"__init__": [{"nargs": 0}], "log": [{"args": ["severity", "msg"]}]}
    cfg = c["IBuilderConfig"]
    assert cfg["methods"]["get_flag"] == [{"nargs": 1}]          # arity from the header declaration
    assert cfg["methods"]["reset"] == [{"nargs": 0}]             # inline lambda minus self
    assert cfg["methods"]["set_calibration_profile"] == [{"args": ["profile"], "deprecated": True}]
    assert cfg["methods"]["set_timing_cache"] == [{"args": ["cache", "ignore_mismatch"]}]  # RTX-only deprecation
    assert cfg["methods"]["get_engine_stat"] == [{"args": ["stat"], "defaults": {"stat": "EngineStat::kTOTAL"}}]
    assert cfg["properties"] == {"DLA_core": {"readable": True, "writable": True},
                                 "device_memory": {"readable": False, "writable": True},
                                 "num_optimization_profiles": {"readable": True, "writable": False}}
    assert c["IOptimizationProfile"]["methods"]["set_shape"] == [{"args": ["input", "min"]}]
    assert c["Builder"]["methods"]["create_network"] == [{"args": ["flags"], "defaults": {"flags": "0U"}}]
    assert "NetworkSerializer" not in c                           # ENABLE_INETWORK_SERIALIZE is off
    assert s["enums"]["BuilderFlag"]["members"] == {"FP16": 0, "INT8": 1, "TF32": 8}
    assert s["enums"]["ILogger.Severity"] == {"arithmetic": True, "export_values": True,
                                              "members": {"ERROR": 1, "WARNING": 2}}
    assert s["functions"] == {"get_plugin_registry": [{"nargs": 0}],
                              "init_libnvinfer_plugins": [{"args": ["logger", "namespace"]}]}
    assert s["python_functions"] == ["volume"]
    assert s["infer_lib_version_format"] == "(MAJOR * 100 + MINOR) * 100 + PATCH"
    assert s["parser_header"].startswith("none")
    # stable: the same commit gives the same bytes
    first = (out / "surface-9.9.json").read_bytes()
    assert tool.main(["--git-dir", repo, "--release", "9.9=release/9.9", "--out", str(out)]) == 0
    assert (out / "surface-9.9.json").read_bytes() == first


def test_committed_surfaces_are_in_the_tool_format():
    tool = load_tool()
    for name in os.listdir(os.path.join(ROOT, "tests", "trt_api")):
        if name.endswith(".json"):
            path = os.path.join(ROOT, "tests", "trt_api", name)
            text = open(path).read()
            assert text == tool.dump_stable(json.loads(text)) + "\n", name


# --------------------------------------------------------------------------- bad input

def _cases(repo, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "surface-9.9.json").write_text('{"not": "ours"}')
    rel = ["--release", "9.9=release/9.9"]
    return [
        ([], 2, "the following arguments are required"),
        (["--git-dir", repo], 2, "--out"),
        (["--git-dir", str(tmp_path / "missing"), *rel, "--out", "o"], 2, "is not a directory"),
        (["--git-dir", str(notes), *rel, "--out", "o"], 2, "is not a directory"),
        (["--git-dir", str(tmp_path), *rel, "--out", "o"], 2, "is not a git directory"),
        (["--git-dir", repo, "--parser-git-dir", str(tmp_path), *rel, "--out", "o"], 2, "--parser-git-dir"),
        (["--git-dir", repo, "--release", "9.9", "--out", "o"], 2, "expected NAME=BRANCH"),
        (["--git-dir", repo, "--release", "latest=release/9.9", "--out", "o"], 2, "expected NAME=BRANCH"),
        (["--git-dir", repo, "--release", "9.8=release/9.8", "--out", "o"], 2, "release 9.8 (release/9.8)"),
        (["--git-dir", repo, *rel, "--release", "9.7=release/9.7", "--out", "o"], 2, "release 9.7"),
        (["--git-dir", repo, *rel, "--out", str(notes)], 2, "not a directory"),
        (["--git-dir", repo, *rel, "--out", str(foreign)], 2, "not an API surface this tool wrote"),
        (["--git-dir", repo, *rel, "--out", "o", "--bogus"], 2, "unrecognized arguments"),
    ]


def test_bad_inputs(repo, tmp_path):
    from badinput import assert_bad_input

    tool = load_tool()
    cases = _cases(repo, tmp_path)
    assert len(cases) >= 10
    for argv, code, line in cases:
        assert_bad_input(tool.main, argv, str(tmp_path), code, line)
    assert not (tmp_path / "o").exists()  # a bad release later in the list wrote nothing


def test_json_output(repo, tmp_path, capsys):
    tool = load_tool()
    assert tool.main(["--git-dir", repo, "--release", "9.9=release/9.9", "--out", str(tmp_path / "o"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["surfaces"][0]["release"] == "9.9" and data["surfaces"][0]["tensorrt_version"] == "9.9.1"
