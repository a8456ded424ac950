"""Test-only stand-in, never installed: Python imports ``sitecustomize`` at start-up from
PYTHONPATH, so a test that puts this directory there (and sets TEGRA_AI_TEST_BUILD) gets
processes — ensure's build children, or a whole CLI — where TensorRT and the GPU are
replaced by a builder that writes bytes and a real sidecar, or crashes, or hangs, on
command. It claims nothing about TensorRT; it exercises our process handling.

TEGRA_AI_TEST_BUILD = "MODEL=ACTION,...", or "*=ACTION" for every model; ACTION is
``ok``, ``segv`` (the builder segfaults), ``sleep`` (hangs for 120 s), ``fail`` (a
TegraAIError) or ``slow`` (what the kill test uses: a build of 100-400 ms, like the
fastest real ones, or TEGRA_AI_TEST_BUILD_SECONDS="LOW,HIGH", of an engine of TEGRA_AI_TEST_ENGINE_BYTES bytes, default 4 MiB,
whose bytes follow from its key). Given a timing cache (ensure's ``CACHE/timing.cache``),
the build writes it at its end as trt.builder does (``atomic_write_bytes`` of the
serialized cache, TEGRA_AI_TEST_TIMING_BYTES bytes, default 256 KiB: a real one holds
a few hundred KiB to some MiB of tactic timings). TEGRA_AI_TEST_MARK: a directory where each build
writes ``MODEL.pid`` (the builder's process id) when it starts.

TEGRA_AI_TEST_PHASES (the kill test, tests/killtest.py): a file where the process appends
one line ``PID MONOTONIC-SECONDS PHASE`` as it enters each step of ensure and publish that a kill could
interrupt (lock waits, the build, each atomic write: begun, temp file made, written and
about to be fsynced and renamed, done; link updates, prunes), so the kill test can tell
where each SIGKILL landed. A build child marks its own atomic writes (the timing cache),
its steps named ``child-...``. TEGRA_AI_TEST_STOP_AT="STEP:N": the process (or a build
child, for a ``child-`` step: the N-th time any build child of the run enters it) stops
itself (SIGSTOP) as it enters STEP for the N-th time, for the kill test to SIGKILL it there."""

import os

_spec = os.environ.get("TEGRA_AI_TEST_BUILD")
if _spec:
    import signal
    import time

    from tegra_ai import platform
    from tegra_ai.errors import TegraAIError
    from tegra_ai.spec import Sidecar
    from tegra_ai.trt import builder as _builder
    from tegra_ai.trt import compat as _compat

    _actions = dict(item.split("=", 1) for item in _spec.split(",") if "=" in item)
    FEATS = _compat.features_for("10.3.0.30")
    FACTS = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")

    _compat.load = lambda: (None, FEATS)
    _builder.target_facts = lambda feats, cc: FACTS

    def build_engine(request, *, show_progress=True, verbose=False, memo=None):
        model_path, options, plugin_libraries = request.model, request.options, request.plugins
        name = os.path.basename(os.path.dirname(os.path.abspath(model_path)))
        action = _actions.get(name, _actions.get("*", "ok"))
        mark = os.environ.get("TEGRA_AI_TEST_MARK")
        if mark:
            tmp = os.path.join(mark, f".{name}.pid.part")
            with open(tmp, "w") as f:
                f.write(str(os.getpid()))
            os.replace(tmp, os.path.join(mark, name + ".pid"))      # never seen half-written
        if action == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if action == "sleep":
            time.sleep(120)
        if action == "fail":
            raise TegraAIError("stand-in build failure")
        from tegra_ai.onnx_files import model_digest

        sha, _files = model_digest(model_path)
        key, material = _builder.engine_key(sha, options, FEATS, FACTS, _builder.plugin_digests(plugin_libraries))
        engine = f"engine of {name}".encode()
        if action == "slow":
            import random

            low, high = (float(x) for x in os.environ.get("TEGRA_AI_TEST_BUILD_SECONDS", "0.1,0.4").split(","))
            time.sleep(random.uniform(low, high))
            size = int(os.environ.get("TEGRA_AI_TEST_ENGINE_BYTES", 4 << 20))
            engine = random.Random(key).randbytes(size)   # one key, one engine: publish sees no conflict
        if request.timing_cache:
            # trt.builder.build_engine: atomic_write_bytes(request.timing_cache, serialize())
            import random

            from tegra_ai.util.atomic import atomic_write_bytes

            atomic_write_bytes(request.timing_cache, random.Random(key).randbytes(
                int(os.environ.get("TEGRA_AI_TEST_TIMING_BYTES", 256 << 10))))
        return _builder.BuildResult(engine=engine, sidecar=Sidecar.new(material, build_seconds=0.0))

    _builder.build_engine = build_engine

def _is_build_child():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return b"tegra_ai.cache.build_child" in f.read()
    except OSError:
        return False


_phases = os.environ.get("TEGRA_AI_TEST_PHASES")
if _phases:     # the ensure or publish process itself, or its build child (its atomic writes only)
    import contextlib
    import signal
    import time

    from tegra_ai.util import atomic as _atomic

    _child = _is_build_child()
    _prefix = "child-" if _child else ""
    _fd = os.open(_phases, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    _stop_step, _, _stop_nth = os.environ.get("TEGRA_AI_TEST_STOP_AT", "").rpartition(":")
    _seen = {}

    def _mark(phase):
        phase = _prefix + phase
        # one write: lines never interleave; CLOCK_MONOTONIC is one clock for all processes
        os.write(_fd, f"{os.getpid()} {time.monotonic():.4f} {phase}\n".encode())
        _seen[phase] = _seen.get(phase, 0) + 1
        if _child and phase == _stop_step:      # the N-th time any build child of the run enters it
            with open(_phases) as f:
                _seen[phase] = sum(1 for ln in f.read().splitlines() if ln.endswith(" " + phase))
        if phase == _stop_step and str(_seen[phase]) == _stop_nth:
            os.kill(os.getpid(), signal.SIGSTOP)    # the kill test SIGKILLs it right here

    def _kind(path):
        base = os.path.basename(os.fspath(path))
        for suffix, kind in ((".engine.json", "sidecar"), (".engine.sig", "signature"), (".engine", "engine"),
                             ("index.json", "index"), (".hashmemo.json", "memo"), ("timing.cache", "timing")):
            if base.endswith(suffix):
                return kind
        return "other"

    def _around(owner, attr, phase, context=False):
        real = getattr(owner, attr)
        if context:
            @contextlib.contextmanager
            def wrapped(*a, **k):
                _mark(phase + "-wait")
                with real(*a, **k) as value:
                    _mark(phase + "-held")
                    yield value
                _mark(phase + "-released")
        else:
            def wrapped(*a, **k):
                _mark(phase)
                try:
                    return real(*a, **k)
                finally:
                    _mark(phase + "-done")
        setattr(owner, attr, wrapped)

    _real_writer = _atomic.atomic_writer

    @contextlib.contextmanager
    def _writer(path, *a, **k):
        _mark("write-" + _kind(path))
        with _real_writer(path, *a, **k) as f:
            _mark("writing-" + _kind(path))       # its temp file exists
            yield f
            _mark("renaming-" + _kind(path))      # written; flush, fsync, rename, fsync dir next
        _mark("wrote-" + _kind(path))

    _atomic.atomic_writer = _writer

if _phases and not _is_build_child():
    from tegra_ai.cache import build_child as _build_child
    from tegra_ai.cache import ensure as _ensure
    from tegra_ai.cache import publish as _publish
    from tegra_ai.cache import store as _store

    _around(_ensure, "ensure", "ensure")            # the CLI imports these when the command runs
    _around(_publish, "publish", "publish")
    _around(_store.EngineCache, "lock", "model-lock", context=True)
    _around(_store.EngineCache, "cache_lock", "cache-lock", context=True)
    _around(_store.EngineCache, "update_link", "link")
    _around(_store.EngineCache, "remove_link", "unlink")
    _around(_store.EngineCache, "prune", "prune")
    _around(_store.EngineCache, "prune_unlisted", "prune-unlisted")
    _around(_store, "_remove_tree", "rmtree")
    _around(_build_child.ChildProcessBuilder, "__call__", "build")
    _around(_publish, "_publish_lock", "publish-lock", context=True)
    _mark("started")
