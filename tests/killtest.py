"""Kill test: SIGKILL ``tensorrt-optimize ensure`` and ``publish`` at seeded random points,
alone and two at a time, and check after every kill that the engine cache and the mirror
are still consistent and that the next run succeeds (issue #19 part 5).

    python3 tests/killtest.py --kills 200 [--seed N] [--work DIR] [--keep]

Runs the real CLI in child processes with ``tests/stand_ins`` on PYTHONPATH: TensorRT is
replaced by a build of 100-400 ms writing a 4 MiB engine (``slow`` in its
sitecustomize.py), and each process appends the step it enters (lock waits, build, each
atomic write, link, prune) to a phase file, so every kill is attributed to the step it
interrupted. The cache and mirror are on the test's own filesystem (fsync is real there).

Rounds pick a scenario: one ensure, two concurrent ensures with different manifests
(models dropped with ``--prune unlisted``, a model whose options change and whose old
engine is pruned as stale), one publish, two publishes, or ensure and publish together;
or one ensure whose build child (the stand-in writes the timing cache as trt.builder
does) is stopped while it writes ``timing.cache`` and SIGKILLed, as the OOM killer would
(its ensure must then fail that model with exit 1), or its ensure is SIGKILLed then
(the child dies with it);
one process (sometimes both) is killed: mostly as it enters a step that recent unkilled
runs went through (the process stops itself there, TEGRA_AI_TEST_STOP_AT, and gets the
SIGKILL: short steps, renames and prunes, are hit as often as long ones), or 0-20 ms
into such a step, or after a random delay. A survivor must exit 0.
Then, before anything else runs:

* no dangling stable link (``CACHE/NAME.engine[.json]``),
* no partial engine: every sidecar's engine is complete (size and sha256 match), every
  link points at such an engine, every engine listed in the mirror index is complete,
* no lost engine: a model whose link was valid before the round still has a valid link,
  unless a run of the round did not list it (``--prune unlisted`` removes it then); an
  engine listed in the mirror index before is still listed and complete.

Then a recovery ``ensure`` (the killed run's manifests, ``--lock-timeout 30``: a lock
left behind would fail it with exit 75) and, when a publish took part, a recovery
``publish`` (after a killed publish) must exit 0 and leave no temp file, no engine without a sidecar, an index
listing exactly the manifests' models, and a mirror index listing every complete set.
"No temp file" covers the cache root too: a killed build child's timing cache temp must
be gone after the next successful run.

Prints the seed, kills per scenario and per phase, and every violation; exit 1 when
there was one. ``tests/test_killtest.py`` runs a small count in CI."""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
STAND_INS = os.path.join(ROOT, "tests", "stand_ins")
for p in (SCRIPTS, os.path.join(ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

# Manifest sets: each ensure lists some of these bundles. "base32" changes model a's
# options (its old engine becomes stale); c and d come and go (unlisted pruning).
BUNDLES = {"base": [("a", "fp16"), ("b", "fp16")], "base32": [("a", "fp32"), ("b", "fp16")],
           "extra-c": [("c", "fp16")], "extra-d": [("d", "fp16")]}
SETS = {"abc": ("base", "extra-c"), "abd": ("base", "extra-d"), "a32bc": ("base32", "extra-c"), "ab": ("base",)}
SCENARIOS = (("ensure", 4), ("ensure+ensure", 3), ("publish", 1), ("publish+publish", 1), ("ensure+publish", 2),
             ("ensure-child", 2))
# ensure-child: the build child is stopped as it enters one of these steps of its timing
# cache write (its temp file exists) and SIGKILLed (the OOM killer), or its ensure is
# SIGKILLed then (the child dies with it)
CHILD_STEPS = ("child-writing-timing", "child-renaming-timing")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class World:
    def __init__(self, work: str, build_seconds: str = "0.1,0.4", engine_bytes: int = 4 << 20):
        from onnx_models import make_model
        from tegra_ai.cache.manifest import add_to_bundle
        from tegra_ai.cache.signing import generate_keypair
        from tegra_ai.onnx_files import model_digest
        from tegra_ai.spec import BuildOptions

        self.work = work
        self.cache = os.path.join(work, "cache")
        self.mirror = os.path.join(work, "mirror")
        self.logs = os.path.join(work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        ops = {"a": "Relu", "b": "Sigmoid", "c": "Tanh", "d": "Abs"}
        models = {n: make_model(os.path.join(work, f"{n}.onnx"), input_dims=(1, 3, 8, 8), op=op) for n, op in ops.items()}
        self.bundles = {}
        for bundle, entries in BUNDLES.items():
            out = os.path.join(work, "bundles", bundle)
            for name, precision in entries:
                sha, files = model_digest(models[name])
                add_to_bundle(out, name, files, sha, BuildOptions(precision=precision))
            self.bundles[bundle] = out
        self.key = generate_keypair(os.path.join(work, "keys"))["private_key"]
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([SCRIPTS, STAND_INS]), TEGRA_AI_TEST_BUILD="*=slow",
                        TEGRA_AI_TEST_BUILD_SECONDS=build_seconds, TEGRA_AI_TEST_ENGINE_BYTES=str(engine_bytes))
        self.env.pop("TEGRA_AI_TEST_MARK", None)
        self.count = 0

    def listed(self, set_name: str) -> set:
        return {n for b in SETS[set_name] for n, _p in BUNDLES[b]}

    def spawn(self, op: str, set_name: str | None = None, prune: str = "unlisted", lock_timeout: float = 60,
              stop_at: str | None = None):
        self.count += 1
        tag = f"{self.count:04d}-{op}"
        phases = os.path.join(self.logs, tag + ".phases")
        if op == "ensure":
            args = ["ensure", "--cache", self.cache, "--prune", prune, "--no-load-check", "--no-progress",
                    "--json", "--lock-timeout", str(lock_timeout)]
            for b in SETS[set_name]:
                args += ["--manifest", self.bundles[b]]
        else:
            args = ["publish", "--cache", self.cache, "--to", self.mirror, "--key", self.key, "--json",
                    "--lock-timeout", str(lock_timeout)]
        out = open(os.path.join(self.logs, tag + ".out"), "w")
        err = open(os.path.join(self.logs, tag + ".err"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.optimize", *args], stdout=out, stderr=err,
                                env=dict(self.env, TEGRA_AI_TEST_PHASES=phases, TEGRA_AI_TEST_STOP_AT=stop_at or ""))
        out.close()
        err.close()
        proc.tag, proc.op, proc.set_name, proc.prune, proc.phases = tag, op, set_name, prune, phases
        proc.t0 = time.monotonic()
        return proc

    def stderr(self, proc) -> str:
        with open(os.path.join(self.logs, proc.tag + ".err")) as f:
            return f.read()[-2000:]

    def steps(self, proc) -> list:
        """(monotonic seconds, step) the process itself (not its build child) entered."""
        try:
            with open(proc.phases) as f:
                lines = [ln.split(None, 2) for ln in f.read().splitlines()]
        except OSError:
            return []
        return [(float(ln[1]), ln[2]) for ln in lines if len(ln) == 3 and ln[0] == str(proc.pid)]

    def phase(self, proc) -> str:
        steps = self.steps(proc)
        return steps[-1][1] if steps else "interpreter start"

    # ------------------------------------------------------------------ invariants
    def links(self) -> dict:
        """model -> engine sha256 of every valid stable link; dangling ones are violations."""
        from tegra_ai.spec import Sidecar

        out, bad = {}, []
        if not os.path.isdir(self.cache):
            return out, bad
        for n in sorted(os.listdir(self.cache)):
            path = os.path.join(self.cache, n)
            if not os.path.islink(path) or n.startswith("."):
                continue
            if not os.path.exists(path):
                bad.append(f"dangling link {n} -> {os.readlink(path)}")
                continue
            if n.endswith(".engine"):
                target = os.path.realpath(path)
                sc = Sidecar.read_if_ours(target + ".json")
                if sc is None or os.path.getsize(target) != sc.engine_size or sha256_file(target) != sc.engine_sha256:
                    bad.append(f"link {n} -> {os.readlink(path)}: not a complete engine")
                    continue
                out[n[:-len(".engine")]] = sc.engine_sha256
        return out, bad

    def check_cache(self, before: dict, may_drop: set, strict_listed: set | None = None) -> list:
        from tegra_ai.spec import Sidecar

        links, bad = self.links()
        for name, _sha in before.items():
            if name not in links and name not in may_drop:
                bad.append(f"lost engine: {name} had a valid link before the round and has none now")
        orphans, temps = [], []
        for dirpath, dirs, files in os.walk(self.cache):
            for f in files + [d for d in dirs if d.endswith(".tmp")]:
                full = os.path.join(dirpath, f)
                if f.endswith(".tmp"):
                    temps.append(os.path.relpath(full, self.cache))
                elif f.endswith(".engine.json") and dirpath != self.cache:
                    sc = Sidecar.read_if_ours(full)
                    engine = full[:-len(".json")]
                    if sc is None:
                        bad.append(f"partial sidecar {os.path.relpath(full, self.cache)}")
                    elif not os.path.isfile(engine) or os.path.getsize(engine) != sc.engine_size \
                            or sha256_file(engine) != sc.engine_sha256:
                        bad.append(f"partial engine: {os.path.relpath(engine, self.cache)} does not match its sidecar")
                elif f.endswith(".engine") and dirpath != self.cache and not os.path.exists(full + ".json"):
                    orphans.append(os.path.relpath(full, self.cache))
        if strict_listed is not None:       # after an unkilled run
            bad += [f"temp file left after a successful run: {t}" for t in temps]
            bad += [f"engine without a sidecar after a successful run: {o}" for o in orphans]
            missing = strict_listed - set(links)
            if missing:
                bad.append(f"listed models without a valid link after a successful run: {sorted(missing)}")
            try:
                with open(os.path.join(self.cache, "index.json")) as f:
                    index = json.load(f)["models"]
            except (OSError, ValueError, KeyError) as exc:
                bad.append(f"index.json unreadable after a successful run: {exc}")
                index = {}
            if set(index) != strict_listed:
                bad.append(f"index.json lists {sorted(index)}, the manifests {sorted(strict_listed)}")
            for n, e in index.items():
                if not os.path.isfile(e.get("engine", "")) or sha256_file(e["engine"]) != links.get(n):
                    bad.append(f"index.json entry {n} is not the linked engine")
            dirs = {d for d in os.listdir(self.cache) if os.path.isdir(os.path.join(self.cache, d))}
            if dirs - strict_listed:
                bad.append(f"model folders of unlisted models after --prune unlisted: {sorted(dirs - strict_listed)}")
        return bad

    def child_round(self, rng, bad: list):
        """The ensure-child scenario: one ensure that must build model a (its other
        options' set), whose build child stops itself as it enters a step of its timing
        cache write; then SIGKILL the child (the OOM killer: ensure fails that model, exit
        1) or the ensure (the child dies with it, PR_SET_PDEATHSIG). Returns (procs, the
        procs whose run was cut short, the kill's label for the statistics)."""
        from tegra_ai.spec import Sidecar

        a = Sidecar.read_if_ours(os.path.join(self.cache, "a.engine.json"))
        set_name = "abc" if a is not None and a.options.precision == "fp32" else "a32bc"
        step = rng.choice(CHILD_STEPS)
        proc = self.spawn("ensure", set_name, rng.choice(["unlisted", "stale"]), stop_at=f"{step}:1")
        victim = rng.choice(["build child", "ensure"])
        child = None
        limit = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < limit and child is None:
            try:
                with open(proc.phases) as f:
                    pids = [int(ln.split()[0]) for ln in f.read().splitlines() if ln.endswith(" " + step)]
            except OSError:
                pids = []
            if pids and stopped(pids[0]):
                child = pids[0]
            time.sleep(0.002)
        if child is None:           # nothing was built (or it hung): no kill this round
            wait_all([proc])
            if proc.returncode != 0:
                bad.append(f"ensure {proc.tag} (ensure-child, no build child stopped) exited {proc.returncode}: "
                           f"{self.stderr(proc).strip()[-400:]}")
            return [proc], [], None
        if victim == "build child":
            proc.may_drop = {"a"}   # its build failed: ensure removes its link (no valid engine for its key)
            os.kill(child, signal.SIGKILL)
            wait_all([proc])
            if proc.returncode != 1 or "crashed (SIGKILL)" not in self.stderr(proc):
                bad.append(f"ensure {proc.tag} whose build child was SIGKILLed exited {proc.returncode} (expected 1, "
                           f"that model failing as crashed): {self.stderr(proc).strip()[-400:]}")
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + 10
            while alive(child) and time.monotonic() < deadline:
                time.sleep(0.01)
            if alive(child):
                bad.append(f"the build child {child} outlived its SIGKILLed ensure {proc.tag}")
        return [proc], [proc], f"{victim} killed at: {step}"

    def mirror_index(self) -> dict:
        try:
            with open(os.path.join(self.mirror, "index.json")) as f:
                return json.load(f)["signed"]["engines"]
        except (OSError, ValueError, KeyError):
            return {}

    def check_mirror(self, before: dict, strict: bool = False) -> list:
        bad = []
        if not os.path.isdir(self.mirror):
            return bad
        index = self.mirror_index()
        for rel in before:
            if rel not in index:
                bad.append(f"lost mirror engine: {rel} was in the index before the round")
        for rel, e in index.items():
            base = os.path.join(self.mirror, *rel.split("/"))
            try:
                ok = (sha256_file(base) == e["sha256"] and sha256_file(base + ".json") == e["sidecar_sha256"]
                      and sha256_file(base + ".sig") == e["signature_sha256"])
            except OSError:
                ok = False
            if not ok:
                bad.append(f"partial mirror engine: {rel} is listed but its files do not match the index")
        if strict:
            for dirpath, _dirs, files in os.walk(self.mirror):
                for f in files:
                    rel = os.path.relpath(os.path.join(dirpath, f), self.mirror).replace(os.sep, "/")
                    if f.endswith(".tmp"):
                        bad.append(f"mirror temp file left after a successful publish: {rel}")
                    elif f.endswith(".engine") and rel not in index:
                        bad.append(f"mirror engine not in the index after a successful publish: {rel}")
        return bad


def stopped(pid: int) -> bool:
    """Whether the process stopped itself (SIGSTOP: state T in /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed orphan init has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_all(procs, timeout=180):
    for p in procs:
        try:
            p.wait(timeout=max(1, timeout - (time.monotonic() - p.t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            p.hung = True


def run(kills: int, seed: int, work: str, out=print, max_rounds: int | None = None, build_seconds: str = "0.1,0.4",
        engine_bytes: int = 4 << 20) -> dict:
    rng = random.Random(seed)
    world = World(work, build_seconds, engine_bytes)
    out(f"kill test: seed {seed}, target {kills} kills, work {work}")
    estimate = {"ensure": 2.0, "publish": 0.8, "startup": 0.3}   # seconds, learnt from unkilled runs
    stats = {"seed": seed, "kills": 0, "rounds": 0, "completed_before_kill": 0, "recovery_runs": 0,
             "by_scenario": collections.Counter(), "by_mode": collections.Counter(), "by_phase": collections.Counter(), "violations": []}
    t_start = time.monotonic()

    timelines = {"ensure": collections.deque(maxlen=20), "publish": collections.deque(maxlen=20)}

    def learn(p):
        if p.returncode == 0:
            estimate[p.op] = 0.7 * estimate[p.op] + 0.3 * (time.monotonic() - p.t0)
            steps = world.steps(p)
            if steps:   # the interpreter's start-up: kills before it hit nothing of ours
                estimate["startup"] = 0.7 * estimate["startup"] + 0.3 * (steps[0][0] - p.t0)
                timelines[p.op].append([(t - p.t0, step) for t, step in steps])

    def aim(op):
        """Where to kill: ("stop", step, n): the process stops itself (SIGSTOP) as it enters
        the n-th time a step a recent unkilled run went through, each step as likely as any
        other however short (a rename takes microseconds, a build a second), and is killed
        there; ("after", step, n, delay): killed 0-20 ms after it began that step; ("time",
        delay): anywhere in the run by time alone."""
        r = rng.random()
        if timelines[op] and r < 0.85:
            line = rng.choice(timelines[op])
            step = rng.choice(line)[1]
            nth = rng.randrange(sum(1 for _t, s in line if s == step)) + 1
            return ("stop", step, nth, 0.0) if r < 0.6 else ("after", step, nth, rng.uniform(0, 0.02))
        low = 0.0 if rng.random() < 0.3 else 0.9 * estimate["startup"]
        return ("time", None, 0, rng.uniform(low, max(low + 0.05, 1.1 * estimate[op])))

    first = world.spawn("ensure", "abc")        # a filled cache to start from
    wait_all([first])
    if first.returncode != 0:
        raise SystemExit(f"the first ensure failed ({first.returncode}): {world.stderr(first)}")
    learn(first)
    max_rounds = max_rounds or kills * 4
    while stats["kills"] < kills and stats["rounds"] < max_rounds:
        stats["rounds"] += 1
        scenario = rng.choices([s for s, _w in SCENARIOS], [w for _s, w in SCENARIOS])[0]
        before_links, bad = world.links()
        before_mirror = world.mirror_index()
        if scenario == "ensure-child":
            procs, killed, label = world.child_round(rng, bad)
            if killed:
                stats["kills"] += 1
                stats["by_mode"]["child"] += 1
                stats["by_scenario"][scenario] += 1
                stats["by_phase"][label] += 1
                if stats["kills"] % 25 == 0:
                    out(f"... {stats['kills']} kills, {stats['rounds']} rounds, {time.monotonic() - t_start:.0f} s")
            else:
                stats["completed_before_kill"] += 1
                for p in procs:
                    learn(p)
        else:
            ops = scenario.split("+")
            chosen = list(range(len(ops))) if len(ops) > 1 and rng.random() < 0.3 else [rng.randrange(len(ops))]
            mode, step, nth, delay = aim(ops[chosen[0]])
            procs = []
            for i, op in enumerate(ops):
                set_name = rng.choice([s for s in SETS if not any(p.set_name == s for p in procs)])
                prune = rng.choice(["unlisted", "unlisted", "stale"])
                stop_at = f"{step}:{nth}" if mode == "stop" and i == chosen[0] else None
                procs.append(world.spawn(op, set_name, prune, stop_at=stop_at))
                if len(procs) == 1 and rng.random() < 0.5:
                    time.sleep(rng.uniform(0, 0.3))   # the second starts a little later
            victims = [procs[i] for i in chosen]
            first = victims[0]
            limit = time.monotonic() + 120
            if mode == "time":
                deadline = first.t0 + delay
                while time.monotonic() < deadline and any(v.poll() is None for v in victims):
                    time.sleep(0.005)
            elif mode == "stop":
                while first.poll() is None and time.monotonic() < limit and not stopped(first.pid):
                    time.sleep(0.002)
            else:
                while any(v.poll() is None for v in victims) and time.monotonic() < limit and \
                        sum(1 for _t, s in world.steps(first) if s == step) < nth:
                    time.sleep(0.002)
                time.sleep(delay)
            killed = []
            for v in victims:
                if v.poll() is None:
                    os.kill(v.pid, signal.SIGKILL)
                    v.wait()
                    killed.append(v)
                    # its last line is the step it was in: nothing is written after a SIGKILL
                    stats["by_phase"][f"{v.op}: {world.phase(v)}"] += 1
                else:
                    stats["completed_before_kill"] += 1
            stats["kills"] += len(killed)
            if killed:
                stats["by_mode"][mode] += 1
            if killed and stats["kills"] // 25 != (stats["kills"] - len(killed)) // 25:
                out(f"... {stats['kills']} kills, {stats['rounds']} rounds, {time.monotonic() - t_start:.0f} s")
            if killed:
                stats["by_scenario"][scenario] += len(killed)
            survivors = [p for p in procs if p not in killed]
            wait_all(survivors)
            for p in survivors:
                learn(p)
                no_engines = p.op == "publish" and p.returncode == 2 and "no valid engines" in world.stderr(p)
                if p.returncode != 0 and not no_engines:
                    bad.append(f"a run that was not killed ({p.tag}, {scenario}) exited {p.returncode}"
                               f"{' (hung)' if getattr(p, 'hung', False) else ''}: {world.stderr(p).strip()[-400:]}")
        may_drop = set()
        for p in procs:
            may_drop |= getattr(p, "may_drop", set())
            if p.op == "ensure" and p.prune == "unlisted":
                may_drop |= set(before_links) - world.listed(p.set_name)
        where = f"round {stats['rounds']} ({scenario}, killed {[v.tag for v in killed]} in " \
                f"{[world.phase(v) for v in killed]})"
        bad += world.check_cache(before_links, may_drop)
        bad += world.check_mirror(before_mirror)
        if not killed:
            for b in bad:
                out(f"VIOLATION {where}: {b}")
                stats["violations"].append(f"{where}: {b}")
            if bad:
                break
            continue
        # the next run succeeds: no lock left behind blocks it (exit 75 after 30 s)
        last = next((p for p in reversed(procs) if p.op == "ensure"), None)
        rec = world.spawn("ensure", last.set_name if last else "abc", "unlisted", lock_timeout=30)
        wait_all([rec])
        stats["recovery_runs"] += 1
        if rec.returncode != 0:
            bad.append(f"the next ensure ({rec.tag}) exited {rec.returncode}: {world.stderr(rec).strip()[-400:]}")
        else:
            learn(rec)
            bad += world.check_cache({}, set(), strict_listed=world.listed(rec.set_name))
        if any(p.op == "publish" for p in killed):
            pub = world.spawn("publish", lock_timeout=30)
            wait_all([pub])
            stats["recovery_runs"] += 1
            if pub.returncode != 0:
                bad.append(f"the next publish ({pub.tag}) exited {pub.returncode}: {world.stderr(pub).strip()[-400:]}")
            else:
                learn(pub)
                bad += world.check_mirror(before_mirror, strict=True)
        for b in bad:
            out(f"VIOLATION {where}: {b}")
            stats["violations"].append(f"{where}: {b}")
        if bad:
            break                                # the state is broken: later rounds would only repeat it
    stats["seconds"] = round(time.monotonic() - t_start, 1)
    out(f"{stats['kills']} kills in {stats['rounds']} rounds ({stats['completed_before_kill']} runs finished before "
        f"their kill), {stats['recovery_runs']} recovery runs, {stats['seconds']} s; seed {seed}")
    out("kills per scenario: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["by_scenario"].items())))
    out("rounds by how the kill was aimed: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["by_mode"].items())))
    out("kills per phase:")
    for k, v in sorted(stats["by_phase"].items(), key=lambda kv: (-kv[1], kv[0])):
        out(f"  {v:4d}  {k}")
    out(f"violations: {len(stats['violations'])}")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--work", help="work directory (default: a temp directory, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true", help="the statistics as JSON on stdout at the end")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    work = args.work or tempfile.mkdtemp(prefix="tegra-ai-killtest-")
    try:
        stats = run(args.kills, seed, work, out=(lambda m: print(m, file=sys.stderr)) if args.json else print)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({k: (dict(v) if isinstance(v, collections.Counter) else v) for k, v in stats.items()},
                         indent=2))
    return 1 if stats["violations"] or stats["kills"] < args.kills else 0


if __name__ == "__main__":
    sys.exit(main())
