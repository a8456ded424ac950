"""Shared fixtures: small ONNX models made with onnx.helper (no binary blobs), and
markers that skip with a reason when a tool or library is absent."""

from __future__ import annotations

import importlib
import os
import shutil
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "scripts") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))


def _importable(name):
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


def _full_tensorrt():
    try:
        import tensorrt  # noqa: F401
        return hasattr(tensorrt, "Builder")
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    reasons = {
        "rtx": (_importable("tensorrt_rtx"), "TensorRT-RTX (pip install tensorrt-rtx) is not installed"),
        "tensorrt": (_full_tensorrt(), "full TensorRT is not installed (it exists only on Jetson/NVIDIA images)"),
        "nvcc": (shutil.which("nvcc") is not None, "nvcc (CUDA compiler) is not on PATH"),
    }
    for item in items:
        for marker, (ok, reason) in reasons.items():
            if marker in item.keywords and not ok:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _fresh_trt_loader(monkeypatch):
    from tegra_ai.trt import compat

    compat.reset_for_tests()
    yield
    compat.reset_for_tests()


# --------------------------------------------------------------------------- models

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


@pytest.fixture
def model_factory(tmp_path):
    counter = [0]

    def factory(name=None, **kwargs):
        counter[0] += 1
        path = str(tmp_path / (name or f"model{counter[0]}.onnx"))
        return make_model(path, **kwargs)
    return factory


@pytest.fixture
def static_model(model_factory):
    return model_factory("static.onnx", input_dims=(1, 3, 16, 16))


@pytest.fixture
def dynamic_model(model_factory):
    return model_factory("dynamic.onnx", input_dims=("N", 3, "H", "W"))


@pytest.fixture
def default_model():
    from tegra_ai import models

    return models.DEFAULT_MODEL
