"""One Gst-nvinfer config file per model, for DeepStream (deepstream-app's
``[primary-gie] config-file=``, or ``nvinfer config-file-path=``).

Keys and values as Gst-nvinfer documents them ("Gst-nvinfer Property Group Supported Keys"
and "Class-attributes Group Supported Keys",
https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html;
key names as ``gstnvinfer_property_parser.h`` defines them):

- ``model-engine-file``: the engine nvinfer deserializes; we point it at the cache's
  stable ``CACHE/NAME.engine`` link, which ``ensure`` keeps pointing at the current engine.
- ``batch-size``; ``network-mode`` 0 FP32, 1 INT8, 2 FP16; ``infer-dims`` ``C;H;W`` of the
  image input; ``network-input-order`` 0 NCHW, 1 NHWC.
- Preprocessing is ``y = net-scale-factor * (x - offsets[c])`` on 0..255 pixels; ours is
  ``(x * scale - mean[c]) / std[c]`` (preprocess/spec.py), so ``net-scale-factor =
  scale / std`` (one value: nvinfer has no per-channel scale) and ``offsets[c] = mean[c] / scale``.
- ``model-color-format`` 0 RGB, 1 BGR, 2 GRAY; ``maintain-aspect-ratio=1`` +
  ``symmetric-padding=1`` is our centred letterbox (nvinfer scales the frame keeping its
  aspect ratio and pads both sides); ``scaling-filter=1`` bilinear (NvBufSurfTransform_Inter_Bilinear).
- ``network-type`` 0 detector (with ``num-detected-classes``, ``cluster-mode=2`` NMS and
  ``[class-attrs-all] pre-cluster-threshold``/``nms-iou-threshold``/``topk``), 100 other
  (``output-tensor-meta=1``: the application reads the raw output tensors).
- ``parse-bbox-func-name`` + ``custom-lib-path``: nvinfer's built-in bounding-box parsers
  read DetectNet/ResNet-style coverage/bbox outputs, not YOLO heads, so a detector needs a
  custom parser library (e.g. DeepStream-Yolo's ``NvDsInferParseYolo``).

What nvinfer cannot express is refused with one line: per-channel std other than one scale,
center_crop (nvinfer has no centre crop), antialiased resizing, several inputs.
"""

from __future__ import annotations

import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.export.common import ExportModel, OwnedWriter, batch_of

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMAT = {"rgb": 0, "bgr": 1, "gray": 2}
NETWORK_TYPE_DETECTOR, NETWORK_TYPE_OTHER = 0, 100
CLUSTER_NMS = 2
SCALING_BILINEAR = 1


def _refuse(model: str, why: str, hint: str | None = None) -> TegraAIError:
    return TegraAIError(f"model {model}: {why}; Gst-nvinfer cannot express it", hint=hint, exit_code=EXIT_USAGE)


def _num(v: float) -> str:
    return f"{float(v):g}"


def network_mode(model: ExportModel) -> int:
    """From the builder flags the engine was built with (``auto``/``best`` resolved)."""
    flags = {str(f).upper() for f in model.sidecar.builder_flags}
    if "INT8" in flags or model.sidecar.qdq:
        return NETWORK_MODE["int8"]
    if "FP16" in flags:
        return NETWORK_MODE["fp16"]
    return NETWORK_MODE.get(model.precision, NETWORK_MODE["fp32"])


def preprocess_keys(name: str, pre) -> list:
    """``(key, value)`` rows for a :class:`~tegra_ai.preprocess.spec.PreprocessSpec`."""
    if pre.resize == "center_crop":
        raise _refuse(name, "its preprocessing resizes with center_crop (nvinfer scales the whole frame or "
                            "letterboxes it, it has no centre crop)",
                      hint="crop upstream (e.g. nvvideoconvert src-crop) and export a spec with resize stretch")
    if pre.antialias:
        raise _refuse(name, "its preprocessing resizes with antialias (nvinfer's scaling filters are "
                            "nearest/bilinear/GPU interpolation, not PIL's triangle filter)")
    factors = {pre.scale / s for s in pre.std}
    if len(factors) != 1:
        raise _refuse(name, f"its preprocessing divides by a per-channel std {list(pre.std)} (nvinfer has one "
                            f"net-scale-factor for all channels)",
                      hint="fold the std into the model's first layer, or use one std for all channels")
    rows = [("net-scale-factor", repr(factors.pop())),
            ("offsets", ";".join(repr(m / pre.scale) for m in pre.mean)),
            ("model-color-format", COLOR_FORMAT[pre.channel_order]),
            ("network-input-order", 0 if pre.layout == "nchw" else 1),
            ("scaling-filter", SCALING_BILINEAR),
            ("maintain-aspect-ratio", 1 if pre.resize == "letterbox" else 0)]
    if pre.resize == "letterbox":
        rows.append(("symmetric-padding", 1))
    return rows


def nvinfer_config(model: ExportModel, *, preprocess=None, detection=None, bbox_parser: tuple | None = None,
                   unique_id: int = 1) -> tuple:
    """(config text, notes) for one model. ``preprocess``: a PreprocessSpec (default the
    one in the bundle); ``detection``: a DetectionSpec; ``bbox_parser``: (function, library)."""
    from tegra_ai.preprocess.spec import PreprocessSpec

    name, notes = model.name, []
    if len(model.inputs) != 1:
        raise _refuse(name, f"it has {len(model.inputs)} inputs (nvinfer feeds one image input)")
    if preprocess is None:
        if not model.entry.preprocess:
            raise TegraAIError(f"model {name}: no preprocessing spec in its bundle; nvinfer's net-scale-factor, "
                               "offsets and colour format come from it",
                               hint="bundle it with --preprocess SPEC.json", exit_code=EXIT_USAGE)
        preprocess = PreprocessSpec.from_dict(model.entry.preprocess)
    inp = model.inputs[0]
    dims = list(inp.dims)
    max_batch, batched = batch_of(model)
    image = dims[1:] if len(dims) == 4 else dims
    if len(image) != 3:
        raise _refuse(name, f"its input {inp.name} has shape {dims}, not an image (C,H,W or H,W,C)")
    if any(d is None for d in image):
        # a dynamic H/W: nvinfer sets infer-dims from the preprocessing spec's size
        image = list(preprocess.output_shape)
    if tuple(image) != tuple(preprocess.output_shape):
        raise TegraAIError(f"model {name}: the preprocessing spec makes {list(preprocess.output_shape)}, the "
                           f"engine's input {inp.name} takes {image}", exit_code=EXIT_USAGE)
    c, h, w = preprocess.channels, preprocess.height, preprocess.width
    rows = [("gpu-id", 0), ("gie-unique-id", unique_id), ("model-engine-file", os.path.abspath(model.engine)),
            ("batch-size", max_batch), ("network-mode", network_mode(model)), ("infer-dims", f"{c};{h};{w}")]
    rows += preprocess_keys(name, preprocess)
    if preprocess.resize == "letterbox" and preprocess.pad_value != 0:
        notes.append(f"{name}: nvinfer pads the letterbox with black, the spec with {_num(preprocess.pad_value)}; "
                     "scores near the padded borders may differ slightly")
    if not batched and max_batch > 1:
        notes.append(f"{name}: static batch {max_batch}: nvinfer must be given exactly that many frames per batch")
    class_rows = []
    if detection is not None:
        if bbox_parser is None:
            raise TegraAIError(f"model {name}: nvinfer has no built-in parser for {detection.head} outputs",
                               hint="give --bbox-parser FUNCTION:LIBRARY (e.g. NvDsInferParseYolo:"
                                    "/opt/nvidia/deepstream/lib/libnvdsinfer_custom_impl_Yolo.so)",
                               exit_code=EXIT_USAGE)
        classes = detection.num_classes or _classes_from_outputs(model, detection)
        rows += [("network-type", NETWORK_TYPE_DETECTOR), ("num-detected-classes", classes),
                 ("cluster-mode", CLUSTER_NMS), ("parse-bbox-func-name", bbox_parser[0]),
                 ("custom-lib-path", bbox_parser[1])]
        class_rows = [("pre-cluster-threshold", repr(detection.score_threshold)),
                      ("nms-iou-threshold", repr(detection.iou_threshold)),
                      ("topk", detection.max_det)]
        if detection.class_agnostic:
            notes.append(f"{name}: nvinfer's NMS is per class; class_agnostic is not expressed")
    else:
        rows += [("network-type", NETWORK_TYPE_OTHER), ("output-tensor-meta", 1)]
    lines = ["[property]"] + [f"{k}={_value(name, k, v)}" for k, v in rows]
    if class_rows:
        lines += ["", "[class-attrs-all]"] + [f"{k}={v}" for k, v in class_rows]
    return "\n".join(lines) + "\n", notes


def _value(name: str, key: str, v) -> str:
    text = str(v)
    if "\n" in text or "\r" in text:
        raise TegraAIError(f"model {name}: {key} {text!r} has a line break", exit_code=EXIT_USAGE)
    return text


def _classes_from_outputs(model: ExportModel, detection) -> int:
    from tegra_ai.postprocess.detection import resolve_head

    shapes = [[1 if d is None else d for d in t.dims] for t in model.outputs]
    if any(d is None for t in model.outputs for d in t.dims[1:]):
        raise TegraAIError(f"model {model.name}: dynamic output shape; give num_classes in the detection spec",
                           exit_code=EXIT_USAGE)
    try:
        return resolve_head(detection, shapes).classes
    except TegraAIError as exc:
        raise TegraAIError(f"model {model.name}: {exc.message}", exit_code=EXIT_USAGE) from None


def parse_bbox_parser(text: str) -> tuple:
    """``FUNCTION:LIBRARY`` -> (function, absolute library path)."""
    func, sep, lib = (text or "").partition(":")
    if not sep or not func.isidentifier() or not lib:
        raise TegraAIError(f"--bbox-parser {text!r}: expected FUNCTION:LIBRARY.so, e.g. "
                           "NvDsInferParseYolo:/opt/nvidia/deepstream/lib/libnvdsinfer_custom_impl_Yolo.so",
                           exit_code=EXIT_USAGE)
    if not os.path.isabs(lib):
        raise TegraAIError(f"--bbox-parser {text!r}: the library must be an absolute path (nvinfer resolves "
                           "custom-lib-path from its working directory)", exit_code=EXIT_USAGE)
    return func, lib


def export_deepstream(models: list, out_dir: str, *, detections: dict | None = None,
                      bbox_parser: tuple | None = None) -> tuple:
    """Write ``OUT/NAME_nvinfer.txt`` per model; every config is made (and every refusal
    raised) before anything is written. Returns (rows, notes)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise TegraAIError(f"--deepstream {out_dir} exists and is not a directory", exit_code=EXIT_USAGE)
    detections = detections or {}
    writer, rows, notes = OwnedWriter(), [], []
    for i, m in enumerate(models, start=1):
        text, n = nvinfer_config(m, detection=detections.get(m.name), bbox_parser=bbox_parser, unique_id=i)
        path = os.path.join(out_dir, f"{m.name}_nvinfer.txt")
        writer.text(path, text)
        notes += n
        rows.append({"name": m.name, "config": path, "engine": os.path.abspath(m.engine), "gie_unique_id": i})
    writer.write()
    return rows, notes
