"""Bad-input catalogue of hostile files (issue #19 part 6): JSON nested 100000 deep and
FIFOs wherever a command takes a JSON file, names with control characters, an external
data file linked out of the model folder, and outputs on a read-only or full
filesystem (EROFS, ENOSPC, EACCES).

Each case: the documented exit code (2 bad input, 73 an output cannot be written), one
error line naming the file and the reason, no traceback, clean JSON stdout and no file
changed (tests/badinput.py). The write-error cases use the real thing: a tmpfs of 64 KiB
filled by the test and a read-only bind mount (root, as in CI; skipped with the reason
where mount is not permitted), a 0555 directory written by an unprivileged user
(setpriv), and, without any of those, an ENOSPC injected into the atomic writer."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from badinput import assert_bad_input, tree_state
from onnx_models import make_model
from tegra_ai.cli.optimize import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEP = b"[" * 100000 + b"]" * 100000


@pytest.fixture(autouse=True)
def no_hang():
    """A reader blocking on a FIFO fails its case instead of holding the suite."""
    import signal

    def _alarm(*_):
        raise AssertionError("blocked (reading a FIFO?)")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    make_model(str(d / "static.onnx"), input_dims=(1, 3, 16, 16))
    (d / "deep.json").write_bytes(DEEP)
    os.mkfifo(d / "fifo.json")
    for kind in ("deep", "fifo"):
        (d / "manifests" / kind).mkdir(parents=True)
        (d / f"{kind}.engine").write_bytes(b"\x00engine bytes")
    (d / "manifests" / "deep" / "manifest.json").write_bytes(DEEP)
    os.mkfifo(d / "manifests" / "fifo" / "manifest.json")
    (d / "deep.engine.json").write_bytes(DEEP)
    os.mkfifo(d / "fifo.engine.json")
    (d / "emptycache").mkdir()
    # a calibration-dataset .npz whose _manifest is nested 100000 deep
    np.savez(d / "deepmanifest.npz", input=np.zeros((2, 1, 8, 8), np.float32),
             _manifest=np.frombuffer(DEEP, dtype=np.uint8))
    (d / "spec.json").write_text(json.dumps({"height": 8, "width": 8, "input_format": "gray8"}))
    # a model whose external data file is a link to a file out of its folder
    (d / "ext").mkdir()
    make_model(str(d / "ext" / "ext.onnx"), input_dims=(1, 3, 8, 8), external=True)
    (d / "secret").mkdir()
    os.replace(d / "ext" / "ext.onnx.data", d / "secret" / "weights")
    os.symlink(d / "secret" / "weights", d / "ext" / "ext.onnx.data")
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions

    sha, files = model_digest(str(d / "static.onnx"))
    add_to_bundle(str(d / "goodbundle"), "static", files, sha, BuildOptions(precision="fp16"))
    return str(d)


S = "static.onnx"
DEEP_WHY, FIFO_WHY = "nested too deep", "not a regular file"

CASES = [
    # ---- manifests (ensure, verify-cache, export)
    ("ensure-manifest-deep", ["ensure", "--manifest", "manifests/deep", "--cache", "c", "--json"], 2, DEEP_WHY),
    ("ensure-manifest-fifo", ["ensure", "--manifest", "manifests/fifo/manifest.json", "--cache", "c"], 2, FIFO_WHY),
    ("verify-manifest-deep", ["verify-cache", "emptycache", "--manifest", "manifests/deep"], 2, DEEP_WHY),
    ("verify-manifest-fifo", ["verify-cache", "emptycache", "--manifest", "manifests/fifo/manifest.json"], 2, FIFO_WHY),
    ("export-manifest-deep", ["export", "--manifest", "manifests/deep", "--cache", "emptycache", "--triton", "r"],
     2, DEEP_WHY),
    ("export-manifest-fifo", ["export", "--manifest", "manifests/fifo/manifest.json", "--cache", "emptycache", "--triton", "r"],
     2, FIFO_WHY),
    # ---- preprocessing and detection specs
    ("bundle-preprocess-deep", ["bundle", S, "--out", "b", "--preprocess", "deep.json"], 2, DEEP_WHY),
    ("bundle-preprocess-fifo", ["bundle", S, "--out", "b", "--preprocess", "fifo.json"], 2, FIFO_WHY),
    ("export-detection-deep", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream", "d",
                               "--detection", "static=deep.json"], 2, "deep.json: not valid JSON for this tool"),
    ("export-detection-fifo", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream", "d",
                               "--detection", "static=fifo.json"], 2, "fifo.json: not a regular file"),
    # ---- sidecars
    ("inspect-sidecar-deep", ["inspect", "deep.engine", "--json"], 2, DEEP_WHY),
    ("inspect-sidecar-fifo", ["inspect", "fifo.engine"], 2, FIFO_WHY),
    # ---- names with a trailing newline or control characters
    ("bundle-name-newline", ["bundle", S, "--out", "b", "--name", "resnet\n"], 2, "model name"),
    ("bundle-name-escape", ["bundle", S, "--out", "b", "--name", "res\x1bnet"], 2, "model name"),
    ("path-name-newline", ["path", "net\n", "--cache", "emptycache", "--json"], 2, "model name"),
    ("path-name-nul", ["path", "n\x00et", "--cache", "emptycache"], 2, "model name"),
    # ---- bundle never ships what a link out of the model folder points at
    ("bundle-external-data-link-out", ["bundle", "ext/ext.onnx", "--out", "b"], 2,
     "symbolic link out of the model's directory"),
]


@pytest.mark.parametrize("argv, code, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_optimize(scratch, argv, code, line):
    assert_bad_input(main, argv, scratch, code, line)


def test_calibration_dataset_inputs(scratch):
    pytest.importorskip("cv2")
    from tegra_ai.cli.calibration import main as dataset_main

    for argv, why in ((["deepmanifest.npz", "-o", "o.npz", "--spec", "spec.json"], DEEP_WHY),
                      (["deepmanifest.npz", "-o", "o.npz", "--spec", "deep.json", "--json"], DEEP_WHY),
                      (["deepmanifest.npz", "-o", "o.npz", "--spec", "fifo.json"], FIFO_WHY)):
        assert_bad_input(dataset_main, argv, scratch, 2, why)


def test_benchmark_and_ensemble_inputs(scratch):
    from tegra_ai.cli.benchmark import main as bench_main
    from tegra_ai.cli.ensemble import main as ensemble_main

    fast = ["--shapes", "input:1x3x16x16", "--iterations", "2", "--warmup", "0"]
    for argv, why in (([S, "--compare", "deep.json", "--json", *fast], DEEP_WHY),
                      ([S, "--compare", "fifo.json", *fast], FIFO_WHY),
                      (["diff", "deep.json", "fifo.json"], DEEP_WHY),
                      (["diff", "fifo.json", "deep.json", "--json"], FIFO_WHY)):
        assert_bad_input(bench_main, argv, scratch, 2, why)
    for argv, why in ((["deep.json", "--check"], DEEP_WHY), (["fifo.json", "--check", "--json"], FIFO_WHY)):
        assert_bad_input(ensemble_main, argv, scratch, 2, why)


# --------------------------------------------------------------------------- read-only and full filesystems

@pytest.fixture
def mounts(tmp_path):
    """tmp_path/full: a 64 KiB tmpfs the test fills; tmp_path/ro: a read-only bind mount."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root and mount(8) for a real tmpfs and read-only bind mount (CI runs as root)")
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    ro.mkdir()
    done = []
    try:
        for cmd in (["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(full)],
                    ["mount", "-o", "bind,ro", str(ro), str(ro)]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"{' '.join(cmd[:3])} is not permitted here: {proc.stderr.strip()}")
            done.append(cmd[-1])
        yield tmp_path
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", target], check=False)


def fill(directory) -> None:
    """Fill the filesystem of ``directory`` (the test's file, not the tool's)."""
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def only_expected_files(root, allowed=("filler",)):
    """No file of the tool's is left on the full or read-only filesystem (folders and
    zero-byte locks may stay): nothing half-written, no temp file, no lone engine."""
    left = [os.path.relpath(os.path.join(r, f), root) for r, _d, fs in os.walk(root) for f in fs
            if f not in allowed and not (f.endswith(".lock") and os.path.getsize(os.path.join(r, f)) == 0)]
    assert left == [], left


@pytest.fixture
def ws(mounts):
    """A workspace on a normal filesystem with the two mounts in it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    from tegra_ai import models

    shutil.copy(models.DEFAULT_MODEL, mounts / "model.onnx")
    shutil.copy(models.DEFAULT_PREPROCESS, mounts / "spec.json")
    x, _y = models.load_samples("val")
    np.savez(mounts / "data.npz", input=(x[:64].astype(np.float32) / 255)[:, None])
    fill(mounts / "full")
    return mounts


@pytest.mark.parametrize("where, words", [("full", "no space left on device (ENOSPC)"),
                                          ("ro", "read-only file system (EROFS)")])
def test_calibration_dataset_and_quantize_outputs(ws, where, words):
    from tegra_ai.cli.calibration import main as dataset_main

    res = assert_bad_input(dataset_main, ["data.npz", "-o", f"{where}/o.npz", "--spec", "spec.json", "--json"],
                           str(ws), 73, words)
    assert json.loads(res.stdout)["exit_code"] == 73
    assert_bad_input(main, ["quantize", "model.onnx", "--calibration", "data.npz", "-o", f"{where}/q.onnx"],
                     str(ws), 73, words)
    assert_bad_input(main, ["convert-fp16", "model.onnx", "-o", f"{where}/f.onnx"], str(ws), 73, words)
    from tegra_ai.cli.benchmark import main as bench_main

    assert_bad_input(bench_main, ["suite", "--models", "model.onnx", "--backend", "onnxruntime", "--out",
                                  f"{where}/bench"], str(ws), 73, words)
    only_expected_files(ws / where)


@pytest.mark.parametrize("where, words", [("full", "no space left on device (ENOSPC)"),
                                          ("ro", "read-only file system (EROFS)")])
def test_publish_into_a_full_or_read_only_mirror(mounts, model_factory, where, words):
    pytest.importorskip("cryptography", reason="publish signs with cryptography")
    from test_cache_ensure import FakeBuilder
    from tegra_ai.cache import signing
    from tegra_ai.cache.ensure import ensure
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions

    sha, files = model_digest(model_factory("net.onnx", input_dims=(1, 3, 8, 8)))
    add_to_bundle(str(mounts / "bundle"), "net", files, sha, BuildOptions(precision="fp16"))
    b = FakeBuilder()
    ensure([str(mounts / "bundle")], str(mounts / "cache"), builder=b, loader=None, runtime=b.rt,
           show_progress=False, log=lambda m: None)
    signing.generate_keypair(str(mounts / "keys"))
    fill(mounts / "full")
    for to in (f"{where}/m",) + ((where,) if where == "ro" else ()):   # a new mirror folder; the (empty) mount
        assert_bad_input(main, ["publish", "--cache", "cache", "--to", to, "--key", "keys/mirror.key", "--json"],
                         str(mounts), 73, words, watch=str(mounts / "cache"))
        only_expected_files(mounts / where)


def _stand_in_env(marks):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "scripts"),
                                                         os.path.join(ROOT, "tests", "stand_ins")]),
                TEGRA_AI_TEST_MARK=str(marks), TEGRA_AI_TEST_TIMING_BYTES="1024")   # a 64 KiB tmpfs


def _ensure_cli(bundle, cache, env, build="*=ok"):
    proc = subprocess.run([sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", bundle,
                           "--cache", cache, "--json", "--no-load-check", "--no-progress"],
                          capture_output=True, text=True, env=dict(env, TEGRA_AI_TEST_BUILD=build), timeout=300)
    return proc, json.loads(proc.stdout)


@pytest.fixture
def two_models(tmp_path, model_factory):
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions

    out = str(tmp_path / "bundle")
    for name, op in (("alpha", "Relu"), ("beta", "Sigmoid")):
        sha, files = model_digest(model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op=op))
        add_to_bundle(out, name, files, sha, BuildOptions(precision="fp16"))
    return out


def test_ensure_on_a_disk_that_fills_up(mounts, two_models):
    """The whole CLI (its TensorRT replaced by tests/stand_ins): alpha is in the cache, the
    disk fills, beta's build cannot be written: beta fails with ENOSPC named, alpha is
    still a hit (the other models go on), exit 73, one error line, nothing half-written."""
    marks = mounts / "marks"
    marks.mkdir()
    env = _stand_in_env(marks)
    cache = str(mounts / "full" / "cache")
    proc, first = _ensure_cli(two_models, cache, env, build="beta=fail")
    assert [m["status"] for m in first["models"]] == ["built", "failed"], proc.stderr
    fill(mounts / "full")
    proc, s = _ensure_cli(two_models, cache, env)
    assert proc.returncode == 73 and s["exit_code"] == 73, proc.stderr
    status = {m["name"]: m for m in s["models"]}
    assert status["alpha"]["status"] == "hit"
    assert status["beta"]["status"] == "failed" and "cannot write" in status["beta"]["error"]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln]
    assert len(errors) == 1 and "no space left on device (ENOSPC)" in errors[0] and cache in errors[0], proc.stderr
    left = [f for r, _d, fs in os.walk(cache) for f in fs if f.endswith(".tmp")]
    assert left == []
    engines = sorted(f for r, _d, fs in os.walk(cache) for f in fs
                     if f.endswith(".engine") and not os.path.islink(os.path.join(r, f)))
    assert len(engines) == 1 and engines[0].startswith("alpha-")      # no lone beta engine


@pytest.mark.parametrize("existing", [True, False], ids=["existing-cache", "new-cache"])
def test_ensure_on_a_read_only_cache(mounts, two_models, existing):
    """A read-only cache serves the engines it holds (alpha: a hit, verified, no lock;
    tests/test_cache_read_only.py); a model it does not hold (beta), or a cache that does
    not exist: one line naming EROFS and the path, exit 73; nothing written."""
    env = _stand_in_env(mounts)
    cache = mounts / "ro" / "cache"
    if existing:
        subprocess.run(["umount", str(mounts / "ro")], check=True)
        _ensure_cli(two_models, str(cache), env, build="beta=fail")
        subprocess.run(["mount", "-o", "bind,ro", str(mounts / "ro"), str(mounts / "ro")], check=True)
    before = tree_state(str(mounts / "ro"))
    proc, s = _ensure_cli(two_models, str(cache), env)
    assert proc.returncode == 73 and s["exit_code"] == 73, proc.stderr
    if existing:
        assert {m["name"]: m["status"] for m in s["models"]} == {"alpha": "hit", "beta": "failed"}, s
    errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln]
    assert len(errors) == 1 and "read-only" in errors[0] and "(EROFS)" in errors[0] and str(cache) in errors[0], \
        proc.stderr
    if existing:
        assert "beta: no engine for key" in errors[0] and "--cache" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_state(str(mounts / "ro")) == before


def test_ensure_miss_on_a_read_only_cache_without_mount(tmp_path, two_models, monkeypatch):
    """The same catalogue row where mount is not permitted: the cache's filesystem answers
    EROFS as a read-only mount does (tests/test_cache_read_only.fake_erofs). A model the
    cache does not hold: exit 73, one line naming the cache, EROFS and what to do."""
    from test_cache_read_only import fake_erofs
    from tegra_ai import platform
    from tegra_ai.trt import builder, compat

    feats = compat.features_for("10.3.0.30")
    monkeypatch.setattr(compat, "load", lambda: (None, feats))
    monkeypatch.setattr(builder, "target_facts", lambda f, cc: platform.DeviceFacts(
        "8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3"))
    (tmp_path / "cache").mkdir()
    fake_erofs(monkeypatch, tmp_path / "cache")
    res = assert_bad_input(main, ["ensure", "--manifest", two_models, "--cache", "cache", "--json", "--no-load-check",
                                  "--no-progress"], str(tmp_path), 73, "alpha: no engine for key",
                           watch=str(tmp_path / "cache"))
    error = next(ln for ln in res.lines if ": error:" in ln)
    assert "read-only filesystem (EROFS)" in error and str(tmp_path / "cache") in error and "--cache" in error
    assert json.loads(res.stdout)["exit_code"] == 73


def test_permission_denied_as_an_unprivileged_user(tmp_path):
    """root ignores mode bits: the command runs as nobody (setpriv) against a 0555 folder."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        pytest.skip("needs root and setpriv(1) to run the command as an unprivileged user")
    pytest.importorskip("cv2")
    import tempfile

    from tegra_ai import models

    base = tempfile.mkdtemp(prefix="tegra-ai-eacces-")     # outside pytest's 0700 tree: nobody can reach it
    try:
        os.chmod(base, 0o755)
        shutil.copy(models.DEFAULT_PREPROCESS, os.path.join(base, "spec.json"))
        x, _y = models.load_samples("val")
        np.savez(os.path.join(base, "data.npz"), input=(x[:16].astype(np.float32) / 255)[:, None])
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o555)
        os.chmod(locked, 0o555)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"))
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
               "tegra_ai.cli.calibration", "data.npz", "-o", "locked/o.npz", "--spec", "spec.json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base, env=env, timeout=300)
        if "Permission denied" in proc.stderr and "python" in proc.stderr.lower() and proc.returncode != 73:
            pytest.skip(f"the interpreter is not usable as an unprivileged user here: {proc.stderr.strip()[:200]}")
        assert proc.returncode == 73, proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln]
        assert len(errors) == 1 and "permission denied (EACCES)" in errors[0] and "locked" in errors[0], proc.stderr
        assert os.listdir(locked) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_injected_enospc_fails_that_model_only(tmp_path, two_models, monkeypatch):
    """Without mount permission: ENOSPC injected into the atomic writer's writes. The
    model that needs a write fails with ENOSPC named (73), the cached one is a hit."""
    from test_cache_ensure import FakeBuilder, run
    from tegra_ai.util import atomic

    cache = str(tmp_path / "cache")
    first = run(two_models, cache, FakeBuilder(fail=False))
    assert first["built"] == 2
    beta = [m for m in first["models"] if m["name"] == "beta"][0]
    for path in (beta["engine"], beta["engine"] + ".json"):
        os.unlink(os.path.realpath(path))
    real_fdopen = atomic.os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    b = FakeBuilder()
    s = run(two_models, cache, b)
    monkeypatch.undo()
    status = {m["name"]: m for m in s["models"]}
    assert status["alpha"]["status"] == "hit" and b.calls == ["beta"]
    assert status["beta"]["status"] == "failed" and "no space left on device (ENOSPC)" in status["beta"]["error"]
    assert s["exit_code"] == 73
    left = sorted(f for r, _d, fs in os.walk(cache) for f in fs if f.startswith("beta-") or f.endswith(".tmp"))
    assert left == []
