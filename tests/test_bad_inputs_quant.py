"""Bad-input catalogue: calibration-dataset, tensorrt-optimize quantize / convert-fp16 /
compare. Each case: documented exit code, one error line, no traceback, clean JSON
stdout, no file created or changed."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")

from badinput import assert_bad_input  # noqa: E402
from tegra_ai import models  # noqa: E402
from tegra_ai.cli.calibration import main as dataset_main  # noqa: E402
from tegra_ai.cli.optimize import main as optimize_main  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    shutil.copy(models.DEFAULT_MODEL, d / "model.onnx")
    shutil.copy(models.DEFAULT_PREPROCESS, d / "spec.json")
    x, y = models.load_samples("val")
    np.savez(d / "data.npz", input=(x.astype(np.float32) / 255)[:, None])
    np.savez(d / "wrongname.npz", images=np.zeros((4, 1, 8, 8), np.float32))
    np.savez(d / "wrongshape.npz", input=np.zeros((4, 3, 8, 8), np.float32))
    np.save(d / "labels.npy", y)
    np.save(d / "shortlabels.npy", y[:5])
    np.save(d / "floatlabels.npy", y.astype(np.float32))
    np.save(d / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(d / "evil.npz", input=np.array([{"a": 1}], dtype=object))
    (d / "garbage.onnx").write_bytes(b"this is not protobuf")
    (d / "garbage.npz").write_bytes(b"PK not a zip")
    (d / "bad_spec.json").write_text('{"height": 8, "width": 8, "resize": "crop"}')
    (d / "bad_antialias.json").write_text('{"height": 8, "width": 8, "antialias": "yes"}')
    (d / "not_json.json").write_text("{height")
    (d / "binary_spec.json").write_bytes(b"\xff\xfe\x00binary")
    (d / "notes.txt").write_text("x")
    (d / "existing.onnx").write_bytes(b"precious")
    (d / "existing.npz").write_bytes(b"precious")
    os.makedirs(d / "emptydir")
    return d


M = "model.onnx"

DATASET_CASES = [
    (["missing_dir", "-o", "o.npz", "--height", "8", "--width", "8"], 2, "source missing_dir does not exist"),
    (["emptydir", "-o", "o.npz", "--height", "8", "--width", "8"], 2, "has no images"),
    (["notes.txt", "-o", "o.npz", "--height", "8", "--width", "8"], 2, "is not an image, a video"),
    (["data.npz", "-o", "o.npz"], 2, "no preprocessing given"),
    (["data.npz", "-o", "o.npz", "--height", "8"], 2, "needs --height and --width"),
    (["data.npz", "-o", "o.npz", "--spec", "bad_spec.json"], 2, "resize='crop' is not one of"),
    (["data.npz", "-o", "o.npz", "--spec", "not_json.json"], 2, "not valid JSON"),
    (["data.npz", "-o", "o.npz", "--spec", "bad_antialias.json"], 2, "antialias='yes' must be true or false"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "8", "--resize", "center_crop"], 2,
     "needs resize_short >= 8"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "6", "--resize", "center_crop", "--resize-short", "7"],
     2, "needs resize_short >= 8 (the crop is 8x6), got 7"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "8", "--resize-short", "9"], 2,
     "resize_short is for resize center_crop, not stretch"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "8", "--resize-short", "x"], 2,
     "--resize-short: invalid int value"),
    (["data.npz", "-o", "o.npz", "--spec", "nospec.json"], 2, "cannot read nospec.json"),
    (["data.npz", "-o", "o.npz", "--spec", "binary_spec.json"], 2, "binary_spec.json: not a text (JSON) file"),
    (["data.npz", "-o", "o.npz", "--spec", "spec.json", "--max-samples", "0"], 2, "--max-samples must be positive"),
    # the old spelling (hidden alias for a release)
    (["data.npz", "-o", "o.npz", "--spec", "spec.json", "--count", "0"], 2, "--max-samples must be positive"),
    (["data.npz", "-o", "o.txt", "--spec", "spec.json"], 2, "must end in .npz"),
    (["data.npz", "-o", "existing.npz", "--spec", "spec.json"], 2, "existing.npz exists"),
    (["evil.npy", "-o", "o.npz", "--spec", "spec.json"], 2, "pickled data is never loaded"),
    (["evil.npz", "-o", "o.npz", "--spec", "spec.json"], 2, "pickled data is never loaded"),
    (["garbage.npz", "-o", "o.npz", "--spec", "spec.json"], 2, "is not a valid .npz"),
    (["data.npz", "-o", "o.npz", "--model", "garbage.onnx", "--spec", "spec.json"], 2, "cannot read garbage.onnx"),
    (["data.npz", "-o", "o.npz", "--model", "nomodel.onnx"], 2, "model nomodel.onnx does not exist"),
    (["data.npz", "-o", "o.npz", "--model", M, "--input", "images", "--spec", "spec.json"], 2, "has no input 'images'"),
    (["data.npz", "-o", "o.npz", "--model", M, "--spec", "spec.json", "--height", "16"], 2,
     "the model input is ['?', 1, 8, 8]"),
    (["data.npz", "-o", "o.npz", "--model", M, "--spec", "spec.json", "--dtype", "float16"], 2,
     "makes float16, the model input is float32"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "8", "--mean", "a,b"], 2, "expected comma-separated"),
    (["data.npz", "-o", "o.npz", "--height", "8", "--width", "8", "--std", "0,0,0"], 2, "std values must be non-zero"),
    (["data.npz", "-o", "o.npz", "--spec", "spec.json", "--array", "nothere"], 2, "has no array nothere"),
    (["wrongshape.npz", "-o", "o.npz", "--spec", "spec.json"], 2, "holds no images for input format gray8"),
    (["data.npz", "-o", "nodir/o.npz", "--spec", "spec.json"], 2, "output directory"),
    (["x.mp4", "-o", "o.npz", "--spec", "spec.json"], 2, "source x.mp4 does not exist"),
    (["data.npz", "-o", "o.npz", "--spec", "spec.json", "--every-nth-frame", "0", "--json"], 2,
     "--every-nth-frame must be positive"),
]


@pytest.mark.parametrize("argv,code,line", DATASET_CASES, ids=[c[2][:40] for c in DATASET_CASES])
def test_calibration_dataset_bad_input(work, argv, code, line):
    assert_bad_input(dataset_main, argv, str(work), code, line)


QUANTIZE_CASES = [
    (["quantize", "nomodel.onnx", "--calibration", "data.npz", "-o", "q.onnx"], 2, "model nomodel.onnx does not exist"),
    (["quantize", M, "--calibration", "nodata.npz", "-o", "q.onnx"], 2, "calibration data nodata.npz does not exist"),
    (["quantize", "garbage.onnx", "--calibration", "data.npz", "-o", "q.onnx"], 2, "cannot read garbage.onnx"),
    (["quantize", M, "--calibration", "wrongname.npz", "-o", "q.onnx"], 2, "no array for input 'input'"),
    (["quantize", M, "--calibration", "wrongshape.npz", "-o", "q.onnx", "--json"], 2, "has shape [4, 3, 8, 8]"),
    (["quantize", M, "--calibration", "evil.npz", "-o", "q.onnx"], 2, "never pickles"),
    (["quantize", M, "--calibration", "garbage.npz", "-o", "q.onnx"], 2, "is not a valid"),
    (["quantize", M, "--calibration", "labels.npy", "-o", "q.onnx"], 2, "one .npy file"),
    (["quantize", M, "--calibration", "data.npz", "-o", "existing.onnx"], 2, "existing.onnx exists"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--target", "jetpack4"], 2, "unknown target"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--method", "kl"], 2, "invalid choice"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--exclude", "Softmax"], 2,
     "neither a node name nor an operator type"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--exclude", "conv", "fc"], 2,
     "no Conv/ConvTranspose/Gemm/MatMul node left to quantize"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--min-cosine", "0.99"], 2, "need --gate"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--gate", "data.npz"], 2, "--gate needs a threshold"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--gate", "data.npz", "--min-cosine", "2"], 2,
     "--min-cosine 2.0 is out of range"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--gate", "nogate.npz", "--min-cosine", "0.9"], 2,
     "gate data nogate.npz does not exist"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--gate", "data.npz", "--min-cosine", "0.9",
      "--labels", "floatlabels.npy", "--json"], 2, "labels must be a 1-D integer array"),
    (["quantize", M, "--calibration", "data.npz", "-o", "q.onnx", "--backend", "tflite"], 2, "invalid choice"),
    (["quantize", M, "--calibration", "data.npz", "-o", "nodir/q.onnx"], 2, "output directory"),
]


@pytest.mark.parametrize("argv,code,line", QUANTIZE_CASES, ids=[c[2][:40] for c in QUANTIZE_CASES])
def test_quantize_bad_input(work, argv, code, line):
    assert_bad_input(optimize_main, argv, str(work), code, line)


def test_quantize_already_quantized(work, tmp_path):
    from tegra_ai.quant.qdq import quantize

    quantize(str(work / M), str(work / "data.npz"), str(tmp_path / "q.onnx"))
    assert_bad_input(optimize_main, ["quantize", str(tmp_path / "q.onnx"), "--calibration", "data.npz", "-o", "z.onnx"],
                     str(work), 2, "is already quantized", watch=str(work))
    assert_bad_input(optimize_main, ["convert-fp16", str(tmp_path / "q.onnx"), "-o", "z.onnx"],
                     str(work), 2, "has Q/DQ nodes", watch=str(work))


FP16_CASES = [
    (["convert-fp16", "nomodel.onnx", "-o", "f.onnx"], 2, "model nomodel.onnx does not exist"),
    (["convert-fp16", "garbage.onnx", "-o", "f.onnx"], 2, "cannot read garbage.onnx"),
    (["convert-fp16", M, "-o", "existing.onnx"], 2, "existing.onnx exists"),
    (["convert-fp16", M, "-o", "f.onnx", "--keep-fp32", "nothing"], 2, "neither a node name nor an operator type"),
    (["convert-fp16", M, "-o", "f.onnx", "--min-cosine", "0.9"], 2, "need --data"),
    (["convert-fp16", M, "-o", "f.onnx", "--data", "nodata.npz"], 2, "data nodata.npz does not exist"),
    (["convert-fp16", M, "-o", "f.onnx", "--data", "wrongshape.npz", "--json"], 2, "has shape [4, 3, 8, 8]"),
    (["convert-fp16", M, "-o", "f.onnx", "--data", "data.npz", "--min-cosine", "-1"], 2, "out of range"),
    (["convert-fp16", M, "-o", "emptydir"], 2, "emptydir exists"),
    (["convert-fp16", M, "-o", "nodir/f.onnx"], 2, "output directory"),
]


@pytest.mark.parametrize("argv,code,line", FP16_CASES, ids=[c[2][:40] for c in FP16_CASES])
def test_convert_fp16_bad_input(work, argv, code, line):
    assert_bad_input(optimize_main, argv, str(work), code, line)


COMPARE_CASES = [
    (["compare", "nomodel.onnx", M, "--data", "data.npz"], 2, "reference nomodel.onnx does not exist"),
    (["compare", M, "nomodel.onnx", "--data", "data.npz"], 2, "candidate nomodel.onnx does not exist"),
    (["compare", M, M, "--data", "nodata.npz"], 2, "data nodata.npz does not exist"),
    (["compare", M, M, "--data", "wrongname.npz", "--json"], 2, "no array for input 'input'"),
    (["compare", M, M, "--data", "wrongshape.npz"], 2, "has shape [4, 3, 8, 8]"),
    (["compare", M, M, "--data", "evil.npz"], 2, "never pickles"),
    (["compare", M, M, "--data", "data.npz", "--labels", "evil.npy"], 2, "without pickles"),
    (["compare", M, M, "--data", "data.npz", "--labels", "shortlabels.npy"], 2, "5 labels for 359 samples"),
    (["compare", M, M, "--data", "data.npz", "--labels", "floatlabels.npy"], 2, "1-D integer array"),
    (["compare", M, M, "--data", "data.npz", "--labels", "nolabels.npy"], 2, "labels nolabels.npy do not exist"),
    (["compare", M, M, "--data", "data.npz", "--min-cosine", "1.5"], 2, "out of range"),
    (["compare", M, M, "--data", "data.npz", "--max-top1-drop", "-2"], 2, "out of range"),
    (["compare", M, M, "--data", "data.npz", "--max-samples", "0"], 2, "--max-samples must be positive"),
    (["compare", M, M, "--data", "data.npz", "--detections", "ssd"], 2, "invalid choice"),
    (["compare", M, M, "--data", "data.npz", "--detections", "yolo"], 2, "N x (4+classes) x anchors"),
    (["compare", M, "garbage.onnx", "--data", "data.npz"], 2, "cannot load garbage.onnx"),
]


@pytest.mark.parametrize("argv,code,line", COMPARE_CASES, ids=[c[2][:40] for c in COMPARE_CASES])
def test_compare_bad_input(work, argv, code, line):
    assert_bad_input(optimize_main, argv, str(work), code, line)
