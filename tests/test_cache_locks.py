"""Crash and concurrency safety of the engine cache and the mirror (issue #19 part 5):
lock waits are bounded and name the holder, pruning is safe against concurrent runs with
other manifests, a killed publish is completed by the next one, and the kill test
(tests/killtest.py) runs with a small count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_cache_ensure import FakeBuilder
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cache.store import EngineCache, LockTimeout, file_lock
from tegra_ai.errors import EXIT_TEMPFAIL
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
STAND_INS = os.path.join(ROOT, "tests", "stand_ins")

HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from tegra_ai.cache.store import EngineCache, file_lock
what, where = sys.argv[2], sys.argv[3]
ctx = EngineCache(where).lock(sys.argv[4]) if what == "model" else file_lock(where, timeout=5, what="test")
with ctx:
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder():
    """Starts a real second process holding a lock (model NAME of a cache, or a lock file);
    yields a function that returns its Popen once the lock is held."""
    procs = []

    def hold(what, where, name=""):
        p = subprocess.Popen([sys.executable, "-c", HOLDER, SCRIPTS, what, str(where), name],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p
    yield hold
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()


def bundle_of(tmp_path, model_factory, names, where="bundle", precision="fp16"):
    out = str(tmp_path / where)
    for name in names:
        path = model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8))
        sha, files = model_digest(path)
        add_to_bundle(out, name, files, sha, BuildOptions(precision=precision))
    return out


def run(bundles, cache, builder, **kw):
    return ensure(list(bundles), cache, builder=builder, loader=None, runtime=builder.rt, show_progress=False,
                  log=lambda m: None, **kw)


# ------------------------------------------------------------------ lock wait bound

def test_model_lock_held_by_a_live_process_times_out_naming_it(tmp_path, model_factory, holder):
    bundle = bundle_of(tmp_path, model_factory, ["alpha", "beta"])
    cache = str(tmp_path / "cache")
    first = run([bundle], cache, FakeBuilder())
    link = os.readlink(os.path.join(cache, "alpha.engine"))
    p = holder("model", cache, "alpha")
    t0 = time.monotonic()
    b = FakeBuilder()
    s = run([bundle], cache, b, lock_timeout=0.5, prune="unlisted")
    assert time.monotonic() - t0 < 30
    alpha, beta = s["models"]
    assert alpha["status"] == "failed" and alpha["lock_holder"] == p.pid
    assert f"alpha: {cache}/alpha/.lock is held by PID {p.pid}" in alpha["error"]
    assert "for more than 0.5 s" in alpha["error"]
    assert beta["status"] == "hit"                          # the other model goes on
    assert s["exit_code"] == EXIT_TEMPFAIL == 75
    # the holder's model keeps its link and index entry: they are the holder's to change
    assert os.readlink(os.path.join(cache, "alpha.engine")) == link
    index = json.load(open(os.path.join(cache, "index.json")))["models"]
    assert index["alpha"]["engine"] == first["models"][0]["engine"]
    assert os.path.isdir(os.path.join(cache, "alpha"))


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path, model_factory, holder):
    bundle = bundle_of(tmp_path, model_factory, ["alpha"])
    cache = str(tmp_path / "cache")
    run([bundle], cache, FakeBuilder())
    p = holder("model", cache, "alpha")
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = run([bundle], cache, FakeBuilder(), lock_timeout=0)
    assert s["exit_code"] == 0 and s["models"][0]["status"] == "hit"


def test_lock_file_names_the_holder_and_is_cleared(tmp_path):
    path = str(tmp_path / "x.lock")
    with file_lock(path, timeout=0, what="x"):
        assert open(path).read() == f"{os.getpid()}\n"
        seen = []

        def other():
            try:
                with file_lock(path, timeout=0.2, what="x", on_wait=lambda pid, comm: seen.append(pid)):
                    pass
            except LockTimeout as exc:
                seen.append(exc)
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen[0] == os.getpid() and isinstance(seen[1], LockTimeout) and seen[1].exit_code == 75
        assert f"held by PID {os.getpid()}" in str(seen[1])
    assert open(path).read() == ""


def test_waiter_relocks_a_model_directory_pruned_while_it_waited(tmp_path):
    cache = EngineCache(str(tmp_path / "cache"))
    entered = threading.Event()

    def waiter():
        with cache.lock("m", timeout=30):
            entered.set()
            time.sleep(0.5)
    with cache.lock("m"):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)                       # the waiter has opened m/.lock and polls it
        os.rename(cache.model_dir("m"), str(tmp_path / "cache" / ".m.pruned-1.tmp"))
    assert entered.wait(30)
    # it holds the lock of the directory now at m/ (made again, with its marker), not the removed one
    assert cache.is_model_dir("m")
    with pytest.raises(LockTimeout):
        with cache.lock("m", timeout=0):
            pass
    t.join()


def test_ensure_cli_lock_timeout_exit_75_one_line(tmp_path, model_factory, holder):
    bundle = bundle_of(tmp_path, model_factory, ["alpha"])
    cache = tmp_path / "cache"
    p = holder("model", cache, "alpha")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SCRIPTS, STAND_INS]), TEGRA_AI_TEST_BUILD="*=ok")
    r = subprocess.run([sys.executable, "-m", "tegra_ai.cli.optimize", "ensure", "--manifest", bundle, "--cache",
                        str(cache), "--no-load-check", "--no-progress", "--lock-timeout", "0.3"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 75, r.stderr
    assert "Traceback" not in r.stderr
    assert f"alpha: failed (alpha: {cache}/alpha/.lock is held by PID {p.pid}" in r.stdout
    assert "waiting up to 0.3 s for its lock, held by PID" in r.stderr     # progress while it waits


def test_publish_lock_held_exit_75(tmp_path, model_factory, holder):
    pytest.importorskip("cryptography", reason="publish signs with cryptography (pip install '.[mirror]')")
    from badinput import assert_bad_input
    from tegra_ai.cache import signing
    from tegra_ai.cache.publish import publish
    from tegra_ai.cli.optimize import main

    bundle = bundle_of(tmp_path, model_factory, ["alpha"])
    run([bundle], str(tmp_path / "cache"), FakeBuilder())
    key = signing.generate_keypair(str(tmp_path / "keys"))["private_key"]
    publish(str(tmp_path / "cache"), str(tmp_path / "mirror"), key)
    p = holder("file", tmp_path / "mirror" / ".publish.lock")
    r = assert_bad_input(main, ["publish", "--cache", "cache", "--to", "mirror", "--key", key, "--lock-timeout",
                                "0.2"], str(tmp_path), 75, f"is held by PID {p.pid}")
    assert "another tensorrt-optimize publish is writing this mirror" in r.stderr


# ------------------------------------------------------------------ concurrent pruning

def test_concurrent_runs_with_other_manifests_keep_each_others_models(tmp_path, model_factory):
    """Two runs at once, one listing x and y, the other y and z, both --prune unlisted:
    each one's final prune used to remove the model the other had just built."""
    one = bundle_of(tmp_path, model_factory, ["x"], "one")
    shared = bundle_of(tmp_path, model_factory, ["y"], "shared")
    two = bundle_of(tmp_path, model_factory, ["z"], "two")
    cache = str(tmp_path / "cache")
    results = {}
    b = FakeBuilder(delay=0.3)
    runs = [threading.Thread(target=lambda k=k, m=m: results.__setitem__(k, run(m, cache, b, prune="unlisted")))
            for k, m in (("one", [one, shared]), ("two", [shared, two]))]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert results["one"]["exit_code"] == results["two"]["exit_code"] == 0
    assert results["one"]["pruned_models"] == results["two"]["pruned_models"] == []
    for name in ("x", "y", "z"):
        link = os.path.join(cache, f"{name}.engine")
        assert os.path.isfile(os.path.realpath(link)), name           # no dangling link, nothing lost
    index = json.load(open(os.path.join(cache, "index.json")))["models"]
    assert all(os.path.isfile(e["engine"]) for e in index.values())
    # a later run alone prunes what its manifests no longer list
    later = run([one, shared], cache, b, prune="unlisted")
    assert later["pruned_models"] == ["z"] and not os.path.lexists(os.path.join(cache, "z.engine"))


def test_prune_unlisted_skips_a_model_another_process_holds(tmp_path, model_factory, holder):
    keep = bundle_of(tmp_path, model_factory, ["kept"], "keep")
    busy = bundle_of(tmp_path, model_factory, ["busy"], "busy")
    cache = str(tmp_path / "cache")
    run([keep, busy], cache, FakeBuilder())
    holder("model", cache, "busy")
    s = run([keep], cache, FakeBuilder(), prune="unlisted")
    assert s["pruned_models"] == [] and os.path.isdir(os.path.join(cache, "busy"))
    assert os.path.isfile(os.path.realpath(os.path.join(cache, "busy.engine")))


def test_unlisted_model_with_another_slots_engine_keeps_no_dangling_link(tmp_path, model_factory):
    """prune_unlisted with an L4T release used to delete the current engine and keep the
    other slot's, leaving CACHE/NAME.engine dangling for good."""
    from tegra_ai import platform
    from test_cache_ensure import runtime

    gone = bundle_of(tmp_path, model_factory, ["gone"], "gone")
    keep = bundle_of(tmp_path, model_factory, ["kept"], "keep")
    cache = str(tmp_path / "cache")
    slot_b = runtime(facts=platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.5.0"))
    run([gone], cache, FakeBuilder(rt=slot_b))             # the other slot's engine
    run([gone, keep], cache, FakeBuilder())                # this slot's, linked
    s = run([keep], cache, FakeBuilder(), prune="unlisted")
    assert s["pruned_models"] == []                          # the other slot's engine keeps the folder
    assert not os.path.lexists(os.path.join(cache, "gone.engine"))      # removed, not left dangling


def test_model_directory_appears_with_its_marker(tmp_path, monkeypatch):
    """A kill between mkdir and the marker left a directory no run would prune (found by
    the kill test: an unlisted model's folder that --prune unlisted kept)."""
    from tegra_ai.cache import store

    cache = EngineCache(str(tmp_path / "cache"))
    seen = []
    real = store.create_exclusive

    def spy(path, text):
        seen.append(os.path.isdir(cache.model_dir("m")))     # is m/ visible before its marker?
        return real(path, text)
    monkeypatch.setattr(store, "create_exclusive", spy)
    with cache.lock("m", timeout=0):
        pass
    assert seen == [False] and cache.is_model_dir("m")


def test_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path, model_factory):
    bundle = bundle_of(tmp_path, model_factory, ["alpha"])
    cache = str(tmp_path / "cache")
    run([bundle], cache, FakeBuilder())
    stale = [os.path.join(cache, ".alpha.engine.4242.tmp"), os.path.join(cache, ".alpha.engine.json.4242.tmp"),
             os.path.join(cache, ".index.json.abcd1234.tmp"), os.path.join(cache, "..hashmemo.json.abcd1234.tmp")]
    os.symlink("alpha/nothing", stale[0])
    os.symlink("alpha/nothing.json", stale[1])
    for p in stale[2:]:
        open(p, "w").write("{")
    trash = os.path.join(cache, ".old.pruned-4242.tmp")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                              # a process id no longer running
    half = os.path.join(cache, f".new.new-{dead.pid}-abcd1234.tmp")
    for d in (trash, half):
        os.makedirs(d)
        open(os.path.join(d, ".tegra-ai-model"), "w").write("")
    busy = os.path.join(cache, f".other.new-{os.getpid()}-abcd1234.tmp")      # its maker is alive
    os.makedirs(busy)
    open(os.path.join(busy, ".tegra-ai-model"), "w").write("")
    foreign = os.path.join(cache, ".somebody.tmp")
    open(foreign, "w").write("x")
    assert run([bundle], cache, FakeBuilder())["exit_code"] == 0
    assert not any(os.path.lexists(p) for p in stale + [trash, half])
    assert os.path.isdir(busy)
    assert os.path.exists(foreign)                          # not a name of ours: left alone


# ------------------------------------------------------------------ publish killed midway

def test_publish_completes_a_killed_publish(tmp_path, model_factory):
    pytest.importorskip("cryptography", reason="publish signs with cryptography (pip install '.[mirror]')")
    from tegra_ai.cache import signing
    from tegra_ai.cache.publish import publish, read_index

    bundle = bundle_of(tmp_path, model_factory, ["alpha", "beta"])
    cache, mirror = str(tmp_path / "cache"), str(tmp_path / "mirror")
    s = run([bundle], cache, FakeBuilder())
    key = signing.generate_keypair(str(tmp_path / "keys"))["private_key"]
    publish(cache, mirror, key)
    rels = sorted(read_index(mirror))
    # alpha: killed after the engine and signature, before the sidecar;
    # beta: killed after the sidecar, before the index
    index_path = os.path.join(mirror, "index.json")
    doc = json.load(open(index_path))
    doc["signed"]["engines"] = {}
    json.dump(doc, open(index_path, "w"))
    os.unlink(os.path.join(mirror, *rels[0].split("/")) + ".json")
    r = publish(cache, mirror, key)
    assert r["exit_code"] == 0 and r["conflicts"] == 0, r
    # alpha written again, beta (complete on the mirror) listed as it is
    assert sorted(row["status"] for row in r["engines"]) == ["present", "published"]
    assert sorted(read_index(mirror)) == rels
    assert s["exit_code"] == 0


# ------------------------------------------------------------------ the kill test, small

def test_kill_test_small_count(tmp_path):
    """SIGKILL at 30 seeded random points across ensure, prune and publish (alone and two
    at a time); tests/killtest.py --kills 200 is the full run (see its docstring)."""
    pytest.importorskip("cryptography", reason="publish signs with cryptography (pip install '.[mirror]')")
    import killtest

    lines = []
    seed = int(os.environ.get("TEGRA_AI_KILLTEST_SEED", "0")) or int(time.time())
    # CI: shorter stand-in builds and 1 MiB engines (the full run: 100-400 ms, 4 MiB)
    stats = killtest.run(30, seed, str(tmp_path / "work"), out=lines.append, build_seconds="0.05,0.15",
                         engine_bytes=1 << 20)
    report = "\n".join(lines)
    print(report)
    assert stats["violations"] == [], report
    assert stats["kills"] >= 30, report
    # kills landed inside our code, not only in the interpreter's start-up
    inside = sum(n for phase, n in stats["by_phase"].items() if not phase.endswith("interpreter start"))
    assert inside >= 15, report
