"""A Triton model repository from a cache's engines: ``REPO/NAME/config.pbtxt`` and
``REPO/NAME/1/model.plan`` (a link to the cache's stable ``CACHE/NAME.engine``, or a copy).

The config follows Triton's ModelConfig schema (model_config.proto, published in
triton-inference-server/common and shipped as ``tritonclient.grpc.model_config_pb2``;
the tests parse what we write with it):

- ``platform: "tensorrt_plan"``; the TensorRT backend's default model file name is
  ``model.plan`` (Triton docs, model_repository.md "TensorRT Models").
- ``max_batch_size > 0`` means the first dimension of every input and output is the batch
  and ``dims`` leave it out; then the engine's batch dimension must be dynamic and
  ``max_batch_size`` at most its profile's max batch (Triton docs, model_configuration.md
  "Maximum Batch Size"). Otherwise ``max_batch_size: 0`` and ``dims`` are the full shape.
- ``-1`` in ``dims`` is a variable-size dimension (model_configuration.md "Inputs and Outputs").
- ``dynamic_batching`` needs ``max_batch_size > 0`` (model_configuration.md "Dynamic Batcher").
- data types ``TYPE_FP32`` ... as model_config.proto's ``DataType`` enum (no FP8/FP4/INT4).
"""

from __future__ import annotations

import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.export.common import ExportModel, OwnedWriter, batch_of

# numpy-style names (trt.compat.dtype_name) -> model_config.proto DataType
TRITON_DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "bfloat16": "TYPE_BF16"}
MODEL_FILE = "model.plan"


def _quote(text: str, what: str) -> str:
    if any(ord(c) < 0x20 for c in text):
        raise TegraAIError(f"{what} {text!r} has control characters; Triton's text config cannot hold it",
                           exit_code=EXIT_USAGE)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dtype(model: ExportModel, t) -> str:
    try:
        return TRITON_DTYPES[t.dtype]
    except KeyError:
        raise TegraAIError(f"model {model.name}: tensor {t.name} is {t.dtype}, which Triton has no data type for "
                           f"(it has {', '.join(sorted(TRITON_DTYPES))})", exit_code=EXIT_USAGE) from None


def config_pbtxt(model: ExportModel, instances: int = 1, dynamic_batching: bool = True) -> str:
    """The ``config.pbtxt`` text of one model (protobuf text format of ModelConfig)."""
    if instances < 1:
        raise TegraAIError(f"--instances {instances}: need at least 1", exit_code=EXIT_USAGE)
    max_batch, batched = batch_of(model)
    lines = [f"name: {_quote(model.name, 'model name')}", 'platform: "tensorrt_plan"',
             f"max_batch_size: {max_batch if batched else 0}", f'default_model_filename: "{MODEL_FILE}"']
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        rows = []
        for t in tensors:
            dims = t.dims[1:] if batched else t.dims
            dims_text = ", ".join("-1" if d is None else str(d) for d in dims)
            rows.append(f"  {{\n    name: {_quote(t.name, 'tensor name')}\n    data_type: {_dtype(model, t)}\n"
                        f"    dims: [ {dims_text} ]\n  }}")
        lines.append(f"{kind} [\n" + ",\n".join(rows) + "\n]")
    if batched and dynamic_batching:
        lines.append("dynamic_batching { }")
    # profile "0": the profile whose max batch max_batch_size was taken from
    profile = '\n    profile: [ "0" ]' if model.profiles else ""
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU{profile}\n  }}\n]")
    return "\n".join(lines) + "\n"


def export_triton(models: list, repo: str, *, copy: bool = False, instances: int = 1,
                  dynamic_batching: bool = True) -> list:
    """Write a model repository for ``models`` (from :func:`tegra_ai.export.common.collect`);
    every config is made (and every refusal raised) before anything is written. Returns
    one row per model."""
    if os.path.exists(repo) and not os.path.isdir(repo):
        raise TegraAIError(f"--triton {repo} exists and is not a directory", exit_code=EXIT_USAGE)
    writer, rows = OwnedWriter(), []
    for m in models:
        text = config_pbtxt(m, instances=instances, dynamic_batching=dynamic_batching)
        config = os.path.join(repo, m.name, "config.pbtxt")
        plan = os.path.join(repo, m.name, "1", MODEL_FILE)
        writer.text(config, text)
        (writer.copy if copy else writer.link)(plan, os.path.abspath(m.engine))
        max_batch, batched = batch_of(m)
        rows.append({"name": m.name, "config": config, "model_file": plan,
                     "max_batch_size": max_batch if batched else 0})
    writer.write()
    return rows
