"""Detector post-processing on the GPU: decode, score threshold, pre-NMS and per-class
top-k, class-aware exact NMS, final top-k and mapping back through the letterbox, as
one sequence of a memset and four launches with no host round trip (capturable in a
CUDA graph). Semantics: :mod:`tegra_ai.postprocess.detection`.

    post = DetectionPostprocessor(DetectionSpec(head="yolov8"), [(1, 84, 8400)])
    dets = post([head_array], mappings=[box_mapping], image_sizes=[(1080, 1920)])
    # or, on device pointers (a pipeline): post.run_device([ptr], stream); post.download(stream)

All device and pinned host memory is allocated in the constructor; a call allocates
nothing. One instance per stream (its workspace is reused by every call).
"""

from __future__ import annotations

import logging

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.kernels import layout
from tegra_ai.postprocess.detection import Detections, DetectionSpec, capacity, mapping_row, resolve_head

log = logging.getLogger("tegra_ai.postprocess.gpu")

_DTYPES = {"float32": 0, "float16": 1}


class DetectionPostprocessor:
    def __init__(self, spec: DetectionSpec, shapes, dtype: str = "float32", ordinal: int = 0):
        from tegra_ai.cuda.driver import DeviceBuffer, HostBuffer
        from tegra_ai.kernels.loader import load_module

        if dtype not in _DTYPES:
            raise TegraAIError(f"detection head dtype {dtype!r}: float32 or float16", exit_code=EXIT_USAGE)
        self.spec = spec
        self.geo = geo = resolve_head(spec, shapes)
        self.shapes = [tuple(s) for s in shapes]
        self.dtype = dtype
        self.cap = cap = capacity(spec, geo)
        g = layout.nms_geometry(cap)
        self.words = g.col_words
        self.gather_shared_bytes = g.gather_shared_bytes
        b, k = geo.batch, spec.max_det
        module = load_module("nms", ordinal)
        self._decode = module.function("tai_det_decode")
        self._rank = module.function("tai_det_rank")
        self._mask = module.function("tai_nms_mask")
        self._gather = module.function("tai_nms_gather")
        # Zeroed before each call: candidate counters, then the per-class drop bits.
        count_bytes = -(-b * 4 // 256) * 256
        self._zero_bytes = count_bytes + b * self.words * 8
        self._buffers = bufs = {
            "zero": DeviceBuffer(self._zero_bytes),
            "cand_key": DeviceBuffer(b * cap * 8), "cand_box": DeviceBuffer(b * cap * 16),
            "cand_cls": DeviceBuffer(b * cap * 4), "order": DeviceBuffer(b * cap * 4),
            "n_valid": DeviceBuffer(b * 4), "mask": DeviceBuffer(b * g.mask_bytes),
            "diag_t": DeviceBuffer(b * self.words * layout.NMS_TILE * 8), "keep": DeviceBuffer(b * cap * 4),
            "mapping": DeviceBuffer(b * 6 * 4),
            "out": DeviceBuffer(b * k * 28 + b * 4),   # boxes 16 + score 4 + class 4 + anchor 4, then counts
        }
        out = int(bufs["out"])
        self.out_ptrs = {"boxes": out, "scores": out + b * k * 16, "classes": out + b * k * 20,
                         "anchors": out + b * k * 24, "count": out + b * k * 28}
        # Pinned mirror of "out" plus the candidate counters, downloaded in one copy each.
        self._host_out = HostBuffer(b * k * 28 + b * 4, np.uint8)
        self._host_count = HostBuffer(b, np.int32)
        self._host_mapping = HostBuffer((b, 6), np.float32)
        self._mapping_key = None
        self._packed = {}
        self._graphs = {}
        self._capture_stream = None

    # -- launch arguments ---------------------------------------------------------------
    def _make_params(self):
        spec, geo, bufs = self.spec, self.geo, self._buffers
        p = layout.DetParams()
        p.box_batch, p.box_anchor, p.box_coord = geo.box_strides
        p.score_batch, p.score_anchor, p.score_class = geo.score_strides
        if geo.obj_strides:
            p.obj_batch, p.obj_anchor = geo.obj_strides
        p.anchors, p.classes = geo.anchors, geo.classes
        p.box_format = 0 if spec.box_format == "cxcywh" else 1
        p.half = _DTYPES[self.dtype]
        p.multi_label = int(spec.multi_label)
        p.score_threshold = spec.score_threshold
        p.cap, p.words = self.cap, self.words
        p.per_class_top_k, p.pre_nms_top_k = spec.per_class_top_k, spec.pre_nms_top_k
        p.count = int(bufs["zero"])
        p.dropped = int(bufs["zero"]) + self._zero_bytes - geo.batch * self.words * 8
        for name in ("cand_key", "cand_box", "cand_cls", "order", "n_valid"):
            setattr(p, name, int(bufs[name]))
        a = layout.NmsArgs()
        a.boxes, a.classes = int(bufs["cand_box"]), 0 if spec.class_agnostic else int(bufs["cand_cls"])
        a.order, a.n_valid, a.dropped = p.order, p.n_valid, p.dropped
        a.mask, a.diag_t, a.keep = int(bufs["mask"]), int(bufs["diag_t"]), int(bufs["keep"])
        a.keep_count = self.out_ptrs["count"]
        a.cap, a.words, a.top_k, a.iou_threshold = self.cap, self.words, spec.max_det, spec.iou_threshold
        a.cand_key, a.cand_cls, a.mapping = p.cand_key, p.cand_cls, int(bufs["mapping"])
        a.out_boxes, a.out_scores = self.out_ptrs["boxes"], self.out_ptrs["scores"]
        a.out_classes, a.out_anchor = self.out_ptrs["classes"], self.out_ptrs["anchors"]
        a.classes_per_anchor = geo.classes if spec.multi_label else 0
        return p, a

    def _args(self, head_ptrs):
        from tegra_ai.cuda.driver import kernel_args

        key = tuple(int(x) for x in head_ptrs)
        packed = self._packed.get(key)
        if packed is None:
            geo = self.geo
            if len(key) != len(self.shapes):
                raise TegraAIError(f"detection head {self.spec.head} takes {len(self.shapes)} tensor(s), "
                                   f"got {len(key)}", exit_code=EXIT_USAGE)
            p, a = self._make_params()
            item = 2 if self.dtype == "float16" else 4
            p.boxes = key[geo.box_tensor] + geo.box_offset * item
            p.scores = key[geo.score_tensor] + geo.score_offset * item
            p.objectness = key[geo.score_tensor] + geo.obj_offset * item if geo.obj_offset is not None else 0
            packed = (kernel_args(p), kernel_args(a))
            if len(self._packed) > 16:
                self._packed.clear()
            self._packed[key] = packed
        return packed

    # -- device API ---------------------------------------------------------------------
    def set_mappings(self, mappings=None, image_sizes=None, stream=0):
        """Where boxes map back to: one :class:`~tegra_ai.kernels.api.BoxMapping` (or None)
        and source (height, width) per image. Uploads only when they change."""
        from tegra_ai.cuda.driver import copy_htod

        b = self.geo.batch
        key = (tuple(mappings) if mappings else None,
               tuple(None if sz is None else tuple(sz) for sz in image_sizes) if image_sizes else None)
        if key == self._mapping_key:
            return
        for i in range(b):
            self._host_mapping.array[i] = mapping_row(mappings[i] if mappings else None,
                                                      image_sizes[i] if image_sizes else None, self.spec.clip)
        copy_htod(int(self._buffers["mapping"]), self._host_mapping.array, stream)
        self._mapping_key = key

    def run_device(self, head_ptrs, stream=0):
        """Enqueue the post-processing of the head tensors at ``head_ptrs`` (device
        pointers, in the order of ``shapes``) on ``stream``. Results stay on the device
        (``out_ptrs``) until :meth:`download`. Asynchronous."""
        from tegra_ai.cuda.driver import launch, memset_async

        if self._mapping_key is None:
            self.set_mappings(stream=stream)
        det_args, nms_args = self._args(head_ptrs)
        geo = self.geo
        memset_async(int(self._buffers["zero"]), 0, self._zero_bytes, stream)
        launch(self._decode, (-(-geo.anchors // layout.DET_DECODE_ANCHORS), geo.batch, 1),
               (layout.DET_DECODE_ANCHORS, layout.DET_DECODE_GROUPS, 1), det_args, 0, stream)
        launch(self._rank, (-(-self.cap // layout.NMS_RANK_THREADS), geo.batch, 1),
               (layout.NMS_RANK_THREADS, 1, 1), det_args, 0, stream)
        launch(self._mask, (layout.mask_blocks(self.words), 1, geo.batch), (layout.NMS_TILE, 1, 1),
               nms_args, 0, stream)
        launch(self._gather, (geo.batch, 1, 1), (layout.NMS_GATHER_THREADS, 1, 1), nms_args,
               self.gather_shared_bytes, stream)

    def launch(self, head_ptrs, stream=0, download: bool = True):
        """:meth:`run_device` (and, with ``download``, :meth:`enqueue_download`) as one
        CUDA graph launch: one host call instead of six. The graph is made on the first
        call for a set of head pointers and reused. Asynchronous; then :meth:`results`
        after the stream (or an event recorded on it) has completed."""
        from tegra_ai.cuda.driver import Graph, Stream

        if self._mapping_key is None:
            self.set_mappings(stream=stream)
        key = (tuple(int(x) for x in head_ptrs), bool(download))
        exe = self._graphs.get(key)
        if exe is None:
            def body(s):
                self.run_device(head_ptrs, s)
                if download:
                    self.enqueue_download(s)
            if self._capture_stream is None:
                self._capture_stream = Stream()
            exe = Graph.capture(body, int(self._capture_stream))
            if len(self._graphs) > 8:
                self._graphs.clear()
            self._graphs[key] = exe
        exe.launch(stream)

    def enqueue_download(self, stream=0):
        """Start copying the results into pinned host memory (asynchronous)."""
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check, stream_handle

        drv = compat.driver()
        check(drv.cuMemcpyDtoHAsync(self._host_out.ptr, int(self._buffers["out"]), self._host_out.nbytes,
                                    stream_handle(stream)), "cuMemcpyDtoHAsync")
        check(drv.cuMemcpyDtoHAsync(self._host_count.ptr, int(self._buffers["zero"]), self._host_count.nbytes,
                                    stream_handle(stream)), "cuMemcpyDtoHAsync")

    def results(self) -> list:
        """The downloaded detections (after :meth:`enqueue_download` has completed)."""
        b, k = self.geo.batch, self.spec.max_det
        raw = self._host_out.array
        boxes = raw[: b * k * 16].view(np.float32).reshape(b, k, 4)
        scores = raw[b * k * 16: b * k * 20].view(np.float32).reshape(b, k)
        classes = raw[b * k * 20: b * k * 24].view(np.int32).reshape(b, k)
        anchors = raw[b * k * 24: b * k * 28].view(np.int32).reshape(b, k)
        counts = raw[b * k * 28:].view(np.int32)
        out = []
        for i in range(b):
            n = int(counts[i])
            overflow = max(0, int(self._host_count.array[i]) - self.cap)
            if overflow:
                log.warning("detection post-processing: %d candidates over the threshold did not fit the %d "
                            "slots of image %d; raise DetectionSpec.capacity or the score threshold",
                            overflow, self.cap, i)
            out.append(Detections(boxes[i, :n].copy(), scores[i, :n].copy(), classes[i, :n].copy(),
                                  anchors[i, :n].copy(), overflow))
        return out

    def download(self, stream=0) -> list:
        from tegra_ai.cuda.driver import stream_synchronize

        self.enqueue_download(stream)
        stream_synchronize(stream)
        return self.results()

    # -- NumPy convenience --------------------------------------------------------------
    def __call__(self, arrays, mappings=None, image_sizes=None, stream=0) -> list:
        from tegra_ai.cuda.driver import DeviceBuffer

        arrays = [np.ascontiguousarray(a, dtype=np.float16 if self.dtype == "float16" else np.float32)
                  for a in (arrays if isinstance(arrays, (list, tuple)) else [arrays])]
        shapes = [a.shape for a in arrays]
        if shapes != self.shapes:
            raise TegraAIError(f"detection head shapes {shapes} differ from {self.shapes} this post-processor "
                               f"was made for", exit_code=EXIT_USAGE)
        staged = getattr(self, "_staged", None)
        if staged is None:
            staged = self._staged = [DeviceBuffer(a.nbytes) for a in arrays]
        for buf, a in zip(staged, arrays):
            buf.upload(a, stream)
        self.set_mappings(mappings, image_sizes, stream)
        self.run_device([int(b) for b in staged], stream)
        return self.download(stream)
