"""Small ONNX models made with onnx.helper for the tests (no binary blobs)."""

from __future__ import annotations

import os

import numpy as np
import pytest


def make_model(path, *, input_dims=("N", 3, 16, 16), opset=13, op="Relu", extra_nodes=(), domain_ops=(),
               input_dtype=None, external=False, initializers=(), ir_version=8):
    """Conv(3->4) -> op; dynamic dims as strings. Returns the path."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    dtype = input_dtype if input_dtype is not None else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["conv"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["conv"], ["output"], name="act0")]
    nodes += list(extra_nodes)
    nodes += [helper.make_node(o, ["output"], [f"custom_{i}"], name=f"custom{i}", domain=d) for i, (d, o) in enumerate(domain_ops)]
    out_dims = [input_dims[0], 4, input_dims[2], input_dims[3]]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_dims)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", dtype, list(input_dims))], outputs,
                              [w, b] + list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in {d for d, _ in domain_ops}]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    if external:
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=os.path.basename(path) + ".data", size_threshold=0)
    else:
        onnx.save(model, path)
    return path




def make_topk_model(path):
    """x float [N, 8] -> TopK with K an int64 [1] graph input (in TensorRT a shape-tensor
    input: its value decides the output shape). Returns the path."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", axis=1)], "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", "K"]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, ["N", "K"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
