"""NumPy reference of the preprocessing spec, and the NumPy model of the NMS kernel
(CPU). Hand-computed expectations; OpenCV as a second opinion where installed."""

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels.nms_reference import iou_above, nms_reference, sort_order_desc
from tegra_ai.preprocess.reference import nv12_to_rgb, preprocess_reference, resize_bilinear, source_coords
from tegra_ai.preprocess.spec import PreprocessSpec


def test_half_pixel_centres_upsample_like_opencv():
    # OpenCV INTER_LINEAR, 2 -> 4 pixels: [0, 100] -> [0, 25, 75, 100]
    row = np.array([[[0.0], [100.0]]])
    assert resize_bilinear(row, 1, 4)[0, :, 0].tolist() == [0, 25, 75, 100]


def test_half_pixel_centres_downsample_averages_pairs():
    row = np.array([[[10.0], [20.0], [30.0], [50.0]]])
    assert resize_bilinear(row, 1, 2)[0, :, 0].tolist() == [15, 40]


def test_taps_clamp_at_the_borders():
    i0, i1, f = source_coords(8, 3)
    assert i0[0] == 0 and f[0] == 0.0            # left of pixel 0's centre: pixel 0 only
    assert i0[-1] == 2 and f[-1] == 0.0          # right of the last centre: last pixel only
    assert (i1 <= 2).all() and ((f >= 0) & (f < 1)).all()


def test_same_size_is_identity_and_normalisation_is_applied():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    spec = PreprocessSpec(height=7, width=9, input_format="bgr8", channel_order="rgb", layout="nhwc",
                          mean=(0.5, 0.0, 0.25), std=(0.5, 1.0, 2.0))
    out = preprocess_reference(spec, img)
    want = (img[..., ::-1] / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(out, want, atol=1e-12)


def test_letterbox_pads_and_places_the_image():
    img = np.full((10, 20, 3), 200, np.uint8)
    spec = PreprocessSpec(height=20, width=20, input_format="rgb8", resize="letterbox", pad_value=0, scale=1.0)
    out = preprocess_reference(spec, img)
    assert out.shape == (3, 20, 20)
    assert (out[:, :5] == 0).all() and (out[:, 15:] == 0).all() and (out[:, 5:15] == 200).all()


def test_gray_output_and_gray_input():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 100  # R of rgb8
    out = preprocess_reference(PreprocessSpec(height=2, width=2, input_format="rgb8", channel_order="gray",
                                              mean=(0,), std=(1,), scale=1.0), img)
    assert out.shape == (1, 2, 2) and np.allclose(out, 29.9)
    g = np.full((3, 3), 7, np.uint8)
    out = preprocess_reference(PreprocessSpec(height=3, width=3, input_format="gray8", scale=1.0), g)
    assert out.shape == (3, 3, 3) and (out == 7).all()


def test_nv12_known_values():
    # Y=16, U=V=128 is black; Y=235 white; V high is red-ish
    nv12 = np.array([[16, 235], [16, 235], [128, 128]], np.uint8).reshape(3, 2)
    rgb = nv12_to_rgb(nv12)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    red = nv12_to_rgb(np.array([[81, 81], [81, 81], [90, 240]], np.uint8))
    assert red[0, 0, 0] > 240 and red[0, 0, 1] < 20 and red[0, 0, 2] < 20


def test_nv12_matches_opencv_when_installed():
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (the GPU tests check this too)")
    nv12 = np.random.default_rng(2).integers(0, 256, (48, 64), dtype=np.uint8)
    assert np.array_equal(nv12_to_rgb(nv12), cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12))


def test_bad_inputs_are_tegra_ai_errors():
    with pytest.raises(TegraAIError, match="HxWx3"):
        preprocess_reference(PreprocessSpec(height=2, width=2), np.zeros((2, 2), np.uint8))
    with pytest.raises(TegraAIError, match="uint8"):
        preprocess_reference(PreprocessSpec(height=2, width=2), np.zeros((2, 2, 3), np.float32))
    with pytest.raises(TegraAIError, match="nv12"):
        nv12_to_rgb(np.zeros((5, 4), np.uint8))


def test_sort_is_stable_descending_with_signed_zero_ties():
    s = np.array([0.5, 1.0, 0.5, -0.0, 0.0, 1.0], np.float32)
    assert sort_order_desc(s).tolist() == [1, 5, 0, 2, 3, 4]


def test_iou_rules_of_torchvision():
    a = [0, 0, 10, 10]
    assert iou_above(a, [0, 0, 10, 10], 0.99)            # identical
    assert not iou_above(a, [5, 0, 15, 10], 1 / 3)       # IoU exactly 1/3 is not above 1/3
    assert iou_above(a, [5, 0, 15, 10], 0.33)
    assert not iou_above([0, 0, 0, 0], [0, 0, 0, 0], 0.0)  # 0/0: NaN never suppresses
    assert iou_above([0, 0, 1, 1], [5, 5, 6, 6], -0.1)    # negative threshold: disjoint suppresses


def test_greedy_nms_classes_threshold_topk():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [21, 21, 31, 31]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert nms_reference(boxes, scores, 0.5).tolist() == [3, 0]
    assert nms_reference(boxes, scores, 0.5, classes=np.array([0, 1, 0, 0])).tolist() == [3, 0, 1]
    assert nms_reference(boxes, scores, 0.5, score_threshold=0.92).tolist() == [3]
    assert nms_reference(boxes, scores, 0.5, top_k=1).tolist() == [3]
    assert nms_reference(boxes, np.full(4, 0.5, np.float32), 0.5).tolist() == [0, 2]  # ties: lower index first
