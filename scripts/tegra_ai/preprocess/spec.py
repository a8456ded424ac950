"""One description of image preprocessing, shared by calibration, the CUDA kernels,
the TensorRT plugin and the pipeline, so that all of them feed a model the same numbers.

Semantics (every implementation must match :mod:`tegra_ai.preprocess.reference`):

1. Decode the source: ``bgr8``/``rgb8`` (uint8 HWC, 3 channels, any row pitch),
   ``gray8`` (uint8 HW) or ``nv12`` (uint8 Y plane HxW + interleaved UV plane H/2 x W,
   BT.601 limited range, as OpenCV's ``COLOR_YUV2RGB_NV12``).
2. Resize with bilinear interpolation and half-pixel centres, exactly OpenCV
   ``INTER_LINEAR`` (``src = (dst + 0.5) * scale - 0.5``, clamped at the border).
   ``resize="stretch"`` maps the whole image to ``height x width``;
   ``resize="letterbox"`` keeps the aspect ratio: ``r = min(H/h, W/w)``,
   ``new_w = round(w*r)``, ``new_h = round(h*r)``, ``left = (W-new_w)//2``,
   ``top = (H-new_h)//2``, and fills the rest with ``pad_value`` (source pixel units);
   ``resize="center_crop"`` (classifiers: torchvision ``Resize(resize_short)`` +
   ``CenterCrop((height, width))``) resizes the shorter side to ``resize_short``
   (the longer to ``int(resize_short * long / short)``) and keeps the centre
   ``height x width`` (``top = round((new_h - H) / 2)``, ``left = round((new_w - W) / 2)``,
   Python's round); ``resize_short >= max(height, width)``.
   ``antialias=true`` (any mode) resamples as PIL ``Image.resize(BILINEAR)`` instead:
   a triangle filter whose support grows with the downscale factor
   (``support = max(src/dst, 1)``, taps ``max(0, 1 - |x + 0.5 - centre| / support)``
   normalised, ``centre = (dst + 0.5) * src/dst``), so shrinking averages every source
   pixel as torchvision's ``antialias=True`` does; OpenCV's ``INTER_LINEAR`` (the
   default, ``antialias=false``) samples only 2x2 pixels (PaddleClas's cv2 path).
3. Convert colour to ``channel_order`` (``rgb``, ``bgr`` or ``gray``).
4. Normalise: ``out = (pixel * scale - mean[c]) / std[c]``.
5. Lay out as ``nchw`` or ``nhwc`` in ``float32`` or ``float16``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.jsonfile import JSONFileError, read_json_file
from tegra_ai.util.jsonfile import loads as json_loads

INPUT_FORMATS = ("bgr8", "rgb8", "gray8", "nv12")
CHANNEL_ORDERS = ("rgb", "bgr", "gray")
RESIZE_MODES = ("stretch", "letterbox", "center_crop")
LAYOUTS = ("nchw", "nhwc")
DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class PreprocessSpec:
    height: int
    width: int
    input_format: str = "bgr8"
    channel_order: str = "rgb"
    resize: str = "stretch"
    pad_value: float = 114.0
    scale: float = 1.0 / 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    layout: str = "nchw"
    dtype: str = "float32"
    resize_short: int = 0       # center_crop: the shorter side before the crop (pixels)
    antialias: bool = False     # PIL/torchvision antialiased bilinear instead of OpenCV INTER_LINEAR

    # Written by to_dict only when set, so the JSON (and every hash of it) of a spec
    # that does not use them is what it was before they existed.
    OPTIONAL_FIELDS = {"resize_short": 0, "antialias": False}

    def __post_init__(self):
        def bad(field_name, value, allowed):
            raise TegraAIError(
                f"preprocessing spec: {field_name}={value!r} is not one of {', '.join(allowed)}"
            )

        if self.input_format not in INPUT_FORMATS:
            bad("input_format", self.input_format, INPUT_FORMATS)
        if self.channel_order not in CHANNEL_ORDERS:
            bad("channel_order", self.channel_order, CHANNEL_ORDERS)
        if self.resize not in RESIZE_MODES:
            bad("resize", self.resize, RESIZE_MODES)
        if self.layout not in LAYOUTS:
            bad("layout", self.layout, LAYOUTS)
        if self.dtype not in DTYPES:
            bad("dtype", self.dtype, DTYPES)
        if int(self.height) <= 0 or int(self.width) <= 0:
            raise TegraAIError(f"preprocessing spec: size {self.height}x{self.width} must be positive")
        if not isinstance(self.antialias, bool):
            raise TegraAIError(f"preprocessing spec: antialias={self.antialias!r} must be true or false")
        if isinstance(self.resize_short, bool) or not isinstance(self.resize_short, int):
            raise TegraAIError(f"preprocessing spec: resize_short={self.resize_short!r} must be an integer")
        if self.resize == "center_crop":
            if self.resize_short < max(self.height, self.width):
                raise TegraAIError(
                    f"preprocessing spec: resize center_crop needs resize_short >= {max(self.height, self.width)} "
                    f"(the crop is {self.height}x{self.width}), got {self.resize_short}")
        elif self.resize_short:
            raise TegraAIError(f"preprocessing spec: resize_short is for resize center_crop, not {self.resize}")
        # Normalise sequences to tuples of floats so specs compare and hash by value.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise TegraAIError(
                f"preprocessing spec: mean and std need {self.channels} values for channel_order={self.channel_order}"
            )
        if any(s == 0.0 for s in self.std):
            raise TegraAIError("preprocessing spec: std values must be non-zero")

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "gray" else 3

    @property
    def output_shape(self) -> tuple:
        """Shape of one preprocessed image (no batch dimension)."""
        if self.layout == "nchw":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        for k, default in self.OPTIONAL_FIELDS.items():
            if d[k] == default:
                del d[k]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        if not isinstance(d, dict):
            raise TegraAIError(f"preprocessing spec: expected a JSON object, got {type(d).__name__}",
                               exit_code=EXIT_USAGE)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise TegraAIError(f"preprocessing spec: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise TegraAIError(f"preprocessing spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "PreprocessSpec":
        try:
            data = json_loads(text)
        except JSONFileError as exc:
            raise TegraAIError(f"preprocessing spec: {exc}", exit_code=EXIT_USAGE) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str) -> "PreprocessSpec":
        """A spec from a JSON file (the bounded reader: no FIFO, size and nesting capped);
        every failure is one line with exit code 2 (bad input)."""
        try:
            data = read_json_file(path)
        except JSONFileError as exc:
            if exc.errno is not None:
                raise TegraAIError(f"cannot read {path}: {exc}", exit_code=EXIT_USAGE) from None
            raise TegraAIError(f"{path}: {exc}", exit_code=EXIT_USAGE) from None
        try:
            return cls.from_dict(data)
        except TegraAIError as exc:
            raise TegraAIError(f"{path}: {exc.message}", hint=exc.hint, exit_code=EXIT_USAGE) from None


def letterbox_geometry(src_h: int, src_w: int, dst_h: int, dst_w: int):
    """Return (scale, new_h, new_w, top, left) of the letterbox described in the module doc.

    A box ``(x, y)`` in the network input maps back to the source as
    ``((x - left) / scale, (y - top) / scale)``.
    """
    r = min(dst_h / src_h, dst_w / src_w)
    new_w = max(1, int(round(src_w * r)))
    new_h = max(1, int(round(src_h * r)))
    return r, new_h, new_w, (dst_h - new_h) // 2, (dst_w - new_w) // 2


def center_crop_geometry(src_h: int, src_w: int, resize_short: int, dst_h: int, dst_w: int):
    """Return (new_h, new_w, top, left): the size of the resized image and where the
    ``dst_h x dst_w`` crop starts in it, exactly torchvision's ``Resize(resize_short)``
    (int size: shorter side -> ``resize_short``, longer -> ``int(resize_short * long / short)``)
    followed by ``CenterCrop``. Output pixel ``(y, x)`` is resized pixel ``(y + top, x + left)``."""
    if src_w <= src_h:
        new_w, new_h = resize_short, int(resize_short * src_h / src_w)
    else:
        new_h, new_w = resize_short, int(resize_short * src_w / src_h)
    return new_h, new_w, int(round((new_h - dst_h) / 2.0)), int(round((new_w - dst_w) / 2.0))
