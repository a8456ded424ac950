"""Build a TensorRT engine from ONNX, with a :class:`~tegra_ai.spec.Sidecar` describing
exactly what was built. The pipeline reads as its steps, in the manner of Polygraphy's
loaders: :func:`parse_network` -> :func:`configure` -> :func:`build_serialized` ->
:func:`make_sidecar`; :func:`build_engine` composes them and :func:`write_engine` writes
the result. Every step takes the one :class:`~tegra_ai.spec.BuildRequest` whole. Version differences go through :mod:`tegra_ai.trt.compat`; nothing here
prints (TensorRT's log goes to the ``tegra_ai.tensorrt`` logger)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from tegra_ai import __version__, platform
from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.onnx_files import has_qdq, model_digest
from tegra_ai.spec import (BuildOptions, BuildRequest, Sidecar, cache_key, check_output_paths, key_material, profiles_to_json,
                           sidecar_path, write_engine_files)
from tegra_ai.trt import compat
from tegra_ai.trt.shapes import ModelInput, resolve_profiles
from tegra_ai.util.atomic import atomic_write_bytes
from tegra_ai.util.hashing import HashMemo, sha256_file
from tegra_ai.util.progress import Progress

TRT_LOG = logging.getLogger("tegra_ai.tensorrt")

OOM_MARKERS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient memory",
               "requested amount of gpu memory")


@dataclass
class BuildResult:
    engine: bytes
    sidecar: Sidecar
    notes: list = field(default_factory=list)


@dataclass
class ParsedNetwork:
    """The output of :func:`parse_network`: TensorRT objects plus what we learned of the model."""
    builder: object
    network: object
    parser: object
    logger: object
    inputs: list
    model_path: str
    model_sha256: str
    model_files: list
    qdq: bool
    typing: dict


# --------------------------------------------------------------------------- identity and key

def tensorrt_identity(feats) -> dict:
    """What the key records of TensorRT: flavour, the bindings' version, libnvinfer's version."""
    return {"flavor": feats.flavor, "version": feats.version_string, "library_version": feats.library_version_string}


def plugin_file(library: str) -> str:
    """The file a plugin library name refers to: an absolute (or relative) path is itself;
    a bare soname (``libfoo.so.1``) is the file the dynamic loader found for it (it is
    loaded if it was not)."""
    if os.sep in library:
        return library
    import ctypes

    class _LinkMap(ctypes.Structure):
        _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p)]

    try:
        handle = ctypes.CDLL(library, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        libdl = ctypes.CDLL(None)
        lm = ctypes.POINTER(_LinkMap)()
        if libdl.dlinfo(ctypes.c_void_p(handle._handle), 2, ctypes.byref(lm)) == 0 and lm and lm.contents.l_name:
            return os.fsdecode(lm.contents.l_name)          # RTLD_DI_LINKMAP = 2 (glibc)
    except (OSError, AttributeError) as exc:
        raise TegraAIError(f"plugin library {library}: the dynamic loader cannot find it ({exc})",
                           hint="give an absolute path, or install the library where ld.so finds it",
                           exit_code=EXIT_UNAVAILABLE) from None
    raise TegraAIError(f"plugin library {library}: cannot tell which file the loader used",
                       hint="give the plugin as an absolute path", exit_code=EXIT_UNAVAILABLE)


def plugin_digests(plugin_libraries) -> dict:
    """basename of the name as given -> sha256 of the file it refers to (part of the key).
    ``build --plugin /usr/lib/x/libp.so`` and a manifest naming ``libp.so`` give the same."""
    out = {}
    for p in plugin_libraries:
        path = plugin_file(p)
        if not os.path.isfile(path):
            raise TegraAIError(f"plugin library {p} does not exist", exit_code=EXIT_USAGE)
        out[os.path.basename(p)] = sha256_file(path)
    return out


def load_plugins(trt, feats, plugin_libraries) -> dict:
    """Load each plugin library (its creators register with TensorRT) and return their
    digests for the key. The same for ``build --plugin`` and ``ensure`` (once per process,
    through the engine loader's registry)."""
    from tegra_ai.trt.loader import load_plugin_once

    for lib in plugin_libraries:
        load_plugin_once(trt, feats, lib)
    return plugin_digests(plugin_libraries)


def target_facts(feats, compute_capability: str | None):
    """The GPU the engine is for: this machine's, or the TensorRT-RTX target."""
    if feats.is_rtx:
        cc = compute_capability or "8.6"
        return platform.DeviceFacts(compute_capability=cc,
                                    device_name=f"TensorRT-RTX ahead-of-time target sm_{cc.replace('.', '')}")
    facts = platform.detect()
    if facts is None:
        raise TegraAIError("no NVIDIA GPU found to build for: TensorRT engines are built on the target GPU "
                           "(a Jetson of the image's kind), never on an x86 build host or under QEMU",
                           hint="run this on the device, or use 'tensorrt-optimize bundle' to prepare models for it",
                           exit_code=EXIT_UNAVAILABLE)
    return facts


def engine_key(model_sha256: str, options: BuildOptions, feats, facts, plugins: dict | None = None) -> tuple:
    transform = None
    if feats.strongly_typed_only:   # these releases may parse an FP16 copy (compat.fp16_copy_for_build)
        from tegra_ai.onnx_fp16 import RECIPE as transform
    material = key_material(model_sha256, options, tensorrt_identity(feats), facts.to_dict(), plugins, transform)
    return cache_key(material), material


# --------------------------------------------------------------------------- steps

def _make_logger(trt, verbose: bool):
    from tegra_ai.trt.loader import make_logger

    return make_logger(trt, verbose)


def network_inputs(trt, network) -> list:
    out = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(int(d) if int(d) >= 0 else None for d in t.shape)
        # ITensor.is_shape_tensor (every release's binding): its profile takes values, not dims.
        out.append(ModelInput(t.name, dims, compat.dtype_name(t.dtype), shape_tensor=bool(t.is_shape_tensor)))
    return out


def network_outputs(network) -> list:
    """Output tensors as the sidecar records them (dims: None where dynamic); what the
    Triton and DeepStream exporters describe."""
    out = []
    for i in range(network.num_outputs):
        t = network.get_output(i)
        dims = [int(d) if int(d) >= 0 else None for d in t.shape]
        out.append({"name": t.name, "dims": dims, "dtype": compat.dtype_name(t.dtype)})
    return out


def parse_network(trt, feats, request: BuildRequest, *, verbose: bool = False,
                  memo: HashMemo | None = None) -> ParsedNetwork:
    """Hash the model, choose the typing, and parse it with TensorRT's ONNX parser."""
    model_path, options = request.model, request.options
    model_sha, files = model_digest(model_path, memo)
    qdq = has_qdq(model_path)
    parse_path, workdir = model_path, None
    typing = compat.resolve_typing(feats, options.precision, qdq, options.strongly_typed,
                                   has_calibration=request.has_calibration)
    if typing["fp16_copy"]:
        # No FP16 flag on strongly typed-only releases: parse an FP16 copy made on the host,
        # here for every caller (build, the build child, ensure, Python users).
        import tempfile

        from tegra_ai.onnx_fp16 import fp16_model_for_build

        workdir = tempfile.TemporaryDirectory(prefix="tegra-ai-fp16-")
        try:
            summary = fp16_model_for_build(model_path, workdir.name)
        except BaseException:
            workdir.cleanup()
            raise
        parse_path = summary["output"]
        if summary.get("qdq_scales_fp32_why"):  # FP16 scales need opset >= 19 (onnx_fp16.QDQ_FP16_SCALE_OPSET)
            typing["notes"].append(f"Q/DQ scales stay FP32 behind Casts: {summary['qdq_scales_fp32_why']}")
        if summary["gate_fp32"]:
            typing["float_precision"]["kept_fp32"] = list(summary["gate_fp32"])
            typing["notes"].append(f"{len(summary['gate_fp32'])} layer(s) the accuracy gate kept in float stay FP32: "
                                   + ", ".join(summary["gate_fp32"]))
    logger = _make_logger(trt, verbose)
    from tegra_ai.trt.loader import init_plugin_registry

    init_plugin_registry(trt, logger)      # built-in plugins (EfficientNMS_TRT, ...) for the parser
    builder = trt.Builder(logger)
    network = compat.create_network(trt, feats, builder, typing["strongly_typed"])
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data relative to the model's directory.
    try:
        parsed_ok = parser.parse_from_file(parse_path)
    finally:
        if workdir is not None:
            workdir.cleanup()  # the parser holds the weights now
    if not parsed_ok:
        errors = [f"node {node}: {desc}" if node else desc for node, desc in compat.parser_errors(parser)]
        detail = "; ".join(errors) or "; ".join(logger.errors) or "unknown parser error"
        raise TegraAIError(f"TensorRT's ONNX parser rejected {os.path.basename(model_path)}: {detail}",
                           hint="run 'tensorrt-optimize check' for a per-node report")
    return ParsedNetwork(builder, network, parser, logger, network_inputs(trt, network), model_path, model_sha,
                         files, qdq, typing)


@dataclass
class Configured:
    config: object
    profiles: list
    notes: list
    timing_cache: object = None
    calibrator: object = None


def configure(trt, feats, parsed: ParsedNetwork, request: BuildRequest) -> Configured:
    """Profiles, precision flags, memory, optimization level, DLA, calibration, timing cache."""
    options, timing_cache_path = request.options, request.timing_cache
    calibration_data, calibration_cache = request.calibration_data, request.calibration_cache
    builder, typing, inputs = parsed.builder, parsed.typing, parsed.inputs
    notes = list(typing["notes"])
    for inp in inputs:
        if inp.shape_tensor:
            compat.check_shape_tensor_input(feats, inp)
    profiles = resolve_profiles(inputs, options.profile_objects())
    config = builder.create_builder_config()
    if any(i.is_dynamic for i in inputs) or options.profiles:
        # One set of profiles per execution context that may run at once (--contexts):
        # each context in concurrent use of a dynamic-shape engine needs its own profile
        # (NvInferRuntime.h, IExecutionContext; see BuildOptions.contexts). Context c uses
        # profiles c*P .. c*P+P-1 (tegra_ai.trt.loader.LoadedEngine.acquire_context).
        for _context in range(options.contexts if any(i.is_dynamic for i in inputs) else 1):
            for profile in profiles:
                compat.add_optimization_profile(builder, config, profile, feats)
        if options.contexts > 1 and not any(i.is_dynamic for i in inputs):
            notes.append(f"--contexts {options.contexts}: the engine has static shapes; any number of execution "
                         "contexts may share its one profile")

    compat.check_gpu_precisions(builder, typing["flags"])
    compat.set_builder_flags(trt, config, typing["flags"])
    compat.set_workspace(trt, feats, config, options.workspace)
    notes += compat.set_optimization_level(feats, config, options.opt_level)
    compat.configure_dla(trt, feats, builder, config, options.dla_core, options.gpu_fallback,
                         typing["flags"], typing["strongly_typed"])
    compat.set_rtx_compute_capability(trt, feats, config, options.compute_capability)
    calibrator = None
    if "INT8" in typing["flags"] and not parsed.qdq and (calibration_data or calibration_cache):
        from tegra_ai.trt.calibrator import (CalibrationBatches, cache_notes, cache_provenance, dataset_preprocess,
                                            make_calibrator)

        batches = (CalibrationBatches(calibration_data, inputs, request.calibration_batch, profiles[0])
                   if calibration_data else None)
        provenance = cache_provenance(parsed.model_sha256, feats.version_string, dataset_preprocess(calibration_data))
        calibrator = make_calibrator(trt, feats, batches, calibration_cache, provenance=provenance)
        compat.set_calibrator(feats, config, calibrator)
        if batches is not None and any(i.is_dynamic or i.shape_tensor for i in inputs):
            # Runtime dimensions (dynamic inputs, shape-tensor inputs): the calibration profile is
            # made like every optimization profile (shape tensors take values), min = opt = max.
            compat.set_calibration_profile(builder, config, batches.calibration_profile(), feats)
            notes += batches.notes()
        notes.append(f"implicit INT8 calibration: {batches.num_batches} batch(es) of {batches.batch_size}"
                     + (f" ({batches.dropped} sample(s) left over)" if batches.dropped else "")
                     if batches else f"implicit INT8 from calibration cache {calibration_cache}")
        notes += cache_notes(calibration_cache, provenance)
    compat.enable_detailed_profiling(trt, config)

    timing_cache = None
    if timing_cache_path:
        data = None
        if os.path.exists(timing_cache_path):
            try:
                with open(timing_cache_path, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise TegraAIError(f"cannot read timing cache {timing_cache_path}: {exc.strerror}",
                                   exit_code=EXIT_USAGE) from None
        timing_cache, tc_notes = compat.load_timing_cache(feats, config, data)
        notes += tc_notes
    return Configured(config, profiles, notes, timing_cache, calibrator)


def build_serialized(trt, feats, parsed: ParsedNetwork, configured: Configured, facts, *,
                     show_progress: bool = True) -> tuple:
    """Run TensorRT's builder with a progress display; returns (engine bytes, seconds)."""
    label = (f"building {os.path.basename(parsed.model_path)} ({feats.describe()}, "
             f"sm_{facts.compute_capability.replace('.', '')})")
    logger = parsed.logger
    started = time.monotonic()
    with Progress(label, enabled=show_progress) as progress:
        monitor = compat.attach_progress_monitor(trt, feats, configured.config,  # noqa: F841 (kept alive)
                                                 progress.on_trt_phases)
        try:
            serialized = parsed.builder.build_serialized_network(parsed.network, configured.config)
        except MemoryError:
            serialized = None
            logger.errors.append("out of memory")
    seconds = time.monotonic() - started
    if serialized is None:
        text = " ".join(logger.errors).lower()
        if any(m in text for m in OOM_MARKERS):
            raise TegraAIError("out of GPU memory while building the engine",
                               hint="lower --workspace, build fewer profiles, or stop other GPU applications")
        detail = logger.errors[-1] if logger.errors else "see --verbose"
        raise TegraAIError(f"TensorRT could not build the engine: {detail}")
    return bytes(serialized), seconds


def make_sidecar(parsed: ParsedNetwork, configured: Configured, request: BuildRequest, feats, facts,
                 seconds: float, plugins: dict | None = None) -> Sidecar:
    # The key hashes the options as requested (what ensure computes before building);
    # the profiles as completed with static inputs are recorded beside it.
    _key, material = engine_key(parsed.model_sha256, request.options, feats, facts, plugins)
    return Sidecar.new(
        material, tool=f"tegra-ai {__version__}", model=os.path.basename(parsed.model_path),
        model_files=[os.path.basename(f) for f in parsed.model_files],
        strongly_typed=parsed.typing["strongly_typed"], builder_flags=list(parsed.typing["flags"]),
        qdq=parsed.qdq, float_precision=dict(parsed.typing.get("float_precision") or {}),
        profiles=profiles_to_json(configured.profiles),
        inputs=[{"name": i.name, "dims": list(i.dims), "dtype": i.dtype} for i in parsed.inputs],
        outputs=network_outputs(parsed.network),
        build_seconds=round(seconds, 3), notes=list(configured.notes), request=request.record(plugins))


# --------------------------------------------------------------------------- composed

def build_engine(request, options: BuildOptions | None = None, *, show_progress: bool = True,
                 verbose: bool = False, memo: HashMemo | None = None, **request_fields) -> BuildResult:
    """Build the engine a :class:`~tegra_ai.spec.BuildRequest` asks for.

    For Python users ``build_engine("m.onnx", BuildOptions(...), timing_cache="t.cache")``
    makes the request from the model, the options and the request's other fields."""
    from tegra_ai.util.stdio import native_stdout_to_stderr

    if not isinstance(request, BuildRequest):
        request = BuildRequest(model=request, options=options or BuildOptions(), **request_fields)
    elif options is not None or request_fields:
        raise TypeError("build_engine(BuildRequest) takes no options or request fields beside it")
    with native_stdout_to_stderr():    # TensorRT's native prints never reach stdout (--json)
        return _build_engine(request, show_progress=show_progress, verbose=verbose, memo=memo)


def _build_engine(request: BuildRequest, *, show_progress, verbose, memo) -> BuildResult:
    trt, feats = compat.load()
    plugins = load_plugins(trt, feats, request.plugins)
    facts = target_facts(feats, request.options.compute_capability)
    parsed = parse_network(trt, feats, request, verbose=verbose, memo=memo)
    configured = configure(trt, feats, parsed, request)
    try:
        engine, seconds = build_serialized(trt, feats, parsed, configured, facts, show_progress=show_progress)
    finally:
        if configured.calibrator is not None:
            configured.calibrator.raise_if_failed()  # the binding swallows get_batch exceptions: surface them
    if configured.timing_cache is not None and request.timing_cache:
        atomic_write_bytes(request.timing_cache, bytes(configured.timing_cache.serialize()))
    sidecar = make_sidecar(parsed, configured, request, feats, facts, seconds, plugins)
    return BuildResult(engine=engine, sidecar=sidecar, notes=configured.notes)


def write_engine(result: BuildResult, engine_path: str, protect: tuple = ()) -> str:
    """Write engine then sidecar (``ENGINE.json``), both atomically, refusing to replace
    anything the tool did not write; returns the sidecar path."""
    check_output_paths(engine_path, protect)
    write_engine_files(engine_path, result.engine, result.sidecar)
    return sidecar_path(engine_path)


def check_engine_matches(sidecar: Sidecar, feats, facts) -> list:
    """Why an engine (by its sidecar) cannot run here; empty when it can."""
    problems = []
    trt_info = sidecar.tensorrt
    here = tensorrt_identity(feats)
    if trt_info.get("flavor") != here["flavor"] or trt_info.get("library_version") != here["library_version"]:
        problems.append(f"built with {trt_info.get('flavor')} {trt_info.get('library_version')}, this machine has "
                        f"{feats.describe()}")
    dev = sidecar.device
    if facts is not None and dev.get("compute_capability") != facts.compute_capability:
        problems.append(f"built for compute capability {dev.get('compute_capability')}, this GPU is "
                        f"{facts.compute_capability}")
    return problems


__all__ = ["BuildResult", "ParsedNetwork", "Configured", "parse_network", "configure", "build_serialized",
           "make_sidecar", "build_engine", "write_engine", "engine_key", "target_facts", "check_engine_matches",
           "tensorrt_identity", "plugin_digests", "plugin_file", "load_plugins"]
