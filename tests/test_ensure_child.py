"""ensure's builds in child processes: a crash or a hang fails that model only; Ctrl-C and
SIGTERM stop the command with 130/143, kill the build child and leave no partial file.

The children (and, for the signal tests, the whole CLI) run with ``tests/stand_ins`` on
PYTHONPATH: its ``sitecustomize`` replaces TensorRT with a builder that writes bytes and
a real sidecar, segfaults or hangs (see that file). Real builds are in test_rtx.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tegra_ai import platform
from tegra_ai.cache.ensure import engine_path_for, ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions
from tegra_ai.trt import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAND_INS = os.path.join(ROOT, "tests", "stand_ins")
ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
RUNTIME = (compat.features_for("10.3.0.30"), lambda options: ORIN)


@pytest.fixture
def two_models(tmp_path, model_factory):
    out = str(tmp_path / "bundle")
    for name in ("alpha", "beta"):
        path = model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op="Relu" if name == "alpha" else "Sigmoid")
        sha, files = model_digest(path)
        add_to_bundle(out, name, files, sha, BuildOptions(precision="fp16"))
    return out


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Children see the stand-in builder; returns a setter for the per-model actions."""
    mark = tmp_path / "marks"
    mark.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(ROOT, "scripts"), STAND_INS]))
    monkeypatch.setenv("TEGRA_AI_TEST_MARK", str(mark))

    def set_actions(spec):
        monkeypatch.setenv("TEGRA_AI_TEST_BUILD", spec)
        return mark
    return set_actions


def run_ensure(bundle, cache, **kw):
    return ensure([bundle], cache, loader=None, runtime=RUNTIME, show_progress=False, log=lambda m: None, **kw)


def leftovers(root):
    return sorted(os.path.join(r, f) for r, _d, fs in os.walk(root) for f in fs if f.endswith(".tmp"))


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for a (container's) init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_child_builds_and_parent_commits(two_models, tmp_path, stand_in):
    stand_in("*=ok")
    cache = str(tmp_path / "cache")
    s = run_ensure(two_models, cache)
    assert (s["built"], s["failed"], s["exit_code"]) == (2, 0, 0), s
    for m in s["models"]:
        assert open(m["engine"], "rb").read() == f"engine of {m['name']}".encode()
        assert engine_path_for(cache, m["name"])["target"] == os.path.realpath(m["engine"])
    assert leftovers(cache) == []
    # built in another process: the child's pid is not ours
    assert int(open(tmp_path / "marks" / "alpha.pid").read()) != os.getpid()


def test_segfault_fails_that_model_only(two_models, tmp_path, stand_in):
    stand_in("alpha=segv,beta=ok")
    cache = str(tmp_path / "cache")
    s = run_ensure(two_models, cache)
    by = {m["name"]: m for m in s["models"]}
    assert by["alpha"]["status"] == "failed" and "crashed (SIGSEGV)" in by["alpha"]["error"]
    assert by["beta"]["status"] == "built" and s["exit_code"] == 1
    index = json.load(open(os.path.join(cache, "index.json")))["models"]
    assert sorted(index) == ["beta"]
    assert leftovers(cache) == [] and not os.path.lexists(os.path.join(cache, "alpha.engine"))


def test_model_timeout_kills_the_build(two_models, tmp_path, stand_in):
    marks = stand_in("alpha=sleep,beta=ok")
    cache = str(tmp_path / "cache")
    t0 = time.monotonic()
    s = run_ensure(two_models, cache, model_timeout=1.5)
    assert time.monotonic() - t0 < 60
    by = {m["name"]: m for m in s["models"]}
    assert by["alpha"]["status"] == "failed" and "--model-timeout 1.5" in by["alpha"]["error"]
    assert by["beta"]["status"] == "built"
    assert gone(int(open(marks / "alpha.pid").read()))
    assert leftovers(cache) == []


def test_child_error_is_reported(two_models, tmp_path, stand_in):
    stand_in("alpha=fail,beta=ok")
    s = run_ensure(two_models, str(tmp_path / "cache"))
    assert s["models"][0]["error"] == "stand-in build failure" and s["models"][1]["status"] == "built"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "soon"])
def test_bad_model_timeout(two_models, tmp_path, bad):
    with pytest.raises(TegraAIError, match="--model-timeout") as exc:
        run_ensure(two_models, str(tmp_path / "cache"), model_timeout=bad)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_build_stops_kills_child_and_leaves_nothing(two_models, tmp_path, sig, code):
    """A real CLI process receives the signal while its build child hangs."""
    marks = tmp_path / "marks"
    marks.mkdir()
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "scripts"), STAND_INS]),
               TEGRA_AI_TEST_BUILD="*=sleep", TEGRA_AI_TEST_MARK=str(marks))
    proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", two_models,
                             "--cache", str(cache), "--json", "--no-load-check", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (marks / "alpha.pid").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the build child never started"
            time.sleep(0.05)
        child = int((marks / "alpha.pid").read_text())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert json.loads(out)["exit_code"] == code            # --json: stdout is JSON even here
    assert gone(child), "the build child survived"
    assert not (marks / "beta.pid").exists(), "ensure carried on after the signal"
    assert leftovers(cache) == []
    assert not [f for _r, _d, fs in os.walk(cache) for f in fs if f.endswith(".engine")]


def test_build_child_dies_with_a_killed_parent(two_models, tmp_path):
    """SIGKILL cannot be handled: the child must not go on building for nobody."""
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "scripts"), STAND_INS]),
               TEGRA_AI_TEST_BUILD="*=sleep", TEGRA_AI_TEST_MARK=str(marks))
    proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", two_models,
                             "--cache", str(tmp_path / "cache"), "--no-load-check", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not (marks / "alpha.pid").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = int((marks / "alpha.pid").read_text())
    proc.kill()
    proc.wait()
    for _ in range(100):
        if gone(child):
            break
        time.sleep(0.05)
    assert gone(child)


# --------------------------------------------------------------------------- build runs its build in a child too

def _build_cli(tmp_path, model, action, *extra):
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "scripts"), STAND_INS]),
               TEGRA_AI_TEST_BUILD=f"*={action}", TEGRA_AI_TEST_MARK=str(marks))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return marks, out, subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.optimize", "build", model,
                                         "-o", str(out / "m.engine"), "--no-progress", *extra],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("action,code,text", [("ok", 0, "sidecar:"), ("segv", 1, "crashed (SIGSEGV)"),
                                              ("sleep", 1, "longer than --timeout 1 s")])
def test_build_cli_child_outcomes(tmp_path, static_model, action, code, text):
    _marks, out, proc = _build_cli(tmp_path, static_model, action, "--timeout", "1")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert text in (stdout if code == 0 else stderr) and "Traceback" not in stderr
    files = sorted(os.listdir(out))
    assert files == (["m.engine", "m.engine.json"] if code == 0 else [])


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_build_cli_signal_stops_at_once(tmp_path, static_model, sig, code):
    marks, out, proc = _build_cli(tmp_path, static_model, "sleep", "--json")
    try:
        deadline = time.monotonic() + 60
        pid_files = []
        while not pid_files:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            pid_files = [p for p in os.listdir(marks) if p.endswith(".pid")]
        child = int((marks / pid_files[0]).read_text())
        t0 = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code and time.monotonic() - t0 < 30, stderr
    assert json.loads(stdout)["exit_code"] == code and gone(child)
    assert os.listdir(out) == []
