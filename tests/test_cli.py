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
    e = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"), **(env or {}))
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


@pytest.mark.parametrize("spec,match", [("input:1x3", "rank"), ("input:2x3x8x8:1x3x8x8:4x3x8x8", "min <= opt <= max"),
                                        ("input:1x3x8x8:2x3", "two shapes"), ("input:axb", "missing dimensions"), ("input:1x3x:2x3x8x8", "malformed")])
def test_build_bad_shapes(tmp_path, dynamic_model, spec, match):
    proc = cli("build", dynamic_model, "--shapes", spec, "-o", str(tmp_path / "x.engine"),
               env={"TEGRA_AI_TENSORRT": "tensorrt_rtx"})
    if "tensorrt_rtx" not in sys.modules and match == "rank":
        pytest.importorskip("tensorrt_rtx")  # rank needs the parsed network
    assert match in one_line_error(proc)


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
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr


def test_check_json_and_exit_codes(default_model, corrupt_model):
    ok = cli("check", default_model, "--target", "jetpack5", "--json", "--no-parser")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    bad = cli("check", corrupt_model, "--no-parser")
    assert bad.returncode == 1 and "FAIL" in bad.stdout
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


@pytest.mark.parametrize("tool", ["calibration-dataset"])
def test_unfinished_tools_say_so(tool):
    proc = cli(tool=tool)
    assert proc.returncode == 2 and "not implemented yet" in proc.stderr and proc.stdout == ""


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
