"""A read-only engine cache (IMAGE_FEATURES read-only-rootfs with engines built into the
image, or a cache of another user's): its valid engines are served, verified as any hit,
without a lock (none could be created there); a miss or a stale engine is exit 73 naming
the directory and what to do; nothing is written there.

Three ways to make a cache read-only, each where it binds: a read-only bind mount
(root with mount permission, as in CI), chmod (binds for a user that is not root; as
root the command runs as nobody through setpriv), and, everywhere, a filesystem that
answers EROFS as the kernel does (``fake_erofs``: open/mkdir/rename/unlink/symlink/...
raise EROFS, access(W_OK) is refused and statvfs reports ST_RDONLY for paths in the
cache)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from badinput import tree_state
from test_cache_ensure import FakeBuilder, run
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cache.store import EngineCache
from tegra_ai.errors import EXIT_CANTCREAT, TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def fake_erofs(monkeypatch, root) -> None:
    """``root`` answers as a read-only mount does (mount(8) ro; open(2), mkdir(2),
    rename(2), unlink(2), symlink(2), chmod(2), utime(2): EROFS; access(2) W_OK: EROFS;
    statvfs(3): ST_RDONLY). Reads are untouched."""
    root = os.path.realpath(root)

    def inside(path, dir_fd=None) -> bool:
        if isinstance(path, int) or dir_fd is not None:
            return False
        p = os.path.realpath(os.path.abspath(os.fspath(path)))
        return p == root or p.startswith(root + os.sep)

    def erofs(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    real_open = os.open

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & _WRITE_FLAGS and inside(path, dir_fd):
            erofs(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    real_builtin_open = builtins.open

    def fake_builtin_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and inside(file):
            erofs(file)
        return real_builtin_open(file, mode, *a, **k)

    def deny_first(real):
        def fake(path, *a, **k):
            if inside(path, k.get("dir_fd") or k.get("src_dir_fd")):
                erofs(path)
            return real(path, *a, **k)
        return fake

    def deny_either(real):
        def fake(src, dst, *a, **k):
            for p in (src, dst):
                if inside(p):
                    erofs(p)
            return real(src, dst, *a, **k)
        return fake

    real_access, real_statvfs = os.access, os.statvfs

    def fake_access(path, mode, *a, **k):
        if mode & os.W_OK and inside(path):
            return False
        return real_access(path, mode, *a, **k)

    def fake_statvfs(path):
        r = real_statvfs(path)
        if not inside(path):
            return r
        values = list(r)
        values[8] |= os.ST_RDONLY        # f_flag
        return os.statvfs_result(values)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_builtin_open)
    for name in ("mkdir", "unlink", "remove", "rmdir", "chmod", "utime", "truncate"):
        monkeypatch.setattr(os, name, deny_first(getattr(os, name)))
    for name in ("rename", "replace", "link"):
        monkeypatch.setattr(os, name, deny_either(getattr(os, name)))
    real_symlink = os.symlink

    def fake_symlink(src, dst, *a, **k):
        if inside(dst):
            erofs(dst)
        return real_symlink(src, dst, *a, **k)

    monkeypatch.setattr(os, "symlink", fake_symlink)
    monkeypatch.setattr(os, "access", fake_access)
    monkeypatch.setattr(os, "statvfs", fake_statvfs)


def _bundle(base, model_factory, models, precision="fp16"):
    out = os.path.join(base, f"bundle-{'-'.join(models)}-{precision}")
    ops = {"alpha": "Relu", "beta": "Sigmoid", "gamma": "Tanh"}
    for name in models:
        sha, files = model_digest(model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op=ops[name]))
        add_to_bundle(out, name, files, sha, BuildOptions(precision=precision))
    return out


@pytest.fixture
def bundles(tmp_path, model_factory):
    """ab: the models the cache holds; stale: alpha with other options; new: gamma (never built)."""
    return {"ab": _bundle(str(tmp_path), model_factory, ["alpha", "beta"]),
            "stale": _bundle(str(tmp_path), model_factory, ["alpha"], "fp32"),
            "new": _bundle(str(tmp_path), model_factory, ["beta", "gamma"])}


def _check_served(s, cache):
    assert s["exit_code"] == 0 and s["read_only"] is True, s
    assert [(m["name"], m["status"]) for m in s["models"]] == [("alpha", "hit"), ("beta", "hit")], s
    for m in s["models"]:
        assert m["engine"].startswith(str(cache) + os.sep) and os.path.isfile(m["engine"])
        assert m["link"] == os.path.join(str(cache), m["name"] + ".engine")     # the links ensure made


def _check_refused(s, cache, name, words):
    assert s["exit_code"] == EXIT_CANTCREAT, s
    failed = [m for m in s["models"] if m["status"] == "failed"]
    assert [m["name"] for m in failed] == [name], s
    error = failed[0]["error"]
    assert words in error and str(cache) in error and "--cache" in error, error


def test_fake_read_only_filesystem_serves_hits_and_refuses_misses(tmp_path, bundles, monkeypatch):
    """In-process, everywhere: the cache's filesystem answers EROFS."""
    cache = tmp_path / "cache"
    assert run(bundles["ab"], str(cache), FakeBuilder())["built"] == 2
    before = tree_state(str(cache))
    fake_erofs(monkeypatch, cache)
    b = FakeBuilder()
    s = run(bundles["ab"], str(cache), b)
    _check_served(s, cache)
    assert b.calls == []
    stale = run(bundles["stale"], str(cache), b, prune="unlisted")
    _check_refused(stale, cache, "alpha", "only engines of other keys (stale")
    assert "read-only filesystem (EROFS)" in stale["models"][0]["error"]
    new = run(bundles["new"], str(cache), b)
    assert new["models"][0]["status"] == "hit"       # beta is served, gamma is refused
    _check_refused(new, cache, "gamma", "gamma: no engine for key")
    assert b.calls == []                              # nothing was built
    monkeypatch.undo()
    assert tree_state(str(cache)) == before           # no lock, temp, link, index or memo written


def test_fake_read_only_corrupt_engine_is_not_served(tmp_path, bundles, monkeypatch):
    """A hit is verified as on a writable cache: a flipped byte is refused (73), not served."""
    cache = tmp_path / "cache"
    s = run(bundles["ab"], str(cache), FakeBuilder())
    engine = s["models"][0]["engine"]
    data = bytearray(open(engine, "rb").read())
    data[0] ^= 1
    open(engine, "wb").write(bytes(data))
    fake_erofs(monkeypatch, cache)
    again = run(bundles["ab"], str(cache), FakeBuilder())
    _check_refused(again, cache, "alpha", "does not match its sidecar")


def test_fake_read_only_engine_that_does_not_load_is_not_served(tmp_path, bundles, monkeypatch):
    """ensure's load check (TensorRT deserializes each hit) applies on a read-only cache too."""
    from tegra_ai.cache.ensure import ensure

    cache = tmp_path / "cache"
    b = FakeBuilder()
    run(bundles["ab"], str(cache), b)
    fake_erofs(monkeypatch, cache)

    def loader(path):
        if "/alpha/" in path:
            raise TegraAIError("deserialization failed (stand-in)")
    s = ensure([bundles["ab"]], str(cache), builder=b, loader=loader, runtime=b.rt, show_progress=False,
               log=lambda m: None)
    _check_refused(s, cache, "alpha", "alpha: an engine that does not load for key")
    assert [m["status"] for m in s["models"]] == ["failed", "hit"]


def test_writable_cache_is_not_read_only(tmp_path, bundles):
    """Unchanged on a writable cache: locked, linked, indexed as before."""
    cache = tmp_path / "cache"
    s = run(bundles["ab"], str(cache), FakeBuilder())
    assert "read_only" not in s and EngineCache(str(cache)).read_only is None
    assert os.path.exists(cache / "index.json") and os.path.exists(cache / "alpha" / ".lock")


def test_missing_read_only_cache_is_one_line(tmp_path, bundles, monkeypatch):
    """A cache directory that does not exist on a read-only filesystem: 73 naming it."""
    fake_erofs(monkeypatch, tmp_path / "ro")
    with pytest.raises(TegraAIError) as err:
        run(bundles["ab"], str(tmp_path / "ro" / "cache"), FakeBuilder())
    assert err.value.exit_code == EXIT_CANTCREAT and "read-only file system (EROFS)" in err.value.message


# ------------------------------------------------------------------ the real thing, through the CLI

def _cli(bundle, cache, user=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "scripts"),
                                                       os.path.join(ROOT, "tests", "stand_ins")]),
               TEGRA_AI_TEST_BUILD="*=ok")
    cmd = [sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", bundle, "--cache", str(cache),
           "--json", "--no-load-check", "--no-progress"]
    if user is not None:
        cmd = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    try:
        return proc, json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON from ensure (exit {proc.returncode}): {proc.stderr[-2000:]}")


@contextlib.contextmanager
def _read_only(how, cache):
    """The cache made read-only by ``how``; yields the uid to run as (None: this one)."""
    if how == "ro-bind":
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("needs root and mount(8) for a read-only bind mount (CI runs as root)")
        proc = subprocess.run(["mount", "-o", "bind,ro", str(cache), str(cache)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"mount -o bind,ro is not permitted here: {proc.stderr.strip()}")
        try:
            yield None
        finally:
            subprocess.run(["umount", "-l", str(cache)], check=False)
        return
    modes = {}
    for dirpath, dirs, files in os.walk(cache):
        for p in [dirpath] + [os.path.join(dirpath, f) for f in files]:
            if not os.path.islink(p):
                modes[p] = stat.S_IMODE(os.lstat(p).st_mode)
                os.chmod(p, modes[p] & ~0o222)
    try:
        if os.geteuid() != 0:
            yield None                    # chmod binds for this user
        elif not shutil.which("setpriv"):
            pytest.skip("as root chmod does not bind, and setpriv(1) is missing to run as nobody")
        else:
            yield 65534                   # nobody: a cache of another user's (EACCES)
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)


@pytest.mark.parametrize("how", ["ro-bind", "chmod"])
def test_read_only_cache_through_the_cli(how, model_factory):
    """ensure (the first-boot command) on a cache made read-only for real: hits served
    (exit 0), a model it does not hold refused with one line (73); nothing written."""
    base = tempfile.mkdtemp(prefix="tegra-ai-ro-")       # outside pytest's 0700 tree: nobody can reach it
    try:
        os.chmod(base, 0o755)
        ab = _bundle(base, model_factory, ["alpha", "beta"])
        new = _bundle(base, model_factory, ["beta", "gamma"])
        for dirpath, dirs, files in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
        cache = os.path.join(base, "cache")
        proc, s = _cli(ab, cache)
        assert s["built"] == 2, proc.stderr
        before = tree_state(cache)
        with _read_only(how, cache) as user:
            proc, s = _cli(ab, cache, user)
            if user is not None and proc.returncode != 0 and "Permission denied" in proc.stderr and \
                    "python" in proc.stderr.lower():
                pytest.skip(f"the interpreter is not usable as an unprivileged user: {proc.stderr.strip()[:200]}")
            assert proc.returncode == 0, proc.stderr
            _check_served(s, cache)
            proc, s = _cli(new, cache, user)
            assert proc.returncode == EXIT_CANTCREAT, proc.stderr
            _check_refused(s, cache, "gamma", "gamma: no engine for key")
            assert "Traceback" not in proc.stderr
            errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln]
            words = "read-only filesystem (EROFS)" if how == "ro-bind" else \
                "not writable by this user (EACCES)" if user is not None else "(EACCES)"
            assert len(errors) == 1 and cache in errors[0] and words in errors[0], proc.stderr
        assert tree_state(cache) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ the benchmark suite

def test_suite_reads_a_read_only_cache(tmp_path, default_model, monkeypatch):
    """model-benchmark suite's engines: a hit on a read-only cache is served without a lock
    or a memo write; a miss is 73 naming the directory (not a build that cannot be stored)."""
    from fake_trt import make_fake_trt
    from tegra_ai import platform
    from tegra_ai.bench import suite
    from tegra_ai.trt import compat

    feats = compat.features_for("10.3.0")
    trt = make_fake_trt(feats)
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: platform.DeviceFacts(
        "8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3"))
    cache = str(tmp_path / "engines")
    shapes = {"input": (1, 1, 8, 8)}
    built, how = suite.ensure_engine(default_model, "fp16", shapes, cache)
    assert how == "built"
    before = tree_state(cache)
    fake_erofs(monkeypatch, cache)
    assert suite.ensure_engine(default_model, "fp16", shapes, cache) == (built, "hit")
    with pytest.raises(TegraAIError) as err:
        suite.ensure_engine(default_model, "fp32", shapes, cache)
    assert err.value.exit_code == EXIT_CANTCREAT and cache in err.value.message
    assert "read-only filesystem (EROFS)" in err.value.message
    # the command: one line, exit 73, nothing written in the cache
    from badinput import assert_bad_input
    from tegra_ai.cli.benchmark import main

    res = assert_bad_input(main, ["suite", "--models", default_model, "--precision", "fp32", "--batch", "1",
                                  "--out", str(tmp_path / "out"), "--cache", cache, "--no-plots", "--json"],
                           str(tmp_path), EXIT_CANTCREAT, "no engine for key", watch=cache)
    assert json.loads(res.stdout)["exit_code"] == EXIT_CANTCREAT
    monkeypatch.undo()
    assert tree_state(cache) == before
