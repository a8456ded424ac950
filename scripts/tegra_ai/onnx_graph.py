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
