"""Every difference between TensorRT releases lives here, and nowhere else.

Supported: TensorRT 8.5 (JetPack 5), 8.6, 10.x (JetPack 6: 10.3; JetPack 7: 10.13-10.16),
11.x, and the TensorRT-RTX flavour (``tensorrt_rtx``, which builds engines ahead of
time without a GPU for SM80/86/89/120 but cannot run them on a Jetson).

The rest of the package asks ``features`` questions (``feats.weak_typing``) or calls
the helpers below; it never compares ``trt.__version__``. The facts are a table
(:data:`FEATURES`) so unit tests can pin what exists in which release without
importing TensorRT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.spec import parse_version

FLAVOR_TENSORRT = "tensorrt"
FLAVOR_RTX = "tensorrt-rtx"

# feature -> (first TensorRT version that has it, first version that no longer has it).
# None means "since before 8.5" / "still there". Sources: TensorRT release notes and
# API docs of 8.5, 8.6, 10.0, 10.1, 10.12 and 11.0; every fact visible in the Python API
# is checked against NVIDIA's binding sources (tests/trt_api, tests/test_trt_api_surface.py).
FEATURES = {
    # ONNX needs an explicit-batch network; the flag is required on 8.x, ignored and
    # deprecated from 10.0 (explicit batch is the only mode), gone in 11.
    "explicit_batch_flag": (None, (10, 0)),
    # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    "strongly_typed": ((9, 0), None),
    # From 11.0 every network is strongly typed; the flag stays (value 0, not 1) but is
    # deprecated and ignored, so we no longer set it.
    "strongly_typed_flag": ((9, 0), (11, 0)),
    # Weak typing: BuilderFlag.FP16/INT8/BF16 pick precisions for the builder.
    # Deprecated in 10.12, removed in 11.0 (strong typing only).
    "weak_typing": (None, (11, 0)),
    "weak_typing_deprecated": ((10, 12), (11, 0)),
    # Implicit quantization with IInt8Calibrator: deprecated 10.1, removed 11.0.
    "int8_calibrators": (None, (11, 0)),
    "int8_calibrators_deprecated": ((10, 1), (11, 0)),
    # IBuilderConfig.set_memory_pool_limit replaced max_workspace_size in 8.4.
    "memory_pool_limit": ((8, 4), None),
    "builder_optimization_level": ((8, 6), None),
    "hardware_compatibility": ((8, 6), None),
    "progress_monitor": ((10, 0), None),
    "engine_inspector": ((8, 2), None),
    # Name-based I/O tensor API (get_tensor_name, get_tensor_profile_shape).
    "tensor_io_api": ((8, 5), None),
    "timing_cache": ((8, 0), None),
    "plugin_v3": ((10, 0), None),
    # IPluginRegistry.load_library (before it, ctypes loads the plugin library).
    "registry_load_library": ((8, 6), None),
    # BuilderFlag.BF16 / FP8 for weak typing (gone with the weak-typing flags in 11.0).
    "bf16": ((9, 0), (11, 0)),
    # ParserError.node_name() (9.3+); before it only node(), the node's index.
    "parser_error_node_name": ((9, 3), None),
    # IOutputAllocator (data-dependent output shapes) is in the Python API from 8.5
    # (pyCore.cpp release/8.5: reallocate_output, notify_shape); 10.0 deprecates
    # reallocateOutput for reallocateOutputAsync (NvInferRuntime.h release/10.3 l.3457-3487;
    # PyOutputAllocator calls reallocate_output_async, falling back to reallocate_output).
    "output_allocator_async": ((10, 0), None),
    # Shape-tensor values of an optimization profile (IOptimizationProfile.set_shape_input).
    # Up to 10.10 the binding passes std::vector<int32_t> to setShapeValues (pyCore.cpp
    # release/8.5 and release/10.3 l.58-67; NvInferRuntime.h 10.3 l.2219-2220: the values
    # "must fit in int32_t"); from 10.11 std::vector<int64_t> to setShapeValuesV2 (pyCore.cpp
    # release/10.13.3, release/10.16 and release/11.1 l.59-67; NvInferRuntime.h 10.13.3
    # l.2858-2859, 11.1 l.2693-2694: "must fit in int64_t"; 11.x has only the V2 call).
    "shape_values_int64": ((10, 11), None),
    # Rank of a shape-tensor input: 8.x-9.x "the datatype of t is DataType::kINT32, the rank
    # is either 0 or 1" (NvInferRuntime.h 8.5 l.1183, 9.3 l.1481); from 10.0 any rank with
    # "the volume does not exceed 64" (10.0 l.2130, 10.3 l.2211), int32 or int64.
    "shape_tensor_any_rank": ((10, 0), None),
    "dla": (None, None),
}

# TensorRT-RTX 1.x: the TensorRT 10 API, strongly typed only, no calibrators, no DLA,
# and builds for a compute capability chosen in the config.
RTX_OVERRIDES = {
    "explicit_batch_flag": False,
    "strongly_typed": True,
    "strongly_typed_flag": True,
    "weak_typing": False,
    "weak_typing_deprecated": False,
    "int8_calibrators": False,
    "int8_calibrators_deprecated": False,
    "dla": False,
    "plugin_v3": True,
    "progress_monitor": True,
    # RTX 1.2 made timing-cache calls no-ops (it has a runtime cache instead).
    "timing_cache": False,
}

# Compute capabilities TensorRT-RTX can target without a GPU (ComputeCapability enum).
RTX_TARGETS = {"8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121", "7.5": "SM75"}

# GPUs with a DLA: Xavier (7.2) and Orin (8.7). Thor (11.0) has none.
DLA_COMPUTE_CAPABILITIES = ("7.2", "8.7")


def _has(feature: str, version: tuple) -> bool:
    first, gone = FEATURES[feature]
    v = tuple(version[:2])
    return (first is None or v >= first) and (gone is None or v < gone)


@dataclass(frozen=True)
class Features:
    """What one TensorRT install offers. ``version`` is the Python bindings' ``__version__``
    (what the fact table is routed by); ``library_version`` is the libnvinfer actually
    loaded (``getInferLibVersion()``), which differs where the bindings were built from
    another release's sources (meta-tegra master: 10.13.3 bindings over libnvinfer
    10.16.2, see API_TARGETS)."""
    version: tuple
    flavor: str
    explicit_batch_flag: bool
    strongly_typed: bool
    strongly_typed_flag: bool
    weak_typing: bool
    weak_typing_deprecated: bool
    int8_calibrators: bool
    int8_calibrators_deprecated: bool
    memory_pool_limit: bool
    builder_optimization_level: bool
    hardware_compatibility: bool
    progress_monitor: bool
    engine_inspector: bool
    tensor_io_api: bool
    timing_cache: bool
    plugin_v3: bool
    registry_load_library: bool
    bf16: bool
    parser_error_node_name: bool
    dla: bool
    output_allocator_async: bool = False
    shape_values_int64: bool = False
    shape_tensor_any_rank: bool = False
    library_version: tuple = ()

    @property
    def strongly_typed_only(self) -> bool:
        return self.strongly_typed and not self.weak_typing

    @property
    def version_string(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def library_version_string(self) -> str:
        return ".".join(str(v) for v in (self.library_version or self.version))

    @property
    def is_rtx(self) -> bool:
        return self.flavor == FLAVOR_RTX

    def describe(self) -> str:
        name = "TensorRT-RTX" if self.is_rtx else "TensorRT"
        lib = self.library_version_string
        if lib != self.version_string:  # bindings from another release than the library they load
            return f"{name} {self.version_string} (libnvinfer {lib})"
        return f"{name} {self.version_string}"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "version": self.version_string, "library_version": self.library_version_string}


def features_for(version, flavor: str = FLAVOR_TENSORRT, library_version=None) -> Features:
    """The facts for one release. ``version`` (the bindings' ``__version__``) and
    ``library_version`` (libnvinfer's, default: the same) are strings or tuples."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    lib = parse_version(library_version) if isinstance(library_version, str) else tuple(library_version or v)
    if flavor == FLAVOR_TENSORRT and v[:2] < (8, 5):
        raise TegraAIError(f"TensorRT {'.'.join(map(str, v))} is older than the oldest supported release (8.5, JetPack 5)",
                           exit_code=EXIT_UNAVAILABLE)
    values = {name: _has(name, v if flavor == FLAVOR_TENSORRT else (10, 99)) for name in FEATURES}
    if flavor == FLAVOR_RTX:
        values.update(RTX_OVERRIDES)
    return Features(version=v, flavor=flavor, library_version=lib, **values)


# Library/bindings pairings we support, each checked in CI against the Python API surface
# of the binding sources it is built from (tests/trt_api, tools/trt-api-surface):
# name -> (libnvinfer version, `tensorrt.__version__`, API surface of the bindings).
# On meta-tegra master python3-tensorrt is built from NVIDIA's 10.13.3 binding sources
# against tensorrt-core 10.16.2, so `__version__` says 10.16 while the API is 10.13's:
# nothing here may assume a 10.14+ binding from the version string; where 10.13 and 10.16
# differ (e.g. ICudaEngine.get_engine_stat) the code probes the binding with hasattr.
API_TARGETS = {
    "jetpack5": ("8.5.2", "8.5.2", "8.5"),
    "trt-8.6": ("8.6.1", "8.6.1", "8.6"),
    "jetpack6": ("10.3.0", "10.3.0", "10.3"),
    "trt-10.13": ("10.13.3", "10.13.3", "10.13"),
    "trt-10.16": ("10.16.2", "10.16.2", "10.16"),
    "jetpack7": ("10.16.2", "10.16.2", "10.13"),  # meta-tegra master: 10.13.3 bindings, 10.16.2 library
    "trt-11": ("11.1.0", "11.1.0", "11.1"),
}


def decode_infer_lib_version(value: int) -> tuple:
    """``getInferLibVersion()`` -> (major, minor, patch). NvInferRuntimeBase.h: 8.x encodes
    MAJOR*1000 + MINOR*100 + PATCH (8.5.2 -> 8502); 10.0+ (MAJOR*100 + MINOR)*100 + PATCH
    (10.16.2 -> 101602)."""
    value = int(value)
    if value >= 100000:
        return (value // 10000, value // 100 % 100, value % 100)
    return (value // 1000, value // 100 % 10, value % 100)


def _loaded_library(stem: str) -> str | None:
    """Path of the shared library ``stem`` (e.g. libnvinfer.so) already mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if line.count(" ") >= 5 else ""
                if os.path.basename(path).startswith(stem):
                    return path
    except OSError:
        pass
    return None


def infer_library_version(module, stem: str = "libnvinfer.so"):
    """The version of the libnvinfer the ``tensorrt`` module loaded, through ctypes
    ``getInferLibVersion()``; None when it cannot be read (then the bindings' version counts)."""
    import ctypes

    del module  # importing the module loaded the library; we only look it up
    path = _loaded_library(stem)
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1))
        fn = lib.getInferLibVersion
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int32, []
    try:
        return decode_infer_lib_version(fn())
    except Exception:
        return None


# --------------------------------------------------------------------------- loading

_loaded = None


def load():
    """Import TensorRT and return ``(module, Features)``.

    ``TEGRA_AI_TENSORRT`` chooses: ``tensorrt`` (full TensorRT, what Jetsons have),
    ``tensorrt_rtx``, or ``auto`` (default: full TensorRT, else TensorRT-RTX)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    choice = os.environ.get("TEGRA_AI_TENSORRT", "auto")
    candidates = {"auto": ["tensorrt", "tensorrt_rtx"], "tensorrt": ["tensorrt"],
                  "tensorrt_rtx": ["tensorrt_rtx"]}.get(choice)
    if candidates is None:
        raise TegraAIError(f"TEGRA_AI_TENSORRT={choice!r}: expected auto, tensorrt or tensorrt_rtx", exit_code=EXIT_USAGE)
    problems = []
    for name in candidates:
        try:
            module = __import__(name)
            version = module.__version__
        except Exception as exc:  # PyPI's 'tensorrt' stub raises more than ImportError
            problems.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        flavor = FLAVOR_RTX if name == "tensorrt_rtx" else FLAVOR_TENSORRT
        library = infer_library_version(module) if flavor == FLAVOR_TENSORRT else None
        _loaded = (module, features_for(version, flavor, library))
        return _loaded
    raise TegraAIError("TensorRT is not available on this machine (" + "; ".join(problems) + ")",
                       hint="on a Jetson install python3-tensorrt (meta-tegra); on a host without a Jetson GPU only "
                            "the host half (check, bundle) runs, or pip install tensorrt-rtx for RTX-only builds",
                       exit_code=EXIT_UNAVAILABLE)


def available() -> bool:
    try:
        load()
        return True
    except TegraAIError:
        return False


def reset_for_tests():
    global _loaded
    _loaded = None


# --------------------------------------------------------------------------- building

def create_network(trt, feats: Features, builder, strongly_typed: bool):
    flags = 0
    if feats.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        if not feats.strongly_typed:
            raise TegraAIError(f"{feats.describe()} has no strongly typed networks (they arrived in TensorRT 9.0)",
                               hint="drop --strongly-typed; Q/DQ models build with the INT8 flag on this release",
                               exit_code=EXIT_USAGE)
        if feats.strongly_typed_flag:  # 11.x: always strongly typed, the flag is ignored
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    if network is None:
        raise TegraAIError(f"{feats.describe()} refused to create a network (flags {flags:#x})")
    return network


def fp16_copy_for_build(feats: Features, precision: str, has_qdq: bool) -> bool:
    """Whether the build parses an FP16 copy of the model (:mod:`tegra_ai.onnx_fp16`): only
    where the release has no FP16 builder flag (TensorRT 11, TensorRT-RTX: strongly typed
    only; NvInfer.h release/11.1 has no BuilderFlag::kFP16/kINT8) and FP16 is wanted:
    ``--precision fp16`` of a float model, or a Q/DQ model at any precision but ``fp32``,
    whose unquantized layers would otherwise run FP32 (8.5-10.x run them FP16 through the
    flag, :func:`resolve_typing`)."""
    if not feats.strongly_typed_only:
        return False
    return precision == "fp16" or (has_qdq and precision in ("auto", "fp16", "int8", "best"))


def resolve_typing(feats: Features, precision: str, has_qdq: bool, strongly_typed: bool | None,
                   has_calibration: bool) -> dict:
    """Decide strong vs weak typing and the builder flags for ``precision``.

    Returns ``{"strongly_typed": bool, "flags": [names], "notes": [str], "fp16_copy": bool,
    "float_precision": {"path", "why"}}`` (``fp16_copy``: the builder parses an FP16 copy of
    the model, :func:`fp16_copy_for_build`); raises a clear
    error when the precision cannot be had on this release."""
    notes = []
    if strongly_typed is None:
        # A Q/DQ model builds weakly typed with FP16 + INT8 where the release still has the
        # flags (8.5-10.x): strongly typed, every layer the model leaves unquantized would
        # run FP32. TensorRT 11 / RTX only build the model's own types.
        strongly_typed = feats.strongly_typed_only
        if has_qdq and feats.weak_typing and not strongly_typed:
            notes.append("Q/DQ model: weakly typed with FP16 + INT8, so the layers left in float run FP16 "
                         "(a strongly typed build would run them FP32)")
    if strongly_typed and not feats.strongly_typed:
        raise TegraAIError(f"{feats.describe()} has no strongly typed networks (they arrived in TensorRT 9.0)",
                           exit_code=EXIT_USAGE)
    asked = precision
    if precision == "auto":
        # Strongly typed: the model's own types. Weakly typed: FP16 (Jetson's fast default),
        # plus INT8 where the model is Q/DQ.
        precision = "fp32" if strongly_typed else ("best" if has_qdq else "fp16")
    if not strongly_typed and not feats.weak_typing:
        raise TegraAIError(f"{feats.describe()} only builds strongly typed networks", exit_code=EXIT_USAGE)
    flags = []
    if strongly_typed:
        fp16_copy = fp16_copy_for_build(feats, asked, has_qdq)
        if precision in ("fp16", "best") and not has_qdq and not fp16_copy:
            raise TegraAIError(
                f"--precision {precision} needs weakly typed builder flags, which {feats.describe()} does not have",
                hint="convert the model first: tensorrt-optimize convert-fp16 MODEL.onnx -o MODEL.fp16.onnx",
                exit_code=EXIT_USAGE)
        if precision == "int8" and not has_qdq:
            raise TegraAIError(
                f"--precision int8 on {feats.describe()} needs a Q/DQ (explicitly quantized) ONNX model",
                hint="quantize it first: calibration-dataset, then tensorrt-optimize quantize; build the Q/DQ model",
                exit_code=EXIT_USAGE)
        if fp16_copy and has_qdq:
            notes.append(f"Q/DQ model on {feats.describe()} (no FP16 builder flag): built from a copy whose "
                         "unquantized layers are FP16 (tegra_ai.onnx_fp16; Q/DQ nodes with their FP32 scales, "
                         "inputs/outputs, sensitive ops and the accuracy gate's float layers stay FP32)")
            why = ("no FP16 builder flag on this release: the Q/DQ model's unquantized layers were converted to "
                   "FP16 on the host; Q/DQ nodes and their scales stay FP32")
        elif fp16_copy:
            notes.append(f"--precision fp16 on {feats.describe()}: built from an FP16 copy of the model "
                         "(tegra_ai.onnx_fp16; inputs/outputs and sensitive ops FP32)")
            why = "no FP16 flag on this release: built from an FP16 copy of the model (tegra_ai.onnx_fp16)"
        else:
            if precision != "fp32" and has_qdq:
                notes.append(f"--precision {precision}: the strongly typed network takes its precisions from the "
                             "Q/DQ model")
            why = ("strongly typed: layers run in the model's own types" +
                   (f"; the Q/DQ model's unquantized layers run FP32 (--precision {precision})" if has_qdq else ""))
        return {"strongly_typed": True, "flags": flags, "notes": notes, "fp16_copy": fp16_copy,
                "float_precision": {"path": "fp16-copy" if fp16_copy else "model-types", "why": why}}
    # INT8 on a weakly typed network also sets FP16 (trtexec's --int8 --fp16): a layer with
    # no INT8 kernel, or left unquantized, then runs FP16 instead of falling back to FP32.
    if precision in ("fp16", "best", "int8"):
        flags.append("FP16")
    if precision == "int8" or (precision == "best" and (has_qdq or has_calibration)):
        if not has_qdq and not has_calibration:
            raise TegraAIError("--precision int8 needs calibration data (--calibration / --calibration-cache) or a Q/DQ model",
                               exit_code=EXIT_USAGE)
        if not has_qdq and not feats.int8_calibrators:
            raise TegraAIError(f"{feats.describe()} has no INT8 calibrators", hint="use a Q/DQ model",
                               exit_code=EXIT_USAGE)
        flags.append("INT8")
    if precision == "best" and "INT8" not in flags:
        notes.append("--precision best: INT8 left off (no calibration data and no Q/DQ in the model); FP16 + FP32")
    if feats.weak_typing_deprecated and flags:
        notes.append(f"{feats.describe()} deprecates the weak-typing flags {', '.join(flags)}; TensorRT 11 removes them")
    if "INT8" in flags and not has_qdq and feats.int8_calibrators_deprecated:
        notes.append(f"{feats.describe()} deprecates implicit INT8 calibration; Q/DQ models are the way forward")
    fp = ({"path": "fp16-flag", "why": "weakly typed with BuilderFlag.FP16: layers without INT8 run FP16"}
          if "FP16" in flags else {"path": "fp32", "why": f"--precision {precision}: no FP16 flag"})
    return {"strongly_typed": False, "flags": flags, "notes": notes, "fp16_copy": False, "float_precision": fp}


def set_builder_flags(trt, config, flag_names: list) -> None:
    for name in flag_names:
        config.set_flag(getattr(trt.BuilderFlag, name))


def set_workspace(trt, feats: Features, config, size_bytes: int | None) -> None:
    if size_bytes is None:
        return
    if feats.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(size_bytes))
    else:  # pragma: no cover - only TensorRT < 8.4, below our floor
        config.max_workspace_size = int(size_bytes)


def set_optimization_level(feats: Features, config, level: int | None) -> list:
    if level is None:
        return []
    if not feats.builder_optimization_level:
        return [f"--opt-level ignored: {feats.describe()} has no builder optimization level (TensorRT 8.6+)"]
    if not 0 <= level <= 5:
        raise TegraAIError(f"--opt-level {level}: expected 0..5", exit_code=EXIT_USAGE)
    config.builder_optimization_level = int(level)
    return []


def configure_dla(trt, feats: Features, builder, config, dla_core: int | None, gpu_fallback: bool,
                  precision_flags: list, strongly_typed: bool) -> None:
    if dla_core is None:
        return
    if not feats.dla:
        raise TegraAIError(f"{feats.describe()} has no DLA support", exit_code=EXIT_USAGE)
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if cores == 0:
        raise TegraAIError("--dla-core given, but this GPU has no DLA (Xavier and Orin have DLAs; Thor and dGPUs do not)",
                           exit_code=EXIT_USAGE)
    if not 0 <= dla_core < cores:
        raise TegraAIError(f"--dla-core {dla_core}: this device has DLA cores 0..{cores - 1}", exit_code=EXIT_USAGE)
    if not strongly_typed and not ({"FP16", "INT8"} & set(precision_flags)):
        raise TegraAIError("the DLA runs FP16 or INT8 only", hint="add --precision fp16 or int8", exit_code=EXIT_USAGE)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    if gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def set_rtx_compute_capability(trt, feats: Features, config, compute_capability: str | None) -> str | None:
    """TensorRT-RTX builds for a chosen GPU architecture; full TensorRT builds for the GPU it runs on."""
    if not feats.is_rtx:
        if compute_capability:
            raise TegraAIError("--compute-capability is for TensorRT-RTX ahead-of-time builds; full TensorRT builds "
                               "for the GPU it runs on", exit_code=EXIT_USAGE)
        return None
    cc = compute_capability or "8.6"
    if cc not in RTX_TARGETS:
        raise TegraAIError(f"TensorRT-RTX cannot target compute capability {cc} (it targets {', '.join(sorted(RTX_TARGETS))}; "
                           "Jetson's 7.2, 8.7 and 11.0 need full TensorRT on the device)", exit_code=EXIT_USAGE)
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, RTX_TARGETS[cc]), 0)
    return cc


def attach_progress_monitor(trt, feats: Features, config, on_progress) -> object | None:
    """Hook TensorRT's progress monitor (10.0+) to ``on_progress(phase_stack)``.

    Returns the monitor (keep a reference while building) or None when unsupported."""
    if not feats.progress_monitor or on_progress is None:
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.phases = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.phases[phase_name] = [0, num_steps, parent_phase]
            on_progress(dict(self.phases))

        def step_complete(self, phase_name, step):
            if phase_name in self.phases:
                self.phases[phase_name][0] = step + 1
                on_progress(dict(self.phases))
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.phases.pop(phase_name, None)
            on_progress(dict(self.phases))

    monitor = _Monitor()
    config.progress_monitor = monitor
    return monitor


def load_timing_cache(feats: Features, config, data: bytes | None):
    """Create (or load) a timing cache and attach it. A cache from another TensorRT
    version or GPU is tolerated: TensorRT rejects it and we start a fresh one."""
    if not feats.timing_cache:
        return None, ["timing cache unsupported on " + feats.describe()]
    notes = []
    cache = None
    if data:
        try:
            cache = config.create_timing_cache(data)
        except Exception:
            cache = None
        if cache is None:
            notes.append("timing cache is from another TensorRT version or GPU; starting a fresh one")
    if cache is None:
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, ignore_mismatch=True):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=True)
        notes.append("timing cache rejected by TensorRT; starting a fresh one")
    return cache, notes


def set_calibrator(feats: Features, config, calibrator) -> None:
    if not feats.int8_calibrators:
        raise TegraAIError(f"{feats.describe()} has no INT8 calibrators", hint="use a Q/DQ model", exit_code=EXIT_USAGE)
    config.int8_calibrator = calibrator


def _set_shape(profile, name, mn, opt, mx) -> None:
    # IOptimizationProfile.set_shape raises RuntimeError on inconsistent shapes (min > opt, ranks differ)
    try:
        profile.set_shape(name, tuple(mn), tuple(opt), tuple(mx))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TegraAIError(f"TensorRT rejected the shapes of {name} (min {list(mn)}, opt {list(opt)}, max {list(mx)}): "
                           f"{exc}", exit_code=EXIT_USAGE) from None


def check_shape_tensor_input(feats: Features, inp) -> None:
    """A shape-tensor input this release's profiles can describe (``inp``: trt.shapes.ModelInput)."""
    rank, volume = len(inp.dims), inp.volume
    if not feats.shape_tensor_any_rank and rank > 1:
        raise TegraAIError(f"shape-tensor input {inp.name!r} has rank {rank}; {feats.describe()} takes shape tensors "
                           "of rank 0 or 1 only (NvInferRuntime.h, setShapeValues)", exit_code=EXIT_USAGE)
    if volume is None or volume > 64:
        raise TegraAIError(f"shape-tensor input {inp.name!r} has {volume or 'dynamic'} elements; TensorRT takes "
                           "shape tensors of fixed dimensions and at most 64 values", exit_code=EXIT_USAGE)


def _set_shape_values(feats: Features, profile, s) -> None:
    """``IOptimizationProfile.set_shape_input``: the min/opt/max values of a shape-tensor input
    (the binding raises RuntimeError when setShapeValues(V2) returns false, TypeError when a
    value does not fit its vector's integer type)."""
    bits = 64 if feats is not None and feats.shape_values_int64 else 32
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if any(not lo <= v <= hi for vals in (s.min, s.opt, s.max) for v in vals):
        raise TegraAIError(f"--shapes {s.format()}: {feats.describe() if feats else 'TensorRT'} takes shape-tensor "
                           f"values of {bits} bits", exit_code=EXIT_USAGE)
    try:
        profile.set_shape_input(s.name, list(s.min), list(s.opt), list(s.max))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TegraAIError(f"TensorRT rejected the shape-tensor values of {s.name} (min {list(s.min)}, opt "
                           f"{list(s.opt)}, max {list(s.max)}): {exc}", exit_code=EXIT_USAGE) from None


def make_profile(builder, shapes, feats: Features | None = None):
    """One ``IOptimizationProfile`` from ``shapes`` (``trt.shapes.InputShapes``: name, min, opt,
    max; dims, or a shape-tensor input's values with ``values``): the one way every profile is
    made, the optimization profiles and the calibration profile alike."""
    profile = builder.create_optimization_profile()
    for s in shapes:
        if s.values:
            _set_shape_values(feats, profile, s)
        else:
            _set_shape(profile, s.name, s.min, s.opt, s.max)
    return profile


def add_optimization_profile(builder, config, shapes, feats: Features | None = None) -> int:
    """Add one optimization profile made by :func:`make_profile`."""
    index = config.add_optimization_profile(make_profile(builder, shapes, feats))
    if index < 0:
        raise TegraAIError("TensorRT rejected an optimization profile: " + "; ".join(s.format() for s in shapes),
                           exit_code=EXIT_USAGE)
    return index


def set_calibration_profile(builder, config, shapes, feats: Features | None = None) -> None:
    """The calibration profile (TensorRT <= 10.x): one fixed shape per input, a shape-tensor
    input's one set of values, made by :func:`make_profile` like every optimization profile.
    NvInfer.h ``IBuilderConfig::setCalibrationProfile`` (8.5 l.9053-9058, 10.3 l.9120-9126,
    10.13.3 l.9866-9872): "Calibration optimization profile must be set if int8 calibration is
    used to set scales for a network with runtime dimensions", "must satisfy
    profile->isValid() == true", "MIN and MAX values will be overwritten by kOPT", returns
    "True if the calibration profile was set correctly" (the binding returns that bool)."""
    if not config.set_calibration_profile(make_profile(builder, shapes, feats)):
        raise TegraAIError("TensorRT rejected the calibration profile: " + "; ".join(s.format() for s in shapes),
                           exit_code=EXIT_USAGE)


def calibrator_base(trt, feats: Features):
    if not feats.int8_calibrators:
        raise TegraAIError(f"{feats.describe()} has no INT8 calibrators", hint="use a Q/DQ model", exit_code=EXIT_USAGE)
    return trt.IInt8EntropyCalibrator2


def enable_detailed_profiling(trt, config) -> None:
    # Layer names, precisions and tactics in the engine inspector.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def load_plugin_library(trt, feats: Features, path: str):
    """Load a plugin library so its creators register (before parse/build/deserialize).

    ``path`` is a file path or a bare soname the dynamic loader finds. TensorRT >= 8.6
    loads it with ``IPluginRegistry.load_library``; 8.5 has no such call, so the library is
    opened with ``ctypes`` (``RTLD_GLOBAL``): creators it registers statically
    (``REGISTER_TENSORRT_PLUGIN``) appear then, and a library exporting
    ``initTegraAIPlugins`` (ours, see ``tegra_ai/plugin/``) is asked to register its
    creators (it guards against registering twice). Callers load a library once per
    process (``ensure`` does)."""
    if os.sep in path and not os.path.isfile(path):
        raise TegraAIError(f"plugin library {path} does not exist",
                           hint="give the path the library has on this machine", exit_code=EXIT_USAGE)
    if feats.registry_load_library:
        handle = trt.get_plugin_registry().load_library(path)
        if handle is None:
            raise TegraAIError(f"TensorRT could not load plugin library {path}",
                               hint="run with --verbose for TensorRT's reason (a missing dependency, "
                                    "a library built for another TensorRT)")
    else:
        import ctypes
        try:
            handle = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise TegraAIError(f"cannot load plugin library {path}: {exc}",
                               hint="the library needs TensorRT's libnvinfer and the CUDA runtime") from None
        init = getattr(handle, "initTegraAIPlugins", None)
        if init is not None:
            init.restype = ctypes.c_bool
            if not init():
                raise TegraAIError(f"{path}: initTegraAIPlugins() could not register its plugin creators")
    return handle


def parser_errors(parser) -> list:
    """[(node name or None, description)] of an OnnxParser. The node is ``node_name()``
    where the binding has it (9.3+), else ``node()``, the node's index ("#3"; -1: none)."""
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = None
        if hasattr(err, "node_name"):
            node = err.node_name() or None
        if node is None:
            index = err.node()
            node = f"#{index}" if isinstance(index, int) and index >= 0 else None
        errors.append((node, err.desc()))
    return errors


# --------------------------------------------------------------------------- engines

_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "fp8", "INT4": "int4", "FP4": "fp4"}


def dtype_name(dtype) -> str:
    """TensorRT DataType -> numpy-style name ('DataType.HALF' -> 'float16')."""
    raw = str(dtype).split(".")[-1].upper()
    return _DTYPE_NAMES.get(raw, raw.lower())


def deserialize(trt, feats: Features, logger, data: bytes):
    if feats.is_rtx:
        # RTX engines are built ahead of time for a GPU this machine may not have.
        raise TegraAIError("TensorRT-RTX engines cannot be loaded on a Jetson; this check needs full TensorRT",
                           exit_code=EXIT_UNAVAILABLE)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise TegraAIError(f"{feats.describe()} could not load this engine: it was built by another TensorRT version "
                           "or for another GPU, or is corrupt", hint="rebuild it on this device")
    return runtime, engine


def set_optimization_profile(context, index: int, stream: int) -> None:
    """Select optimization profile ``index`` for ``context`` on ``stream``. NvInferRuntime.h,
    IExecutionContext::setOptimizationProfileAsync (8.5 l.2857, 10.3 l.3907, 10.13 l.4577,
    11.1 l.4279): "\\return true if the call succeeded, else false (e.g. input out of range)";
    the binding returns that bool, so it is checked here. The caller synchronizes ``stream``
    with the one it enqueues on (the same header's warning)."""
    if not context.set_optimization_profile_async(int(index), int(stream)):
        raise TegraAIError(f"TensorRT refused optimization profile {index} for an execution context (out of range, "
                           "or in use by another context)", exit_code=EXIT_USAGE)


def check_gpu_precisions(builder, flag_names: list) -> None:
    """A precision the GPU has no fast path for is refused instead of silently slow.
    (platform_has_fast_* exist up to TensorRT 10.x; every Jetson GPU has both.)"""
    for flag, attr in (("FP16", "platform_has_fast_fp16"), ("INT8", "platform_has_fast_int8")):
        if flag in flag_names and getattr(builder, attr, True) is False:
            raise TegraAIError(f"this GPU has no fast {flag} path", hint=f"build without --precision {flag.lower()}",
                               exit_code=EXIT_USAGE)


def io_tensors(trt, engine) -> list:
    """IO tensors by name. ``location`` is where their memory lives: ``host`` for shape
    tensor inputs (NvInferRuntime.h 8.5 l.1640, 10.3 l.2635: "shape tensors inputs are
    typically required to be on the CPU"), else ``device``; ``shape_tensor`` marks tensors
    whose values feed shape inference (``is_shape_inference_io``, 8.5+)."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        out.append({
            "name": name,
            "mode": "input" if mode == trt.TensorIOMode.INPUT else "output",
            "dtype": dtype_name(engine.get_tensor_dtype(name)),
            "shape": list(engine.get_tensor_shape(name)),
            "format": str(engine.get_tensor_format_desc(name)) if hasattr(engine, "get_tensor_format_desc") else None,
            "location": "host" if engine.get_tensor_location(name) == trt.TensorLocation.HOST else "device",
            "shape_tensor": bool(engine.is_shape_inference_io(name)),
        })
    return out


def make_output_allocator(trt, feats: Features, reallocate, notify_shape):
    """An ``IOutputAllocator`` for outputs whose shape depends on data (NonZero,
    NonMaxSuppression from 8.5; TopK with a runtime K from 8.6). ``reallocate(name,
    current_ptr, size, alignment) -> ptr`` (0 when it cannot), ``notify_shape(name, dims)``.
    NvInferRuntime.h (8.5 l.2937-2947, 10.3 l.3989-3998): an output whose getTensorShape has
    a -1 after all input shapes are set needs an address or an IOutputAllocator; TensorRT
    reports its dims through notifyShape before enqueueV3 returns. 10.0+ call
    reallocateOutputAsync (with the enqueue stream); 8.5-9.x reallocateOutput."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)

        def reallocate_output(self, tensor_name, memory, size, alignment):
            return int(reallocate(tensor_name, int(memory or 0), int(size), int(alignment)) or 0)

        if feats.output_allocator_async:
            def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
                return int(reallocate(tensor_name, int(memory or 0), int(size), int(alignment)) or 0)

        def notify_shape(self, tensor_name, shape):
            notify_shape(tensor_name, tuple(int(d) for d in shape))

    return OutputAllocator()


def engine_profiles(trt, engine) -> list:
    profiles = []
    inputs = [t for t in io_tensors(trt, engine) if t["mode"] == "input"]
    for p in range(engine.num_optimization_profiles):
        shapes = []
        for t in inputs:
            if t["shape_tensor"]:
                # A shape-tensor input's profile holds values: ICudaEngine.get_tensor_profile_values
                # (bindings 10.0+; 8.x has only the binding-index get_profile_shape_input).
                if hasattr(engine, "get_tensor_profile_values"):
                    try:
                        mn, opt, mx = engine.get_tensor_profile_values(t["name"], p)
                    except Exception:  # noqa: BLE001 - no values for this profile
                        continue
                    shapes.append({"name": t["name"], "min": [int(v) for v in mn], "opt": [int(v) for v in opt],
                                   "max": [int(v) for v in mx], "values": True})
                continue
            try:
                mn, opt, mx = engine.get_tensor_profile_shape(t["name"], p)
            except Exception:
                continue  # others without a profile shape
            shapes.append({"name": t["name"], "min": list(mn), "opt": list(opt), "max": list(mx)})
        profiles.append(shapes)
    return profiles


def engine_weights(trt, engine) -> dict:
    """Weight sizes from ICudaEngine.get_engine_stat (bindings 10.14+). Probed on the binding,
    not the version: meta-tegra's 10.13.3 bindings say 10.16 but have no get_engine_stat."""
    if not hasattr(engine, "get_engine_stat") or not hasattr(trt, "EngineStat"):
        return {}
    out = {}
    for key, stat in (("weights_bytes", "TOTAL_WEIGHTS_SIZE"), ("stripped_weights_bytes", "STRIPPED_WEIGHTS_SIZE")):
        member = getattr(trt.EngineStat, stat, None)
        if member is not None:
            out[key] = int(engine.get_engine_stat(member))
    return out


def inspector_json(trt, feats: Features, engine) -> dict:
    if not feats.engine_inspector:
        return {}
    from tegra_ai.util.jsonfile import loads as json_loads

    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        data = json_loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
