"""Host-side mirror of the kernels' parameter structs and launch geometry.

Pure Python + ctypes, no GPU: everything here is unit-tested on CPU. The struct
layouts must match ``preprocess.cu`` (``static`` sizes checked by tests that compile
the .cu with nvcc and by :data:`IMAGE_DESC_BYTES` / :data:`PARAMS_BYTES`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from tegra_ai.errors import TegraAIError
from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry, letterbox_geometry

FORMAT_CODES = {"bgr8": 0, "rgb8": 1, "gray8": 2, "nv12": 3}
ORDER_CODES = {"rgb": 0, "bgr": 1, "gray": 2}
LAYOUT_CODES = {"nchw": 0, "nhwc": 1}
DTYPE_CODES = {"float32": 0, "float16": 1}
KERNEL_NAMES = {fmt: f"tai_preprocess_{fmt}" for fmt in FORMAT_CODES}


def kernel_name(spec: PreprocessSpec) -> str:
    """The entry point for ``spec``: one per source format, ``_aa`` for PIL resampling."""
    return KERNEL_NAMES[spec.input_format] + ("_aa" if spec.antialias else "")

# Must equal TAI_PX_PER_THREAD, TAI_BLOCK_X, TAI_BLOCK_Y, TAI_AA_BLOCK_Y and TAI_AA_ROWS_PER_THREAD
# in preprocess.cu.
PX_PER_THREAD = 4
BLOCK = (32, 8, 1)
AA_BLOCK = (32, 8, 1)
AA_ROWS_PER_THREAD = 2

NMS_TILE = 64
NMS_RANK_THREADS = 128
NMS_GATHER_THREADS = 1024
# The gather kernel keeps one removed-bit word per 64 boxes in dynamic shared memory;
# with its 1 KiB of static shared memory it must stay under the 48 KiB every target
# gives without opting in.
NMS_MAX_BOXES = 47 * 1024 // 8 * NMS_TILE


class ImageDesc(ctypes.Structure):
    _fields_ = [
        ("src", ctypes.c_uint64),
        ("src_uv", ctypes.c_uint64),
        ("src_h", ctypes.c_int32), ("src_w", ctypes.c_int32),
        ("src_pitch", ctypes.c_int32), ("uv_pitch", ctypes.c_int32),
        ("roi_top", ctypes.c_int32), ("roi_left", ctypes.c_int32),
        ("roi_h", ctypes.c_int32), ("roi_w", ctypes.c_int32),
        ("scale_y", ctypes.c_float), ("scale_x", ctypes.c_float),
        ("antialias", ctypes.c_int32), ("reserved1", ctypes.c_int32),
    ]


class PreprocessParams(ctypes.Structure):
    _fields_ = [
        ("images", ctypes.c_uint64),
        ("out", ctypes.c_uint64),
        ("out_image_stride", ctypes.c_int64),
        ("out_h", ctypes.c_int32), ("out_w", ctypes.c_int32),
        ("out_order", ctypes.c_int32),
        ("layout", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("batch", ctypes.c_int32),
        ("mul", ctypes.c_float * 3),
        ("add", ctypes.c_float * 3),
        ("pad_out", ctypes.c_float * 3),
        ("vector_stores", ctypes.c_int32),
    ]


IMAGE_DESC_BYTES = 64
PARAMS_BYTES = 88


@dataclass(frozen=True)
class SourceImage:
    """One source image in device memory. ``pitch`` is bytes per row of the packed
    image or of the Y plane; for NV12 ``uv``/``uv_pitch`` give the interleaved UV plane
    (``uv`` defaults to right after the Y plane)."""

    ptr: int
    height: int
    width: int
    pitch: int | None = None
    uv: int | None = None
    uv_pitch: int | None = None


def bytes_per_pixel(input_format: str) -> int:
    return 3 if input_format in ("bgr8", "rgb8") else 1


def source_nbytes(input_format: str, height: int, width: int) -> int:
    """Bytes of a densely packed source image (NV12: Y plane + UV plane)."""
    if input_format == "nv12":
        return height * width * 3 // 2
    return height * width * bytes_per_pixel(input_format)


def resize_region(spec: PreprocessSpec, src_h: int, src_w: int):
    """(top, left, roi_h, roi_w): where the resized source lands in the output. A centre
    crop is a region larger than the output at a negative offset (output pixel ``(y, x)``
    is resized pixel ``(y - top, x - left)``)."""
    if spec.resize == "letterbox":
        _, new_h, new_w, top, left = letterbox_geometry(src_h, src_w, spec.height, spec.width)
        return top, left, new_h, new_w
    if spec.resize == "center_crop":
        new_h, new_w, top, left = center_crop_geometry(src_h, src_w, spec.resize_short, spec.height, spec.width)
        return -top, -left, new_h, new_w
    return 0, 0, spec.height, spec.width


def image_desc(spec: PreprocessSpec, image: SourceImage) -> ImageDesc:
    if image.height <= 0 or image.width <= 0:
        raise TegraAIError(f"source image size {image.height}x{image.width} must be positive")
    if spec.input_format == "nv12" and (image.height % 2 or image.width % 2):
        raise TegraAIError(f"nv12 source {image.height}x{image.width}: height and width must be even")
    row = image.width * bytes_per_pixel(spec.input_format)
    pitch = row if image.pitch is None else int(image.pitch)
    if pitch < row:
        raise TegraAIError(f"row pitch {pitch} is smaller than a row of {row} bytes")
    top, left, roi_h, roi_w = resize_region(spec, image.height, image.width)
    d = ImageDesc()
    d.src = int(image.ptr)
    d.src_h, d.src_w, d.src_pitch = image.height, image.width, pitch
    if spec.input_format == "nv12":
        d.uv_pitch = pitch if image.uv_pitch is None else int(image.uv_pitch)
        d.src_uv = int(image.uv) if image.uv is not None else int(image.ptr) + pitch * image.height
    d.roi_top, d.roi_left, d.roi_h, d.roi_w = top, left, roi_h, roi_w
    # OpenCV computes the scale as 1 / (dst / src); the float of src / dst is the same
    # number for every size we can meet, and the kernel works in float.
    d.scale_y = image.height / roi_h
    d.scale_x = image.width / roi_w
    d.antialias = int(spec.antialias)
    return d


def normalisation(spec: PreprocessSpec):
    """(mul, add, pad) per output channel so that ``out = pixel * mul + add``."""
    mul = [spec.scale / s for s in spec.std]
    add = [-m / s for m, s in zip(spec.mean, spec.std)]
    pad = [(spec.pad_value * spec.scale - m) / s for m, s in zip(spec.mean, spec.std)]
    while len(mul) < 3:  # gray: unused channels
        mul.append(0.0), add.append(0.0), pad.append(0.0)
    return mul, add, pad


def preprocess_params(spec: PreprocessSpec, images_ptr: int, out_ptr: int, batch: int,
                      out_image_stride: int | None = None) -> PreprocessParams:
    p = PreprocessParams()
    p.images, p.out = int(images_ptr), int(out_ptr)
    per_image = spec.channels * spec.height * spec.width
    p.out_image_stride = per_image if out_image_stride is None else int(out_image_stride)
    if p.out_image_stride < per_image:
        raise TegraAIError(f"output image stride {p.out_image_stride} is smaller than one image ({per_image})")
    p.out_h, p.out_w = spec.height, spec.width
    p.out_order = ORDER_CODES[spec.channel_order]
    p.layout = LAYOUT_CODES[spec.layout]
    p.dtype = DTYPE_CODES[spec.dtype]
    p.batch = int(batch)
    mul, add, pad = normalisation(spec)
    p.mul[:], p.add[:], p.pad_out[:] = mul, add, pad
    p.vector_stores = int(int(out_ptr) % 16 == 0)
    return p


def preprocess_grid(spec: PreprocessSpec, batch: int):
    """(grid, block) of one batched launch: 4 output pixels per thread along x; antialiased
    (the _aa kernels): 1 pixel along x and AA_ROWS_PER_THREAD rows per thread."""
    if batch <= 0:
        raise TegraAIError("batch must be at least 1")
    if batch > 65535:
        raise TegraAIError(f"batch {batch} exceeds the 65535 images of one launch")
    if spec.antialias:  # the _aa kernels: 1 pixel along x, AA_ROWS_PER_THREAD rows per thread
        block = AA_BLOCK
        per_block_x, per_block_y = block[0], block[1] * AA_ROWS_PER_THREAD
    else:
        block = BLOCK
        per_block_x, per_block_y = block[0] * PX_PER_THREAD, block[1]
    grid = (-(-spec.width // per_block_x), -(-spec.height // per_block_y), batch)
    return grid, block


def output_nbytes(spec: PreprocessSpec, batch: int) -> int:
    itemsize = 2 if spec.dtype == "float16" else 4
    return batch * spec.channels * spec.height * spec.width * itemsize


class NmsArgs(ctypes.Structure):
    """Mirror of ``TaiNmsArgs`` (nms.cu)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "boxes", "classes", "order", "n_valid", "dropped", "mask", "diag_t", "keep", "keep_count")] + [
        ("cap", ctypes.c_int32), ("words", ctypes.c_int32), ("top_k", ctypes.c_int32),
        ("iou_threshold", ctypes.c_float)] + [(name, ctypes.c_uint64) for name in (
            "cand_key", "mapping", "out_boxes", "out_scores", "out_classes", "out_anchor", "cand_cls")] + [
        ("classes_per_anchor", ctypes.c_int32), ("reserved", ctypes.c_int32)]


class DetParams(ctypes.Structure):
    """Mirror of ``TaiDetParams`` (nms.cu)."""

    _fields_ = [(name, ctypes.c_uint64) for name in ("boxes", "scores", "objectness")] + [
        (name, ctypes.c_int64) for name in ("box_batch", "box_anchor", "box_coord", "score_batch",
                                            "score_anchor", "score_class", "obj_batch", "obj_anchor")] + [
        ("anchors", ctypes.c_int32), ("classes", ctypes.c_int32), ("box_format", ctypes.c_int32),
        ("half", ctypes.c_int32), ("multi_label", ctypes.c_int32), ("score_threshold", ctypes.c_float),
        ("cap", ctypes.c_int32), ("per_class_top_k", ctypes.c_int32), ("pre_nms_top_k", ctypes.c_int32),
        ("words", ctypes.c_int32)] + [(name, ctypes.c_uint64) for name in (
            "count", "cand_key", "cand_box", "cand_cls", "order", "n_valid", "dropped")]


NMS_ARGS_BYTES = 152
DET_PARAMS_BYTES = 184
DET_DECODE_ANCHORS = 32   # TAI_DET_ANCHORS: anchors per decode block (threadIdx.x)
DET_DECODE_GROUPS = 8     # TAI_DET_GROUPS: class groups per anchor (threadIdx.y)


def mask_blocks(words: int) -> int:
    """Blocks of the persistent IoU-mask grid: one per 64x64 tile up to 2048."""
    return max(1, min(words * words, 2048))


@dataclass(frozen=True)
class NmsGeometry:
    n: int
    col_words: int
    rank_grid: tuple
    mask_grid: tuple
    mask_bytes: int
    gather_shared_bytes: int


def nms_geometry(n: int) -> NmsGeometry:
    if n <= 0:
        raise TegraAIError("nms needs at least one box")
    if n > NMS_MAX_BOXES:
        raise TegraAIError(f"nms of {n} boxes: at most {NMS_MAX_BOXES} per call",
                           hint="apply a score threshold or top-k first")
    words = -(-n // NMS_TILE)
    return NmsGeometry(
        n=n,
        col_words=words,
        rank_grid=(-(-n // NMS_RANK_THREADS), 1, 1),
        mask_grid=(mask_blocks(words), 1, 1),
        mask_bytes=n * words * 8,
        gather_shared_bytes=words * 8,
    )
