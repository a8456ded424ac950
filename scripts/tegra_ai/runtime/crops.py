"""Crops of detections for a second-stage model (detector -> classifier), made by the
fused preprocessing kernel straight from the source frame on the GPU: a crop is a
:class:`~tegra_ai.kernels.layout.SourceImage` that points into the frame with the
frame's row pitch, so cropping, resizing, colour conversion and normalisation of all
crops are one launch. :func:`crops_reference` is the NumPy equivalent (CPU).
"""

from __future__ import annotations

import math

import numpy as np

from tegra_ai.kernels.layout import bytes_per_pixel


def crop_rects(boxes, height: int, width: int, input_format: str = "bgr8") -> list:
    """Integer (top, left, h, w) inside the image for each x1,y1,x2,y2 box: the pixels
    the box touches, at least one; even-aligned for NV12 (chroma is 2x2 subsampled)."""
    rects = []
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        left = min(max(int(math.floor(x1)), 0), width - 1)
        top = min(max(int(math.floor(y1)), 0), height - 1)
        right = max(min(int(math.ceil(x2)), width), left + 1)
        bottom = max(min(int(math.ceil(y2)), height), top + 1)
        if input_format == "nv12":
            left, top = left // 2 * 2, top // 2 * 2
            right, bottom = min(-(-right // 2) * 2, width), min(-(-bottom // 2) * 2, height)
        rects.append((top, left, bottom - top, right - left))
    return rects


def _crop_host(image, input_format, rect):
    top, left, h, w = rect
    if input_format != "nv12":
        return image[top:top + h, left:left + w]
    height = image.shape[0] * 2 // 3
    y = image[top:top + h, left:left + w]
    uv = image[height + top // 2: height + (top + h) // 2, left:left + w]
    return np.ascontiguousarray(np.concatenate([y, uv], 0))


def crops_reference(spec, image: np.ndarray, rects) -> np.ndarray:
    from tegra_ai.preprocess.reference import preprocess_batch_reference

    return preprocess_batch_reference(spec, [_crop_host(image, spec.input_format, r) for r in rects])


class GpuCropper:
    """All crops of one frame through one preprocessing launch. One instance per stream."""

    def __init__(self, spec, ordinal: int = 0):
        from tegra_ai.kernels.api import Preprocessor, _Workspace

        self.spec = spec
        self.pre = Preprocessor(spec, ordinal)
        self._work = _Workspace()

    def run_device(self, frame_ptr: int, height: int, width: int, pitch: int, rects, out_ptr: int, stream=0):
        """Crops of the frame at ``frame_ptr`` (device) into ``out_ptr`` (len(rects), *spec.output_shape)."""
        from tegra_ai.kernels.layout import SourceImage

        bpp = bytes_per_pixel(self.spec.input_format)
        images = []
        for top, left, h, w in rects:
            ptr = int(frame_ptr) + top * pitch + left * bpp
            uv = None
            if self.spec.input_format == "nv12":
                uv = int(frame_ptr) + height * pitch + (top // 2) * pitch + left
            images.append(SourceImage(ptr, h, w, pitch=pitch, uv=uv, uv_pitch=pitch if uv else None))
        return self.pre.run_device(images, out_ptr, stream)

    def __call__(self, image: np.ndarray, rects, stream=0) -> np.ndarray:
        """NumPy frame in (uploaded once), NumPy crops out."""
        from tegra_ai.cuda.driver import copy_dtoh, copy_htod
        from tegra_ai.kernels.api import _source_size
        from tegra_ai.kernels import layout

        if not rects:
            return np.zeros((0,) + self.spec.output_shape, np.float32)
        image = np.ascontiguousarray(image, dtype=np.uint8)
        h, w = _source_size(self.spec.input_format, image)
        src = self._work.get("src", image.nbytes)
        copy_htod(src, image, stream)
        out = self._work.get("out", layout.output_nbytes(self.spec, len(rects)))
        self.run_device(src, h, w, w * bytes_per_pixel(self.spec.input_format), rects, out, stream)
        host = np.empty((len(rects),) + self.spec.output_shape,
                        dtype=np.float16 if self.spec.dtype == "float16" else np.float32)
        copy_dtoh(host, out, stream)
        return host
