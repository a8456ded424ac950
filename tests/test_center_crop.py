"""Classifier preprocessing (issue #18 part 6): shorter side, centre crop, PIL/torchvision
antialiasing, in every CPU implementation (NumPy reference, calibration-dataset) and in
the kernel's host-side descriptors; and calibration-dataset's compact uint8 storage
(part 8) read back through the one loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.preprocess.reference import preprocess_reference, resized_canvas
from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")


def photos():
    from photos import sample_photos

    return sample_photos()


def pil_center_crop(img, short, h, w):
    """torchvision's Resize(short) + CenterCrop((h, w)) on a PIL image, done with PIL."""
    nh, nw, top, left = center_crop_geometry(img.shape[0], img.shape[1], short, h, w)
    return np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))[top:top + h, left:left + w]


def test_geometry_is_torchvisions():
    # torchvision.transforms.functional: new_long = int(short * long / short_side);
    # CenterCrop: top = int(round((H - h) / 2)) (Python round: halves to even)
    assert center_crop_geometry(480, 640, 256, 224, 224) == (256, 341, 16, 58)   # (341-224)/2 = 58.5 -> 58
    assert center_crop_geometry(640, 480, 256, 224, 224) == (341, 256, 58, 16)
    assert center_crop_geometry(427, 639, 256, 224, 224) == (256, 383, 16, 80)   # 79.5 -> 80
    assert center_crop_geometry(97, 131, 256, 224, 200) == (256, 345, 16, 72)    # upscaling


def test_spec_fields_validated_and_old_json_unchanged():
    with pytest.raises(TegraAIError, match="needs resize_short >= 224"):
        PreprocessSpec(224, 224, resize="center_crop")
    with pytest.raises(TegraAIError, match="needs resize_short >= 224"):
        PreprocessSpec(224, 200, resize="center_crop", resize_short=223)
    with pytest.raises(TegraAIError, match="resize_short is for resize center_crop, not letterbox"):
        PreprocessSpec(8, 8, resize="letterbox", resize_short=9)
    with pytest.raises(TegraAIError, match="antialias=1 must be true or false"):
        PreprocessSpec(8, 8, antialias=1)
    with pytest.raises(TegraAIError, match="resize_short=256.0 must be an integer"):
        PreprocessSpec.from_json('{"height": 8, "width": 8, "resize": "center_crop", "resize_short": 256.0}')
    # a spec without the new fields serialises as before (bundle manifests, cache keys)
    assert "antialias" not in PreprocessSpec(8, 8).to_dict() and "resize_short" not in PreprocessSpec(8, 8).to_json()
    s = PreprocessSpec(224, 224, resize="center_crop", resize_short=256, antialias=True)
    assert PreprocessSpec.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["antialias"] is True


@pytest.mark.parametrize("short,h,w", [(256, 224, 224), (80, 64, 48), (201, 200, 150)])
def test_reference_equals_pil_within_one_level_on_photos(short, h, w):
    spec = PreprocessSpec(h, w, input_format="rgb8", resize="center_crop", resize_short=short, antialias=True)
    no_aa = PreprocessSpec(h, w, input_format="rgb8", resize="center_crop", resize_short=short)
    worst_no_aa = 0
    for img in photos():
        pil = pil_center_crop(img, short, h, w).astype(np.float64)
        assert np.abs(np.rint(resized_canvas(spec, img)) - pil).max() <= 1, img.shape
        worst_no_aa = max(worst_no_aa, np.abs(np.rint(resized_canvas(no_aa, img)) - pil).max())
    # OpenCV's INTER_LINEAR (2x2 taps) is not PIL's filter when shrinking: the setting matters
    assert worst_no_aa > 10


def test_reference_antialias_stretch_and_letterbox_follow_pil():
    img = photos()[1]
    pil = np.asarray(Image.fromarray(img).resize((91, 57), Image.BILINEAR)).astype(np.float64)
    got = resized_canvas(PreprocessSpec(57, 91, input_format="rgb8", antialias=True), img)
    assert np.abs(np.rint(got) - pil).max() <= 1


def test_calibration_opencv_path_center_crop():
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed")
    from tegra_ai.dataset.calibration import preprocess_opencv, spec_pixels

    for img in photos():
        bgr = np.ascontiguousarray(img[..., ::-1])
        spec = PreprocessSpec(224, 224, input_format="bgr8", resize="center_crop", resize_short=256, antialias=True,
                              layout="nhwc")
        px = spec_pixels(spec, bgr)
        assert px.dtype == np.uint8 and np.abs(px.astype(int) - pil_center_crop(img, 256, 224, 224)).max() <= 1
        plain = PreprocessSpec(200, 180, input_format="bgr8", resize="center_crop", resize_short=201,
                               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        ref = preprocess_reference(plain, bgr)
        tol = 1.01 / 255 / 0.224 + 1e-5  # one level of cv2.resize's uint8 rounding
        assert np.abs(preprocess_opencv(plain, bgr) - ref).max() <= tol
        nh, nw, top, left = center_crop_geometry(*img.shape[:2], 201, 200, 180)
        full = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)[top:top + 200, left:left + 180]
        assert np.array_equal(np.transpose(spec_pixels(plain, bgr), (1, 2, 0)), full[..., ::-1])


def test_kernel_descriptor_center_crop():
    from tegra_ai.kernels.api import box_mapping
    from tegra_ai.kernels.layout import SourceImage, image_desc

    spec = PreprocessSpec(224, 224, resize="center_crop", resize_short=256, antialias=True)
    d = image_desc(spec, SourceImage(0x1000, 480, 640))
    assert (d.roi_top, d.roi_left, d.roi_h, d.roi_w, d.antialias) == (-16, -58, 256, 341, 1)
    assert d.scale_y == pytest.approx(480 / 256) and d.scale_x == pytest.approx(640 / 341)
    assert image_desc(PreprocessSpec(8, 8), SourceImage(0x1000, 16, 16)).antialias == 0
    from tegra_ai.kernels.layout import kernel_name, preprocess_grid

    # the _aa kernels compute one output pixel per thread along x and two rows (32x16 tiles), the others four
    assert kernel_name(spec) == "tai_preprocess_bgr8_aa" and preprocess_grid(spec, 16)[0] == (7, 14, 16)
    assert kernel_name(PreprocessSpec(224, 224)) == "tai_preprocess_bgr8"
    assert preprocess_grid(PreprocessSpec(224, 224), 16)[0] == (2, 28, 16)
    m = box_mapping(spec, 480, 640)
    np.testing.assert_allclose(m.to_source(np.array([[0.0, 0.0, 224.0, 224.0]]))[0],
                               [58 * 640 / 341, 16 * 480 / 256, 282 * 640 / 341, 240 * 480 / 256])


def test_plugin_refuses_what_it_cannot_do():
    from tegra_ai.plugin.graphsurgeon import insert_preprocess_plugin, plugin_attributes

    for spec in (PreprocessSpec(8, 8, resize="center_crop", resize_short=8),
                 PreprocessSpec(8, 8, antialias=True)):
        with pytest.raises(TegraAIError, match="does not implement (resize center_crop|antialias)"):
            insert_preprocess_plugin("never-read.onnx", spec)
    assert plugin_attributes(PreprocessSpec(8, 8))["resize"] == 0


# --------------------------------------------------------------------------- compact storage

@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed")
    d = tmp_path_factory.mktemp("jpegs")
    for i, img in enumerate(photos()):
        assert cv2.imwrite(str(d / f"{i}.jpg"), np.ascontiguousarray(img[..., ::-1]))
    return d


@pytest.mark.parametrize("spec", [
    PreprocessSpec(64, 64, resize="letterbox", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    PreprocessSpec(56, 48, resize="center_crop", resize_short=60, antialias=True, layout="nhwc", dtype="float16"),
], ids=["letterbox-fp32", "center-crop-fp16"])
def test_uint8_storage_loads_bit_identical_to_preprocessing(jpegs, tmp_path, spec):
    import cv2

    from tegra_ai.dataset import calibration as ds

    out = str(tmp_path / "c.npz")
    m = ds.build_dataset([str(jpegs)], out, spec, show_progress=False)
    assert m["storage"] == "uint8" and m["version"] == 2 and m["dtype"] == spec.dtype
    with np.load(out, allow_pickle=False) as z:
        assert z["input"].dtype == np.uint8
    x = ds.load_samples(out)["input"]
    files = sorted(jpegs.glob("*.jpg"))
    want = np.stack([ds.preprocess_opencv(ds._file_spec(spec), cv2.imread(str(f))) for f in files])
    assert x.dtype == np.dtype(spec.dtype) and np.array_equal(x, want)
    # the manifest's statistics are those of the model inputs
    axes = (0, 2, 3) if spec.layout == "nchw" else (0, 1, 2)
    assert m["stats"]["mean"] == pytest.approx(want.astype(np.float64).mean(axis=axes).tolist(), abs=2e-3)
    assert m["stats"]["min"] == pytest.approx(want.astype(np.float64).min(axis=axes).tolist(), abs=2e-3)
    # every reader goes through the loader: calibrator, quantize, compare
    from tegra_ai.trt.calibrator import load_calibration_arrays

    assert np.array_equal(load_calibration_arrays(out)["input"], x)


def test_uint8_storage_is_a_quarter_of_float32(jpegs, tmp_path):
    import os

    from tegra_ai.dataset import calibration as ds

    spec = PreprocessSpec(96, 96, resize="letterbox")
    ds.build_dataset([str(jpegs)], str(tmp_path / "c.npz"), spec, show_progress=False)
    assert os.path.getsize(tmp_path / "c.npz") < 4 * 3 * 96 * 96 + 64 * 1024  # 4 samples of 27 KiB + manifest


def test_float_storage_where_pixels_are_not_uint8_and_old_files_still_load(jpegs, tmp_path):
    from tegra_ai.dataset import calibration as ds
    from tegra_ai.trt.calibrator import load_calibration_arrays

    gray = PreprocessSpec(32, 32, channel_order="gray", mean=(0.0,), std=(1.0,))   # 0.299 R + ... is fractional
    m = ds.build_dataset([str(jpegs)], str(tmp_path / "g.npz"), gray, show_progress=False)
    assert "storage" not in m and m["version"] == 1
    with np.load(tmp_path / "g.npz", allow_pickle=False) as z:
        assert z["input"].dtype == np.float32
    # a version-1 file (float32 samples, no storage field) reads as it always did
    x = np.random.default_rng(0).random((3, 3, 8, 8)).astype(np.float32)
    old = {"format": ds.FORMAT, "version": 1, "input": "input", "count": 3, "shape": [3, 3, 8, 8],
           "dtype": "float32", "spec": PreprocessSpec(8, 8).to_dict()}
    ds.write_npz(str(tmp_path / "old.npz"), {"input": x, "_manifest": np.frombuffer(
        json.dumps(old).encode(), np.uint8)})
    assert np.array_equal(load_calibration_arrays(str(tmp_path / "old.npz"))["input"], x)
    # a compact dataset given back as a source is read as its model inputs, not as images
    spec = PreprocessSpec(16, 16)
    ds.build_dataset([str(jpegs)], str(tmp_path / "a.npz"), spec, show_progress=False)
    m = ds.build_dataset([str(tmp_path / "a.npz")], str(tmp_path / "b.npz"), spec, show_progress=False)
    assert "storage" not in m
    assert np.array_equal(ds.load_samples(str(tmp_path / "b.npz"))["input"],
                          ds.load_samples(str(tmp_path / "a.npz"))["input"])


def test_ensemble_models_take_center_crop_specs():
    import os

    from tegra_ai.models import HERE as MODELS
    from tegra_ai.runtime.ensemble import parse

    data = json.load(open(os.path.join(MODELS, "digits-ensemble.json")))
    data["models"]["digits"]["preprocess"] = {"height": 8, "width": 8, "input_format": "gray8",
                                              "channel_order": "gray", "mean": [0.0], "std": [1.0],
                                              "resize": "center_crop", "resize_short": 10, "antialias": True}
    spec = parse(data, os.path.join(MODELS, "digits-ensemble.json")).models["digits"].preprocess
    assert (spec.resize, spec.resize_short, spec.antialias) == ("center_crop", 10, True)
