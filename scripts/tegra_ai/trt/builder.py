"""Build a TensorRT engine from ONNX, with a JSON sidecar describing exactly what was
built. Version differences go through :mod:`tegra_ai.trt.compat`."""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field

from tegra_ai import __version__, platform
from tegra_ai.cache.key import cache_key, key_material
from tegra_ai.cache.options import BuildOptions
from tegra_ai.cache.store import write_engine_files
from tegra_ai.errors import EXIT_UNAVAILABLE, TegraAIError
from tegra_ai.onnx_tools.model_files import has_qdq, model_digest
from tegra_ai.trt import compat
from tegra_ai.trt.shapes import ModelInput, profiles_to_json, resolve_profiles
from tegra_ai.util.atomic import atomic_write_bytes
from tegra_ai.util.hashing import HashMemo
from tegra_ai.util.progress import Progress

OOM_MARKERS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient memory",
               "requested amount of gpu memory")


@dataclass
class BuildResult:
    engine: bytes
    sidecar: dict
    notes: list = field(default_factory=list)


def _make_logger(trt, verbose: bool):
    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if verbose or severity in (trt.ILogger.Severity.INTERNAL_ERROR,):
                print(f"[TensorRT] {msg}")

    return CollectingLogger()


def target_facts(feats, compute_capability: str | None):
    """The GPU the engine is for: this machine's, or the TensorRT-RTX target."""
    if feats.is_rtx:
        cc = compute_capability or "8.6"
        return platform.DeviceFacts(compute_capability=cc, device_name=f"TensorRT-RTX ahead-of-time target sm_{cc.replace('.', '')}")
    facts = platform.detect()
    if facts is None:
        raise TegraAIError("no NVIDIA GPU found to build for: TensorRT engines are built on the target GPU "
                           "(a Jetson of the image's kind), never on an x86 build host or under QEMU",
                           hint="run this on the device, or use 'tensorrt-optimize bundle' to prepare models for it",
                           exit_code=EXIT_UNAVAILABLE)
    return facts


def engine_key(model_sha256: str, options: BuildOptions, feats, facts) -> tuple:
    material = key_material(model_sha256, options.normalized(), feats.flavor, feats.version_string, facts.to_dict())
    return cache_key(material), material


def _parse(trt, parser, model_path: str, logger):
    # parse_from_file resolves external data relative to the model's directory.
    ok = parser.parse_from_file(model_path)
    if ok:
        return
    errors = [f"node {node}: {desc}" if node else desc for node, desc in compat.parser_errors(parser)]
    detail = "; ".join(errors) or "; ".join(logger.errors) or "unknown parser error"
    raise TegraAIError(f"TensorRT's ONNX parser rejected {os.path.basename(model_path)}: {detail}",
                       hint="run 'tensorrt-optimize check' for a per-node report")


def network_inputs(trt, network) -> list:
    out = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(int(d) if int(d) >= 0 else None for d in t.shape)
        out.append(ModelInput(t.name, dims, compat.dtype_name(t.dtype)))
    return out


def build_engine(model_path: str, options: BuildOptions, *, timing_cache_path: str | None = None,
                 calibration_data: str | None = None, calibration_cache: str | None = None,
                 calibration_batch: int = 8, plugin_libraries: tuple = (), show_progress: bool = True,
                 verbose: bool = False, memo: HashMemo | None = None) -> BuildResult:
    trt, feats = compat.load()
    notes = []
    for lib in plugin_libraries:
        compat.load_plugin_library(trt, feats, lib)
    facts = target_facts(feats, options.compute_capability)
    model_sha, files = model_digest(model_path, memo)
    qdq = has_qdq(model_path)

    typing = compat.resolve_typing(feats, options.precision, qdq, options.strongly_typed,
                                   has_calibration=bool(calibration_data or calibration_cache))
    notes += typing["notes"]

    logger = _make_logger(trt, verbose)
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = compat.create_network(trt, feats, builder, typing["strongly_typed"])
    parser = trt.OnnxParser(network, logger)
    _parse(trt, parser, model_path, logger)

    inputs = network_inputs(trt, network)
    profiles = resolve_profiles(inputs, options.profile_objects())
    config = builder.create_builder_config()
    if any(i.is_dynamic for i in inputs) or options.profiles:
        for profile in profiles:
            compat.add_optimization_profile(builder, config, profile)

    compat.check_gpu_precisions(builder, typing["flags"])
    compat.set_builder_flags(trt, config, typing["flags"])
    compat.set_workspace(trt, feats, config, options.workspace)
    notes += compat.set_optimization_level(feats, config, options.opt_level)
    compat.configure_dla(trt, feats, builder, config, options.dla_core, options.gpu_fallback,
                         typing["flags"], typing["strongly_typed"])
    compat.set_rtx_compute_capability(trt, feats, config, options.compute_capability)
    calibration_notes = []
    if "INT8" in typing["flags"] and not qdq and (calibration_data or calibration_cache):
        from tegra_ai.trt.calibrator import CalibrationBatches, make_calibrator

        batches = CalibrationBatches(calibration_data, inputs, calibration_batch) if calibration_data else None
        calibrator = make_calibrator(trt, feats, batches, calibration_cache)
        compat.set_calibrator(feats, config, calibrator)
        if batches is not None and any(i.is_dynamic for i in inputs):
            compat.set_calibration_profile(trt, builder, config, {
                i.name: (batches.batch_size,) + batches.sample_shape(i.name) for i in inputs})
        calibration_notes.append(f"implicit INT8 calibration: {batches.num_batches} batch(es) of {batches.batch_size}"
                                 if batches else f"implicit INT8 from calibration cache {calibration_cache}")
    notes += calibration_notes
    compat.enable_detailed_profiling(trt, config)

    timing_cache = None
    if timing_cache_path:
        data = None
        if os.path.exists(timing_cache_path):
            with open(timing_cache_path, "rb") as f:
                data = f.read()
        timing_cache, tc_notes = compat.load_timing_cache(feats, config, data)
        notes += tc_notes

    label = f"building {os.path.basename(model_path)} ({feats.describe()}, sm_{facts.compute_capability.replace('.', '')})"
    started = time.monotonic()
    with Progress(label, enabled=show_progress) as progress:
        monitor = compat.attach_progress_monitor(trt, feats, config, progress.on_trt_phases)  # noqa: F841 (kept alive)
        try:
            serialized = builder.build_serialized_network(network, config)
        except MemoryError:
            serialized = None
            logger.errors.append("out of memory")
    build_seconds = time.monotonic() - started
    if serialized is None:
        text = " ".join(logger.errors).lower()
        if any(m in text for m in OOM_MARKERS):
            raise TegraAIError("out of GPU memory while building the engine",
                               hint="lower --workspace, build fewer profiles, or stop other GPU applications")
        detail = logger.errors[-1] if logger.errors else "see --verbose"
        raise TegraAIError(f"TensorRT could not build the engine: {detail}")
    engine = bytes(serialized)

    if timing_cache is not None and timing_cache_path:
        atomic_write_bytes(timing_cache_path, bytes(timing_cache.serialize()))

    # The key hashes the options as requested (what ensure can compute before building);
    # the profiles as completed with static inputs are recorded beside it.
    key, material = engine_key(model_sha, options, feats, facts)
    sidecar = {
        "tool": f"tegra-ai {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": os.path.basename(model_path),
        "model_sha256": model_sha,
        "model_files": [os.path.basename(f) for f in files],
        "tensorrt": {"flavor": feats.flavor, "version": feats.version_string},
        "device": facts.to_dict(),
        "precision": options.precision,
        "strongly_typed": typing["strongly_typed"],
        "builder_flags": typing["flags"],
        "qdq": qdq,
        "profiles": profiles_to_json(profiles),
        "inputs": [{"name": i.name, "dims": list(i.dims), "dtype": i.dtype} for i in inputs],
        "options": options.normalized(),
        "build_seconds": round(build_seconds, 3),
        "key_material": material,
        "cache_key": key,
        "notes": notes,
    }
    return BuildResult(engine=engine, sidecar=sidecar, notes=notes)


def write_engine(result: BuildResult, engine_path: str, sidecar_path: str | None = None) -> str:
    """Write engine then sidecar, both atomically; returns the sidecar path."""
    sidecar_path = sidecar_path or os.path.splitext(engine_path)[0] + ".json"
    write_engine_files(engine_path, sidecar_path, result.engine, result.sidecar)
    return sidecar_path


def check_engine_matches(sidecar: dict, feats, facts) -> list:
    """Why an engine (by its sidecar) cannot run here; empty when it can."""
    problems = []
    trt_info = sidecar.get("tensorrt", {})
    if trt_info.get("flavor") != feats.flavor or trt_info.get("version") != feats.version_string:
        problems.append(f"built with {trt_info.get('flavor')} {trt_info.get('version')}, this machine has {feats.describe()}")
    dev = sidecar.get("device", {})
    if facts is not None and dev.get("compute_capability") != facts.compute_capability:
        problems.append(f"built for compute capability {dev.get('compute_capability')}, this GPU is {facts.compute_capability}")
    return problems


__all__ = ["BuildResult", "build_engine", "write_engine", "engine_key", "target_facts", "check_engine_matches"]
