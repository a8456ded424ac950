"""FP16 ONNX on the host, for builders without weak typing.

TensorRT 11 and TensorRT-RTX build only the types a model has (strongly typed), so
``--precision fp16`` there needs an FP16 model. This converts one with
onnxconverter-common's ``float16.convert_float_to_float16(keep_io_types=True, ...)``:
inputs and outputs stay FP32 (the application's buffers do not change), and numerically
sensitive operators stay FP32 behind Casts — reductions, Softmax/LogSoftmax,
normalisations and the pieces of a decomposed LayerNorm (ReduceMean, Pow, Sqrt,
Reciprocal), Exp/Log, and what onnxconverter-common blocks by default (Resize, TopK,
NMS, Range, CumSum, ...). Check the result with :func:`tegra_ai.quant.compare.compare`.

For the builder: :func:`fp16_model_for_build` returns (and caches next to nothing: a
temporary directory the caller owns) an FP16 copy of a model, for a strongly typed
``--precision fp16`` build."""

from __future__ import annotations

import logging
import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.atomic import atomic_write_bytes
from tegra_ai.util.lazy import require

log = logging.getLogger("tegra_ai.quant.fp16")

SENSITIVE_OPS = ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
                 "ReduceLogSumExp", "ReduceProd", "Softmax", "LogSoftmax", "LayerNormalization",
                 "GroupNormalization", "InstanceNormalization", "Exp", "Log", "Pow", "Sqrt", "Reciprocal")


def block_list(extra=()) -> list:
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS) | set(extra))


def convert_fp16(model_path: str, output: str, keep_fp32=(), keep_io_types: bool = True) -> dict:
    """Write an FP16 copy of ``model_path`` to ``output``; ``keep_fp32``: more node names or
    op types to keep in FP32. Returns a summary (nodes converted / kept)."""
    onnx = require("onnx", extra="onnx", purpose="FP16 conversion")
    require("onnxconverter_common", extra="fp16", purpose="FP16 conversion")
    from onnxconverter_common import float16

    from tegra_ai.quant.qdq import load_onnx, name_nodes

    model = load_onnx(model_path)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise TegraAIError(f"{model_path} has Q/DQ nodes; convert the FP32 model", exit_code=EXIT_USAGE)
    inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    if inits and len(inits) == len(model.graph.initializer):
        raise TegraAIError(f"{model_path} is already FP16", exit_code=EXIT_USAGE)
    name_nodes(model)
    names = {n.name for n in model.graph.node}
    types = {n.op_type for n in model.graph.node}
    unknown = [k for k in keep_fp32 if k not in names and k not in types]
    if unknown:
        raise TegraAIError(f"--keep-fp32 {unknown[0]!r} is neither a node name nor an operator type of the model",
                           exit_code=EXIT_USAGE)
    ops = block_list(k for k in keep_fp32 if k in types)
    nodes = [k for k in keep_fp32 if k in names]
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=ops,
                                                     node_block_list=nodes)
    except Exception as exc:  # noqa: BLE001 - the converter raises plain exceptions
        raise TegraAIError(f"FP16 conversion of {model_path} failed: {type(exc).__name__}: {exc}") from None
    converted.producer_name = "meta-tegra-ai convert-fp16"
    kept = sorted(n.name for n in model.graph.node if n.op_type in ops or n.name in nodes)
    atomic_write_bytes(output, converted.SerializeToString())
    casts = sum(1 for n in converted.graph.node if n.op_type == "Cast") - sum(
        1 for n in model.graph.node if n.op_type == "Cast")
    return {"output": output, "nodes": len(model.graph.node), "kept_fp32": kept, "casts_added": casts,
            "keep_io_types": keep_io_types}


def fp16_model_for_build(model_path: str, workdir: str) -> str:
    """Builder hook: an FP16 copy of ``model_path`` in ``workdir`` (for strongly typed
    ``--precision fp16`` on TensorRT 11 / TensorRT-RTX). External data is not supported
    by this path: models over 2 GB should be converted ahead with ``convert-fp16``."""
    out = os.path.join(workdir, os.path.splitext(os.path.basename(model_path))[0] + ".fp16.onnx")
    convert_fp16(model_path, out)
    log.info("converted %s to FP16 for a strongly typed build: %s", model_path, out)
    return out
