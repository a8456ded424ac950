"""Put the preprocessing plugin at a model's input, and load the plugin library.

    model = insert_preprocess_plugin("model.onnx", spec)   # input becomes uint8 images
    onnx.save(model, "model_u8.onnx")
    load_plugin_library()                                   # before building or running

The plugin node's attributes are the spec's fields as numbers (codes shared with
``preprocess_plugin_core.h``); TensorRT's ONNX parser hands them to the creator
registered as ``TegraAIPreprocess`` / ``1`` / ``tegra_ai``.
"""

from __future__ import annotations

import ctypes
import os

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels.layout import DTYPE_CODES, FORMAT_CODES, LAYOUT_CODES, ORDER_CODES
from tegra_ai.preprocess.spec import PreprocessSpec
from tegra_ai.util.lazy import require

PLUGIN_NAME = "TegraAIPreprocess"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "tegra_ai"
PLUGIN_DOMAIN = "trt.plugins"
RESIZE_CODES = {"stretch": 0, "letterbox": 1}
LIBRARY_NAME = "libtegra_ai_plugin.so"
LIBRARY_DIRS = ("/usr/lib/tegra-ai", "/usr/lib64/tegra-ai", "/usr/local/lib/tegra-ai")


def plugin_attributes(spec: PreprocessSpec) -> dict:
    """The node attributes (== PluginFields) that describe ``spec``. The plugin (version 1)
    knows stretch and letterbox with OpenCV ``INTER_LINEAR``; a spec it cannot express
    (``center_crop``, ``antialias``) is refused here rather than built into an engine that
    would preprocess differently from calibration."""
    if spec.resize not in RESIZE_CODES or spec.antialias:
        what = f"resize {spec.resize}" if spec.resize not in RESIZE_CODES else "antialias"
        raise TegraAIError(f"the TensorRT preprocessing plugin (version {PLUGIN_VERSION}) does not implement {what}",
                           hint="preprocess outside the engine: the pipeline and model-ensemble use the CUDA "
                                "kernel (tegra_ai.kernels.Preprocessor), which implements every spec")
    return {
        "height": int(spec.height),
        "width": int(spec.width),
        "input_format": FORMAT_CODES[spec.input_format],
        "channel_order": ORDER_CODES[spec.channel_order],
        "resize": RESIZE_CODES[spec.resize],
        "layout": LAYOUT_CODES[spec.layout],
        "dtype": DTYPE_CODES[spec.dtype],
        "pad_value": float(spec.pad_value),
        "scale": float(spec.scale),
        "mean": [float(v) for v in spec.mean],
        "std": [float(v) for v in spec.std],
        "plugin_version": PLUGIN_VERSION,
        "plugin_namespace": PLUGIN_NAMESPACE,
    }


def _image_shape(spec: PreprocessSpec, batch):
    if spec.input_format in ("bgr8", "rgb8"):
        return [batch, "image_height", "image_width", 3]
    if spec.input_format == "gray8":
        return [batch, "image_height", "image_width"]
    return [batch, "nv12_rows", "image_width"]  # rows = height * 3 / 2


def insert_preprocess_plugin(model, spec: PreprocessSpec, input_name: str | None = None,
                             image_input_name: str = "image"):
    """Return a copy of ``model`` (path or ModelProto) whose input ``input_name`` (the
    only input by default) is produced by the plugin from a new uint8 input
    ``image_input_name`` of any height and width."""
    attrs = plugin_attributes(spec)  # refuses what the plugin cannot do before anything is read
    onnx = require("onnx", extra="onnx", purpose="inserting the preprocessing plugin")
    gs = require("onnx_graphsurgeon", extra="graphsurgeon", purpose="inserting the preprocessing plugin")
    import numpy as np

    proto = onnx.load(model) if isinstance(model, (str, os.PathLike)) else model
    graph = gs.import_onnx(proto)
    inputs = {t.name: t for t in graph.inputs}
    if input_name is None:
        if len(inputs) != 1:
            raise TegraAIError(f"the model has {len(inputs)} inputs ({', '.join(inputs)}): name one with input_name")
        input_name = next(iter(inputs))
    if input_name not in inputs:
        raise TegraAIError(f"the model has no input {input_name!r}; inputs: {', '.join(inputs)}")
    target = inputs[input_name]

    want_dtype = np.float16 if spec.dtype == "float16" else np.float32
    if target.dtype is not None and np.dtype(target.dtype) != np.dtype(want_dtype):
        raise TegraAIError(f"input {input_name!r} is {np.dtype(target.dtype)} but the spec outputs {spec.dtype}",
                           hint="set dtype in the preprocessing spec to the model's input type")
    expected = list(spec.output_shape)
    shape = list(target.shape or [])
    if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected)):
        raise TegraAIError(f"input {input_name!r} has shape {shape}; the spec produces [N, "
                           f"{', '.join(map(str, expected))}] ({spec.layout})")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else "N"
    if image_input_name in inputs or image_input_name in graph.tensors():
        raise TegraAIError(f"the model already has a tensor named {image_input_name!r}; choose image_input_name")

    image = gs.Variable(image_input_name, dtype=np.uint8, shape=_image_shape(spec, batch))
    node = gs.Node(op=PLUGIN_NAME, name="tegra_ai_preprocess", domain=PLUGIN_DOMAIN,
                   attrs=attrs, inputs=[image], outputs=[target])
    target.shape = [batch] + expected
    graph.nodes.append(node)
    graph.inputs = [image if t is target else t for t in graph.inputs]
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    if not any(o.domain == PLUGIN_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    out.ir_version = proto.ir_version
    return out


def find_plugin_library(path: str | None = None) -> str:
    candidates = [path] if path else []
    if os.environ.get("TEGRA_AI_PLUGIN_LIB"):
        candidates.append(os.environ["TEGRA_AI_PLUGIN_LIB"])
    candidates += [os.path.join(d, LIBRARY_NAME) for d in LIBRARY_DIRS]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    raise TegraAIError(f"{LIBRARY_NAME} not found (looked at {', '.join(c for c in candidates if c)})",
                       hint="install the tegra-ai-plugin package or set TEGRA_AI_PLUGIN_LIB")


_loaded = {}


def load_plugin_library(path: str | None = None) -> str:
    """Load the plugin library and register its creator with TensorRT's global plugin
    registry (once per process). Call before parsing, building or deserializing."""
    lib_path = find_plugin_library(path)
    if lib_path in _loaded:
        return lib_path
    try:
        lib = ctypes.CDLL(lib_path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise TegraAIError(f"cannot load {lib_path}: {exc}",
                           hint="the library needs TensorRT's libnvinfer and the CUDA runtime") from None
    lib.initTegraAIPlugins.restype = ctypes.c_bool
    if not lib.initTegraAIPlugins():
        raise TegraAIError(f"{lib_path}: TensorRT refused to register {PLUGIN_NAMESPACE}::{PLUGIN_NAME}")
    _loaded[lib_path] = lib
    return lib_path
