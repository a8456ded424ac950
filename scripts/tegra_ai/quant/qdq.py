"""Explicit INT8 on the host: an FP32 ONNX + calibration samples -> a Q/DQ ONNX that
TensorRT builds strongly typed (TensorRT 9+) or with the INT8 flag (8.5).

TensorRT's rules for Q/DQ (developer guide, "Explicit quantization"), and how they are met
with ONNX Runtime's quantization tool (``onnxruntime.quantization.quantize_static``):

- symmetric INT8, zero point 0: ``QInt8`` activations and weights, ``ActivationSymmetric``
  and ``WeightSymmetric``;
- per-channel weights, per-tensor activations: ``per_channel=True``;
- Q/DQ on the *inputs* of the layers TensorRT runs in INT8 (Conv, ConvTranspose, Gemm,
  MatMul) and not on their outputs (``OpTypesToExcludeOutputQuantization``): TensorRT
  fuses the following Q into the layer;
- a residual Add gets a Q/DQ on its skip input and keeps the input from the convolution
  (through its fused activation, SiLU included) float, so TensorRT fuses Conv+Add and runs
  it INT8 (developer guide, Q/DQ layer-placement recommendations: "quantize the residual
  input in skip connections"; :func:`quantize_residual_inputs`); other non-quantized
  consumers get their float input back (:func:`unquantize_other_consumers`);
- one scale for the quantized tensors a Concat or a MaxPool ties together (TensorRT propagates
  Q/DQ across them; :func:`share_concat_pool_scales`), so they run INT8 without requantizing;
- no Q/DQ pair between a weighted layer and the BatchNorm, bias or activation TensorRT fuses
  into it (:func:`fusion_splits`; a model that has one is not written);
- biases stay float (``QuantizeBias=False``): TensorRT quantizes them itself;
- ``--target jetpack5`` (TensorRT 8.5): opset <= 17 and float weights behind a Q->DQ
  pair (``AddQDQPairToWeight``), the form 8.5's parser folds; newer targets get INT8
  weight initializers behind a DequantizeLinear (4x smaller files); weights held in
  Constant nodes (PaddlePaddle exports) are moved into initializers first
  (:func:`tegra_ai.onnx_graph.constants_to_initializers`), else the quantizer would calibrate
  them as activations and keep them FP32 behind a per-tensor Q->DQ pair.

NVIDIA Model Optimizer's ONNX PTQ (``modelopt.onnx.quantization``) is used instead when
``backend="modelopt"`` and it is installed (its placement is kept as it is); it is never
required."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile

import numpy as np

from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.onnx_graph import constants_to_initializers, graph_inputs, load_onnx, model_opset, name_nodes
from tegra_ai.util.lazy import require

log = logging.getLogger("tegra_ai.quant.qdq")

QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
METHODS = ("entropy", "minmax", "percentile")
BACKENDS = ("onnxruntime", "modelopt")
JETPACK5_MAX_OPSET = 17


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


@dataclasses.dataclass
class QuantizeResult:
    output: str
    target: str
    method: str
    backend: str
    samples: int
    quantized_nodes: list
    excluded_nodes: list
    qdq_nodes: int
    opset: int
    notes: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_exclusions(model, exclude) -> list:
    """Node names to keep in float: each entry names a node or an op type."""
    names = {n.name for n in model.graph.node}
    types = {n.op_type for n in model.graph.node}
    out = []
    for e in exclude or ():
        if e in names:
            out.append(e)
        elif e in types:
            out += [n.name for n in model.graph.node if n.op_type == e]
        else:
            raise _usage(f"--exclude {e!r} is neither a node name nor an operator type of the model",
                         hint=f"operator types: {', '.join(sorted(types))}")
    return sorted(set(out))


def load_calibration(path: str, model) -> dict:
    """name -> float array for every graph input, from an .npz (no pickle)."""
    from tegra_ai.trt.calibrator import load_calibration_arrays

    arrays = load_calibration_arrays(path)
    feed = {}
    counts = set()
    for inp in graph_inputs(model):
        if inp.name not in arrays:
            raise _usage(f"calibration data {path} has no array for input {inp.name!r} (it has {', '.join(arrays) or 'none'})")
        a = np.asarray(arrays[inp.name])
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inp.type.tensor_type.shape.dim]
        if a.ndim != len(dims) or any(d is not None and i and d != s for i, (d, s) in enumerate(zip(dims, a.shape))):
            raise _usage(f"calibration array {inp.name!r} has shape {list(a.shape)}, the input is "
                         f"{[d if d else '?' for d in dims]}")
        from onnx import helper

        feed[inp.name] = a.astype(helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type), copy=False)
        counts.add(a.shape[0])
    if len(counts) != 1 or not counts or min(counts) == 0:
        raise _usage(f"calibration data {path} has no samples or different sample counts per input")
    return feed


def batches(feed: dict, model, default_batch: int = 16, notes: list | None = None):
    """Split the samples into the batches the model takes.

    A static batch dimension fixes the batch (a remainder that cannot fill one is left
    out, and ``notes`` says so); a dynamic one takes every sample, in batches of up to
    ``default_batch`` (the last one smaller)."""
    static = set()
    for inp in graph_inputs(model):
        d0 = inp.type.tensor_type.shape.dim[0] if inp.type.tensor_type.shape.dim else None
        if d0 is not None and d0.HasField("dim_value") and d0.dim_value > 0:
            static.add(d0.dim_value)
    n = next(iter(feed.values())).shape[0]
    if len(static) > 1:
        raise _usage(f"the model's inputs have different static batch sizes {sorted(static)}")
    if not static:
        return [{k: np.ascontiguousarray(v[i:i + default_batch]) for k, v in feed.items()}
                for i in range(0, n, default_batch)]
    b = static.pop()
    if n < b:
        raise _usage(f"calibration data has {n} sample(s), fewer than the model's static batch of {b}")
    if n % b and notes is not None:
        notes.append(f"{n % b} of {n} samples left out: the model's static batch is {b}")
    return [{k: np.ascontiguousarray(v[i:i + b]) for k, v in feed.items()} for i in range(0, n - b + 1, b)]


def used_samples(batch_list) -> int:
    return sum(next(iter(b.values())).shape[0] for b in batch_list)


def _reader(batch_list):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batch_list)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(batch_list)

    return Reader()


def _quantize_ort(model, src_path, output, batch_list, method, excluded, op_types, target, notes, range_cache=None):
    require("onnxruntime", extra="onnxruntime", purpose="quantization")
    import contextlib
    import inspect
    import io

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    cm = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
          "percentile": CalibrationMethod.Percentile}[method]
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "OpTypesToExcludeOutputQuantization": list(op_types),
             "AddQDQPairToWeight": target == "jetpack5", "DedicatedQDQPair": True,
             "CalibPercentile": 99.99, "CalibMovingAverage": False}
    kwargs = {}
    has_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters  # ONNX Runtime >= 1.27 (1.26.0 has none: checked in the wheels)
    if range_cache and has_cache:
        kwargs["calibration_cache_path"] = range_cache  # ranges computed once, reused
    if method == "entropy":
        # quantize_static's own Entropy is min-max (128 bins = 128 quantized bins): TensorRT's
        # 2048-bin KL thresholds instead, handed over through the calibration cache.
        if not has_cache:
            raise TegraAIError("--method entropy needs onnxruntime >= 1.27 (quantize_static's calibration_cache_path)",
                               hint="pip install -U onnxruntime (1.27 and later need Python >= 3.11), or use --method minmax / percentile",
                               exit_code=EXIT_UNAVAILABLE)
        from onnxruntime.quantization.calibrate import save_tensors_data

        from tegra_ai.quant.calibrate import entropy_ranges

        cache = range_cache or os.path.join(os.path.dirname(output), "entropy-ranges.json")
        if not os.path.isfile(cache):
            root_level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)
            try:
                # Add too: a residual Add's skip tensor needs a scale even when no Conv reads it
                ranges = entropy_ranges(src_path, batch_list, tuple(op_types) + ("Add",), os.path.dirname(output))
            finally:
                logging.getLogger().setLevel(root_level)
            save_tensors_data(ranges, cache)
        kwargs["calibration_cache_path"] = cache
    # The tool prints its progress on stdout and warns through the root logger: keep the
    # library's stdout clean (--json) and its log to our logger.
    root = logging.getLogger()
    level = root.level
    captured = io.StringIO()
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(captured):
            quantize_static(src_path, output, _reader(batch_list), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(excluded), calibrate_method=cm, extra_options=extra, **kwargs)
    finally:
        root.setLevel(level)
    for line in captured.getvalue().splitlines():
        log.debug("onnxruntime: %s", line)
    return kwargs.get("calibration_cache_path")


def _absmax_ranges(cache_path) -> dict:
    """tensor -> max |range| from an ONNX Runtime calibration cache (empty without one)."""
    if not cache_path or not os.path.isfile(cache_path):
        return {}
    from onnxruntime.quantization.calibrate import load_tensors_data

    out = {}
    for name, td in load_tensors_data(cache_path).data.items():
        try:
            lo, hi = td.range_value
        except AttributeError:
            continue
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if lo.size == 1 and hi.size == 1:  # per-tensor ranges only
            out[name] = float(max(abs(lo.item()), abs(hi.item())))
    return out


def _quantize_modelopt(src_path, output, feed, method, excluded, op_types, notes):
    try:
        from modelopt.onnx.quantization import quantize as mo_quantize
    except ImportError:
        raise TegraAIError("--backend modelopt needs NVIDIA Model Optimizer", hint="pip install nvidia-modelopt[onnx]",
                           exit_code=EXIT_UNAVAILABLE) from None
    if method == "percentile":
        raise _usage("--backend modelopt supports --method entropy or minmax")
    # No op_types_to_quantize: Model Optimizer's own TensorRT-aware placement applies.
    mo_quantize(onnx_path=src_path, quantize_mode="int8", calibration_data=feed, calibration_method=method,
                nodes_to_exclude=list(excluded), output_path=output)
    notes.append("quantized with NVIDIA Model Optimizer (modelopt.onnx.quantization)")


def quantize(model_path: str, calibration: str, output: str, *, target: str = "jetpack6", method: str = "entropy",
             exclude=(), op_types=QUANTIZED_OP_TYPES, backend: str = "onnxruntime", max_samples: int | None = None,
             keep_float=(), range_cache: str | None = None) -> QuantizeResult:
    """Write a Q/DQ INT8 copy of ``model_path`` to ``output`` (atomically).

    ``exclude``: node names or op types left in float (the user's); ``keep_float``: more
    node names (what the accuracy fallback chose)."""
    onnx = require("onnx", extra="onnx", purpose="quantization")
    from tegra_ai.onnx_tools.targets import resolve_target

    if method not in METHODS:
        raise _usage(f"unknown --method {method!r}: expected {', '.join(METHODS)}")
    if backend not in BACKENDS:
        raise _usage(f"unknown --backend {backend!r}: expected {', '.join(BACKENDS)}")
    tgt = resolve_target(target)
    model = load_onnx(model_path)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise _usage(f"{model_path} is already quantized (it has Q/DQ nodes)", hint="quantize the FP32 model")
    feed = load_calibration(calibration, model)
    if max_samples:
        feed = {k: v[:max_samples] for k, v in feed.items()}
    name_nodes(model)
    excluded = sorted(set(resolve_exclusions(model, exclude)) | set(keep_float))
    notes = []
    batch_list = batches(feed, model, notes=notes)
    samples = used_samples(batch_list)
    # After naming (node names stay those the accuracy gate and --exclude address): weights
    # held in Constant nodes become initializers, which the quantizer stores INT8 per channel.
    moved = constants_to_initializers(model)
    if moved:
        notes.append(f"{moved} Constant node(s) moved into initializers (their weights are stored INT8)")
    opset = model_opset(model)
    if opset < 13:
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
        notes.append(f"opset {opset} -> 13 (per-channel Q/DQ needs the axis attribute)")
        opset = 13
    if tgt.tensorrt < (9,) and opset > JETPACK5_MAX_OPSET:
        raise _usage(f"{model_path} has opset {opset}; TensorRT {tgt.tensorrt_string} ({target}) reads opset <= "
                     f"{JETPACK5_MAX_OPSET}", hint="export the model with opset 17 or lower")
    quantizable = [n.name for n in model.graph.node if n.op_type in op_types]
    if not [n for n in quantizable if n not in excluded]:
        raise _usage(f"{model_path} has no {'/'.join(op_types)} node left to quantize")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise _usage(f"output directory {out_dir} does not exist")
    from tegra_ai.util.atomic import write_errors_named

    with write_errors_named(out_dir), tempfile.TemporaryDirectory(prefix=".tegra-ai-quant-", dir=out_dir) as tmp:
        src = os.path.join(tmp, "named.onnx")
        onnx.save(model, src)
        dst = os.path.join(tmp, "quantized.onnx")
        ranges = None
        if backend == "modelopt":
            _quantize_modelopt(src, dst, feed, method, excluded, op_types, notes)
        else:
            ranges = _quantize_ort(model, src, dst, batch_list, method, excluded, op_types, "jetpack5" if tgt.tensorrt < (9,)
                          else target, notes, range_cache)
        q = onnx.load(dst)
        if tgt.tensorrt < (9,) and model_opset(q) > JETPACK5_MAX_OPSET:
            raise TegraAIError(f"the quantizer raised the opset to {model_opset(q)}, above TensorRT "
                               f"{tgt.tensorrt_string}'s {JETPACK5_MAX_OPSET}")
        if backend != "modelopt":  # Model Optimizer's output keeps its own placement
            unquantize_other_consumers(q, op_types)
            residual = quantize_residual_inputs(q, _absmax_ranges(ranges))
            if residual["quantized"]:
                notes.append(f"{len(residual['quantized'])} residual Add(s): skip input quantized, convolution "
                             "input float (TensorRT fuses Conv+Add)")
            if residual["no_scale"]:
                notes.append(f"{len(residual['no_scale'])} residual Add(s) left float: the skip tensor has no "
                             "calibrated scale")
            shared = share_concat_pool_scales(q)
            if shared["groups"]:
                notes.append(f"{shared['groups']} Concat/MaxPool group(s): one scale for their {shared['tensors']} "
                             "quantized tensors (TensorRT runs them INT8 without requantizing)")
        splits = fusion_splits(q)
        if splits and backend != "modelopt":  # our placement must never do this
            raise TegraAIError(f"the quantized model has a Q/DQ pair between {splits[0][0]} and {splits[0][1]}, "
                               "which TensorRT fuses", hint="report this; --exclude the layer named there meanwhile")
        if splits:
            notes.append(f"{len(splits)} Q/DQ pair(s) split a fusion ({splits[0][0]} -> {splits[0][1]}, ...)")
        q.producer_name = "meta-tegra-ai quantize"
        if keep_float:  # what the accuracy gate kept in float: an FP16 copy for TensorRT 11 keeps it FP32
            from tegra_ai.onnx_fp16 import KEEP_FP32_METADATA

            onnx.helper.set_model_props(q, {**{p.key: p.value for p in q.metadata_props},
                                            KEEP_FP32_METADATA: json.dumps(sorted(set(keep_float)))})
        onnx.save(q, dst)
        problems = check_for_target(dst, target)
        if problems:  # our placement broke a rule of the target's TensorRT: never hand that out
            raise TegraAIError(f"the quantized model fails the {target} preflight: {problems[0]}",
                               hint="report this; --exclude the layer named there meanwhile")
        from tegra_ai.util.atomic import atomic_write_bytes

        atomic_write_bytes(output, q.SerializeToString())
    qdq = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    consumers = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dq_outputs = {o for n in qdq if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = sorted({n.name for n in q.graph.node if n.op_type in op_types and any(i in dq_outputs for i in n.input)})
    return QuantizeResult(output=output, target=target, method=method, backend=backend, samples=samples,
                          quantized_nodes=quantized, excluded_nodes=excluded, qdq_nodes=len(qdq),
                          opset=model_opset(q), notes=notes)


def unquantize_other_consumers(model, op_types=QUANTIZED_OP_TYPES) -> int:
    """Rewire consumers other than ``op_types`` (a residual Add, a Concat, ...) that read an
    activation's DequantizeLinear back to the float tensor; drop Q/DQ pairs left unused.
    Returns how many inputs were rewired."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    q_by_out = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    original = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in q_by_out:
            src = q_by_out[n.input[0]].input[0]
            if src not in inits:
                original[n.output[0]] = src
    rewired = 0
    for n in graph.node:
        if n.op_type in tuple(op_types) + ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            if name in original:
                n.input[i] = original[name]
                rewired += 1
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    return rewired


_POINTWISE = ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Tanh", "Elu", "Selu", "Mish",
              "Softplus", "PRelu")


def _conv_branch(name, producer, depth=4) -> bool:
    """Whether tensor ``name`` is a Conv's output, through the pointwise activation TensorRT
    fuses into it (Relu, Sigmoid, ..., SiLU as Mul(x, Sigmoid(x)))."""
    for _ in range(depth):
        p = producer.get(name)
        if p is None:
            return False
        if p.op_type in ("Conv", "ConvTranspose"):
            return True
        if p.op_type in _POINTWISE:
            name = p.input[0]
        elif p.op_type == "Mul" and len(p.input) == 2:  # SiLU x * Sigmoid(x), hard swish x * HardSigmoid(x)
            a, b = p.input
            pa, pb = producer.get(a), producer.get(b)
            if pb is not None and pb.op_type in ("Sigmoid", "HardSigmoid") and pb.input[0] == a:
                name = a
            elif pa is not None and pa.op_type in ("Sigmoid", "HardSigmoid") and pa.input[0] == b:
                name = b
            else:
                return False
        else:
            return False
    return False


def _direct_conv(name, producer, constant, depth=4) -> bool:
    """Tensor ``name`` is a Conv's output through only what folds into it (BatchNorm, a
    constant scale or bias), no activation: the canonical Conv + Add fusion."""
    for _ in range(depth):
        p = producer.get(name)
        if p is None:
            return False
        if p.op_type in ("Conv", "ConvTranspose"):
            return True
        if p.op_type == "BatchNormalization":
            name = p.input[0]
        elif p.op_type in ("Add", "Mul") and len(p.input) == 2 and sum(i in constant for i in p.input) == 1:
            name = next(i for i in p.input if i not in constant)
        else:
            return False
    return False


def _fused_side(inputs, producer, constant, limit=64) -> list:
    """For an Add of two convolution branches that both feed only the Add: which one TensorRT
    fuses with it ([True, False] or [False, True]; [False, False] when undecided). The one that
    is a Conv's output with no activation in between (Conv + Add); else the branch with the
    longer path from their lowest common ancestor (the other is the skip; Model Optimizer's
    ``build_non_residual_input_map`` uses the same distance)."""
    direct = [_direct_conv(i, producer, constant) for i in inputs]
    if direct.count(True) == 1:
        return direct
    dist = []
    for t in inputs:  # hops from each input back to every ancestor tensor
        d, frontier = {t: 0}, [t]
        while frontier and len(d) < limit * 8:
            nxt = []
            for x in frontier:
                p = producer.get(x)
                for i in (p.input if p is not None else ()):
                    if i and i not in constant and i not in d:
                        d[i] = d[x] + 1
                        nxt.append(i)
            frontier = nxt
        dist.append(d)
    common = dist[0].keys() & dist[1].keys()
    if not common:
        return [False, False]
    lca = min(common, key=lambda x: dist[0][x] + dist[1][x])
    a, b = dist[0][lca], dist[1][lca]
    return [a > b, b > a]


def constant_tensors(graph) -> set:
    """Initializers, Constant outputs and what nodes compute from them alone (a bias exported
    as Reshape(initializer, shape), as PaddlePaddle's exporter writes a Conv's bias): values the
    builder folds, never activations. Nodes are in topological order (ONNX requires it)."""
    out = {i.name for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" or (n.input and n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                                       and all(not i or i in out for i in n.input)):
            out.update(o for o in n.output if o)
    return out


def quantize_residual_inputs(model, absmax: dict | None = None) -> dict:
    """TensorRT's placement for a residual Add (developer guide, "Q/DQ Layer-Placement
    Recommendations": quantize the residual input in skip connections): the skip input gets
    a Q/DQ pair, the input from the convolution stays float, so TensorRT fuses Conv(+act)+Add
    and runs it INT8. The skip tensor's scale is the one already computed for it (the Q
    before another quantized consumer of the same tensor, else ``absmax[tensor] / 127`` from
    the calibration ranges). Returns {"quantized": [Add names],
    "no_scale": [Add names whose skip tensor has no calibrated scale]}."""
    from onnx import helper, numpy_helper

    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    q_of = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            q_of.setdefault(n.input[0], n)
    dq_of_q = {n.input[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    fanout = {}
    for n in g.node:
        for i in n.input:
            fanout[i] = fanout.get(i, 0) + 1
    constant = constant_tensors(g)
    done, no_scale, out = [], [], []
    for n in g.node:
        # a residual Add: two activations (an Add of a constant is a bias, not a skip connection)
        if (n.op_type == "Add" and len(n.input) == 2 and n.input[0] != n.input[1]
                and not constant & set(n.input)):
            sides = [_conv_branch(i, producer) for i in n.input]
            if sides.count(True) == 2:
                # Both come from convolutions: the skip is the one that also feeds the block
                # (fans out); the other is the branch TensorRT fuses with the Add.
                sides = [fanout.get(i, 0) == 1 for i in n.input]
                if sides.count(True) != 1:
                    sides = _fused_side(n.input, producer, constant)
            if sides.count(True) == 1:
                k = sides.index(False)
                skip = n.input[k]
                src = producer.get(skip)
                if src is not None and src.op_type == "DequantizeLinear":
                    pass  # already quantized
                elif skip in q_of:
                    q = q_of[skip]
                    dq = dq_of_q.get(q.output[0])
                    tag = f"{n.name or skip}_skip"
                    out.append(helper.make_node("QuantizeLinear", [skip] + list(q.input[1:]), [f"{tag}_q"],
                                                name=f"{tag}_QuantizeLinear"))
                    out[-1].attribute.extend(q.attribute)
                    out.append(helper.make_node("DequantizeLinear", [f"{tag}_q"] + list(q.input[1:]),
                                                [f"{tag}_dq"], name=f"{tag}_DequantizeLinear"))
                    if dq is not None:
                        out[-1].attribute.extend(dq.attribute)
                    n.input[k] = f"{tag}_dq"
                    done.append(n.name)
                elif (absmax or {}).get(skip, 0) > 0:
                    tag = f"{n.name or skip}_skip"
                    g.initializer.extend([
                        numpy_helper.from_array(np.array(absmax[skip] / 127.0, np.float32), f"{tag}_scale"),
                        numpy_helper.from_array(np.array(0, np.int8), f"{tag}_zero_point")])
                    qin = [f"{tag}_scale", f"{tag}_zero_point"]
                    out.append(helper.make_node("QuantizeLinear", [skip] + qin, [f"{tag}_q"],
                                                name=f"{tag}_QuantizeLinear"))
                    out.append(helper.make_node("DequantizeLinear", [f"{tag}_q"] + qin, [f"{tag}_dq"],
                                                name=f"{tag}_DequantizeLinear"))
                    n.input[k] = f"{tag}_dq"
                    done.append(n.name)
                else:
                    no_scale.append(n.name)
        out.append(n)
    del g.node[:]
    g.node.extend(out)
    return {"quantized": done, "no_scale": no_scale}


# Scale sharing across Concat and max pooling. TensorRT developer guide, "Explicit
# Quantization" > "Q/DQ Fusion" (paraphrased; figure "An illustration depicting a DQ
# forward-propagation and Q backward-propagation"): a Q layer is propagated backward and a DQ
# layer forward through the layers that commute with quantization (max pooling, concatenation,
# slicing, reshaping, ...). A Q after a Concat therefore lands on every Concat input, and a Q after a MaxPool
# on the MaxPool's input. When such a tensor also has its own Q (it feeds a Conv too) with a
# different scale, the producer has to write two INT8 tensors or requantize (a DQ->Q pair
# TensorRT keeps as a reformat); with one scale the two Qs are the same and merge, and the
# Concat runs INT8 without a reformat. NVIDIA Model Optimizer's ONNX PTQ does the same for
# Concat ("concat_elimination": modelopt.onnx.quantization.graph_utils.
# get_concat_eliminated_tensors, whose docstring describes the dq->q latency it avoids).
# AveragePool is not in the list: the guide's "quantizable AveragePool" figure fuses DQ ->
# AveragePool -> Q into one quantized layer, so its input and output may have different scales.
SCALE_SHARING_OP_TYPES = ("MaxPool",)


def _scale_groups(model):
    """tensor -> group root, for the tensors TensorRT's Q/DQ propagation ties to one scale, and
    tensor -> [activation QuantizeLinear nodes reading it]."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    qs = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and len(n.input) > 1 and n.input[1] in inits:
            qs.setdefault(n.input[0], []).append(n)
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    for n in g.node:
        if n.op_type in SCALE_SHARING_OP_TYPES and n.input and n.output:
            union(n.input[0], n.output[0])  # MaxPool's second output (indices) is not data
    # A Concat joins its inputs' group only when a Q reaches its output (directly or through
    # another commuting layer): otherwise it runs in float and nothing is propagated.
    pending = [n for n in g.node if n.op_type == "Concat"]
    while True:
        quantized = {find(t) for t in qs}
        ready = [n for n in pending if find(n.output[0]) in quantized]
        if not ready:
            break
        for n in ready:
            for i in n.input:
                if i and i not in inits:
                    union(i, n.output[0])
            pending.remove(n)
    return {t: find(t) for t in qs}, qs


def scale_conflicts(model) -> list:
    """Groups of quantized tensors that TensorRT's Q/DQ propagation ties together (Concat
    inputs and output, MaxPool input and output) but whose Qs have different scales: each is
    a requantization (a reformat) in the engine. Returns [{"tensors": [...], "scales": [...]}]."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    root, qs = _scale_groups(model)
    groups = {}
    for t, r in root.items():
        groups.setdefault(r, []).append(t)
    out = []
    for tensors in groups.values():
        scales = sorted({float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0])
                         for t in tensors for q in qs[t]})
        if len(scales) > 1:
            out.append({"tensors": sorted(tensors), "scales": scales})
    return out


def share_concat_pool_scales(model) -> dict:
    """Give every Q/DQ in a group that TensorRT's propagation ties together (see
    :data:`SCALE_SHARING_OP_TYPES`) one scale, the largest of the group's (the union of the
    calibrated ranges, as Model Optimizer's concat elimination merges the ranges), so the
    Concat/MaxPool runs INT8 with no requantization; the price is a coarser step on the
    tensors with the smaller ranges. Returns {"groups": groups changed, "tensors": tensors in them}."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    root, qs = _scale_groups(model)
    groups = {}
    for t, r in root.items():
        groups.setdefault(r, []).append(t)
    dq_of = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            dq_of.setdefault(n.input[0], []).append(n)
    changed = tensors_changed = 0
    replaced = set()
    for tensors in groups.values():
        nodes = [q for t in sorted(tensors) for q in qs[t]]
        scales = [float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0]) for q in nodes]
        if len(set(scales)) < 2:
            continue
        name = f"{sorted(tensors)[0]}_shared_scale"
        while name in inits:
            name += "_"
        t = numpy_helper.from_array(np.array(max(scales), np.float32), name)
        g.initializer.append(t)
        inits[name] = t
        for q in nodes:
            replaced.add(q.input[1])
            q.input[1] = name
            for dq in dq_of.get(q.output[0], ()):
                dq.input[1] = name
        changed += 1
        tensors_changed += len(tensors)
    used = {i for n in g.node for i in n.input}
    for i in [i for i in g.initializer if i.name in replaced - used]:  # scales no node reads any more
        g.initializer.remove(i)
    return {"groups": changed, "tensors": tensors_changed}


# What TensorRT fuses into a weighted layer (developer guide, "Explicit Quantization" >
# "Q/DQ Layer-Placement Recommendations": do not simulate batch-normalization and ReLU fusions,
# TensorRT fuses BatchNorm and the activation into the convolution and keeps the execution order;
# a bias Add after a MatMul/Gemm is fused the same way). A Q/DQ pair between the layer and one
# of these makes TensorRT run the layer and its epilogue apart, the layer's output in INT8.
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def fusion_splits(model) -> list:
    """Q/DQ pairs that split a fusion: between a Conv/ConvTranspose/Gemm/MatMul (or the
    BatchNorm / constant scale or bias already fused into it) and its BatchNorm, bias Add,
    constant scale, or activation (SiLU and hard swish as Mul(x, Sigmoid(x)), a decomposed
    hard swish's x + 3 included). Returns [(producer, consumer)] node names."""
    g = model.graph
    constant = constant_tensors(g)
    producer = {o: n for n in g.node for o in n.output}
    q_in = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    dq_src = {n.output[0]: q_in[n.input[0]] for n in g.node
              if n.op_type == "DequantizeLinear" and n.input[0] in q_in}

    def affine(n):  # a bias Add, a per-channel scale, an activation's offset: x op constant
        return n.op_type in ("Add", "Sub", "Mul", "Div") and len(n.input) == 2 and sum(i in constant for i in n.input) == 1

    def head(t, depth=6):
        """The weighted layer whose fused chain ends in tensor t, or None."""
        for _ in range(depth):
            p = producer.get(t)
            if p is None:
                return None
            if p.op_type in _WEIGHTED:
                return p
            if p.op_type == "BatchNormalization":
                t = p.input[0]
            elif p.op_type == "DequantizeLinear" and p.input[0] in q_in:  # an earlier split
                t = q_in[p.input[0]]
            elif affine(p):
                t = next(i for i in p.input if i not in constant)
            else:
                return None
        return None

    out = []
    for n in g.node:
        for i in n.input:
            src = dq_src.get(i)
            if src is None:
                continue
            h = head(src)
            if h is None:
                continue
            silu = n.op_type == "Mul" and any(producer.get(x) is not None and producer[x].op_type
                                              in ("Sigmoid", "HardSigmoid") and producer[x].input[0] in (src, i)
                                              for x in n.input if x != i)
            if n.op_type in ("BatchNormalization",) + _POINTWISE or affine(n) or silu:
                out.append((h.name, n.name))
    return out


def check_for_target(path: str, target: str) -> list:
    """The host preflight's errors for ``path`` on ``target`` (Q/DQ rules included)."""
    from tegra_ai.onnx_tools.check import check_model
    from tegra_ai.onnx_tools.targets import resolve_target

    report = check_model(path, resolve_target(target), use_parser=False)
    return [f"{f.code}: {f.message}" for f in report.findings if f.severity == "error"]
