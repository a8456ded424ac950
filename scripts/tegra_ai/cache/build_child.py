"""Engine builds of ``ensure`` in a child process.

TensorRT runs in a fresh interpreter (``python -m tegra_ai.cache.build_child REQUEST``,
never a fork of a process that may have initialised CUDA), in its own process group.
A crash (segfault, abort, the OOM killer) or a build past the per-model time limit then
fails that one model: the parent kills the child's process group, removes the child's
temp files, and goes on with the next model; the summary and index are still written.

The child writes the engine bytes and the sidecar JSON to temp files in the model's
cache directory (``.*.tmp``: a crashed build's leftovers are removed under the model
lock by :class:`~tegra_ai.cache.store.EngineCache`); the parent verifies them (sidecar
valid and untampered, its key the key the parent computed) and commits them through
:meth:`EngineCache.store`. Nothing half-built ever has an engine name.

The request is a JSON file: the :class:`~tegra_ai.spec.BuildRequest` whole, plus where
the child writes::

    {"build": BuildRequest.to_dict(), "engine_out": ..., "sidecar_out": ..., "result_out": ...,
     "show_progress": bool, "verbose": bool, "parent_pid": int}
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from tegra_ai.errors import EXIT_CANTCREAT, EXIT_FAILURE, EXIT_USAGE, TegraAIError, write_error
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

LOG = logging.getLogger("tegra_ai.ensure")
KILL_GRACE_SECONDS = 5.0
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _unlink(*paths) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds, reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the group may still hold grandchildren after the leader exited
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait()


def build_in_child(request, *, temp_prefix: str, timeout: float | None = None, show_progress: bool = True,
                   verbose: bool = False, timeout_flag: str = "--model-timeout"):
    """:func:`tegra_ai.trt.builder.build_engine` of a :class:`~tegra_ai.spec.BuildRequest`
    in a child interpreter; returns its
    :class:`~tegra_ai.trt.builder.BuildResult`. The child's files are
    ``temp_prefix + ".*.tmp"`` (removed in every case). A crash, a time-out or an
    interruption (KeyboardInterrupt, SIGTERM via ``cli.common``) kills the child's process
    group at once, even while TensorRT's C++ builder runs."""
    from tegra_ai.spec import Sidecar
    from tegra_ai.trt.builder import BuildResult

    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise TegraAIError(f"{timeout_flag} {timeout!r}: expected a number of seconds > 0", exit_code=EXIT_USAGE)
    req = {"build": request.replace(model=os.path.abspath(request.model)).to_dict(),
           "engine_out": temp_prefix + ".engine.tmp", "sidecar_out": temp_prefix + ".sidecar.tmp",
           "result_out": temp_prefix + ".result.tmp", "request": temp_prefix + ".request.tmp",
           "show_progress": show_progress, "verbose": verbose, "parent_pid": os.getpid()}
    temps = (req["engine_out"], req["sidecar_out"], req["result_out"], req["request"])
    proc = None
    try:
        try:
            with open(req["request"], "w") as f:
                json.dump(req, f)
        except OSError as exc:
            raise write_error(os.path.dirname(os.path.abspath(temp_prefix)), exc) from None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        # stdout of the child (TensorRT prints there at times) goes to our stderr:
        # ``--json`` keeps stdout for the result.
        try:
            out = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            out = subprocess.DEVNULL
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cache.build_child", req["request"]],
                                stdin=subprocess.DEVNULL, stdout=out, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise TegraAIError(f"the build took longer than {timeout_flag} {timeout:g} s and was stopped",
                               hint=f"raise {timeout_flag}, or build this model on a builder Jetson "
                                    "and ship the engine in the image") from None
        seconds = time.monotonic() - started
        result = None
        try:
            result = read_json_file(req["result_out"])
        except JSONFileError:
            pass
        if proc.returncode < 0:
            raise TegraAIError(f"the engine build crashed ({_signal_name(-proc.returncode)}) after {seconds:.0f} s",
                               hint="run 'tensorrt-optimize build' on this model with --verbose for TensorRT's log")
        if not isinstance(result, dict) or result.get("ok") is not True:
            if result is None and proc.returncode == EXIT_CANTCREAT:
                raise TegraAIError(f"cannot write into {os.path.dirname(os.path.abspath(temp_prefix))}: the build "
                                   "could not write its engine or result there (a full disk or a read-only cache; "
                                   "the line above names the error)", exit_code=EXIT_CANTCREAT)
            if isinstance(result, dict) and result.get("error"):
                raise TegraAIError(str(result["error"]), hint=result.get("hint"),
                                   exit_code=int(result.get("exit_code") or EXIT_FAILURE))
            raise TegraAIError(f"the engine build exited with status {proc.returncode} and no result")
        with open(req["engine_out"], "rb") as f:
            engine = f.read()
        sidecar = Sidecar.load(req["sidecar_out"])
        if sidecar.engine_size != len(engine) or not sidecar.describes(_sha256(engine)):
            raise TegraAIError("the build child's engine does not match its sidecar")
        return BuildResult(engine=engine, sidecar=sidecar, notes=list(result.get("notes") or []))
    finally:
        if proc is not None and proc.poll() is None:   # interrupted (Ctrl-C, SIGTERM) while waiting
            kill_group(proc, grace=1.0)
        _unlink(*temps)


class ChildProcessBuilder:
    """``builder(entry) -> BuildResult`` for :func:`tegra_ai.cache.ensure.ensure`, each build
    in a child interpreter (:func:`build_in_child`) with an optional time limit."""

    def __init__(self, cache, *, timeout: float | None = None, show_progress: bool = True, verbose: bool = False):
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise TegraAIError(f"--model-timeout {timeout!r}: expected a number of seconds > 0", exit_code=EXIT_USAGE)
        self.cache = cache
        self.timeout = timeout
        self.show_progress = show_progress
        self.verbose = verbose

    def __call__(self, entry):
        from tegra_ai.util.atomic import atomic_writer

        # One timing cache for the whole cache dir: rebuilding after an OTA update of one
        # model reuses the tactic timings of every layer seen before. A timing cache
        # shipped in the bundle seeds it.
        timing_cache = os.path.join(self.cache.root, "timing.cache")
        if entry.timing_cache and os.path.isfile(entry.timing_cache) and not os.path.exists(timing_cache):
            with open(entry.timing_cache, "rb") as src, atomic_writer(timing_cache) as dst:
                dst.write(src.read())
        prefix = os.path.join(self.cache.model_dir(entry.name), f".{entry.name}-build-{os.getpid()}")
        return build_in_child(entry.build_request(timing_cache=timing_cache), temp_prefix=prefix,
                              timeout=self.timeout, show_progress=self.show_progress, verbose=self.verbose)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- child side

def _die_with_parent(parent_pid) -> None:
    """A build must not outlive the ``ensure`` that asked for it (its own session keeps it
    out of the terminal's signals; a SIGKILLed parent would otherwise leave it building)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if parent_pid and os.getppid() != parent_pid:                       # the parent died before that
        os._exit(EXIT_FAILURE)


def child_main(request_path: str) -> int:
    log = logging.getLogger("tegra_ai")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False
    try:
        req = read_json_file(request_path)
    except JSONFileError as exc:
        log.error("build request %s: %s", request_path, exc)
        return EXIT_USAGE
    _die_with_parent(req.get("parent_pid"))
    log.setLevel(logging.DEBUG if req.get("verbose") else logging.INFO)

    def result(obj):
        with open(req["result_out"], "w") as f:
            json.dump(obj, f)

    try:
        from tegra_ai.spec import BuildRequest
        from tegra_ai.trt.builder import build_engine

        built = build_engine(BuildRequest.from_dict(req["build"]), show_progress=bool(req.get("show_progress")),
                             verbose=bool(req.get("verbose")))
        try:
            with open(req["engine_out"], "wb") as f:
                f.write(built.engine)
            built.sidecar.with_engine(req["engine_out"], built.engine)
            with open(req["sidecar_out"], "w") as f:
                json.dump(built.sidecar.to_dict(), f)
        except OSError as exc:   # a full disk or read-only cache: named, 73 (the parent removes the temps)
            raise write_error(os.path.dirname(os.path.abspath(req["engine_out"])), exc) from None
        outcome, code = {"ok": True, "notes": list(built.notes)}, 0
    except TegraAIError as exc:
        outcome, code = {"ok": False, "error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}, 1
    except Exception as exc:  # reported by the parent as this model's failure
        first = str(exc).splitlines()[0] if str(exc) else ""
        outcome, code = {"ok": False, "error": f"internal error in the build: {type(exc).__name__}: {first}"}, 1
    try:
        result(outcome)
    except OSError as exc:       # not even the small result fits: one line here, 73 tells the parent
        log.error("%s", write_error(req["result_out"], exc).message)
        return EXIT_CANTCREAT
    return code


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
