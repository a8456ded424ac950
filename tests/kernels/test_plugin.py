"""Preprocessing plugin: ONNX insertion (CPU), codes and field names shared between
Python and C++, the CMake build without TensorRT (core only), and the TensorRT wrapper
build where NvInfer.h exists (skipped with the reason elsewhere)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels import layout
from tegra_ai.preprocess.spec import PreprocessSpec

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "scripts" / "tegra_ai" / "plugin"


def model(input_shape=("N", 3, 64, 64), elem=None):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if elem is None else elem
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", elem, list(input_shape))],
                          [helper.make_tensor_value_info("y", elem, list(input_shape))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_insert_makes_uint8_image_input_feeding_the_plugin():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnx_graphsurgeon")
    from tegra_ai.plugin import insert_preprocess_plugin

    spec = PreprocessSpec(height=64, width=64, resize="letterbox", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    out = insert_preprocess_plugin(model(), spec)
    onnx.checker.check_model(out)
    (inp,) = out.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", "image_height", "image_width", 3]
    node = out.graph.node[0]
    assert (node.op_type, node.domain, list(node.input), list(node.output)) == ("TegraAIPreprocess", "trt.plugins",
                                                                                ["image"], ["x"])
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["resize"] == 1 and attrs["height"] == 64 and attrs["input_format"] == 0
    assert np.allclose(attrs["mean"], [0.1, 0.2, 0.3]) and attrs["plugin_namespace"] == b"tegra_ai"
    assert [n.op_type for n in out.graph.node] == ["TegraAIPreprocess", "Relu"]


def test_insert_nv12_and_static_batch():
    pytest.importorskip("onnx_graphsurgeon")
    from tegra_ai.plugin import insert_preprocess_plugin

    out = insert_preprocess_plugin(model((2, 3, 32, 48)), PreprocessSpec(height=32, width=48, input_format="nv12"))
    dims = [d.dim_param or d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, "nv12_rows", "image_width"]


@pytest.mark.parametrize("spec,shape,match", [
    (PreprocessSpec(height=64, width=64, dtype="float16"), ("N", 3, 64, 64), "float32 but the spec outputs float16"),
    (PreprocessSpec(height=32, width=64), ("N", 3, 64, 64), "has shape"),
    (PreprocessSpec(height=64, width=64, channel_order="gray", mean=(0,), std=(1,)), ("N", 3, 64, 64), "has shape"),
])
def test_insert_refuses_a_spec_that_does_not_fit(spec, shape, match):
    pytest.importorskip("onnx_graphsurgeon")
    from tegra_ai.plugin import insert_preprocess_plugin

    with pytest.raises(TegraAIError, match=match):
        insert_preprocess_plugin(model(shape), spec)


def test_codes_and_names_agree_with_the_cpp_header():
    header = (PLUGIN_DIR / "preprocess_plugin_core.h").read_text()

    def enum(name):
        body = re.search(r"enum %s : int32_t \{([^}]*)\}" % name, header).group(1)
        return {k.strip().lower(): int(v) for k, v in (e.split("=") for e in body.split(","))}

    assert enum("InputFormat") == {f"k{k}": v for k, v in layout.FORMAT_CODES.items()}
    assert enum("ChannelOrder") == {f"k{k}": v for k, v in layout.ORDER_CODES.items()}
    assert enum("Layout") == {f"k{k}": v for k, v in layout.LAYOUT_CODES.items()}
    assert enum("OutputType") == {"kfloat32": 0, "kfloat16": 1}
    from tegra_ai.plugin import graphsurgeon as gsp

    assert enum("ResizeMode") == {f"k{k}": v for k, v in gsp.RESIZE_CODES.items()}
    assert f'kPluginName = "{gsp.PLUGIN_NAME}"' in header
    assert f'kPluginVersion = "{gsp.PLUGIN_VERSION}"' in header
    assert f'kPluginNamespace = "{gsp.PLUGIN_NAMESPACE}"' in header
    fields = set(re.findall(r'PluginField\("(\w+)"', (PLUGIN_DIR / "plugin_fields.h").read_text()))
    spec_attrs = set(gsp.plugin_attributes(PreprocessSpec(height=1, width=1))) - {"plugin_version", "plugin_namespace"}
    assert fields == spec_attrs


def test_load_plugin_library_says_what_is_missing(monkeypatch, tmp_path):
    from tegra_ai.plugin import graphsurgeon as gsp

    monkeypatch.delenv("TEGRA_AI_PLUGIN_LIB", raising=False)
    monkeypatch.setattr(gsp, "LIBRARY_DIRS", (str(tmp_path),))
    with pytest.raises(TegraAIError, match="libtegra_ai_plugin.so not found"):
        gsp.load_plugin_library()


@pytest.mark.nvcc
def test_cmake_without_tensorrt_builds_the_core(tmp_path):
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    build = tmp_path / "build"
    r = subprocess.run(["cmake", "-S", str(PLUGIN_DIR), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=87",
                        "-DTENSORRT_ROOT=" + str(tmp_path / "no-tensorrt"), "-DCMAKE_IGNORE_PREFIX_PATH=/usr"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    if "building plugin_v" in r.stdout:
        pytest.skip("TensorRT is installed here; the core-only configuration is not reachable")
    assert "building only the TensorRT-independent core" in r.stdout
    r = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (build / "libtegra_ai_preprocess_core.a").is_file()


def _tensorrt_include():
    roots = [os.environ.get("TENSORRT_ROOT", ""), "/usr", "/usr/local", "/usr/local/tensorrt"]
    for root in roots:
        for sub in ("include", "include/x86_64-linux-gnu", "include/aarch64-linux-gnu"):
            if root and (Path(root) / sub / "NvInfer.h").is_file():
                return Path(root) / sub
    return None


@pytest.mark.nvcc
def test_wrapper_compiles_against_tensorrt_headers(tmp_path):
    inc = _tensorrt_include()
    if inc is None:
        pytest.skip("TensorRT C++ headers (NvInfer.h) are not installed; the wrapper builds in the Yocto recipe")
    major = int(re.search(r"#define (?:NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) (\d+)",
                          (inc / "NvInferVersion.h").read_text()).group(1))
    source = PLUGIN_DIR / ("plugin_v3.cpp" if major >= 10 else "plugin_v2.cpp")
    r = subprocess.run(["nvcc", "-x", "cu", "-std=c++14", "-arch=sm_87", "-c", "-I", str(inc), "-I", str(PLUGIN_DIR),
                        "-o", str(tmp_path / "w.o"), str(source)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
