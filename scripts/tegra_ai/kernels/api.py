"""Python API of the CUDA kernels, on device pointers (integers, from any framework)
and on NumPy arrays (with the transfers done here).

    pre = Preprocessor(spec)                     # one per stream
    maps = pre.run_device(images, out_ptr, stream)   # images: [SourceImage(...)]
    out, maps = preprocess(spec, [img_a, img_b])     # NumPy in, NumPy out

    keep = nms(boxes, scores, 0.5)               # == torchvision.ops.nms(...).numpy()
    keep = nms(boxes, scores, 0.5, classes=labels, score_threshold=0.25, top_k=300)
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels import layout
from tegra_ai.kernels.layout import SourceImage
from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry, letterbox_geometry


@dataclass(frozen=True)
class BoxMapping:
    """How a point of the network input maps back to its source image:
    ``x_src = (x - left) / scale_x``, ``y_src = (y - top) / scale_y``."""

    scale_x: float
    scale_y: float
    left: int
    top: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).copy()
        b[..., 0::2] = (b[..., 0::2] - self.left) / self.scale_x
        b[..., 1::2] = (b[..., 1::2] - self.top) / self.scale_y
        return b


def box_mapping(spec: PreprocessSpec, src_h: int, src_w: int) -> BoxMapping:
    if spec.resize == "letterbox":
        r, _, _, top, left = letterbox_geometry(src_h, src_w, spec.height, spec.width)
        return BoxMapping(r, r, left, top)
    if spec.resize == "center_crop":
        new_h, new_w, top, left = center_crop_geometry(src_h, src_w, spec.resize_short, spec.height, spec.width)
        return BoxMapping(new_w / src_w, new_h / src_h, -left, -top)
    return BoxMapping(spec.width / src_w, spec.height / src_h, 0, 0)


class _Workspace:
    """Device buffers that grow on demand and are reused between calls."""

    def __init__(self):
        self._buffers = {}
        self.generation = 0  # bumped on every (re)allocation: pointers taken earlier may be stale

    def get(self, name: str, nbytes: int) -> int:
        from tegra_ai.cuda.driver import DeviceBuffer

        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = DeviceBuffer(max(nbytes, 256))
            self._buffers[name] = buf
            self.generation += 1
        return buf.ptr


class Preprocessor:
    """Fused preprocessing of one spec. Serve one stream per instance: the per-image
    descriptors live in a device buffer that the next call on another stream could
    overwrite while this call's kernel still reads it."""

    def __init__(self, spec: PreprocessSpec, ordinal: int = 0):
        from tegra_ai.kernels.loader import load_module

        self.spec = spec
        self._module = load_module("preprocess", ordinal)
        self._function = self._module.function(layout.kernel_name(spec))
        self._work = _Workspace()
        self._last_key = None
        self._last_maps = []
        self._params = {}
        self._grid = None

    def run_device(self, images: Sequence[SourceImage], out_ptr: int, stream=0,
                   out_image_stride: int | None = None) -> list:
        """Preprocess ``images`` (device memory) into ``out_ptr`` (batch, *spec.output_shape)
        on ``stream``; returns a BoxMapping per image. Asynchronous."""
        from tegra_ai.cuda.driver import copy_htod, kernel_args, launch

        if not images:
            raise TegraAIError("preprocess needs at least one image")
        key = tuple(images)
        if key != self._last_key:
            # Descriptors and box mappings depend only on the images' pointers and sizes:
            # a pipeline that reuses its buffers pays for them once.
            descs = (layout.ImageDesc * len(images))(*[layout.image_desc(self.spec, im) for im in images])
            raw = bytes(descs)
            desc_ptr = self._work.get("descs", len(raw))
            # Pageable source: the driver stages it before returning, so `raw` may go.
            copy_htod(desc_ptr, np.frombuffer(raw, dtype=np.uint8), stream)
            self._last_key = key
            self._last_maps = [box_mapping(self.spec, im.height, im.width) for im in images]
            self._params = {}
        params = self._params.get((out_ptr, out_image_stride))
        if params is None:
            desc_ptr = self._work.get("descs", len(images) * layout.IMAGE_DESC_BYTES)
            params = layout.preprocess_params(self.spec, desc_ptr, out_ptr, len(images), out_image_stride)
            self._params = {(out_ptr, out_image_stride): params}
            self._grid = layout.preprocess_grid(self.spec, len(images))
        launch(self._function, self._grid[0], self._grid[1], kernel_args(params), 0, stream)
        return list(self._last_maps)

    def __call__(self, images, stream=0):
        """NumPy in (one HxWxC / HxW / NV12 (H*3/2)xW array or a list of them), NumPy out."""
        from tegra_ai.cuda.driver import copy_dtoh

        arrays = [images] if isinstance(images, np.ndarray) else list(images)
        sources, offset, staged = [], 0, []
        for a in arrays:
            a = np.ascontiguousarray(a, dtype=np.uint8)
            h, w = _source_size(self.spec.input_format, a)
            staged.append((offset, a))
            sources.append((offset, h, w))
            offset += -(-a.nbytes // 256) * 256
        src_ptr = self._work.get("src", offset)
        from tegra_ai.cuda.driver import copy_htod

        for off, a in staged:
            copy_htod(src_ptr + off, a, stream)
        images_dev = [SourceImage(src_ptr + off, h, w) for off, h, w in sources]
        nbytes = layout.output_nbytes(self.spec, len(images_dev))
        out_ptr = self._work.get("out", nbytes)
        maps = self.run_device(images_dev, out_ptr, stream)
        out = np.empty((len(images_dev),) + self.spec.output_shape,
                       dtype=np.float16 if self.spec.dtype == "float16" else np.float32)
        copy_dtoh(out, out_ptr, stream)
        return out, maps


def _source_size(input_format: str, a: np.ndarray):
    if input_format in ("bgr8", "rgb8"):
        if a.ndim != 3 or a.shape[2] != 3:
            raise TegraAIError(f"{input_format} image must be HxWx3, got shape {a.shape}")
        return a.shape[0], a.shape[1]
    if input_format == "gray8":
        if a.ndim != 2:
            raise TegraAIError(f"gray8 image must be HxW, got shape {a.shape}")
        return a.shape
    if a.ndim != 2 or a.shape[0] % 3:
        raise TegraAIError(f"nv12 image must be (H*3/2)xW, got shape {a.shape}")
    return a.shape[0] * 2 // 3, a.shape[1]


_default_preprocessors = {}


def preprocess(spec: PreprocessSpec, images, stream=0):
    """NumPy convenience: ``(output array, [BoxMapping])``."""
    pre = _default_preprocessors.get(spec)
    if pre is None:
        pre = _default_preprocessors[spec] = Preprocessor(spec)
    return pre(images, stream)


class Nms:
    """Exact greedy NMS (torchvision.ops.nms semantics) with reusable device workspace.
    Like :class:`Preprocessor`, one instance per stream."""

    def __init__(self, ordinal: int = 0):
        from tegra_ai.kernels.loader import load_module

        module = load_module("nms", ordinal)
        self._rank = module.function("tai_nms_rank")
        self._mask = module.function("tai_nms_mask")
        self._gather = module.function("tai_nms_gather")
        self._work = _Workspace()
        self._plans = {}

    def run_device(self, boxes_ptr: int, scores_ptr: int, n: int, iou_threshold: float,
                   keep_ptr: int, keep_count_ptr: int, classes_ptr: int | None = None,
                   score_threshold: float | None = None, top_k: int | None = None, stream=0):
        """Boxes: float32 (n, 4) x1,y1,x2,y2 (16-byte aligned); scores: float32 (n,);
        classes: int32 (n,) or None. Writes kept indices (int32, best first) to
        ``keep_ptr`` and their number to ``keep_count_ptr``. Asynchronous; three
        launches, no host synchronisation (capturable in a CUDA graph)."""
        from tegra_ai.cuda.driver import launch

        if int(boxes_ptr) % 16:
            raise TegraAIError("nms boxes must be 16-byte aligned (float32 x1,y1,x2,y2 rows)")
        key = (int(boxes_ptr), int(scores_ptr), n, float(iou_threshold), int(keep_ptr), int(keep_count_ptr),
               int(classes_ptr or 0), score_threshold, int(top_k or 0))
        plan = self._plans.get(key)
        if plan is None or plan[0] != self._work.generation:
            before = self._work.generation
            plan = self._plan(*key)
            if len(self._plans) > 64 or self._work.generation != before:
                self._plans.clear()  # the workspace moved: older plans point at freed memory
            self._plans[key] = plan
        _, g, rank_args, mask_args, gather_args = plan
        launch(self._rank, g.rank_grid, (layout.NMS_RANK_THREADS, 1, 1), rank_args, 0, stream)
        launch(self._mask, g.mask_grid, (layout.NMS_TILE, 1, 1), mask_args, 0, stream)
        launch(self._gather, (1, 1, 1), (layout.NMS_GATHER_THREADS, 1, 1), gather_args,
               g.gather_shared_bytes, stream)

    def _plan(self, boxes_ptr, scores_ptr, n, iou_threshold, keep_ptr, keep_count_ptr, classes_ptr,
              score_threshold, top_k):
        """Kernel arguments packed once per set of pointers and sizes: a pipeline that
        reuses its buffers pays no packing per call."""
        from tegra_ai.cuda.driver import kernel_args

        g = layout.nms_geometry(n)
        c = ctypes
        order = self._work.get("order", n * 4)
        n_valid = self._work.get("n_valid", 4)
        rank_args = kernel_args(
            c.c_uint64(int(scores_ptr)), c.c_int32(n),
            c.c_float(0.0 if score_threshold is None else float(score_threshold)),
            c.c_int32(score_threshold is not None), c.c_uint64(order), c.c_uint64(n_valid))
        a = layout.NmsArgs()
        a.boxes, a.classes, a.order, a.n_valid = int(boxes_ptr), int(classes_ptr or 0), order, n_valid
        a.mask = self._work.get("mask", g.mask_bytes)
        a.diag_t = self._work.get("diag_t", g.col_words * layout.NMS_TILE * 8)
        a.keep, a.keep_count = int(keep_ptr), int(keep_count_ptr)
        a.cap, a.words, a.top_k, a.iou_threshold = n, g.col_words, int(top_k or 0), float(iou_threshold)
        return (self._work.generation, g, rank_args, kernel_args(a), kernel_args(a))

    def __call__(self, boxes, scores, iou_threshold: float, classes=None,
                 score_threshold: float | None = None, top_k: int | None = None, stream=0) -> np.ndarray:
        from tegra_ai.cuda.driver import copy_dtoh, copy_htod

        boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        n = scores.shape[0]
        if boxes.shape != (n, 4) or scores.ndim != 1:
            raise TegraAIError(f"nms: boxes must be (N, 4) and scores (N,), got {boxes.shape} and {scores.shape}")
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        bp = self._work.get("boxes", boxes.nbytes)
        sp = self._work.get("scores", scores.nbytes)
        copy_htod(bp, boxes, stream)
        copy_htod(sp, scores, stream)
        cp = None
        if classes is not None:
            classes = np.ascontiguousarray(classes, dtype=np.int32)
            if classes.shape != (n,):
                raise TegraAIError(f"nms: classes must be (N,), got {classes.shape}")
            cp = self._work.get("classes", classes.nbytes)
            copy_htod(cp, classes, stream)
        keep = self._work.get("keep", n * 4)
        count = self._work.get("keep_count", 4)
        self.run_device(bp, sp, n, iou_threshold, keep, count, cp, score_threshold, top_k, stream)
        k = np.zeros(1, dtype=np.int32)
        copy_dtoh(k, count, stream)
        out = np.empty(int(k[0]), dtype=np.int32)
        if out.size:
            copy_dtoh(out, keep, stream)
        return out.astype(np.int64)


_default_nms = None


def nms(boxes, scores, iou_threshold: float, classes=None, score_threshold=None, top_k=None, stream=0):
    """NumPy convenience: indices (int64) of kept boxes, highest score first, equal to
    ``torchvision.ops.nms`` (or ``batched_nms`` when ``classes`` is given) for the boxes
    with ``score > score_threshold``; at most ``top_k``."""
    global _default_nms
    if _default_nms is None:
        _default_nms = Nms()
    return _default_nms(boxes, scores, iou_threshold, classes, score_threshold, top_k, stream)
