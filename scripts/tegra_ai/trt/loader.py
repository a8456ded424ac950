"""The one engine loader: every caller that deserializes an engine goes through
:func:`load_engine` (the runner, ``inspect``, ``ensure``'s verification, ensembles and the
multi-model runtime), in the manner of Polygraphy's ``EngineFromBytes``.

Loading an engine is, in this order (TensorRT's rules, per release):

1. the plugin registry is initialised with TensorRT's built-in plugins
   (``init_libnvinfer_plugins``: EfficientNMS_TRT, BatchedNMSDynamic_TRT, ...): the registry
   "is used to find plugin implementations during engine deserialization"
   (NvInferRuntimeCommon.h 8.5 l.1219, 10.3 l.42) and initLibNvInferPlugins "should be
   called once before accessing the Plugin Registry" (NvInferPlugin.h 8.5 l.27, 10.3 l.32);
   otherwise "Cannot deserialize plugin since corresponding IPluginCreator not found in
   Plugin Registry";
2. the plugin libraries the sidecar records (``Sidecar.request["plugins"]``: name, path
   as the device finds it, sha256 the engine was built against) are loaded, each from
   the recorded absolute path, a bundle directory the caller names, or the system plugin
   directory (``/usr/lib/tegra-ai``, what the ``tegra-ai-plugin`` recipe installs;
   ``TEGRA_AI_PLUGIN_PATH`` adds directories), and only with the recorded sha256: a
   library found anywhere else, or with another digest, is refused;
3. the engine is deserialized (:func:`tegra_ai.trt.compat.deserialize`); a plugin that
   is still missing is named from TensorRT's own log line.

A :class:`LoadedEngine` hands out execution contexts (:meth:`LoadedEngine.acquire_context`)
under TensorRT's rule for dynamic shapes: each context in concurrent use has its own
optimization profile(s), selected with ``set_optimization_profile_async`` on a stream that
is then synchronized, the return value checked. Nothing here prints.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref

from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat

TRT_LOG = logging.getLogger("tegra_ai.tensorrt")

# Where the tegra-ai-plugin recipe installs plugin libraries (TEGRA_AI_PLUGIN_DIR =
# ${libdir}/tegra-ai); TEGRA_AI_PLUGIN_PATH (':'-separated) adds directories in front.
SYSTEM_PLUGIN_DIRS = ("/usr/lib/tegra-ai", "/usr/lib64/tegra-ai")
PLUGIN_PATH_ENV = "TEGRA_AI_PLUGIN_PATH"

# TensorRT's log line for a plugin creator missing at deserialization:
#   8.5/8.6: "getPluginCreator could not find plugin: EfficientNMS_TRT version: 1"
#   10.x:    "IPluginRegistry::getPluginCreator: Error Code 4: API Usage Error (Cannot find plugin:
#             EfficientNMS_TRT, version: 1, namespace:.)"  (as users report them, e.g.
#   github.com/NVIDIA/TensorRT/issues/263, laugh12321/TensorRT-YOLO/issues/118)
_MISSING_PLUGIN = re.compile(r"(?:could not find plugin:?|Cannot find plugin:)\s*([A-Za-z0-9_.\-]+),?\s*"
                             r"version:?\s*([A-Za-z0-9_.]+)")

_lock = threading.Lock()
_registry_ready = weakref.WeakSet()             # tensorrt modules whose built-in plugins are registered
_loaded_plugins = weakref.WeakKeyDictionary()   # tensorrt module -> {real path or soname: handle}


# --------------------------------------------------------------------------- logging

def make_logger(trt, verbose: bool = False):
    """A TensorRT logger that keeps the errors (for messages) and sends TensorRT's log to
    the ``tegra_ai.tensorrt`` logger (everything with ``verbose``, else internal errors)."""
    severity = trt.ILogger.Severity
    levels = {severity.INTERNAL_ERROR: logging.CRITICAL, severity.ERROR: logging.ERROR,
              severity.WARNING: logging.WARNING, severity.INFO: logging.INFO, severity.VERBOSE: logging.DEBUG}

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, sev, msg):
            if sev in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(msg)
            if verbose or sev == severity.INTERNAL_ERROR:
                TRT_LOG.log(levels.get(sev, logging.INFO), "[TensorRT] %s", msg)

    return CollectingLogger()


# --------------------------------------------------------------------------- plugins

def init_plugin_registry(trt, logger) -> None:
    """Register TensorRT's built-in plugins once per process (``initLibNvInferPlugins``):
    the parser needs them for plugin nodes and the runtime to deserialize plugin layers."""
    with _lock:
        if trt in _registry_ready:
            return
        init = getattr(trt, "init_libnvinfer_plugins", None)
        if init is not None and init(logger, "") is False:
            raise TegraAIError("TensorRT could not register its built-in plugins (init_libnvinfer_plugins)",
                               hint="libnvinfer_plugin is missing or from another TensorRT", exit_code=EXIT_UNAVAILABLE)
        _registry_ready.add(trt)


def load_plugin_once(trt, feats, library: str):
    """``compat.load_plugin_library`` once per process and library (a second load of the
    same library would register its creators twice)."""
    key = os.path.realpath(library) if os.sep in library else library
    with _lock:
        loaded = _loaded_plugins.setdefault(trt, {})
        if key in loaded:
            return loaded[key]
    handle = compat.load_plugin_library(trt, feats, library)
    with _lock:
        loaded[key] = handle
    return handle


def plugin_search_dirs(bundle_dirs=()) -> list:
    extra = [d for d in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if d]
    return [os.path.abspath(d) for d in (*bundle_dirs, *extra, *SYSTEM_PLUGIN_DIRS)]


def resolve_plugin(record: dict, engine_name: str, bundle_dirs=()) -> str:
    """The file to load for one recorded plugin library: the recorded absolute path, else
    ``NAME`` in a bundle directory or the system plugin directory, with the recorded
    sha256. Missing: exit 69 naming the library; another digest: exit 2."""
    from tegra_ai.util.hashing import sha256_file

    name, path, want = record.get("name"), record.get("path"), record.get("sha256")
    if not isinstance(name, str) or not name or os.sep in name or not isinstance(want, str):
        raise TegraAIError(f"{engine_name}: its sidecar records a malformed plugin library {record!r}",
                           exit_code=EXIT_USAGE)
    dirs = plugin_search_dirs(bundle_dirs)
    candidates = ([path] if isinstance(path, str) and os.path.isabs(path) else []) + [os.path.join(d, name)
                                                                                      for d in dirs]
    if isinstance(path, str) and os.sep not in path:     # a soname: also what the dynamic loader finds
        try:
            from tegra_ai.trt.builder import plugin_file

            candidates.append(plugin_file(path))
        except TegraAIError:
            pass
    found = [c for c in dict.fromkeys(candidates) if os.path.isfile(c)]
    if not found:
        raise TegraAIError(f"{engine_name} needs plugin library {name}, which is not on this device (looked at "
                           f"{', '.join(dict.fromkeys(candidates))})",
                           hint="install the plugin package the engine was built with (e.g. tegra-ai-plugin), or "
                                f"put the library in {SYSTEM_PLUGIN_DIRS[0]}", exit_code=EXIT_UNAVAILABLE)
    for c in found:
        if sha256_file(c) == want:
            return c
    raise TegraAIError(f"{engine_name} was built with plugin library {name} sha256 {want[:12]}, but "
                       f"{', '.join(found)} differs; refusing to load another build of it",
                       hint="rebuild the engine against this plugin (tensorrt-optimize ensure does)",
                       exit_code=EXIT_USAGE)


def missing_plugins(log_lines) -> list:
    """[(plugin name, version)] that TensorRT's log says it could not find."""
    out = []
    for line in log_lines:
        m = _MISSING_PLUGIN.search(str(line))
        if m and (m.group(1), m.group(2)) not in out:
            out.append((m.group(1), m.group(2)))
    return out


# --------------------------------------------------------------------------- engines

class LoadedEngine:
    """A deserialized engine and the execution contexts it may serve at once.

    ``contexts``: how many contexts may run concurrently. A dynamic-shape engine has
    ``profiles_per_context`` optimization profiles per context (the build option
    ``--contexts``, :class:`tegra_ai.spec.BuildOptions`); a static-shape engine needs no
    profile per context, any number of contexts share profile 0 (``contexts`` is None)."""

    def __init__(self, trt, feats, runtime, engine, logger, name: str, sidecar=None):
        self.trt, self.feats, self.runtime, self.engine, self.logger = trt, feats, runtime, engine, logger
        self.name, self.sidecar = name, sidecar
        self.io = compat.io_tensors(trt, engine)
        self.num_profiles = int(engine.num_optimization_profiles)
        self.dynamic = any(d < 0 for t in self.io if t["mode"] == "input" for d in t["shape"])
        built_for = sidecar.options.contexts if sidecar is not None else 1
        if self.dynamic:
            # NvInferRuntime.h, IExecutionContext (8.5 l.2241; 10.3 l.3562; 10.13 l.4232; 11.1 l.3953):
            # "If the engine supports dynamic shapes, each execution context in concurrent use must
            # use a separate optimization profile."
            if built_for < 1 or self.num_profiles % built_for:
                built_for = 1
            self.contexts = built_for
            self.profiles_per_context = self.num_profiles // built_for
        else:
            # Static shapes: "If the associated CUDA engine does not have inputs with dynamic shapes,
            # this method [setOptimizationProfileAsync] need not be called" - contexts share profile 0.
            self.contexts = None
            self.profiles_per_context = self.num_profiles
        self._used = set()
        self._slot_lock = threading.Lock()

    def acquire_context(self, stream, profile: int = 0):
        """``(context, slot)``: a new execution context with its own optimization profile
        ``slot * profiles_per_context + profile`` selected on ``stream``, which is then
        synchronized (NvInferRuntime.h: "Not synchronizing the stream used at enqueue with
        the stream used to set optimization profile asynchronously using this API will result
        in undefined behavior"), so the context may enqueue on any stream. Release the slot
        with :meth:`release`. More concurrent contexts than the engine was built for are
        refused, naming the build option."""
        if not 0 <= int(profile) < max(1, self.profiles_per_context):
            raise TegraAIError(f"{self.name}: optimization profile {profile} does not exist (the engine has "
                               f"{self.profiles_per_context} per context)", exit_code=EXIT_USAGE)
        with self._slot_lock:
            slot = None
            if self.dynamic:
                free = [s for s in range(self.contexts) if s not in self._used]
                if not free:
                    raise TegraAIError(
                        f"{self.name}: a dynamic-shape engine needs one optimization profile per execution context "
                        f"in concurrent use; it was built for {self.contexts} (build option --contexts "
                        f"{self.contexts}) and all are in use",
                        hint=f"rebuild with --contexts {self.contexts + 1} or more (one per pipeline stream or "
                             "runtime worker), or run fewer streams/workers", exit_code=EXIT_USAGE)
                slot = free[0]
                self._used.add(slot)
        try:
            context = self.engine.create_execution_context()
            if context is None:
                raise TegraAIError(f"TensorRT could not create an execution context for {self.name} (out of GPU "
                                   "memory?)")
            if self.dynamic:
                from tegra_ai.cuda import driver

                index = slot * self.profiles_per_context + int(profile)
                compat.set_optimization_profile(context, index, int(stream))
                driver.stream_synchronize(stream)
            elif profile:
                compat.set_optimization_profile(context, int(profile), int(stream))
                from tegra_ai.cuda import driver

                driver.stream_synchronize(stream)
        except BaseException:
            self.release(slot)
            raise
        return context, slot

    def release(self, slot) -> None:
        if slot is None:
            return
        with self._slot_lock:
            self._used.discard(slot)

    @property
    def contexts_in_use(self) -> int:
        return len(self._used)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TegraAIError(f"cannot read engine {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None


def load_engine(engine_path: str, *, bundle_dirs=(), verbose: bool = False, check_platform: bool = True,
                sidecar="auto") -> LoadedEngine:
    """Deserialize ``engine_path`` after its plugins (see the module docstring).

    ``sidecar``: ``"auto"`` reads and checks ``ENGINE.json`` when present (a sidecar that
    does not describe the engine is refused), or a :class:`~tegra_ai.spec.Sidecar`, or None.
    ``check_platform``: refuse an engine whose sidecar names another TensorRT or GPU before
    TensorRT sees it."""
    from tegra_ai.trt.inspect import read_engine_and_sidecar

    name = os.path.basename(engine_path)
    if sidecar == "auto":
        sidecar = read_engine_and_sidecar(engine_path)
    trt, feats = compat.load()
    if feats.is_rtx:
        raise TegraAIError(f"loading {name} needs full TensorRT on the device; this machine has {feats.describe()}, "
                           "which builds engines for RTX GPUs but does not run Jetson ones", exit_code=EXIT_UNAVAILABLE)
    if sidecar is not None and check_platform:
        from tegra_ai.trt.builder import check_engine_matches

        problems = check_engine_matches(sidecar, feats, None)
        if problems:
            raise TegraAIError(f"{name} cannot be loaded here: {'; '.join(problems)}",
                               hint="rebuild it on this device with tensorrt-optimize build or ensure")
    logger = make_logger(trt, verbose)
    init_plugin_registry(trt, logger)
    for record in (sidecar.request.get("plugins") or []) if sidecar is not None else []:
        load_plugin_once(trt, feats, resolve_plugin(record, name, bundle_dirs))
    data = _read(engine_path)
    try:
        runtime, engine = compat.deserialize(trt, feats, logger, data)
    except TegraAIError as exc:
        missing = missing_plugins(logger.errors)
        if missing:
            names = ", ".join(f"{n} (version {v})" for n, v in missing)
            raise TegraAIError(f"{name} uses plugin {names}, which is not registered with TensorRT",
                               hint="install the library that provides it and record it at build time "
                                    "(--plugin LIB.so)", exit_code=EXIT_UNAVAILABLE) from None
        raise exc from None
    return LoadedEngine(trt, feats, runtime, engine, logger, name, sidecar)


__all__ = ["LoadedEngine", "load_engine", "init_plugin_registry", "load_plugin_once", "resolve_plugin",
           "missing_plugins", "make_logger", "plugin_search_dirs", "SYSTEM_PLUGIN_DIRS", "PLUGIN_PATH_ENV"]
