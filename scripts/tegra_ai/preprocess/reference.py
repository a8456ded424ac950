"""NumPy reference implementation of :class:`~tegra_ai.preprocess.spec.PreprocessSpec`.

CPU only, no OpenCV. This is what calibration feeds a model and what the CUDA kernel
and the TensorRT plugin are tested against. Arithmetic is float64 on the decoded
uint8 pixels; the resize is bilinear with OpenCV ``INTER_LINEAR`` geometry but without
OpenCV's 11-bit fixed-point weights and uint8 rounding (so against ``cv2.resize`` it
differs by at most about one pixel level; against the kernel by float32 rounding).
With ``antialias`` the resize is PIL's bilinear filter in float64 without PIL's uint8
rounding between its horizontal and vertical passes (within one level of PIL).
"""

from __future__ import annotations

import numpy as np

from tegra_ai.errors import TegraAIError
from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry, letterbox_geometry

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


def antialias_weights(dst_size: int, src_size: int, start: int = 0, count: int | None = None) -> np.ndarray:
    """PIL's bilinear resampling along one axis (``precompute_coeffs`` in Pillow's
    ``Resample.c``, float64): a (count, src_size) matrix whose row ``i`` holds the
    normalised weights of output index ``start + i`` of a ``src_size -> dst_size`` resize."""
    count = dst_size - start if count is None else count
    scale = src_size / dst_size
    support = max(scale, 1.0)  # the triangle's support (1) times the filter scale
    out = np.zeros((count, src_size))
    for row, i in enumerate(range(start, start + count)):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), src_size)
        x = np.arange(lo, hi, dtype=np.float64)
        w = np.maximum(0.0, 1.0 - np.abs((x - centre + 0.5) / support))
        out[row, lo:hi] = w / w.sum()
    return out


def resize_region(img: np.ndarray, new_h: int, new_w: int, top: int, left: int, out_h: int, out_w: int,
                  antialias: bool) -> np.ndarray:
    """Rows ``top..top+out_h`` and columns ``left..left+out_w`` of ``img`` resized to
    ``new_h x new_w`` (only that region is computed)."""
    if antialias:
        wy = antialias_weights(new_h, img.shape[0], top, out_h)
        wx = antialias_weights(new_w, img.shape[1], left, out_w)
        return np.einsum("yh,hwc,xw->yxc", wy, img, wx, optimize=True)
    y0, y1, fy = (a[top:top + out_h] for a in source_coords(new_h, img.shape[0]))
    x0, x1, fx = (a[left:left + out_w] for a in source_coords(new_w, img.shape[1]))
    fx = fx[None, :, None]
    upper = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    lower = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    fy = fy[:, None, None]
    return upper * (1 - fy) + lower * fy


def resized_canvas(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """Steps 1-2: decoded, resized (and letterboxed or cropped) float64 (H, W, C) in pixel units."""
    src = decode(spec, image)
    h, w = src.shape[:2]
    H, W, aa = spec.height, spec.width, spec.antialias
    if spec.resize == "stretch":
        return resize_region(src, H, W, 0, 0, H, W, aa)
    if spec.resize == "center_crop":
        new_h, new_w, top, left = center_crop_geometry(h, w, spec.resize_short, H, W)
        return resize_region(src, new_h, new_w, top, left, H, W, aa)
    _, new_h, new_w, top, left = letterbox_geometry(h, w, H, W)
    canvas = np.full((H, W, src.shape[2]), float(spec.pad_value))
    canvas[top:top + new_h, left:left + new_w] = resize_region(src, new_h, new_w, 0, 0, new_h, new_w, aa)
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
