"""One benchmark, from a path to a report: pick and open the backend, make inputs, run
the harness with power sampling, collect the device state.

    from tegra_ai.bench.run import benchmark_model
    from tegra_ai.bench.harness import BenchConfig
    report = benchmark_model("model.engine", config=BenchConfig(duration_s=5))
    report = benchmark_model("digits.onnx", backend="onnxruntime")
    report = benchmark_model("workload:500us", shapes={"x": (1, 3, 224, 224)})   # the harness itself
"""

from __future__ import annotations

import os
import re

from tegra_ai.bench import device_state, harness, report as report_mod
from tegra_ai.errors import EXIT_USAGE, TegraAIError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
BACKENDS = ("auto", "tensorrt", "onnxruntime", "cuda-workload")
_WORKLOAD = re.compile(r"^workload:(\d+(?:\.\d+)?)(us)?$")


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def parse_workload(model: str) -> float | None:
    """'workload:500us' -> 500.0 (microseconds); None for anything else."""
    if not model.startswith("workload:"):
        return None
    m = _WORKLOAD.match(model)
    if not m:
        raise _usage(f"bad workload {model!r}", hint="write workload:MICROSECONDS, e.g. workload:500us")
    return float(m.group(1))


def resolve_backend(model: str, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise _usage(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if parse_workload(model) is not None:
        if backend not in ("auto", "cuda-workload"):
            raise _usage(f"{model} is the CUDA workload; it runs only with --backend cuda-workload")
        return "cuda-workload"
    if backend == "cuda-workload":
        raise _usage("--backend cuda-workload takes MODEL as workload:MICROSECONDS, e.g. workload:500us")
    if not os.path.exists(model):
        raise _usage(f"{model} does not exist")
    if os.path.isdir(model):
        raise _usage(f"{model} is a directory; give an ONNX model or a TensorRT engine")
    ext = os.path.splitext(model)[1].lower()
    if backend == "auto":
        if ext in ENGINE_SUFFIXES:
            return "tensorrt"
        if ext == ".onnx":
            return "onnxruntime"
        raise _usage(f"cannot tell what {model} is from its name",
                     hint="name it .onnx or .engine/.plan, or give --backend")
    if backend == "onnxruntime" and ext in ENGINE_SUFFIXES:
        raise _usage(f"{model} is a TensorRT engine; ONNX Runtime runs .onnx models", hint="use --backend tensorrt")
    if backend == "tensorrt" and ext not in ENGINE_SUFFIXES:
        raise _usage(f"--backend tensorrt runs a built engine, and {model} is not one",
                     hint="build it with 'tensorrt-optimize build' on this device, or use 'model-benchmark suite', "
                          "which builds missing engines through the engine cache")
    return backend


def batch_of(shapes: dict, metas) -> int:
    """Samples per query: the first dimension of the first input."""
    for m in metas:
        dims = shapes.get(m.name) or m.shape
        if dims and dims[0] is not None:
            return int(dims[0])
    return 1


def shapes_dict(profile) -> dict:
    """``parse_profile`` result (InputShapes list) -> {name: opt dims}."""
    for s in profile or []:
        if s.values:   # NAME=VALUES sets a shape tensor's profile values at build time, not a shape
            raise _usage(f"--shapes {s.format()}: shape-tensor values are a build option (tensorrt-optimize build); "
                         "model-benchmark takes input dimensions, NAME:DIMS")
    return {s.name: tuple(s.opt) for s in (profile or [])}


def open_runner(model: str, backend: str, shapes: dict, workload_outputs: dict | None = None):
    if backend == "cuda-workload":
        from tegra_ai.backend.workload import CudaWorkloadRunner

        duration = parse_workload(model)
        inputs = {name: (dims, "float32") for name, dims in shapes.items()}
        return CudaWorkloadRunner(duration, inputs=inputs, outputs=workload_outputs or {})
    if backend == "onnxruntime":
        from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model)
    from tegra_ai.backend.tensorrt import TensorRTRunner

    return TensorRTRunner(model, shapes=shapes)


def onnx_precision(model: str) -> str | None:
    """The precision an ONNX graph computes in on ONNX Runtime: ``int8`` with Q/DQ nodes,
    ``fp16`` when most float weights are float16 (tensorrt-optimize convert-fp16), else fp32."""
    from tegra_ai.util.lazy import is_available, require

    if not is_available("onnx"):
        return None          # unknown without the onnx package (ONNX Runtime alone runs the model)
    onnx = require("onnx", extra="onnx", purpose="reading the model's precision")
    try:
        m = onnx.load(model, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for a bad file
        raise _usage(f"{model} is not a readable ONNX model ({exc.__class__.__name__})") from None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node):
        return "int8"
    count = {onnx.TensorProto.FLOAT: 0, onnx.TensorProto.FLOAT16: 0}
    for init in m.graph.initializer:
        if init.data_type in count:
            n = 1
            for d in init.dims:
                n *= d
            count[init.data_type] += n
    return "fp16" if count[onnx.TensorProto.FLOAT16] > count[onnx.TensorProto.FLOAT] else "fp32"


def benchmark_model(model: str, *, backend: str = "auto", config: harness.BenchConfig | None = None,
                    shapes: dict | None = None, precision: str | None = None, dla_core: int | None = None,
                    power: str = "auto", progress=None, device_root: str = "/", workload_outputs=None) -> dict:
    """A full report (see :mod:`tegra_ai.bench.report`) of one model or engine."""
    timing = (config or harness.BenchConfig()).validate()
    backend = resolve_backend(model, backend)
    shapes = dict(shapes or {})
    if backend == "onnxruntime" and (timing.streams != 1 or timing.cuda_graph):
        raise _usage("ONNX Runtime runs on the host: --streams and --cuda-graph need --backend tensorrt or cuda-workload")
    if backend == "onnxruntime":
        own = onnx_precision(model)
        if own is not None and precision not in (None, own):
            raise _usage(f"ONNX Runtime (CPU) runs the model's graph in its own types ({own} here); precision "
                         f"{precision} needs --backend tensorrt")
    if backend == "tensorrt":
        # refuses files that are not engines and sidecars of other engines (exit 2) before any work
        from tegra_ai.trt.inspect import read_engine_and_sidecar

        sidecar = read_engine_and_sidecar(model)
        if sidecar is not None:
            precision = precision or sidecar.options.precision
            dla_core = dla_core if dla_core is not None else sidecar.options.dla_core
    device = device_state.collect(device_root, dla_core=dla_core)
    runner = open_runner(model, backend, shapes, workload_outputs)
    sampler = device_state.PowerSampler(power, root=device_root) if power != "none" else None
    with runner:
        metas = runner.input_metadata()
        unknown = sorted(set(shapes) - {m.name for m in metas})
        if unknown and backend != "cuda-workload":
            raise _usage(f"--shapes names unknown input(s) {', '.join(unknown)}; the model takes "
                         f"{', '.join(m.name for m in metas)}")
        feed = None
        if backend == "onnxruntime":
            feed = harness.random_feed(metas, shapes)
        elif backend == "tensorrt":
            # random inputs in the pinned buffers (forks for more streams copy them)
            buffers = runner.host_buffers
            for name, arr in harness.random_feed(metas, shapes).items():
                buffers[name][...] = arr
        batch = batch_of(shapes, metas)
        results = harness.benchmark(runner, timing, feed=feed, batch=batch, progress=progress, power=sampler)
    if backend == "onnxruntime":
        precision = own          # what the graph computes in: an FP16 ONNX is fp16
    after = device_state.collect(device_root, dla_core=dla_core)
    device["after"] = device_state.after_run(device, after)
    results["warnings"] = results["warnings"] + device_state.clock_warnings(device, after)
    rep = report_mod.make_report(results, model=model, backend=backend, precision=precision, batch=batch,
                                 shapes=shapes, device=device, extra={"software": software(backend)})
    if device.get("gpu") is None and not device.get("jetson"):
        import platform as pyplatform

        cpu = None
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        except OSError:
            pass
        rep["device"]["host"] = f"{pyplatform.machine()} host, {cpu or 'CPU'}, {os.cpu_count()} cores"
    return rep


def software(backend: str) -> dict:
    """Versions of what ran: this package, Python and the backend's libraries."""
    import platform as pyplatform

    from tegra_ai import __version__

    out = {"tegra_ai": __version__, "python": pyplatform.python_version()}
    if backend == "onnxruntime":
        try:
            import onnxruntime

            out["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
    if backend == "tensorrt":
        from tegra_ai.trt import compat

        out["tensorrt"] = compat.load()[1].describe()
    if backend in ("tensorrt", "cuda-workload"):
        from tegra_ai.cuda import compat as cuda_compat

        out["cuda-python"] = cuda_compat.bindings_version()
    return out

