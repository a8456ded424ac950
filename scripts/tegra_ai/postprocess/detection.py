"""One description of detector post-processing, shared by the CUDA kernel
(``kernels/nms.cu``: ``tai_det_decode``, ``tai_det_rank``, ``tai_nms_mask``,
``tai_nms_gather``), the NumPy reference below and the pipeline.

Heads:

* ``yolov8``: one tensor ``[N, 4+C, A]`` (Ultralytics export) or ``[N, A, 4+C]``;
  box ``cx, cy, w, h`` then ``C`` class scores (already through the sigmoid).
* ``yolov5``: one tensor ``[N, A, 5+C]`` (or ``[N, 5+C, A]``); box, objectness, ``C``
  class scores; a class's score is ``objectness * class score``.
* ``boxes_scores`` (SSD / EfficientNMS style): two tensors, boxes ``[N, A, 4]``
  (``x1, y1, x2, y2`` by default) and scores ``[N, A, C]``.

Semantics, in order (every implementation must match :func:`reference`):

1. Decode: ``x1 = cx - w/2``, ``y1 = cy - h/2``, ``x2 = cx + w/2``, ``y2 = cy + h/2``
   in float32 (``box_format="xyxy"`` takes the four values as they are).
2. Candidates: ``multi_label=False`` (Ultralytics' default): per anchor the class with
   the highest score (the first one on ties; NaN never wins), a candidate when its
   score ``> score_threshold``; candidate id = anchor. ``multi_label=True``: every
   ``(anchor, class)`` whose score ``> score_threshold``; id = ``anchor * C + class``.
3. Order by score, highest first, ties by candidate id (a stable sort of the
   candidates in id order, as ``torchvision.ops.batched_nms`` sees them).
4. ``pre_nms_top_k`` (0: no limit) keeps the first candidates of that order;
   ``per_class_top_k`` (0: no limit) drops a candidate when its class already has that
   many before it.
5. Greedy NMS with torchvision's IoU (``batched_nms`` semantics: boxes of different
   classes never suppress each other unless ``class_agnostic``).
6. At most ``max_det`` detections, highest score first.
7. Boxes map back to the source image through the preprocessing geometry:
   ``x_src = (x - left) / scale_x`` (float32), clipped to the image when ``clip``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.jsonfile import JSONFileError, read_json_file
from tegra_ai.util.jsonfile import loads as json_loads

HEADS = ("yolov8", "yolov5", "boxes_scores")
LAYOUTS = ("auto", "channels_first", "anchors_first")
BOX_FORMATS = ("cxcywh", "xyxy")
# Candidate slots per image in multi-label mode when not given: past this many
# candidates over the threshold a call reports an overflow instead of guessing.
MULTI_LABEL_CAPACITY = 16384


def _bad(message):
    raise TegraAIError(f"detection spec: {message}", exit_code=EXIT_USAGE)


@dataclass(frozen=True)
class DetectionSpec:
    head: str = "yolov8"
    num_classes: int | None = None      # None: from the tensor shape
    layout: str = "auto"
    box_format: str | None = None       # None: cxcywh for YOLO heads, xyxy for boxes_scores
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_det: int = 300
    per_class_top_k: int = 0
    pre_nms_top_k: int = 0
    multi_label: bool = False
    class_agnostic: bool = False
    clip: bool = True
    capacity: int | None = None         # candidate slots per image; None: anchors (x classes if multi-label, capped)

    def __post_init__(self):
        if self.head not in HEADS:
            _bad(f"head={self.head!r} is not one of {', '.join(HEADS)}")
        if self.layout not in LAYOUTS:
            _bad(f"layout={self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.box_format is None:
            object.__setattr__(self, "box_format", "xyxy" if self.head == "boxes_scores" else "cxcywh")
        if self.box_format not in BOX_FORMATS:
            _bad(f"box_format={self.box_format!r} is not one of {', '.join(BOX_FORMATS)}")
        for name in ("max_det", "per_class_top_k", "pre_nms_top_k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                _bad(f"{name} must be a non-negative integer, got {v!r}")
        if self.max_det == 0:
            _bad("max_det must be at least 1")
        for name in ("num_classes", "capacity"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                _bad(f"{name} must be a positive integer, got {v!r}")
        for name in ("score_threshold", "iou_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                _bad(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("multi_label", "class_agnostic", "clip"):
            if not isinstance(getattr(self, name), bool):
                _bad(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectionSpec":
        if not isinstance(d, dict):
            _bad(f"expected an object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            _bad(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(cls.__dataclass_fields__)})")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str | bytes) -> "DetectionSpec":
        try:
            data = json_loads(text)
        except JSONFileError as exc:
            _bad(str(exc))
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str) -> "DetectionSpec":
        """A spec from a JSON file through the bounded reader (a FIFO, a huge or deeply
        nested file is one line, exit 2)."""
        try:
            data = read_json_file(path)
        except JSONFileError as exc:
            raise TegraAIError(f"detection spec {path}: {exc}", exit_code=EXIT_USAGE) from None
        try:
            return cls.from_dict(data)
        except TegraAIError as exc:
            raise TegraAIError(f"{path}: {exc.message}", exit_code=EXIT_USAGE) from None


@dataclass(frozen=True)
class HeadGeometry:
    """Where anchor ``a``'s values of image ``n`` live, in elements from each tensor's start."""

    anchors: int
    classes: int
    batch: int
    box_tensor: int        # index of the tensor holding boxes (0 or 1)
    score_tensor: int
    box_offset: int
    box_strides: tuple     # (batch, anchor, coord)
    score_offset: int
    score_strides: tuple   # (batch, anchor, class)
    obj_offset: int | None = None
    obj_strides: tuple | None = None  # (batch, anchor)


def resolve_head(spec: DetectionSpec, shapes) -> HeadGeometry:
    """Geometry of a head from its output shapes (one tensor, or boxes + scores)."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    if spec.head == "boxes_scores":
        if len(shapes) != 2:
            _bad(f"head boxes_scores needs two outputs (boxes [N, A, 4], scores [N, A, C]), got {len(shapes)}")
        bshape, sshape = shapes
        if len(bshape) != 3 or bshape[2] != 4 or len(sshape) != 3 or sshape[:2] != bshape[:2]:
            _bad(f"boxes_scores outputs must be [N, A, 4] and [N, A, C], got {list(shapes[0])} and {list(sshape)}")
        nb, ab, c = sshape
        if spec.num_classes is not None and spec.num_classes != c:
            _bad(f"num_classes={spec.num_classes} but the scores have {c}")
        return HeadGeometry(ab, c, nb, 0, 1, 0, (ab * 4, 4, 1), 0, (ab * c, c, 1))
    if len(shapes) != 1 or len(shapes[0]) != 3:
        _bad(f"head {spec.head} needs one output [N, K, A] or [N, A, K], got {[list(s) for s in shapes]}")
    n, d1, d2 = shapes[0]
    extra = 5 if spec.head == "yolov5" else 4
    if spec.layout == "auto":
        if spec.num_classes is not None:
            k = spec.num_classes + extra
            if d1 == k and d2 != k:
                channels_first = True
            elif d2 == k:
                channels_first = False
            else:
                _bad(f"output {list(shapes[0])} has no dimension of {k} ({extra} + {spec.num_classes} classes)")
        else:
            channels_first = d1 < d2
    else:
        channels_first = spec.layout == "channels_first"
    k, a = (d1, d2) if channels_first else (d2, d1)
    c = k - extra
    if c <= 0:
        _bad(f"output {list(shapes[0])}: {k} values per anchor leave no class scores for {spec.head}")
    if spec.num_classes is not None and spec.num_classes != c:
        _bad(f"num_classes={spec.num_classes} but output {list(shapes[0])} has {c}")
    if channels_first:   # element (n, ch, a) at n*k*a + ch*a + a
        per_anchor, per_channel = 1, a
    else:                # element (n, a, ch) at n*a*k + a*k + ch
        per_anchor, per_channel = k, 1
    batch = k * a
    geo = dict(anchors=a, classes=c, batch=n, box_tensor=0, score_tensor=0, box_offset=0,
               box_strides=(batch, per_anchor, per_channel), score_offset=extra * per_channel,
               score_strides=(batch, per_anchor, per_channel))
    if spec.head == "yolov5":
        geo.update(obj_offset=4 * per_channel, obj_strides=(batch, per_anchor))
    return HeadGeometry(**geo)


def capacity(spec: DetectionSpec, geo: HeadGeometry) -> int:
    if spec.capacity is not None:
        return spec.capacity
    if spec.multi_label:
        return min(geo.anchors * geo.classes, MULTI_LABEL_CAPACITY)
    return geo.anchors


@dataclass
class Detections:
    """Detections of one image, highest score first."""

    boxes: np.ndarray     # float32 (k, 4) x1, y1, x2, y2 in source-image pixels
    scores: np.ndarray    # float32 (k,)
    classes: np.ndarray   # int32 (k,)
    anchors: np.ndarray   # int32 (k,): which anchor of the head
    overflow: int = 0     # candidates over the threshold that found no slot (0: exact)
    extra: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.scores)

    def to_dict(self) -> dict:
        return {"boxes": self.boxes.tolist(), "scores": self.scores.tolist(),
                "classes": self.classes.tolist(), "anchors": self.anchors.tolist(), "overflow": self.overflow}


def mapping_row(mapping=None, image_size=None, clip: bool = True) -> np.ndarray:
    """float32 [scale_x, scale_y, left, top, clip_w, clip_h] for the kernel (clip 0: none).
    ``mapping`` is a :class:`tegra_ai.kernels.api.BoxMapping` or None (identity);
    ``image_size`` is the source (height, width)."""
    row = np.array([1, 1, 0, 0, 0, 0], dtype=np.float32)
    if mapping is not None:
        row[:4] = (mapping.scale_x, mapping.scale_y, mapping.left, mapping.top)
    if clip and image_size is not None:
        row[4], row[5] = image_size[1], image_size[0]
    return row


def _views(spec, geo, arrays, img):
    f = np.float32
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    a = np.arange(geo.anchors)
    bt, sc = flat[geo.box_tensor], flat[geo.score_tensor]
    bb = img * geo.box_strides[0] + geo.box_offset + a * geo.box_strides[1]
    raw = np.stack([bt[bb + i * geo.box_strides[2]] for i in range(4)], 1).astype(f)
    sb = img * geo.score_strides[0] + geo.score_offset + a * geo.score_strides[1]
    scores = sc[sb[:, None] + np.arange(geo.classes)[None, :] * geo.score_strides[2]].astype(f)
    if geo.obj_offset is not None:
        obj = sc[img * geo.obj_strides[0] + geo.obj_offset + a * geo.obj_strides[1]].astype(f)
        scores = (scores * obj[:, None]).astype(f)
    return raw, scores


def decode_boxes(raw: np.ndarray, box_format: str) -> np.ndarray:
    f = np.float32
    if box_format == "xyxy":
        return raw.astype(f)
    hw, hh = raw[:, 2] / f(2), raw[:, 3] / f(2)
    return np.stack([raw[:, 0] - hw, raw[:, 1] - hh, raw[:, 0] + hw, raw[:, 1] + hh], 1).astype(f)


def candidates(spec: DetectionSpec, geo: HeadGeometry, arrays, img: int):
    """(ids, boxes, scores, classes) of image ``img``'s candidates, in id order."""
    raw, scores = _views(spec, geo, arrays, img)
    boxes = decode_boxes(raw, spec.box_format)
    thr = np.float32(spec.score_threshold)
    with np.errstate(invalid="ignore"):
        if spec.multi_label:
            a, c = np.nonzero(scores > thr)
            return (a * geo.classes + c).astype(np.int64), boxes[a], scores[a, c], c.astype(np.int32)
        masked = np.where(np.isnan(scores), -np.inf, scores)
        best_c = np.argmax(masked, axis=1)
        best = scores[np.arange(geo.anchors), best_c]
        keep = np.nonzero(best > thr)[0]
    return keep.astype(np.int64), boxes[keep], best[keep], best_c[keep].astype(np.int32)


def select(spec: DetectionSpec, ids, scores, classes):
    """Positions (into the candidate arrays) of the candidates that enter NMS, in order."""
    s = np.where(scores == 0, np.float32(0), scores).astype(np.float64)
    order = np.lexsort((ids, -s))
    if spec.pre_nms_top_k:
        order = order[:spec.pre_nms_top_k]
    if spec.per_class_top_k:
        seen = {}
        kept = []
        for p in order:
            c = int(classes[p])
            seen[c] = seen.get(c, 0) + 1
            if seen[c] <= spec.per_class_top_k:
                kept.append(p)
        order = np.array(kept, dtype=np.int64)
    return order


def reference(spec: DetectionSpec, arrays, mappings=None, image_sizes=None, nms_fn=None) -> list:
    """NumPy model of the kernel: a list of :class:`Detections`, one per image.

    ``nms_fn(boxes, scores, iou, classes_or_None) -> kept positions`` defaults to the
    NumPy greedy NMS (slow past a few thousand boxes); GPU tests pass torchvision's."""
    from tegra_ai.kernels.nms_reference import nms_reference

    arrays = [np.asarray(a) for a in arrays]
    geo = resolve_head(spec, [a.shape for a in arrays])
    if nms_fn is None:
        def nms_fn(b, s, iou, cls):
            return nms_reference(b, s, iou, classes=cls)
    out = []
    for img in range(geo.batch):
        ids, boxes, scores, classes = candidates(spec, geo, arrays, img)
        order = select(spec, ids, scores, classes)
        b, s, c, i = boxes[order], scores[order], classes[order], ids[order]
        kept = np.asarray(nms_fn(b, s, spec.iou_threshold, None if spec.class_agnostic else c),
                          dtype=np.int64)[: spec.max_det] if len(order) else np.zeros(0, np.int64)
        b, s, c, i = b[kept], s[kept], c[kept], i[kept]
        row = mapping_row(mappings[img] if mappings else None,
                          image_sizes[img] if image_sizes else None, spec.clip)
        b = b.copy()
        f = np.float32
        b[:, 0::2] = (b[:, 0::2] - row[2]) / row[0]
        b[:, 1::2] = (b[:, 1::2] - row[3]) / row[1]
        if row[4] > 0:
            b[:, 0::2] = np.minimum(np.maximum(b[:, 0::2], f(0)), row[4])
        if row[5] > 0:
            b[:, 1::2] = np.minimum(np.maximum(b[:, 1::2], f(0)), row[5])
        anchors = (i // geo.classes if spec.multi_label else i).astype(np.int32)
        out.append(Detections(b.astype(f), s.astype(f), c.astype(np.int32), anchors))
    return out
