"""The CLI: every error is one line on stderr, a non-zero exit and no partial file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None, env=None, tool="tensorrt-optimize"):
    module = {"tensorrt-optimize": "tegra_ai.cli.optimize", "model-benchmark": "tegra_ai.cli.benchmark",
              "calibration-dataset": "tegra_ai.cli.calibration"}[tool]
    # the caller's PYTHONPATH stays after ours (e.g. a directory hiding tensorrt_rtx)
    path = os.pathsep.join(p for p in (os.path.join(ROOT, "scripts"), os.environ.get("PYTHONPATH")) if p)
    e = dict(os.environ, PYTHONPATH=path, **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, env=e,
                          timeout=300)


def one_line_error(proc, rc=None):
    assert proc.returncode != 0 if rc is None else proc.returncode == rc, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def corrupt_model(tmp_path, static_model):
    data = open(static_model, "rb").read()
    p = tmp_path / "corrupt.onnx"
    p.write_bytes(data[: len(data) // 3])
    return str(p)


@pytest.mark.parametrize("make", ["corrupt", "missing-data"])
def test_build_bad_models(tmp_path, corrupt_model, model_factory, make):
    if make == "corrupt":
        path = corrupt_model
    else:
        path = model_factory("ext.onnx", external=True)
        os.unlink(path + ".data")
    out = tmp_path / "out.engine"
    line = one_line_error(cli("build", path, "-o", str(out), env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"}))
    assert ("not a valid ONNX" in line) if make == "corrupt" else ("missing external data" in line)
    assert not out.exists()


@pytest.mark.parametrize("spec,match", [("input:2x3x8x8:1x3x8x8:4x3x8x8", "min <= opt <= max"),
                                        ("input:1x3x8x8:2x3", "two shapes"), ("input:axb", "missing dimensions"), ("input:1x3x:2x3x8x8", "malformed")])
def test_build_bad_shapes(tmp_path, dynamic_model, spec, match):
    """The grammar is checked before TensorRT loads (no TensorRT needed)."""
    proc = cli("build", dynamic_model, "--shapes", spec, "-o", str(tmp_path / "x.engine"),
               env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    assert match in one_line_error(proc, rc=2)


@pytest.mark.rtx
def test_build_shapes_rank_against_the_parsed_network(tmp_path, dynamic_model):
    proc = cli("build", dynamic_model, "--shapes", "input:1x3", "-o", str(tmp_path / "x.engine"),
               env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    assert "rank" in one_line_error(proc, rc=2)


def test_unwritable_output(tmp_path, static_model):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(cli("build", static_model, "-o", str(blocker / "x.engine")))
    assert "does not exist" in line


def test_no_tensorrt_says_so(tmp_path, static_model):
    line = one_line_error(cli("build", static_model, env={"TEGRA_AI_TENSORRT": "tensorrt"}), rc=69)
    assert "TensorRT is not available" in line


def test_verbose_shows_traceback(tmp_path, corrupt_model):
    quiet = cli("build", corrupt_model, "-o", str(tmp_path / "x.engine"), env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    loud = cli("--verbose", "build", corrupt_model, "-o", str(tmp_path / "x.engine"),
               env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    assert quiet.returncode == loud.returncode == 2          # not an ONNX model: bad input
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr


def test_check_json_and_exit_codes(default_model, corrupt_model):
    ok = cli("check", default_model, "--target", "jetpack5", "--json", "--no-parser")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    bad = cli("check", corrupt_model, "--no-parser")            # not a model at all: bad input
    assert "not a valid ONNX model" in one_line_error(bad, rc=2)
    unknown = cli("check", default_model, "--target", "jetpack9")
    assert "unknown target" in one_line_error(unknown, rc=2)


def test_bundle_then_ensure_without_tensorrt(tmp_path, default_model):
    out = tmp_path / "bundle"
    proc = cli("bundle", default_model, "--out", str(out), "--name", "digits", "--shapes", "input:1x1x8x8:8x1x8x8:64x1x8x8",
               "--target", "jetpack6", "--preprocess", os.path.join(os.path.dirname(default_model), "digits.preprocess.json"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["models"][0]["preprocess"]["input_format"] == "gray8"
    assert manifest["models"][0]["files"] == ["digits/digits.onnx"]
    ens = cli("ensure", "--manifest", str(out), "--cache", str(tmp_path / "cache"), "--json",
              env={"TEGRA_AI_TENSORRT": "tensorrt"})
    assert ens.returncode == 69 and json.loads(ens.stdout)["exit_code"] == 69
    # the first-boot unit's log still lists what is pending
    assert [(m["name"], m["status"]) for m in json.loads(ens.stdout)["models"]] == [("digits", "pending")]


def test_bundle_refuses_failing_preflight(tmp_path, model_factory):
    path = model_factory("new.onnx", opset=19, input_dims=(1, 3, 8, 8))
    proc = cli("bundle", path, "--out", str(tmp_path / "b"), "--target", "jetpack5")
    assert proc.returncode == 1 and "fails the preflight" in proc.stderr
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_verify_cache_cli(tmp_path):
    (tmp_path / "cache").mkdir()
    proc = cli("verify-cache", str(tmp_path / "cache"), "--trt-version", "10.3")
    assert proc.returncode == 0 and "0 engine(s)" in proc.stdout
    assert "does not exist" in one_line_error(cli("verify-cache", str(tmp_path / "none")), rc=2)


def test_inspect_missing_engine(tmp_path):
    assert "does not exist" in one_line_error(cli("inspect", str(tmp_path / "none.engine")), rc=2)


@pytest.mark.rtx
def test_inspect_rtx_engine_shows_sidecar(tmp_path, default_model):
    env = {"TEGRA_AI_TENSORRT": "tensorrt_rtx"}
    out = tmp_path / "d.engine"
    assert cli("build", default_model, "--shapes", "input:1x1x8x8:8x1x8x8:64x1x8x8", "-o", str(out), "--no-progress",
               env=env).returncode == 0
    proc = cli("inspect", str(out), env=env)
    assert proc.returncode == 0 and "tensorrt-rtx" in proc.stdout and "sidecar only" in proc.stdout


def test_calibration_dataset_needs_sources_and_output():
    proc = cli(tool="calibration-dataset")
    assert proc.returncode == 2 and "required: SOURCE, -o/--output" in proc.stderr and proc.stdout == ""


def test_example_host_half(tmp_path):
    proc = cli("example", "--out", str(tmp_path / "ex"), "--json", "--no-progress", env={"TEGRA_AI_TENSORRT": "tensorrt"})
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["half"].startswith("host only")
    assert r["steps"]["preflight"]["ok"] is True
    assert r["steps"]["reference_accuracy"]["top1"] > 0.95
    assert os.path.exists(r["steps"]["bundle"]["manifest"])


@pytest.mark.rtx
def test_example_with_rtx(tmp_path):
    proc = cli("example", "--out", str(tmp_path / "ex"), "--no-progress", env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT-RTX ahead-of-time engine" in proc.stdout and "built" in proc.stdout


def test_bundle_without_onnx_package(tmp_path, model_factory):
    """The native tool in a Yocto build has no onnx: bundle --no-check must still hash
    the model and its external data."""
    blocker = tmp_path / "block"
    (blocker / "onnx").mkdir(parents=True)
    (blocker / "onnx" / "__init__.py").write_text("raise ImportError('onnx blocked for this test')\n")
    path = model_factory("ext.onnx", external=True, input_dims=(1, 3, 8, 8))
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{os.path.join(ROOT, 'scripts')}"}
    e = dict(os.environ, **env)
    proc = subprocess.run([sys.executable, "-m", "tegra_ai.cli.optimize", "bundle", path, "--out", str(tmp_path / "b"),
                           "--no-check", "--target", "trt-10.3", "--json"], capture_output=True, text=True, env=e)
    assert proc.returncode == 0, proc.stderr
    m = json.load(open(tmp_path / "b" / "manifest.json"))["models"][0]
    assert m["files"] == ["ext/ext.onnx", "ext/ext.onnx.data"]
    # without --no-check the preflight needs onnx and says so in one line
    proc = subprocess.run([sys.executable, "-m", "tegra_ai.cli.optimize", "bundle", path, "--out", str(tmp_path / "c"),
                           "--target", "trt-10.3"], capture_output=True, text=True, env=e)
    assert proc.returncode == 69 and "'onnx'" in proc.stderr and "Traceback" not in proc.stderr


def test_bundle_records_plugin_and_validates_for_the_target(tmp_path, dynamic_model):
    out = tmp_path / "b"
    proc = cli("bundle", dynamic_model, "--out", str(out), "--target", "jetpack6", "--json",
               "--shapes", "input:1x3x64x64:1x3x320x320:4x3x640x640",
               "--plugin", "/usr/lib/tegra-ai/libtegra_ai_plugin.so", "--plugin", "libnvinfer_plugin.so.10")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "dynamic"
    m = json.load(open(out / "manifest.json"))["models"][0]["request"]     # manifest version 2
    assert m["plugins"] == ["/usr/lib/tegra-ai/libtegra_ai_plugin.so", "libnvinfer_plugin.so.10"]
    assert m["options"]["plugins"] == ["libnvinfer_plugin.so.10", "libtegra_ai_plugin.so"]
    # the same model without shapes: refused on the host, with a profile to copy
    proc = cli("bundle", dynamic_model, "--out", str(tmp_path / "c"), "--target", "jetpack6")
    line = one_line_error(proc, rc=2)
    assert "need --shapes" in line and "--shapes input:" in line and not (tmp_path / "c").exists()


def test_path_prints_the_stable_link(tmp_path):
    cache = tmp_path / "cache"
    (cache / "net").mkdir(parents=True)
    (cache / "net" / ".tegra-ai-model").write_text("")
    from tegra_ai.spec import BuildOptions, Sidecar, key_material, short_key
    from tegra_ai.cache.store import EngineCache

    material = key_material("a" * 64, BuildOptions(), {"flavor": "tensorrt", "version": "10.3.0"},
                            {"compute_capability": "8.7", "device_name": "Orin"})
    sc = Sidecar.new(material)
    store = EngineCache(str(cache))
    engine, _ = store.store("net", sc.cache_key, b"engine-bytes", sc)
    store.update_link("net", engine)
    proc = cli("path", "net", "--cache", str(cache))
    assert proc.returncode == 0 and proc.stdout.strip() == str(cache / "net.engine")
    proc = cli("path", "net", "--cache", str(cache), "--resolve")
    assert proc.stdout.strip() == engine and short_key(sc.cache_key) in engine
    info = json.loads(cli("path", "net", "--cache", str(cache), "--json", "-v").stdout)
    assert info["key"] == sc.cache_key and info["sidecar"] == str(cache / "net.engine.json")
