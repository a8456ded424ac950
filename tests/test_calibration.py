"""Implicit-INT8 calibration data handling (pure NumPy). That TensorRT accepts the
calibrator is only provable with full TensorRT <= 10.x on a GPU: see the skipped test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.trt.calibrator import CalibrationBatches
from tegra_ai.trt.shapes import ModelInput

INPUTS = [ModelInput("input", (None, 1, 8, 8))]


def test_batches_from_npz(tmp_path):
    p = tmp_path / "calib.npz"
    np.savez(p, input=np.random.rand(20, 1, 8, 8).astype(np.float32))
    b = CalibrationBatches(str(p), INPUTS, batch_size=8)
    assert (b.samples, b.batch_size, b.num_batches) == (20, 8, 2)
    first = b.batch(0)["input"]
    assert first.shape == (8, 1, 8, 8) and first.dtype == np.float32 and first.flags["C_CONTIGUOUS"]
    assert b.batch(2) is None


def test_batches_from_npy_dir(tmp_path):
    np.save(tmp_path / "input.npy", np.zeros((4, 1, 8, 8), np.float16))
    b = CalibrationBatches(str(tmp_path), INPUTS, batch_size=16)
    assert b.batch_size == 4 and b.batch(0)["input"].dtype == np.float32


@pytest.mark.parametrize("arrays,match", [
    ({}, "holds no arrays"),
    ({"other": np.zeros((4, 1, 8, 8))}, "no array for input 'input'"),
    ({"input": np.zeros((4, 8, 8))}, "rank 3"),
    ({"input": np.zeros((4, 3, 8, 8))}, "dimension 1 of the input is 1"),
    ({"input": np.zeros((0, 1, 8, 8))}, "no samples"),
])
def test_bad_calibration_data(tmp_path, arrays, match):
    p = tmp_path / "c.npz"
    np.savez(p, **arrays)
    with pytest.raises(TegraAIError, match=match):
        CalibrationBatches(str(p), INPUTS)


def test_missing_calibration_data(tmp_path):
    with pytest.raises(TegraAIError, match="does not exist"):
        CalibrationBatches(str(tmp_path / "none.npz"), INPUTS)


def test_bundle_carries_calibration(tmp_path, default_model):
    from tegra_ai.cli.optimize import main

    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.rand(16, 1, 8, 8).astype(np.float32))
    tc = tmp_path / "t.cache"
    tc.write_bytes(b"timings")
    assert main(["bundle", default_model, "--out", str(tmp_path / "b"), "--precision", "int8",
                 "--calibration", str(calib), "--shapes", "input:1x1x8x8:8x1x8x8:64x1x8x8",
                 "--timing-cache", str(tc)]) == 0
    m = json.load(open(tmp_path / "b" / "manifest.json"))["models"][0]["request"]
    assert m["calibration_data"] == "digits/calibration.npz" and m["options"]["calibration_sha256"]
    assert (tmp_path / "b" / m["timing_cache"]).read_bytes() == b"timings"
    from tegra_ai.cache.manifest import load_manifest

    entry = load_manifest(str(tmp_path / "b" / "manifest.json"))[0]
    assert np.load(entry.calibration_data)["input"].shape == (16, 1, 8, 8)


@pytest.mark.tensorrt
def test_implicit_int8_build_with_full_tensorrt(tmp_path, default_model):
    from tegra_ai.trt import compat
    from tegra_ai.spec import BuildOptions
    from tegra_ai.trt.builder import build_engine
    from tegra_ai.spec import parse_profile

    _trt, feats = compat.load()
    if not feats.int8_calibrators:
        pytest.skip(f"{feats.describe()} has no INT8 calibrators")
    calib = tmp_path / "calib.npz"
    from tegra_ai import models

    x, _ = models.load_samples("calib")
    np.savez(calib, input=(x.astype(np.float32) / 255.0)[:, None])
    cache = tmp_path / "calib.cache"
    r = build_engine(default_model, BuildOptions(precision="int8", profiles=[parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]),
                     calibration_data=str(calib), calibration_cache=str(cache), show_progress=False)
    assert "INT8" in r.sidecar.builder_flags and cache.stat().st_size > 0


@pytest.mark.parametrize("content,match", [
    ("empty", "is empty"),
    ("objects", "pickled"),
    ("text", "not a .npy file"),
])
def test_npy_dir_never_unpickles(tmp_path, content, match):
    d = tmp_path / "calib"
    d.mkdir()
    path = d / "input.npy"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "objects":
        np.save(path, np.array([{"run": "code"}], dtype=object), allow_pickle=True)
    else:
        path.write_text("1,2,3\n")
    with pytest.raises(TegraAIError, match=match) as exc:
        CalibrationBatches(str(d), [ModelInput("input", (-1, 3))])
    assert exc.value.exit_code == 2


def test_npz_with_object_member_never_unpickles(tmp_path):
    import pickle

    path = tmp_path / "c.npz"
    np.savez(path, input=np.array([{"run": "code"}], dtype=object))
    with pytest.raises(TegraAIError, match="pickled"):
        CalibrationBatches(str(path), [ModelInput("input", (-1, 3))])
    path.write_bytes(pickle.dumps({"input": 1}))
    with pytest.raises(TegraAIError, match="pickled"):
        CalibrationBatches(str(path), [ModelInput("input", (-1, 3))])
