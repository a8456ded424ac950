"""Compactly stored samples: the resized uint8 pixels of a :class:`PreprocessSpec`, in
the spec's channel order and layout, before normalisation (steps 1-3 and the layout of
step 5). :func:`normalize_pixels` applies step 4 and the dtype; it is the one place
where stored pixels become a model input, and gives bit for bit what preprocessing
the image straight to ``spec.dtype`` gives (float32 ``pixel * (scale/std) - mean/std``,
then the cast).

Whether a spec's pixels are exact uint8 is :func:`uint8_exact`: a colour -> gray
conversion and a fractional letterbox pad are not."""

from __future__ import annotations

import numpy as np

from tegra_ai.errors import TegraAIError
from tegra_ai.preprocess.spec import PreprocessSpec

STORAGE_UINT8 = "uint8"


def uint8_exact(spec: PreprocessSpec, source_format: str | None = None) -> bool:
    """True when every value before normalisation is a uint8 (so it can be stored as one)."""
    fmt = source_format or spec.input_format
    if spec.channel_order == "gray" and fmt != "gray8":
        return False  # 0.299 R + 0.587 G + 0.114 B is fractional
    pad = float(spec.pad_value)
    return spec.resize != "letterbox" or (pad.is_integer() and 0 <= pad <= 255)


def normalisation(spec: PreprocessSpec):
    """(a, b), float32 per channel, with ``out = pixel * a - b`` == ``(pixel * scale - mean) / std``."""
    a = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
    b = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    return a, b


def normalize_pixels(spec: PreprocessSpec, pixels: np.ndarray) -> np.ndarray:
    """Pixels (``(..., *spec.output_shape)``, any real dtype) -> the model input in ``spec.dtype``."""
    x = np.asarray(pixels)
    if tuple(x.shape[x.ndim - 3:]) != spec.output_shape:
        raise TegraAIError(f"stored samples have shape {list(x.shape)}, the spec makes {list(spec.output_shape)}")
    a, b = normalisation(spec)
    if spec.layout == "nchw":
        a, b = a[:, None, None], b[:, None, None]
    out = np.empty(x.shape, np.float32)
    np.multiply(x, a, out=out, casting="unsafe")
    out -= b
    return out if spec.dtype == "float32" else out.astype(spec.dtype)


def decode_stored(arrays: dict, manifest: dict | None) -> dict:
    """The model inputs of a calibration-dataset file's arrays: samples the manifest
    records as ``storage: uint8`` are normalised with its spec; others pass through."""
    if not manifest or manifest.get("storage") != STORAGE_UINT8:
        return arrays
    name = manifest.get("input")
    if name not in arrays:
        return arrays
    try:
        spec = PreprocessSpec.from_dict(manifest["spec"])
    except (KeyError, TypeError, TegraAIError) as exc:
        raise TegraAIError(f"the manifest's preprocessing spec is unusable ({exc})") from None
    if arrays[name].dtype != np.uint8:
        raise TegraAIError(f"the manifest says {name} is stored as uint8, it is {arrays[name].dtype}")
    out = dict(arrays)
    out[name] = normalize_pixels(spec, arrays[name])
    return out
