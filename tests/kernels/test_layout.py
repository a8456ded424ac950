"""Parameter packing and launch geometry of the kernels (CPU only)."""

import ctypes

import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels import layout
from tegra_ai.kernels.layout import SourceImage
from tegra_ai.preprocess.spec import PreprocessSpec


def test_struct_sizes_match_the_cuda_static_asserts():
    source = (layout.__file__.rsplit("/", 1)[0]) + "/preprocess.cu"
    text = open(source).read()
    assert f"sizeof(TaiImageDesc) == {layout.IMAGE_DESC_BYTES}" in text
    assert f"sizeof(TaiPreprocessParams) == {layout.PARAMS_BYTES}" in text
    assert ctypes.sizeof(layout.ImageDesc) == layout.IMAGE_DESC_BYTES
    assert ctypes.sizeof(layout.PreprocessParams) == layout.PARAMS_BYTES


def test_letterbox_descriptor_1080p_to_640():
    spec = PreprocessSpec(height=640, width=640, resize="letterbox")
    d = layout.image_desc(spec, SourceImage(0x1000, 1080, 1920))
    assert (d.roi_top, d.roi_left, d.roi_h, d.roi_w) == (140, 0, 360, 640)
    assert d.scale_x == pytest.approx(3.0) and d.scale_y == pytest.approx(3.0)
    assert d.src_pitch == 1920 * 3 and d.src_uv == 0


def test_stretch_descriptor_and_portrait_letterbox():
    d = layout.image_desc(PreprocessSpec(height=100, width=200), SourceImage(0, 50, 50))
    assert (d.roi_top, d.roi_left, d.roi_h, d.roi_w) == (0, 0, 100, 200)
    assert d.scale_y == pytest.approx(0.5) and d.scale_x == pytest.approx(0.25)
    d = layout.image_desc(PreprocessSpec(height=640, width=640, resize="letterbox"), SourceImage(0, 1920, 1080))
    assert (d.roi_top, d.roi_left, d.roi_h, d.roi_w) == (0, 140, 640, 360)


def test_nv12_planes_and_pitch():
    spec = PreprocessSpec(height=8, width=8, input_format="nv12")
    d = layout.image_desc(spec, SourceImage(1000, 4, 6, pitch=64))
    assert d.src_uv == 1000 + 64 * 4 and d.uv_pitch == 64
    d = layout.image_desc(spec, SourceImage(1000, 4, 6, pitch=64, uv=5000, uv_pitch=128))
    assert (d.src_uv, d.uv_pitch) == (5000, 128)
    with pytest.raises(TegraAIError, match="even"):
        layout.image_desc(spec, SourceImage(0, 5, 6))


def test_pitch_smaller_than_a_row_is_refused():
    with pytest.raises(TegraAIError, match="pitch"):
        layout.image_desc(PreprocessSpec(height=8, width=8), SourceImage(0, 4, 10, pitch=29))


def test_normalisation_folds_scale_mean_std():
    spec = PreprocessSpec(height=8, width=8, scale=1 / 255, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0),
                          pad_value=255)
    mul, add, pad = layout.normalisation(spec)
    for c in range(3):
        x = 200.0
        assert x * mul[c] + add[c] == pytest.approx((x / 255 - spec.mean[c]) / spec.std[c])
        assert pad[c] == pytest.approx((1.0 - spec.mean[c]) / spec.std[c])


def test_params_codes_and_vector_store_alignment():
    spec = PreprocessSpec(height=4, width=8, channel_order="bgr", layout="nhwc", dtype="float16")
    p = layout.preprocess_params(spec, 0x100, 0x2000, 3)
    assert (p.out_order, p.layout, p.dtype, p.batch, p.out_image_stride) == (1, 1, 1, 3, 96)
    assert p.vector_stores == 1
    assert layout.preprocess_params(spec, 0x100, 0x2008, 3).vector_stores == 0
    with pytest.raises(TegraAIError, match="stride"):
        layout.preprocess_params(spec, 0, 0, 1, out_image_stride=10)


@pytest.mark.parametrize("h,w,batch,grid", [(640, 640, 16, (5, 80, 16)), (1, 1, 1, (1, 1, 1)),
                                            (97, 129, 2, (2, 13, 2))])
def test_preprocess_grid_covers_the_output(h, w, batch, grid):
    spec = PreprocessSpec(height=h, width=w)
    g, block = layout.preprocess_grid(spec, batch)
    assert g == grid and block == (32, 8, 1)
    assert g[0] * block[0] * layout.PX_PER_THREAD >= w and g[1] * block[1] >= h
    assert (g[0] - 1) * block[0] * layout.PX_PER_THREAD < w and (g[1] - 1) * block[1] < h


@pytest.mark.parametrize("h,w", [(224, 224), (1, 1), (97, 129)])
def test_antialias_grid_covers_the_output(h, w):
    # the _aa kernels: one pixel per thread along x, AA_ROWS_PER_THREAD rows per thread
    spec = PreprocessSpec(height=h, width=w, resize="center_crop", resize_short=max(h, w), antialias=True)
    g, block = layout.preprocess_grid(spec, 3)
    rows = block[1] * layout.AA_ROWS_PER_THREAD
    assert block == layout.AA_BLOCK and g[2] == 3
    assert g[0] * block[0] >= w and (g[0] - 1) * block[0] < w
    assert g[1] * rows >= h and (g[1] - 1) * rows < h


def test_geometry_constants_match_the_sources():
    src = open(layout.__file__.rsplit("/", 1)[0] + "/preprocess.cu").read()
    assert f"#define TAI_PX_PER_THREAD {layout.PX_PER_THREAD}" in src
    assert f"#define TAI_BLOCK_X {layout.BLOCK[0]}" in src and f"#define TAI_BLOCK_Y {layout.BLOCK[1]}" in src
    assert layout.AA_BLOCK[0] == layout.BLOCK[0] and f"#define TAI_AA_BLOCK_Y {layout.AA_BLOCK[1]} " in src
    assert f"#define TAI_AA_ROWS_PER_THREAD {layout.AA_ROWS_PER_THREAD} " in src
    nms = open(layout.__file__.rsplit("/", 1)[0] + "/nms.cu").read()
    assert f"#define TAI_NMS_TILE {layout.NMS_TILE}" in nms
    assert f"#define TAI_NMS_RANK_THREADS {layout.NMS_RANK_THREADS}" in nms
    assert f"#define TAI_NMS_GATHER_THREADS {layout.NMS_GATHER_THREADS}" in nms
    assert f"sizeof(TaiNmsArgs) == {layout.NMS_ARGS_BYTES}" in nms
    assert f"sizeof(TaiDetParams) == {layout.DET_PARAMS_BYTES}" in nms
    assert ctypes.sizeof(layout.NmsArgs) == layout.NMS_ARGS_BYTES
    assert ctypes.sizeof(layout.DetParams) == layout.DET_PARAMS_BYTES
    assert f"#define TAI_DET_ANCHORS {layout.DET_DECODE_ANCHORS}" in nms
    assert f"#define TAI_DET_GROUPS {layout.DET_DECODE_GROUPS}" in nms


def test_nms_geometry():
    g = layout.nms_geometry(50000)
    assert g.col_words == 782 and g.mask_grid == (2048, 1, 1) and g.rank_grid == (391, 1, 1)
    assert layout.nms_geometry(1000).mask_grid == (256, 1, 1)  # persistent grid: one block per tile up to 2048
    assert g.mask_bytes == 50000 * 782 * 8 and g.gather_shared_bytes == 782 * 8 <= 48 * 1024
    assert layout.nms_geometry(layout.NMS_MAX_BOXES).gather_shared_bytes <= 47 * 1024
    with pytest.raises(TegraAIError, match="at most"):
        layout.nms_geometry(layout.NMS_MAX_BOXES + 1)
    with pytest.raises(TegraAIError):
        layout.nms_geometry(0)
