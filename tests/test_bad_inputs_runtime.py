"""Bad-input catalogue of model-ensemble: every case exits with its documented code,
one error line on stderr, no traceback, clean JSON stdout, and no file changed."""

import json
import os
import shutil

import numpy as np
import pytest

from badinput import assert_bad_input
from tegra_ai.cli.ensemble import main
from tegra_ai.models import HERE as MODELS


@pytest.fixture
def ws(tmp_path):
    """A scratch directory with the example description and its models."""
    for name in ("digits-ensemble.json", "digits.onnx", "digits.preprocess.json", "digits_locator.onnx",
                 "digits_locator.preprocess.json", "digits_grid_samples.npz"):
        shutil.copy(os.path.join(MODELS, name), tmp_path / name)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("hello")
    np.savez(tmp_path / "floats.npz", x=np.zeros((2, 8, 8), np.float32), y=np.zeros(3))
    # what calibration-dataset writes: uint8 pixels (CHW, already resized) beside its manifest
    np.savez(tmp_path / "calib.npz", input=np.zeros((2, 1, 8, 8), np.uint8),
             _manifest=np.frombuffer(b'{"format": "tegra-ai-calibration-dataset"}', np.uint8))
    return tmp_path


def desc(ws, mutate, name="e.json"):
    d = json.loads((ws / "digits-ensemble.json").read_text())
    mutate(d)
    (ws / name).write_text(json.dumps(d))
    return name


E = "digits-ensemble.json"
G = "digits_grid_samples.npz"

CASES = [
    # (argv builder, exit code, text in the error line)
    (lambda ws: ["missing.json", "--synthetic", "1"], 2, "missing.json: no such file"),
    (lambda ws: ["empty", "--synthetic", "1"], 2, "is a directory"),
    (lambda ws: ["bad.json", "--synthetic", "1"], 2, "not valid JSON"),
    (lambda ws: ["notes.txt", "--check"], 2, "not valid JSON"),
    (lambda ws: [E, "--ensemble", "ghost", "--synthetic", "1"], 2, "no ensemble 'ghost'"),
    (lambda ws: [desc(ws, lambda d: d["models"]["digits"].update(onnx="nope.onnx")), "--check"], 2,
     "nope.onnx does not exist"),
    (lambda ws: [desc(ws, lambda d: d["models"]["digits"].update(workers=0)), "--check"], 2,
     "workers must be a positive integer"),
    (lambda ws: [desc(ws, lambda d: d["ensembles"]["pair"].update(combine="max")), "--check"], 2, "combine 'max'"),
    (lambda ws: [desc(ws, lambda d: d["ensembles"]["cascade"]["detection"].update(iou_threshold="high")),
                 "--check"], 2, "iou_threshold must be a number"),
    (lambda ws: [desc(ws, lambda d: (d["models"]["digits"].pop("onnx"), d["models"]["digits"].update(cached="digits"))),
                 "--check", "--cache", "empty"], 2, "no engine 'digits'"),
    # the old spelling of --cache (hidden alias for a release)
    (lambda ws: [desc(ws, lambda d: (d["models"]["digits"].pop("onnx"), d["models"]["digits"].update(cached="digits"))),
                 "--check", "--engine-cache", "empty"], 2, "no engine 'digits'"),
    (lambda ws: [E], 2, "no input set"),
    (lambda ws: [E, "--npz", "nope.npz"], 2, "nope.npz: no such file"),
    (lambda ws: [E, "--npz", "notes.txt"], 2, "not a readable .npz"),
    (lambda ws: [E, "--npz", G, "--npz-key", "pictures"], 2, "no array 'pictures'"),
    (lambda ws: [E, "--npz", "floats.npz"], 2, "no uint8 image array"),
    (lambda ws: [E, "--npz", "calib.npz"], 2, "a calibration-dataset file"),
    (lambda ws: [E, "--npz", G, "--labels", "nope"], 2, "--labels nope: not an array"),
    (lambda ws: [E, "--synthetic", "1", "--labels", "labels"], 2, "--labels needs --npz"),
    (lambda ws: [E, "--images", "empty"], 2, "holds no images"),
    (lambda ws: [E, "--images", "nowhere"], 2, "does not exist"),
    (lambda ws: [E, "--synthetic", "0"], 2, "expected N or NxHxW with positive numbers"),
    (lambda ws: [E, "--synthetic", "1", "--max-samples", "0"], 2, "expected a positive integer"),
    (lambda ws: [E, "--synthetic", "1", "--limit", "0"], 2, "expected a positive integer"),   # old spelling
    (lambda ws: [E, "--synthetic", "1", "--device", "tpu"], 2, "invalid choice"),
    (lambda ws: [E, "--synthetic", "1", "--images", "empty"], 2, "not allowed with argument"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("json_flag", [False, True])
def test_bad_input(ws, case, json_flag):
    argv, code, text = CASES[case]
    args = argv(ws) + (["--json"] if json_flag else []) + ["--no-progress"]
    assert_bad_input(main, args, str(ws), code, text)


def test_yaml_errors(ws):
    pytest.importorskip("yaml")
    (ws / "e.yaml").write_text("models: [unclosed")
    assert_bad_input(main, ["e.yaml", "--check"], str(ws), 2, "not valid YAML")


def test_video_missing_file(ws):
    pytest.importorskip("cv2")
    assert_bad_input(main, [E, "--video", "nope.mp4", "--no-progress"], str(ws), 2, "video nope.mp4 does not exist")


def test_engine_without_tensorrt_is_unavailable(ws):
    """An engine model on a machine without TensorRT: 69 (EX_UNAVAILABLE), not a traceback."""
    from tegra_ai.util.lazy import is_available

    if is_available("tensorrt"):
        pytest.skip("TensorRT is installed here")
    (ws / "x.engine").write_bytes(b"not an engine")
    name = desc(ws, lambda d: (d["models"]["digits"].pop("onnx"), d["models"]["digits"].update(engine="x.engine")))
    assert_bad_input(main, [name, "--ensemble", "pair", "--synthetic", "1", "--no-progress"], str(ws), 69,
                     "model digits:")
