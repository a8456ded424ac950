"""NumPy reference implementation of :class:`~tegra_ai.preprocess.spec.PreprocessSpec`.

CPU only, no OpenCV. This is what calibration feeds a model and what the CUDA kernel
and the TensorRT plugin are tested against. Arithmetic is float64 on the decoded
uint8 pixels; the resize is bilinear with OpenCV ``INTER_LINEAR`` geometry but without
OpenCV's 11-bit fixed-point weights and uint8 rounding (so against ``cv2.resize`` it
differs by at most about one pixel level; against the kernel by float32 rounding).
"""

from __future__ import annotations

import numpy as np

from tegra_ai.errors import TegraAIError
from tegra_ai.preprocess.spec import PreprocessSpec, letterbox_geometry

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B


def nv12_to_rgb(nv12: np.ndarray) -> np.ndarray:
    """(H*3/2, W) uint8 NV12 -> (H, W, 3) uint8 RGB, bit-exact with OpenCV's
    ``COLOR_YUV2RGB_NV12`` (BT.601 limited range, 20-bit fixed point)."""
    nv12 = np.asarray(nv12, dtype=np.uint8)
    if nv12.ndim != 2 or nv12.shape[0] % 3 or nv12.shape[1] % 2:
        raise TegraAIError(f"nv12 image must be (H*3/2)xW with even W, got shape {nv12.shape}")
    h = nv12.shape[0] * 2 // 3
    y = nv12[:h].astype(np.int64)
    uv = nv12[h:].reshape(h // 2, -1, 2).astype(np.int64)
    u = np.repeat(np.repeat(uv[..., 0], 2, axis=0), 2, axis=1) - 128
    v = np.repeat(np.repeat(uv[..., 1], 2, axis=0), 2, axis=1) - 128
    yy = np.maximum(0, y - 16) * 1220542
    half = 1 << 19
    r = (yy + half + 1673527 * v) >> 20
    g = (yy + half - 852492 * v - 409993 * u) >> 20
    b = (yy + half + 2116026 * u) >> 20
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def decode(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """Source image -> float64 (H, W, 3) RGB, or (H, W, 1) for gray8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TegraAIError(f"source image must be uint8, got {a.dtype}")
    fmt = spec.input_format
    if fmt == "nv12":
        return nv12_to_rgb(a).astype(np.float64)
    if fmt == "gray8":
        if a.ndim != 2:
            raise TegraAIError(f"gray8 image must be HxW, got shape {a.shape}")
        return a[..., None].astype(np.float64)
    if a.ndim != 3 or a.shape[2] != 3:
        raise TegraAIError(f"{fmt} image must be HxWx3, got shape {a.shape}")
    rgb = a[..., ::-1] if fmt == "bgr8" else a
    return rgb.astype(np.float64)


def source_coords(dst_size: int, src_size: int):
    """OpenCV INTER_LINEAR taps along one axis: (i0, i1, weight of i1) per output index."""
    scale = 1.0 / (dst_size / src_size)
    s = ((np.arange(dst_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(s).astype(np.int64)
    f = (s - i0).astype(np.float64)
    low = i0 < 0
    i0[low], f[low] = 0, 0.0
    high = i0 >= src_size - 1
    i0[high], f[high] = src_size - 1, 0.0
    i1 = np.minimum(i0 + 1, src_size - 1)
    return i0, i1, f


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of float (H, W, C) with half-pixel centres, no rounding."""
    y0, y1, fy = source_coords(out_h, img.shape[0])
    x0, x1, fx = source_coords(out_w, img.shape[1])
    fx = fx[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    fy = fy[:, None, None]
    return top * (1 - fy) + bottom * fy


def resized_canvas(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """Steps 1-2: decoded, resized (and letterboxed) float64 (H, W, C) in pixel units."""
    src = decode(spec, image)
    h, w = src.shape[:2]
    if spec.resize == "stretch":
        return resize_bilinear(src, spec.height, spec.width)
    _, new_h, new_w, top, left = letterbox_geometry(h, w, spec.height, spec.width)
    canvas = np.full((spec.height, spec.width, src.shape[2]), float(spec.pad_value))
    canvas[top:top + new_h, left:left + new_w] = resize_bilinear(src, new_h, new_w)
    return canvas


def convert_colour(spec: PreprocessSpec, rgb: np.ndarray) -> np.ndarray:
    if rgb.shape[2] == 1:
        return rgb if spec.channel_order == "gray" else np.repeat(rgb, 3, axis=2)
    if spec.channel_order == "rgb":
        return rgb
    if spec.channel_order == "bgr":
        return rgb[..., ::-1]
    wr, wg, wb = GRAY_WEIGHTS
    return (wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2])[..., None]


def preprocess_reference(spec: PreprocessSpec, image: np.ndarray, dtype=None) -> np.ndarray:
    """One image -> ``spec.output_shape`` array (float64 unless ``dtype``; pass
    ``dtype=spec.dtype`` to get what the model sees)."""
    x = convert_colour(spec, resized_canvas(spec, image))
    x = (x * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.layout == "nchw":
        x = np.transpose(x, (2, 0, 1))
    x = np.ascontiguousarray(x)
    return x if dtype is None else x.astype(dtype)


def preprocess_batch_reference(spec: PreprocessSpec, images, dtype=None) -> np.ndarray:
    return np.stack([preprocess_reference(spec, im, dtype) for im in images])
