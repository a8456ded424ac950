"""Writers of the engine cache's shared files: the hash memo saved by two processes at
once (model-benchmark suite, ensure) loses no entry, and the temp files a killed writer
leaves (a SIGKILLed build child's timing cache) are removed by the next run, never a
live writer's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cache.store import EngineCache, remove_dead_writers_temps
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
TESTS = os.path.join(ROOT, "tests")
STAND_INS = os.path.join(TESTS, "stand_ins")


def _wait_for(path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if proc.poll() is not None:
            pytest.fail(f"the writer exited ({proc.returncode}) before {os.path.basename(path)}: "
                        f"{proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.01)


# ------------------------------------------------------------------ the hash memo, two writers

SUITE_WRITER = r"""
import os, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from fake_trt import make_fake_trt
from tegra_ai import platform
from tegra_ai.bench import suite
from tegra_ai.cache.store import EngineCache
from tegra_ai.trt import compat
from tegra_ai.util import hashing

model, precision, cache, marks, role = sys.argv[3:8]
feats = compat.features_for("10.3.0")
trt = make_fake_trt(feats)
compat.load = lambda: (trt, feats)
platform.detect = lambda *a, **k: platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
if role == "first":
    # stops between reading the memo on disk (HashMemo.save merges it) and writing it
    real = hashing.atomic_write_json
    def paused(path, obj):
        if path.endswith(".hashmemo.json"):
            open(os.path.join(marks, "first-saving"), "w").close()
            while not os.path.exists(os.path.join(marks, "go")):
                time.sleep(0.01)
        return real(path, obj)
    hashing.atomic_write_json = paused
else:
    # says when its engine is stored (its memo save comes next)
    real_store = EngineCache.store
    def store(self, *a, **k):
        out = real_store(self, *a, **k)
        open(os.path.join(marks, "second-stored"), "w").close()
        return out
    EngineCache.store = store
print(suite.ensure_engine(model, precision, {"input": (1, 1, 8, 8)}, cache)[0], flush=True)
"""


def test_two_suites_saving_the_memo_lose_no_entry(tmp_path, default_model):
    """model-benchmark suite A is inside its memo save (read what is on disk, not written
    yet) when suite B stores its engine and saves: B waits for the cache lock, then merges
    what A wrote; A's and B's engines are both in the memo. Without the lock B writes
    first and A's save (of what it read before) drops B's entry."""
    cache, marks = str(tmp_path / "engines"), str(tmp_path / "marks")
    os.makedirs(marks)

    def start(precision, role):
        return subprocess.Popen([sys.executable, "-c", SUITE_WRITER, SCRIPTS, TESTS, default_model, precision, cache,
                                 marks, role], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = start("fp16", "first")
    second = None
    try:
        _wait_for(os.path.join(marks, "first-saving"), first)
        second = start("fp32", "second")
        _wait_for(os.path.join(marks, "second-stored"), second)
        time.sleep(1.0)          # without the lock, the second's save is done by now
        open(os.path.join(marks, "go"), "w").close()
        out_first, err_first = first.communicate(timeout=120)
        out_second, err_second = second.communicate(timeout=120)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert first.returncode == 0 and second.returncode == 0, err_first + err_second
    engines = [out_first.strip(), out_second.strip()]
    assert all(e.endswith(".engine") for e in engines)
    with open(os.path.join(cache, ".hashmemo.json")) as f:
        memo = json.load(f)["files"]
    assert [e in memo for e in engines] == [True, True], sorted(memo)
    assert not [n for n in os.listdir(cache) if n.endswith(".tmp")]


def test_memo_save_merges_what_another_run_saved(tmp_path):
    """HashMemo.save keeps entries another process saved after this one read the file."""
    from tegra_ai.util.hashing import HashMemo

    for n in ("a", "b"):
        (tmp_path / n).write_bytes(n.encode())
    path = str(tmp_path / ".hashmemo.json")
    one, two = HashMemo(path), HashMemo(path)
    one.sha256(str(tmp_path / "a"))
    two.sha256(str(tmp_path / "b"))
    one.save()
    two.save()
    assert sorted(os.path.basename(p) for p in HashMemo(path).entries) == ["a", "b"]


def test_memo_save_drops_files_that_are_gone(tmp_path):
    """Entries of files removed since (a pruned engine) leave the memo at the next save: it
    would otherwise grow by one entry per engine ever built on the device."""
    from tegra_ai.util.hashing import HashMemo

    for n in ("kept", "pruned", "new"):
        (tmp_path / n).write_bytes(n.encode())
    path = str(tmp_path / ".hashmemo.json")
    first = HashMemo(path)
    first.sha256(str(tmp_path / "kept"))
    first.sha256(str(tmp_path / "pruned"))
    first.save()
    (tmp_path / "pruned").unlink()
    later = HashMemo(path)
    later.sha256(str(tmp_path / "new"))
    later.save()
    assert sorted(os.path.basename(p) for p in HashMemo(path).entries) == ["kept", "new"]


# ------------------------------------------------------------------ temps of dead writers

def _temp(directory, pid, name="timing.cache"):
    path = os.path.join(directory, f".{name}.{pid}.a1b2c3d4.tmp")
    with open(path, "wb") as f:
        f.write(b"partial")
    return path


def test_only_dead_writers_temps_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(zombie.pid, signal.SIGKILL)
    # not reaped yet: a zombie, still in the process table, runs no code
    while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    try:
        cache = EngineCache(str(tmp_path / "cache"))
        kept = [_temp(cache.root, live.pid), _temp(cache.root, os.getpid())]
        gone = [_temp(cache.root, dead.pid), _temp(cache.root, zombie.pid),
                _temp(cache.root, dead.pid, "mirror-state.json")]
        others = [os.path.join(cache.root, n) for n in (".timing.cache.abcdefgh.tmp", "timing.cache", ".x.tmp")]
        for p in others:
            open(p, "w").close()
        with cache.cache_lock(timeout=5):
            pass
        assert [os.path.exists(p) for p in kept] == [True, True]
        assert [os.path.exists(p) for p in gone] == [False, False, False]
        assert all(os.path.exists(p) for p in others)
        os.kill(live.pid, signal.SIGKILL)
        live.wait()
        assert remove_dead_writers_temps(cache.root) == [kept[0]]
    finally:
        for p in (live, zombie):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_a_killed_build_childs_timing_cache_temp_is_removed_next_run(tmp_path, model_factory):
    """The build child (the stand-in writes the timing cache as trt.builder does) is
    SIGKILLed, as the OOM killer would, while its timing cache temp file is written: that
    model fails; the next ensure succeeds and leaves no temp file in the cache."""
    bundle = str(tmp_path / "bundle")
    for name, op in (("alpha", "Relu"), ("beta", "Sigmoid")):
        sha, files = model_digest(model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op=op))
        add_to_bundle(bundle, name, files, sha, BuildOptions(precision="fp16"))
    cache, phases = str(tmp_path / "cache"), str(tmp_path / "phases")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SCRIPTS, STAND_INS]), TEGRA_AI_TEST_BUILD="*=ok",
               TEGRA_AI_TEST_PHASES=phases)
    cmd = [sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", bundle, "--cache", cache, "--json",
           "--no-load-check", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env, TEGRA_AI_TEST_STOP_AT="child-writing-timing:1"))
    try:
        child = None
        deadline = time.monotonic() + 120
        while child is None:
            assert proc.poll() is None and time.monotonic() < deadline, \
                proc.stderr.read() if proc.poll() is not None else "no build child stopped"
            lines = open(phases).read().split("\n") if os.path.exists(phases) else []
            pids = [int(ln.split()[0]) for ln in lines if ln.endswith(" child-writing-timing")]
            if pids and open(f"/proc/{pids[0]}/stat").read().rsplit(")", 1)[1].split()[0] in "Tt":
                child = pids[0]
            time.sleep(0.01)
        temps = [n for n in os.listdir(cache) if n.startswith(".timing.cache.") and n.endswith(".tmp")]
        assert len(temps) == 1, os.listdir(cache)           # the killed writer's temp file is there
        os.kill(child, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:       # a failed wait: no ensure (nor its stopped build child) outlives the test
            proc.kill()               # the child dies with it (PR_SET_PDEATHSIG)
            proc.communicate()
    s = json.loads(out)
    assert proc.returncode == 1 and [m["status"] for m in s["models"]] == ["failed", "built"], err
    assert "crashed (SIGKILL)" in s["models"][0]["error"]

    def left():
        return [os.path.relpath(os.path.join(r, f), cache) for r, _d, fs in os.walk(cache) for f in fs
                if f.endswith(".tmp")]
    assert left() == []        # removed under the cache lock at the end of that run (its writer is dead)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert left() == []
    assert os.path.getsize(os.path.join(cache, "timing.cache")) == 256 << 10
