"""FP16 ONNX on the host, for builders without weak typing.

TensorRT 11 and TensorRT-RTX build only the types a model has (strongly typed), so
``--precision fp16`` there needs an FP16 model. This converts one (a small converter of
its own: onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)`` turns a
graph output that is also consumed inside the graph into FP16 and feeds a blocked
operator FP16): inputs and outputs stay FP32 (the application's buffers do not change),
and numerically sensitive operators stay FP32 behind Casts — reductions,
Softmax/LogSoftmax, normalisations and the pieces of a decomposed LayerNorm
(ReduceMean, Pow, Sqrt, Reciprocal), Exp/Log — as do operators whose float inputs are
coordinates or scales (TopK, NMS, RoiAlign, Upsample, Range, CumSum, Min/Max), the list
onnxconverter-common uses less Resize: it computes in FP16 with its ``roi``/``scales``
inputs left FP32 (ONNX types those inputs apart from the data;
nearest-neighbour resizing of FP16 data is exact). Check the result with :func:`tegra_ai.quant.compare.compare`.

So that the file halves, weights held in Constant nodes convert like initializers,
BatchNormalization after a Conv is folded into the Conv's weights in FP32 first (what
TensorRT does at build time anyway), redundant Casts are folded and the converter's own
shape-inference results are not written.

For the builder: :func:`fp16_model_for_build` writes an FP16 copy of a model into a
directory the caller owns, for a strongly typed build on releases without the FP16 builder
flag: ``--precision fp16`` of a float model, and the float parts of a Q/DQ model (the Q/DQ
nodes with FP16 scales at opset >= 19, raised to 19 where it was lower, FP32 scales behind
Casts where it cannot be; the layers the accuracy gate kept in float stay FP32)."""

from __future__ import annotations

import logging
import os

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.onnx_graph import load_onnx, model_opset, name_nodes
from tegra_ai.util.atomic import atomic_write_bytes
from tegra_ai.util.jsonfile import loads as json_loads
from tegra_ai.util.lazy import require

log = logging.getLogger("tegra_ai.onnx_fp16")

SENSITIVE_OPS = ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
                 "ReduceLogSumExp", "ReduceProd", "Softmax", "LogSoftmax", "LayerNormalization",
                 "GroupNormalization", "InstanceNormalization", "Exp", "Log", "Pow", "Sqrt", "Reciprocal")
# Kept in FP32 because their float inputs are coordinates, scales or indices, not activations
# (what onnxconverter-common blocks by default, less its ONNX-ML operators).
COORDINATE_OPS = ("NonMaxSuppression", "TopK", "RoiAlign", "Upsample", "Range", "CumSum", "Min", "Max",
                  "RandomUniformLike", "RandomNormalLike", "RandomUniform", "RandomNormal", "EyeLike")
# Operators that compute in FP16 on their data while some inputs stay FP32 (input index ->
# kept FP32). ONNX Resize-11/13/18/19: X is T1, roi T2 (float16|float|double), scales
# tensor(float) only. So the data and the output go FP16, the roi and scales do not
# (onnxconverter-common blocks the whole operator; NVIDIA Model Optimizer's AutoCast keeps
# only Resize's scales FP32, and Upsample, deprecated since opset 10, FP32 whole, as here).
FP32_INPUTS = {"Resize": (1, 2)}
# Explicit quantization: the Q/DQ nodes of an FP16 copy compute in FP16 with FP16 scales, as
# NVIDIA Model Optimizer writes them (modelopt.onnx.autocast.convert_to_f16: "Opset 19 is the
# first to support fp16 scales in Q/DQ nodes"), so no Cast pair surrounds each of them.
# ONNX operator spec (docs/Operators.md): QuantizeLinear-13 and DequantizeLinear-13 take
# y_scale/x_scale as tensor(float) only (DequantizeLinear-13's output is tensor(float));
# QuantizeLinear-19/21 type x and y_scale alike (T1: float, float16, bfloat16) and
# DequantizeLinear-19/21 output the scale's type (T2). So the copy raises an older opset to
# QDQ_FP16_SCALE_OPSET with onnx.version_converter; where that fails, its Q/DQ nodes and
# scales stay FP32 behind Casts (valid on every opset). TensorRT takes both forms on the
# releases that build FP16 copies (NvInfer.h release/11.1, IQuantizeLayer: "For strongly
# typed networks, if the scale data type is DataType::kHALF or DataType::kBF16, it must match
# the input data type"; addDequantize: "if the scale type is DataType::kHALF or
# DataType::kBF16 the output type must match"): FP16 scale, FP16 input and FP16 output here;
# onnx-tensorrt (onnxOpImporters.cpp, QuantDequantLinearHelper) gives a strongly typed
# DequantizeLayer its scale's type as output type, as ONNX DequantizeLinear-19 does.
# TensorRT 8.5-10.x never parse this copy (they have the FP16 builder flag: the model as it
# is, FP32 scales). A scale that is not a normal FP16 number (below 2**-14 or above 65504:
# it would lose precision or become 0 / inf) keeps its Q/DQ nodes FP32 (Model Optimizer
# clamps such values instead).
QDQ_FP16_SCALE_OPSET = 19
FP16_MIN_NORMAL = 2.0 ** -14
# What the FP16 copy of a strongly typed build is made by: part of the engine cache key on
# releases that build such copies (TensorRT 11, TensorRT-RTX), so an engine is rebuilt when the
# conversion changes. Bump it with every change to what the conversion writes.
RECIPE = "tegra-ai-fp16/3"  # 3: FP16 Q/DQ scales at opset >= 19

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# The nodes the accuracy gate (tegra_ai.quant.fallback) kept in float on purpose, as the
# quantizer records them in the Q/DQ model's metadata_props (a JSON list of node names).
KEEP_FP32_METADATA = "tegra_ai.keep_fp32"
# Exact in any type (they move data): computed in the type their input already has, so an
# FP32 tensor (a graph input, a sensitive op's result) is not narrowed to FP16 just to be
# reshaped, and a Softmax -> Identity -> output keeps its FP32 values.
DATA_MOVEMENT_OPS = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")
# Their output type is set by an attribute: left as they are, consumers get a Cast.
TYPE_DEFINING_OPS = ("Cast", "CastLike", "Constant", "ConstantOfShape")
FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0


def block_list(extra=()) -> list:
    return sorted(set(SENSITIVE_OPS) | set(COORDINATE_OPS) | set(extra))


def _constant_arrays(g) -> dict:
    """name -> (numpy array, holder) of the float initializers and Constant-node values of a
    graph (not of initializers that are also graph inputs: those can be fed)."""
    import onnx
    from onnx import numpy_helper

    inputs = {i.name for i in g.input}
    out = {i.name: (numpy_helper.to_array(i), i) for i in g.initializer if i.name not in inputs}
    for n in g.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            attr = next((a for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
            if attr is not None:
                out[n.output[0]] = (numpy_helper.to_array(attr.t), n)
    return out


def fold_batchnorm(model, skip_nodes=()) -> int:
    """Fold each inference-mode BatchNormalization that alone reads a Conv's output into that
    Conv's weights and bias, in FP32: w' = w * s, b' = (b - mean) * s + beta with
    s = scale / sqrt(var + epsilon) (ONNX BatchNormalization-15). TensorRT fuses the pair at
    build time the same way; folded on the host, the FP16 file holds one bias instead of four
    per-channel vectors and the FP16 weights are rounded once. Returns how many were folded."""
    from onnx import numpy_helper

    g = model.graph
    consts = _constant_arrays(g)
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    folded, drop = 0, set()
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or len(bn.input) != 5 or bn.name in skip_nodes:
            continue
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or conv.name in skip_nodes or conv.output[0] in outputs
                or len(consumers.get(conv.output[0], [])) != 1 or len(conv.input) < 2):
            continue
        vals = [consts.get(x) for x in list(bn.input[1:]) + [conv.input[1]] + list(conv.input[2:3])]
        if any(v is None or v[0].dtype != np.float32 for v in vals):
            continue
        gamma, beta, mean, var, w = (v[0].astype(np.float64) for v in vals[:5])
        b = vals[5][0].astype(np.float64) if len(vals) > 5 else np.zeros(w.shape[0])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        if gamma.shape != (w.shape[0],) or any(x.shape != gamma.shape for x in (beta, mean, var, b)):
            continue
        scale = gamma / np.sqrt(var + eps)
        w_name, b_name = f"{conv.output[0]}_bnfold_w", f"{conv.output[0]}_bnfold_b"
        g.initializer.extend([
            numpy_helper.from_array((w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32), w_name),
            numpy_helper.from_array(((b - mean) * scale + beta).astype(np.float32), b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        drop.add(id(bn))
        folded += 1
    if not folded:
        return 0
    keep = [n for n in g.node if id(n) not in drop]
    used = {i for n in keep for i in n.input} | outputs
    keep = [n for n in keep if n.op_type != "Constant" or any(o in used for o in n.output)]
    del g.node[:]
    g.node.extend(keep)
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    return folded


def rescale_batchnorm(model, skip_nodes=()) -> int:
    """Rewrite each BatchNormalization that :func:`fold_batchnorm` could not fold (its Conv's
    weights come from a DequantizeLinear in a Q/DQ model, or it follows no Conv) and whose
    parameters FP16 cannot hold (a running variance of 9.8e7 in PP-OCRv4's detector, above
    65504: clamped, the layer's output is wrong) into the same affine map with FP16-sized
    parameters, in FP32: scale = gamma / sqrt(var + epsilon), B = beta - mean * scale, mean 0,
    var 1 - epsilon (ONNX BatchNormalization-15: y = (x - mean) / sqrt(var + epsilon) * scale + B).
    The node stays (TensorRT fuses it into the Conv as before). Returns how many were rewritten."""
    from onnx import numpy_helper

    g = model.graph
    consts = _constant_arrays(g)
    done = 0
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.input) != 5 or len(bn.output) != 1 or bn.name in skip_nodes:
            continue
        vals = [consts.get(x) for x in bn.input[1:]]
        if any(v is None or v[0].dtype != np.float32 or v[0].ndim != 1 for v in vals):
            continue
        gamma, beta, mean, var = (v[0].astype(np.float64) for v in vals)
        if not all(x.shape == gamma.shape for x in (beta, mean, var)):
            continue
        params = np.concatenate([gamma, beta, mean, var])
        nonzero = np.abs(params[params != 0])
        if not ((nonzero > FP16_MAX).any() or (nonzero < FP16_MIN_NORMAL).any()):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        new = [scale, beta - mean * scale, np.zeros_like(scale), np.full_like(scale, 1.0 - eps)]
        names = [f"{bn.output[0]}_bn{k}" for k in ("scale", "bias", "mean", "var")]
        g.initializer.extend(numpy_helper.from_array(a.astype(np.float32), n) for a, n in zip(new, names))
        del bn.input[1:]
        bn.input.extend(names)
        done += 1
    if done:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for i in [i for i in g.initializer if i.name not in used]:
            g.initializer.remove(i)
        keep = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
        del g.node[:]
        g.node.extend(keep)
    return done


def to_fp16(model, op_block_list=(), node_block_list=()):
    """An FP16 copy of an ONNX ModelProto: float tensors computed by nodes outside the block
    lists become FP16, graph inputs and outputs stay FP32, and a Cast is inserted wherever a
    tensor's type differs from what its consumer computes in. Returns (model, kept-FP32 node names).

    Tensors whose type shape inference cannot tell, and nodes with subgraphs, stay as they
    are (FP32), so the result is always type-consistent."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the caller's model stays as it was
    model = copy
    original_value_info = list(model.graph.value_info)
    if "BatchNormalization" not in op_block_list and "Conv" not in op_block_list:
        fold_batchnorm(model, skip_nodes=set(node_block_list))
    if "BatchNormalization" not in op_block_list:
        rescale_batchnorm(model, skip_nodes=set(node_block_list))
    model = shape_inference.infer_shapes(model)
    g = model.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    inits = {i.name: i for i in g.initializer}
    for name, init in inits.items():
        types[name] = init.data_type
    blocked_ops, blocked_nodes = set(op_block_list), set(node_block_list)

    half, kept = {}, []
    fp32 = {i.name for i in g.input if types.get(i.name) == FLOAT and i.name not in inits}
    for n in g.node:
        names = [x for x in list(n.input) + list(n.output) if x]
        has_float = any(types.get(x) == FLOAT for x in names)
        unknown = any(not types.get(x) for x in names)
        subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)
        is_half = (has_float and not unknown and not subgraph and n.op_type not in TYPE_DEFINING_OPS
                   and n.op_type not in blocked_ops and n.name not in blocked_nodes)
        # A QuantizeLinear of an FP32 tensor (the graph input) quantizes it as it is, FP32 (no
        # Cast to FP16 first: that rounding would move values across a quantization step).
        follows = n.op_type in DATA_MOVEMENT_OPS + ("QuantizeLinear",) and n.input and n.input[0] in fp32
        half[n.name] = is_half and not follows
        if has_float and not is_half and n.op_type not in TYPE_DEFINING_OPS:
            kept.append(n.name)
        if not half[n.name] and n.op_type not in ("Constant", "ConstantOfShape"):  # constants convert
            fp32.update(o for o in n.output if types.get(o) == FLOAT)

    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    new_type = {}
    for n in g.node:
        for o in n.output:
            if types.get(o) == FLOAT:
                new_type[o] = FLOAT16 if half[n.name] else FLOAT

    def wants_half(node, index) -> bool:  # the type a node computes its input ``index`` in
        return half[node.name] and index not in FP32_INPUTS.get(node.op_type, ())

    def all_half(name) -> bool:
        uses = [(c, i) for c in consumers.get(name, []) for i, x in enumerate(c.input) if x == name]
        return bool(uses) and all(wants_half(c, i) for c, i in uses)

    taken = set(inits) | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    for name, init in list(inits.items()):
        if init.data_type == FLOAT:
            if all_half(name):
                arr = numpy_helper.to_array(init).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), name))
                new_type[name] = FLOAT16
                continue
            new_type[name] = FLOAT
            # A scale shared by an FP32 QuantizeLinear and an FP16 DequantizeLinear: the DQ gets
            # an FP16 copy (not a Cast), the Q the same value in FP32 (one scale for the pair).
            uses = [(c, i) for c in consumers.get(name, []) for i, x in enumerate(c.input)
                    if x == name and c.op_type in QDQ_OPS and i == 1 and wants_half(c, i)]
            if uses:
                h = numpy_helper.to_array(init).astype(np.float16)
                init.CopyFrom(numpy_helper.from_array(h.astype(np.float32), name))
                copy = f"{name}_fp16"
                while copy in taken:
                    copy += "_"
                taken.add(copy)
                g.initializer.append(numpy_helper.from_array(h, copy))
                types[copy] = new_type[copy] = FLOAT16
                for c, i in uses:
                    c.input[i] = copy

    # Weights held in Constant nodes (PaddlePaddle exports, many tf2onnx graphs) convert
    # like initializers: left FP32 they would be cast at run time and the file would grow.
    for n in g.node:
        if n.op_type != "Constant" or len(n.output) != 1 or types.get(n.output[0]) != FLOAT:
            continue
        attr = next((a for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
        if attr is None or not all_half(n.output[0]):
            continue
        arr = numpy_helper.to_array(attr.t).astype(np.float32)
        attr.t.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), attr.t.name))
        new_type[n.output[0]] = FLOAT16

    nodes, casts = [], {}
    for n in g.node:
        for idx, name in enumerate(n.input):
            want = FLOAT16 if wants_half(n, idx) else FLOAT
            if not name or types.get(name) != FLOAT or new_type.get(name, FLOAT) == want:
                continue
            key = (name, want)
            if key not in casts:
                out = f"{name}_as_{'fp16' if want == FLOAT16 else 'fp32'}"
                nodes.append(helper.make_node("Cast", [name], [out], name=f"{out}_cast", to=want))
                casts[key] = out
            n.input[idx] = casts[key]
        nodes.append(n)
    for o in g.output:
        if types.get(o.name) == FLOAT and new_type.get(o.name) == FLOAT16:
            inner = f"{o.name}_fp16"
            for n in nodes:
                n.output[:] = [inner if x == o.name else x for x in n.output]
                n.input[:] = [inner if x == o.name else x for x in n.input]
            nodes.append(helper.make_node("Cast", [inner], [o.name], name=f"{o.name}_output_cast", to=FLOAT))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale float types; shape inference fills them again
    model = shape_inference.infer_shapes(model)
    if fold_casts(model):
        del model.graph.value_info[:]
        model = shape_inference.infer_shapes(model)
    # Our shape inference's results are not part of the model (a tenth of a small model's
    # FP16 file): the input's own value_info, typed as converted, is what stays.
    wanted = {vi.name for vi in original_value_info}
    kept_info = [vi for vi in model.graph.value_info if vi.name in wanted]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept_info)
    return model, kept


def fold_casts(model) -> int:
    """Drop Casts that change nothing: a Cast to the type its input already has (an FP32
    model's own Cast to float after its producer stayed FP32), and the second of a
    widening/narrowing pair FP16 -> FP32 -> FP16 (exact: FP16 round-trips through FP32).
    Graph outputs keep their names. Returns how many Casts were removed."""
    g = model.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for i in g.initializer:
        types[i.name] = i.data_type
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    alias, removed = {}, 0

    def to_of(n):
        return next((a.i for a in n.attribute if a.name == "to"), None)

    for n in g.node:
        n.input[:] = [alias.get(x, x) for x in n.input]
        if n.op_type != "Cast" or n.output[0] in outputs:
            continue
        src, to = n.input[0], to_of(n)
        if types.get(src) == to:  # identity
            alias[n.output[0]] = src
            removed += 1
            continue
        prev = producer.get(src)
        if (prev is not None and prev.op_type == "Cast" and to_of(prev) == FLOAT and to == FLOAT16
                and types.get(prev.input[0]) == FLOAT16):
            alias[n.output[0]] = prev.input[0]
            removed += 1
    if not removed:
        return 0
    keep = [n for n in g.node if not (n.op_type == "Cast" and n.output[0] in alias)]
    used = {i for n in keep for i in n.input} | outputs
    keep = [n for n in keep if n.op_type != "Cast" or any(o in used for o in n.output)]
    removed = len(g.node) - len(keep)
    del g.node[:]
    g.node.extend(keep)
    return removed


def raise_opset_for_fp16_scales(model):
    """``(model, None)`` at opset >= :data:`QDQ_FP16_SCALE_OPSET` (raised with
    onnx.version_converter where it was lower; the IR version raised to what that opset
    needs), or ``(model unchanged, why not)`` when the conversion fails (an operator without
    an adapter, a custom domain it cannot read): the FP32-scale path then."""
    import onnx
    from onnx import helper, version_converter

    opset = model_opset(model)
    if opset >= QDQ_FP16_SCALE_OPSET:
        return model, None
    try:
        raised = version_converter.convert_version(model, QDQ_FP16_SCALE_OPSET)
        ir = helper.find_min_ir_version_for([o for o in raised.opset_import if o.domain in ("", "ai.onnx")])
        raised.ir_version = max(raised.ir_version, ir)
        onnx.checker.check_model(raised)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        return model, (f"opset {opset} could not be raised to {QDQ_FP16_SCALE_OPSET} "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
    if not {n.name for n in model.graph.node} <= {n.name for n in raised.graph.node}:
        return model, f"raising opset {opset} to {QDQ_FP16_SCALE_OPSET} renamed nodes"
    name_nodes(raised)  # nodes an adapter added (ReduceMean's axes as an input, ...)
    return raised, None


def fp32_scale_qdq_nodes(model) -> list:
    """Names of the Q/DQ nodes whose scale is not a normal FP16 number (any element below
    :data:`FP16_MIN_NORMAL` or above 65504 in magnitude, or not a constant): with every node
    that shares such a scale, they stay FP32 in the copy."""
    g = model.graph
    consts = _constant_arrays(g)
    bad = set()
    for n in g.node:
        if n.op_type in QDQ_OPS and len(n.input) > 1:
            v = consts.get(n.input[1])
            a = np.abs(v[0].astype(np.float64)) if v is not None and v[0].dtype == np.float32 else None
            if a is None or not a.size or not np.all((a >= FP16_MIN_NORMAL) & (a <= FP16_MAX)):
                bad.add(n.input[1])
    return [n.name for n in g.node if n.op_type in QDQ_OPS and len(n.input) > 1 and n.input[1] in bad]


def gate_keep_fp32(model) -> list:
    """The node names a Q/DQ model's ``metadata_props`` says the accuracy gate kept in float
    (:data:`KEEP_FP32_METADATA`, written by :func:`tegra_ai.quant.qdq.quantize`); [] if none."""
    raw = next((p.value for p in model.metadata_props if p.key == KEEP_FP32_METADATA), None)
    if raw is None:
        return []
    try:
        names = json_loads(raw)   # the bounded reader: a model's metadata is input too
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise TegraAIError(f"metadata {KEEP_FP32_METADATA} is not a JSON list of node names", exit_code=EXIT_USAGE)
    return names


def convert_fp16(model_path: str, output: str, keep_fp32=(), keep_io_types: bool = True, *,
                 qdq: bool = False) -> dict:
    """Write an FP16 copy of ``model_path`` to ``output``; ``keep_fp32``: more node names or
    op types to keep in FP32. ``qdq``: the model may be explicitly quantized; its Q/DQ nodes
    compute in FP16 with FP16 scales (the opset raised to :data:`QDQ_FP16_SCALE_OPSET` where
    lower; where that fails, or for a scale FP16 cannot hold, they and their scales stay FP32
    behind Casts), the nodes its metadata says the accuracy gate kept in float stay FP32, the
    other float layers become FP16. Returns a summary (nodes converted / kept, ``qdq_scales``:
    "fp16", "fp32" or None without Q/DQ, and why FP32)."""
    onnx = require("onnx", extra="onnx", purpose="FP16 conversion")

    if not keep_io_types:
        raise TegraAIError("FP16 inputs/outputs are not supported: the application's buffers stay FP32",
                           exit_code=EXIT_USAGE)
    model = load_onnx(model_path)
    has_qdq = any(n.op_type in QDQ_OPS for n in model.graph.node)
    if has_qdq and not qdq:
        raise TegraAIError(f"{model_path} has Q/DQ nodes; convert the FP32 model", exit_code=EXIT_USAGE)
    if not any(i.data_type == onnx.TensorProto.FLOAT for i in model.graph.initializer) and \
            any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise TegraAIError(f"{model_path} is already FP16", exit_code=EXIT_USAGE)
    name_nodes(model)
    names = {n.name for n in model.graph.node}
    types = {n.op_type for n in model.graph.node}
    unknown = [k for k in keep_fp32 if k not in names and k not in types]
    if unknown:
        raise TegraAIError(f"--keep-fp32 {unknown[0]!r} is neither a node name nor an operator type of the model",
                           exit_code=EXIT_USAGE)
    gate = gate_keep_fp32(model) if has_qdq else []
    missing = [k for k in gate if k not in names]
    if missing:
        raise TegraAIError(f"{model_path}: {KEEP_FP32_METADATA} names {missing[0]!r}, which is not a node of the model",
                           hint="quantize the model again", exit_code=EXIT_USAGE)
    # Q/DQ with FP16 scales where the opset allows it or can be raised to allow it
    # (QDQ_FP16_SCALE_OPSET); else the Q/DQ nodes and their scales stay FP32 behind Casts.
    scales, why_fp32, fp32_qdq = None, None, []
    if has_qdq:
        model, why_fp32 = raise_opset_for_fp16_scales(model)
        scales = "fp32" if why_fp32 else "fp16"
        if why_fp32:
            log.info("%s: Q/DQ scales stay FP32: %s", model_path, why_fp32)
        else:
            fp32_qdq = fp32_scale_qdq_nodes(model)
    ops = block_list(list(k for k in keep_fp32 if k in types) + (list(QDQ_OPS) if scales == "fp32" else []))
    nodes = [k for k in keep_fp32 if k in names] + gate + fp32_qdq
    casts_before = sum(1 for n in model.graph.node if n.op_type == "Cast")
    nodes_before = len(model.graph.node)
    try:
        converted, kept = to_fp16(model, op_block_list=ops, node_block_list=nodes)
        onnx.checker.check_model(converted)
    except TegraAIError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx raises many kinds
        raise TegraAIError(f"FP16 conversion of {model_path} failed: {type(exc).__name__}: {exc}") from None
    converted.producer_name = "meta-tegra-ai convert-fp16"
    atomic_write_bytes(output, converted.SerializeToString())
    casts = sum(1 for n in converted.graph.node if n.op_type == "Cast") - casts_before
    return {"output": output, "nodes": nodes_before, "kept_fp32": sorted(kept), "casts_added": casts,
            "keep_io_types": keep_io_types, "gate_fp32": sorted(gate), "qdq": has_qdq,
            "qdq_scales": scales, "qdq_scales_fp32_why": why_fp32, "qdq_fp32_scale_nodes": sorted(fp32_qdq),
            "opset": model_opset(converted)}


def fp16_model_for_build(model_path: str, workdir: str) -> dict:
    """Builder hook: an FP16 copy of ``model_path`` in ``workdir``, for a strongly typed build
    on a release without the FP16 builder flag (TensorRT 11, TensorRT-RTX): a float model's
    ``--precision fp16``, or the float parts of a Q/DQ model (its Q/DQ with FP16 scales where
    the opset allows, see :data:`QDQ_FP16_SCALE_OPSET`; the gate's nodes stay FP32). Returns :func:`convert_fp16`'s summary (``output``: the
    copy). External data is not supported by this path: models over 2 GB should be converted
    ahead with ``convert-fp16``."""
    out = os.path.join(workdir, os.path.splitext(os.path.basename(model_path))[0] + ".fp16.onnx")
    summary = convert_fp16(model_path, out, qdq=True)
    log.info("converted %s to FP16 for a strongly typed build: %s", model_path, out)
    return summary
