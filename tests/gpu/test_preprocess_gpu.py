"""Fused preprocessing kernel on a real GPU against the NumPy reference (float32
coordinate rounding: within 0.05 pixel levels), OpenCV (its 11-bit fixed-point
weights and uint8 rounding: within 1 pixel level) and OpenCV's NV12 conversion
(bit-exact)."""

import itertools

import numpy as np
import pytest

from tegra_ai.preprocess.reference import nv12_to_rgb, preprocess_reference
from tegra_ai.preprocess.spec import PreprocessSpec, letterbox_geometry

pytestmark = pytest.mark.gpu

REF_TOL_LEVELS = 0.05   # float32 source coordinates vs float64 in the reference
CV_TOL_LEVELS = 1.0     # OpenCV: fixed-point weights and a uint8 result


def random_image(rng, fmt, h, w, low=0, high=256):
    if fmt == "gray8":
        return rng.integers(low, high, (h, w), dtype=np.uint8)
    if fmt == "nv12":
        return rng.integers(low, high, (h * 3 // 2, w), dtype=np.uint8)
    return rng.integers(low, high, (h, w, 3), dtype=np.uint8)


def run(spec, images):
    from tegra_ai.kernels import preprocess

    return preprocess(spec, images)


def tolerance(spec, levels):
    # pixel levels -> output units, plus float16 rounding of the output
    mul = max(abs(spec.scale / s) for s in spec.std)
    return levels * mul


def check_close(spec, got, ref, levels):
    got = got.astype(np.float64)
    assert np.isfinite(got).all(), "unwritten or non-finite output"
    tol = tolerance(spec, levels)
    if spec.dtype == "float16":
        tol += np.abs(ref) * 2.0 ** -11 + 1e-7
    err = np.abs(got - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert (err <= tol).all(), f"max error {err.max():.4g} at {worst} (tolerance {np.max(tol):.4g})"


CASES = list(itertools.product(
    ["bgr8", "rgb8", "gray8", "nv12"],
    ["stretch", "letterbox"],
    [("rgb", "nchw", "float32"), ("bgr", "nhwc", "float16"), ("gray", "nchw", "float16"), ("rgb", "nchw", "float16")],
))


@pytest.mark.parametrize("fmt,resize,out", CASES, ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
def test_matches_reference(rng, fmt, resize, out):
    order, layout, dtype = out
    c = 1 if order == "gray" else 3
    spec = PreprocessSpec(height=96, width=160, input_format=fmt, channel_order=order, resize=resize,
                          layout=layout, dtype=dtype, pad_value=float(rng.integers(0, 256)),
                          scale=1 / 255.0, mean=tuple(rng.uniform(0, 0.5, c)), std=tuple(rng.uniform(0.2, 0.3, c)))
    for h, w in [(120, 130), (38, 302), (480, 640), (1080, 1920), (64, 64)]:
        img = random_image(rng, fmt, h, w)
        got, maps = run(spec, img)
        check_close(spec, got[0], preprocess_reference(spec, img), REF_TOL_LEVELS)


def test_batch_of_different_sizes_in_one_launch(rng):
    spec = PreprocessSpec(height=128, width=128, input_format="bgr8", resize="letterbox", dtype="float16")
    sizes = [(720, 1280), (100, 37), (128, 128), (481, 333), (1080, 1920)]  # odd sizes: packed formats
    imgs = [random_image(rng, "bgr8", h, w) for h, w in sizes]
    got, maps = run(spec, imgs)
    assert got.shape == (5, 3, 128, 128)
    for k, img in enumerate(imgs):
        check_close(spec, got[k], preprocess_reference(spec, img), REF_TOL_LEVELS)
        r, nh, nw, top, left = letterbox_geometry(*sizes[k], 128, 128)
        assert (maps[k].scale_x, maps[k].left, maps[k].top) == (r, left, top)


@pytest.mark.parametrize("src", [(1080, 1920), (480, 640), (500, 375), (333, 999)])
def test_letterbox_geometry_exact(rng, src):
    # Source pixels 200..255 never normalise to the pad value 114: the pad region and
    # the image region are told apart exactly, row by row and column by column.
    spec = PreprocessSpec(height=640, width=640, input_format="rgb8", resize="letterbox", pad_value=114)
    img = random_image(rng, "rgb8", *src, low=200)
    got, _ = run(spec, img)
    _, new_h, new_w, top, left = letterbox_geometry(*src, 640, 640)
    pad = np.float32(114 / 255.0)
    is_pad = (got[0] == pad).all(axis=0)
    expect = np.ones((640, 640), bool)
    expect[top:top + new_h, left:left + new_w] = False
    assert np.array_equal(is_pad, expect)


def test_row_pitch(rng):
    from tegra_ai.cuda.driver import DeviceBuffer, copy_dtoh
    from tegra_ai.kernels import Preprocessor, SourceImage

    spec = PreprocessSpec(height=64, width=96, input_format="bgr8", dtype="float32")
    h, w, pitch = 200, 150, 512
    padded = rng.integers(0, 256, (h, pitch), dtype=np.uint8)
    img = padded[:, :w * 3].reshape(h, w, 3)
    src = DeviceBuffer(padded.nbytes).upload(padded)
    out = DeviceBuffer(3 * 64 * 96 * 4)
    Preprocessor(spec).run_device([SourceImage(src.ptr, h, w, pitch=pitch)], out.ptr)
    got = copy_dtoh(np.empty((3, 64, 96), np.float32), out.ptr)
    check_close(spec, got, preprocess_reference(spec, np.ascontiguousarray(img)), REF_TOL_LEVELS)


def test_every_output_element_written(rng):
    from tegra_ai.cuda.driver import DeviceBuffer, copy_dtoh, copy_htod
    from tegra_ai.kernels import Preprocessor, SourceImage

    spec = PreprocessSpec(height=67, width=131, input_format="rgb8", resize="letterbox", dtype="float16")
    img = random_image(rng, "rgb8", 50, 70)
    src = DeviceBuffer(img.nbytes).upload(img)
    n = 3 * 67 * 131
    out = DeviceBuffer(n * 2 + 64)
    copy_htod(out.ptr, np.full(n + 32, 0xFFFF, np.uint16))  # NaN poison
    Preprocessor(spec).run_device([SourceImage(src.ptr, 50, 70)], out.ptr)
    got = copy_dtoh(np.empty(n + 32, np.uint16), out.ptr)
    assert not (got[:n] == 0xFFFF).any(), "some output elements were not written"
    assert (got[n:] == 0xFFFF).all(), "wrote past the end of the output"


def test_nv12_conversion_bit_exact_with_opencv(rng):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed")
    for h, w in [(2, 2), (64, 96), (720, 1280)]:
        nv12 = random_image(rng, "nv12", h, w)
        cv = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)
        assert np.array_equal(nv12_to_rgb(nv12), cv), "NumPy reference differs from OpenCV"
        spec = PreprocessSpec(height=h, width=w, input_format="nv12", channel_order="rgb",
                              layout="nhwc", scale=1.0)
        got, _ = run(spec, nv12)
        assert np.array_equal(got[0], cv.astype(np.float32))


@pytest.mark.parametrize("fmt,order", [("bgr8", "rgb"), ("rgb8", "bgr"), ("bgr8", "gray"), ("nv12", "rgb")])
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_matches_opencv_pipeline(rng, fmt, order, resize):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed")
    c = 1 if order == "gray" else 3
    spec = PreprocessSpec(height=320, width=320, input_format=fmt, channel_order=order, resize=resize,
                          mean=(0.485, 0.456, 0.406)[:c], std=(0.229, 0.224, 0.225)[:c], dtype="float32")
    for h, w in [(1080, 1920), (480, 640), (334, 518)]:
        img = random_image(rng, fmt, h, w)
        rgb = cv2.cvtColor(img, cv2.COLOR_YUV2RGB_NV12) if fmt == "nv12" else (
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if fmt == "bgr8" else img)
        if resize == "letterbox":
            _, nh, nw, top, left = letterbox_geometry(h, w, 320, 320)
            small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas = cv2.copyMakeBorder(small, top, 320 - nh - top, left, 320 - nw - left,
                                        cv2.BORDER_CONSTANT, value=(114, 114, 114))
        else:
            canvas = cv2.resize(rgb, (320, 320), interpolation=cv2.INTER_LINEAR)
        x = canvas.astype(np.float64)
        if order == "bgr":
            x = x[..., ::-1]
        elif order == "gray":
            x = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
        ref = ((x / 255.0 - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
        got, _ = run(spec, img)
        check_close(spec, got[0], ref, CV_TOL_LEVELS)


def test_device_pointers_from_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from tegra_ai.kernels import Preprocessor, SourceImage

    spec = PreprocessSpec(height=64, width=64, input_format="bgr8", resize="letterbox", dtype="float16")
    imgs = [random_image(rng, "bgr8", 90, 160), random_image(rng, "bgr8", 160, 90)]
    src = [torch.from_numpy(i).cuda() for i in imgs]
    out = torch.full((2, 3, 64, 64), float("nan"), dtype=torch.float16, device="cuda")
    stream = torch.cuda.current_stream()
    Preprocessor(spec).run_device([SourceImage(t.data_ptr(), *t.shape[:2]) for t in src], out.data_ptr(),
                                  stream=stream.cuda_stream)
    stream.synchronize()
    for k, img in enumerate(imgs):
        check_close(spec, out[k].cpu().numpy(), preprocess_reference(spec, img), REF_TOL_LEVELS)


@pytest.mark.nvcc
def test_plugin_core_matches_the_python_kernel(rng, tmp_path):
    """The TensorRT plugin's launcher (built here with nvcc, called through its C ABI)
    computes what the NVRTC-built kernel and the reference compute."""
    import ctypes
    import shutil
    import subprocess
    from pathlib import Path

    from tegra_ai.cuda.driver import DeviceBuffer, compute_capability, copy_dtoh
    from tegra_ai.kernels.layout import DTYPE_CODES, FORMAT_CODES, LAYOUT_CODES, ORDER_CODES

    if not shutil.which("nvcc"):
        pytest.skip("nvcc is not on PATH")
    plugin = Path(__file__).resolve().parents[2] / "scripts" / "tegra_ai" / "plugin"
    cc = "".join(map(str, compute_capability()))
    lib = tmp_path / "libcore.so"
    r = subprocess.run(["nvcc", "-shared", "-Xcompiler", "-fPIC", f"-arch=sm_{cc}", "-o", str(lib),
                        str(plugin / "preprocess_plugin_core.cu")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    class Params(ctypes.Structure):
        _fields_ = [(n, ctypes.c_int32) for n in ("height", "width", "input_format", "channel_order", "resize",
                                                   "layout", "dtype")] + \
                   [("pad_value", ctypes.c_float), ("scale", ctypes.c_float),
                    ("mean", ctypes.c_float * 3), ("std", ctypes.c_float * 3)]

    core = ctypes.CDLL(str(lib))
    for fmt, resize, dtype in [("bgr8", "letterbox", "float16"), ("nv12", "stretch", "float32"),
                               ("gray8", "letterbox", "float32")]:
        spec = PreprocessSpec(height=96, width=128, input_format=fmt, resize=resize, dtype=dtype,
                              mean=(0.2, 0.3, 0.4), std=(0.3, 0.2, 0.25), pad_value=33)
        h, w, batch = 150, 202, 3
        imgs = [random_image(rng, fmt, h, w) for _ in range(batch)]
        dense = np.ascontiguousarray(np.stack(imgs))
        src = DeviceBuffer(dense.nbytes).upload(dense)
        out_n = batch * 3 * 96 * 128
        out = DeviceBuffer(out_n * 4)
        ws = DeviceBuffer(batch * 64 + 256)
        p = Params(96, 128, FORMAT_CODES[fmt], ORDER_CODES["rgb"], 1 if resize == "letterbox" else 0,
                   LAYOUT_CODES["nchw"], DTYPE_CODES[dtype], 33.0, 1 / 255.0,
                   (ctypes.c_float * 3)(0.2, 0.3, 0.4), (ctypes.c_float * 3)(0.3, 0.2, 0.25))
        err = core.tegra_ai_preprocess_enqueue(ctypes.byref(p), ctypes.c_void_p(src.ptr), batch, h, w,
                                               ctypes.c_void_p(out.ptr), ctypes.c_void_p(ws.ptr), None)
        assert err == 0
        core.cudaDeviceSynchronize() if hasattr(core, "cudaDeviceSynchronize") else None
        got = copy_dtoh(np.empty((batch, 3, 96, 128), np.float16 if dtype == "float16" else np.float32), out.ptr)
        for k in range(batch):
            check_close(spec, got[k], preprocess_reference(spec, imgs[k]), REF_TOL_LEVELS)


# --------------------------------------------------------------------------- centre crop, antialias

def photos():
    from photos import sample_photos

    return sample_photos()


@pytest.mark.parametrize("fmt", ["bgr8", "rgb8", "gray8", "nv12"])
@pytest.mark.parametrize("antialias", [False, True])
def test_center_crop_matches_reference(rng, fmt, antialias):
    for order, layout, dtype in [("rgb", "nchw", "float32"), ("bgr", "nhwc", "float16"), ("gray", "nchw", "float32")]:
        c = 1 if order == "gray" else 3
        spec = PreprocessSpec(height=96, width=80, input_format=fmt, channel_order=order, resize="center_crop",
                              resize_short=110, antialias=antialias, layout=layout, dtype=dtype,
                              mean=tuple(rng.uniform(0, 0.5, c)), std=tuple(rng.uniform(0.2, 0.3, c)))
        for h, w in [(120, 130), (38, 302), (480, 640), (1080, 1920), (302, 38)]:
            img = random_image(rng, fmt, h, w)
            got, maps = run(spec, img)
            check_close(spec, got[0], preprocess_reference(spec, img), REF_TOL_LEVELS)


@pytest.mark.parametrize("fmt", ["bgr8", "gray8", "nv12"])
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_antialias_stretch_and_letterbox_match_reference(rng, fmt, resize):
    # tiles of padding only, tiles across the letterbox edge, the shared-memory path (up to
    # ~5x) and the per-pixel path (1080 -> 96: 11x)
    spec = PreprocessSpec(height=96, width=160, input_format=fmt, resize=resize, antialias=True,
                          pad_value=float(rng.integers(0, 256)), dtype="float16", layout="nhwc")
    for h, w in [(480, 640), (1080, 1920), (38, 302), (302, 38), (97, 131)]:
        if fmt == "nv12" and (h % 2 or w % 2):
            continue
        img = random_image(rng, fmt, h, w)
        got, _ = run(spec, img)
        check_close(spec, got[0], preprocess_reference(spec, img), REF_TOL_LEVELS)


@pytest.mark.parametrize("fmt", ["bgr8", "gray8"])
def test_antialias_tiles_at_every_row_alignment(rng, fmt):
    # The tiled kernel reads 16-byte chunks when the image and its pitch are 16-byte
    # aligned and funnel-shifted 4-byte words otherwise; each (pitch, offset) below takes
    # one of those paths with the crop's footprint starting at various byte offsets.
    from tegra_ai.cuda.driver import DeviceBuffer, copy_dtoh
    from tegra_ai.kernels import Preprocessor, SourceImage

    bpp = 3 if fmt == "bgr8" else 1
    h, w = 300, 500
    spec = PreprocessSpec(height=64, width=64, input_format=fmt, resize="center_crop", resize_short=72,
                          antialias=True, dtype="float32", scale=1 / 255.0)
    img = random_image(rng, fmt, h, w)
    ref = preprocess_reference(spec, img)
    row = w * bpp
    for pitch, offset in [(row + (-row) % 16, 0), (row + (-row) % 16, 16), (row + (-row) % 16 + 4, 0),
                          (row + 1, 0), (row + (-row) % 16, 3)]:
        buf = np.zeros(offset + (h - 1) * pitch + row, np.uint8)
        for y in range(h):
            buf[offset + y * pitch: offset + y * pitch + row] = img[y].reshape(-1)
        src = DeviceBuffer(buf.nbytes).upload(buf)
        out = DeviceBuffer(spec.channels * 64 * 64 * 4)
        Preprocessor(spec).run_device([SourceImage(src.ptr + offset, h, w, pitch=pitch)], out.ptr)
        got = copy_dtoh(np.empty((spec.channels, 64, 64), np.float32), out.ptr)
        check_close(spec, got, ref, REF_TOL_LEVELS)


def test_center_crop_antialias_equals_pil_on_photos():
    from PIL import Image

    from tegra_ai.preprocess.spec import center_crop_geometry

    imgs = photos()
    spec = PreprocessSpec(height=224, width=224, input_format="rgb8", resize="center_crop", resize_short=256,
                          antialias=True, layout="nhwc", scale=1.0)
    got, maps = run(spec, imgs)  # one launch, four sizes
    for k, img in enumerate(imgs):
        h, w = img.shape[:2]
        nh, nw, top, left = center_crop_geometry(h, w, 256, 224, 224)
        pil = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))[top:top + 224, left:left + 224]
        diff = np.abs(np.rint(got[k]) - pil)
        assert diff.max() <= 1, f"image {k} {h}x{w}: {diff.max()} levels from PIL"
        # box mapping: output (x, y) -> source ((x + left) * w / nw, (y + top) * h / nh)
        src = maps[k].to_source(np.array([[0.0, 0.0, 224.0, 224.0]]))[0]
        np.testing.assert_allclose(src, [left * w / nw, top * h / nh, (left + 224) * w / nw, (top + 224) * h / nh])
