"""Small helpers over an ONNX ModelProto shared by the host-side model tools (INT8 Q/DQ,
FP16): loading with a one-line error, graph inputs, the default-domain opset, stable
node names. Needs the onnx package (imported lazily)."""

from __future__ import annotations

import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.lazy import require


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def load_onnx(path: str):
    onnx = require("onnx", extra="onnx", purpose="reading ONNX models")
    if not os.path.isfile(path):
        raise _usage(f"model {path} does not exist")
    try:
        return onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends
        raise _usage(f"cannot read {path} as ONNX ({type(exc).__name__})") from None


def graph_inputs(model) -> list:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def name_nodes(model) -> None:
    """ONNX Runtime's quantizer addresses nodes by name: give unnamed ones a stable name."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def model_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# Constant's value attributes and the tensor each one holds (ONNX Constant-13: exactly one of
# value, value_float(s), value_int(s), value_string(s), sparse_value).
_CONSTANT_SCALARS = {"value_float": (1, False), "value_floats": (1, True), "value_int": (7, False),
                     "value_ints": (7, True)}


def constants_to_initializers(model) -> int:
    """Move the tensors of the main graph's Constant nodes into initializers of the same name
    (PaddlePaddle and many tf2onnx exports hold every weight in a Constant node). ONNX
    Runtime's quantizer turns only initializers into INT8 weights (``quantize_static``: a
    Constant-held weight is calibrated as an activation and stays FP32 behind a Q->DQ pair,
    per tensor). Left as they are: a Constant whose output is a graph output (outputs stay
    produced by a node), a sparse or string value, Constants inside subgraphs, and models of
    IR version < 4 (there an initializer must also be a graph input, which a caller could
    feed). Node order and every tensor name stay. Returns how many were moved."""
    onnx = require("onnx", extra="onnx", purpose="reading ONNX models")
    from onnx import helper

    g = model.graph
    if model.ir_version and model.ir_version < 4:
        return 0
    outputs = {o.name for o in g.output}
    taken = {i.name for i in g.initializer} | {i.name for i in g.input}
    keep, moved = [], []
    for n in g.node:
        attr = n.attribute[0] if len(n.attribute) == 1 else None
        if (n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or len(n.output) != 1 or attr is None
                or n.output[0] in outputs or n.output[0] in taken):
            keep.append(n)
            continue
        name = n.output[0]
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type != onnx.TensorProto.STRING:
            t = onnx.TensorProto()
            t.CopyFrom(attr.t)
            t.name = name
        elif attr.name in _CONSTANT_SCALARS:
            dtype, is_list = _CONSTANT_SCALARS[attr.name]
            vals = list(attr.floats if dtype == 1 else attr.ints) if is_list else [attr.f if dtype == 1 else attr.i]
            t = helper.make_tensor(name, dtype, [len(vals)] if is_list else [], vals)
        else:
            keep.append(n)
            continue
        moved.append(t)
    if moved:
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(moved)
    return len(moved)
