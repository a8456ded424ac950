"""Implicit INT8 calibration (TensorRT 8.5-10.x) of networks with shape-tensor inputs,
against the stand-in's 8.5, 10.3 and 10.13 binding surfaces (fake_trt.py rule R8).

The calibration profile is an optimization profile (NvInfer.h setCalibrationProfile: "must
satisfy profile->isValid() == true", "MIN and MAX values will be overwritten by kOPT"): a
shape-tensor input takes *values* there too (IOptimizationProfile::setShapeValues "must be
called three times for every input tensor t that is a shape tensor"). The calibrator serves
every input as a device pointer (IInt8Calibrator::getBatch: "pointers to device memory ...
containing each network input data"), the shape tensor holding the calibration profile's
values: the data's, when the data holds them, else the --shapes opt values."""

from __future__ import annotations

import numpy as np
import pytest

import fake_trt
from onnx_models import make_topk_model
from test_trt_api_surface import target
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import BuildOptions, InputShapes, parse_profile
from tegra_ai.trt import calibrator as calib_mod
from tegra_ai.trt import compat
from tegra_ai.trt.builder import build_engine
from tegra_ai.trt.calibrator import CalibrationBatches
from tegra_ai.trt.shapes import ModelInput

# The releases with implicit INT8 calibrators, as the stand-in's binding surfaces: 8.5
# (JetPack 5), 10.3 (JetPack 6), 10.13 (JetPack 7's bindings over libnvinfer 10.16).
CALIBRATING = ["jetpack5", "jetpack6", "jetpack7"]
SHAPES = "x:1x8:8x8:16x8,k=1:5:10"


class DeviceUploader:
    """The calibrator's uploader on the host: each upload gets an address whose bytes the
    stand-in can read (fake_trt.DEVICE_MEMORY), as TensorRT reads device memory."""

    def __init__(self):
        self.next = 0x7000_0000
        self.arrays = []

    def __call__(self, name, arr):
        self.next += 0x10000
        fake_trt.DEVICE_MEMORY[self.next] = np.array(arr)
        self.arrays.append((name, np.array(arr)))
        return self.next


@pytest.fixture
def uploader(monkeypatch):
    up = DeviceUploader()
    monkeypatch.setattr(calib_mod, "device_uploader", lambda: up)
    yield up
    fake_trt.DEVICE_MEMORY.clear()


def _net(feats):
    """x [-1, 8] float and the shape tensor k [1] (int32 on 8.x, as setShapeValues requires there)."""
    dtype = "INT32" if feats.version[0] < 10 else "INT64"
    return dict(inputs=(("x", (-1, 8)), ("k", (1,), dtype, "shape")), outputs=(("values", (-1, -1)),))


def _data(tmp_path, n=20, **extra):
    p = tmp_path / "calib.npz"
    np.savez(p, x=np.random.default_rng(0).random((n, 8), np.float32), **extra)
    return str(p)


def _build(model, data, shapes=SHAPES, batch=4):
    return build_engine(model, BuildOptions(precision="int8", profiles=[parse_profile(shapes)]),
                        calibration_data=data, calibration_batch=batch, show_progress=False)


@pytest.fixture
def topk(tmp_path):
    return make_topk_model(str(tmp_path / "topk.onnx"))


@pytest.mark.parametrize("name", CALIBRATING)
def test_shape_tensor_calibrated_at_the_profile_opt_values(monkeypatch, tmp_path, topk, uploader, name):
    """Data without k: the calibration profile gives k its --shapes opt value (5) through
    set_shape_input, x the batch shape; TensorRT reads k = [5] and x [4, 8] every batch."""
    trt, feats = target(monkeypatch, name, **_net(_feats(name)))
    data = _data(tmp_path)
    r = _build(topk, data)
    f = trt._fake
    profile = f.config._calibration_profile
    assert profile.get_shape_input("k") == [[5], [5], [5]] and "k" not in profile._shapes
    assert profile._shapes["x"] == ((4, 8),) * 3
    assert f.calibration_shapes == {"x": (4, 8), "k": (5,)}
    assert len(f.calibration_reads) == 5
    src = np.load(data)["x"]
    for i, read in enumerate(f.calibration_reads):
        assert read["k"].tolist() == [5] and read["k"].dtype == np.dtype("int32" if feats.version[0] < 10 else "int64")
        np.testing.assert_array_equal(read["x"], src[4 * i:4 * i + 4])
    assert "shape-tensor input k calibrated at values [5] (the --shapes opt values)" in r.notes
    assert r.sidecar.profiles[0][1] == {"name": "k", "min": [1], "opt": [5], "max": [10], "values": True}


@pytest.mark.parametrize("name", CALIBRATING)
def test_shape_tensor_values_from_the_data(monkeypatch, tmp_path, topk, uploader, name):
    """Data holding k (one row per sample, all 7): calibration runs at k = 7, not the opt 5."""
    trt, _ = target(monkeypatch, name, **_net(_feats(name)))
    r = _build(topk, _data(tmp_path, k=np.full((20, 1), 7, np.int64)))
    assert trt._fake.config._calibration_profile.get_shape_input("k") == [[7], [7], [7]]
    assert [read["k"].tolist() for read in trt._fake.calibration_reads] == [[7]] * 5
    assert "shape-tensor input k calibrated at values [7] (from the calibration data)" in r.notes


def _feats(name):
    library, version, _ = compat.API_TARGETS[name]
    return compat.features_for(version, library_version=library)


@pytest.mark.parametrize("name", CALIBRATING)
def test_stand_in_refuses_dims_for_a_shape_tensor_in_the_calibration_profile(monkeypatch, tmp_path, topk,
                                                                              uploader, name):
    """Mutation: the calibration profile made as before the fix (k's dims through set_shape,
    no values) fails the build as an optimization profile would (R8); so does none at all."""
    trt, _ = target(monkeypatch, name, **_net(_feats(name)))

    def old_profile(builder, config, shapes, feats=None):
        profile = builder.create_optimization_profile()
        for s in shapes:
            dims = (1,) if s.values else s.opt
            profile.set_shape(s.name, dims, dims, dims)
        config.set_calibration_profile(profile)

    monkeypatch.setattr(compat, "set_calibration_profile", old_profile)
    with pytest.raises(TegraAIError, match="could not build"):
        _build(topk, _data(tmp_path))
    assert any("Calibration profile: shape tensor input k has no shape values" in m for _s, m in trt._fake.log)
    assert any("Calibration profile: shape of k does not fit" in m or "setShapeValues" in m for _s, m in trt._fake.log)

    trt, _ = target(monkeypatch, name, **_net(_feats(name)))
    monkeypatch.setattr(compat, "set_calibration_profile", lambda *a, **k: None)
    with pytest.raises(TegraAIError, match="could not build"):
        _build(topk, _data(tmp_path))
    assert any("Calibration profile must be set for a network with runtime dimensions (x, k)" in m
               for _s, m in trt._fake.log)


@pytest.mark.parametrize("name", CALIBRATING)
def test_stand_in_refuses_a_batch_at_other_shape_values(monkeypatch, tmp_path, topk, uploader, name):
    """Mutation: a calibrator that feeds k other values than the calibration profile's (the
    engine would calibrate at the wrong shape) is refused (R8)."""
    trt, _ = target(monkeypatch, name, **_net(_feats(name)))
    real = CalibrationBatches.batch

    def wrong(self, index):
        out = real(self, index)
        if out is not None:
            out["k"] = np.array([6], out["k"].dtype)
        return out

    monkeypatch.setattr(CalibrationBatches, "batch", wrong)
    with pytest.raises(TegraAIError, match="could not build"):
        _build(topk, _data(tmp_path))
    assert any("shape tensor k holds [6], outside the calibration profile's [5]" in m for _s, m in trt._fake.log)


@pytest.mark.parametrize("name", CALIBRATING)
def test_shape_tensor_calibration_data_refusals(monkeypatch, tmp_path, topk, uploader, name):
    target(monkeypatch, name, **_net(_feats(name)))
    cases = [
        (dict(k=np.arange(20, dtype=np.int64).reshape(20, 1) % 3 + 1), "different values in different samples"),
        (dict(k=np.full((20, 1), 11, np.int64)), r"holds values \[11\], outside --shapes k=1:5:10"),
        (dict(k=np.full((20,), 5, np.int64)), r"takes one row of values per sample, shape \[N\] \+ \[1\]"),
        (dict(k=np.full((20, 1), 5.5)), "takes integers"),
        (dict(k=np.full((12, 1), 5, np.int64)), r"different sample counts \[12, 20\]"),
    ]
    for extra, match in cases:
        with pytest.raises(TegraAIError, match=match) as exc:
            _build(topk, _data(tmp_path, **extra))
        assert exc.value.exit_code == 2


def test_calibration_profile_from_the_one_profile_maker():
    """CalibrationBatches.calibration_profile is InputShapes: compat.make_profile sends the
    shape tensor through set_shape_input and the rest through set_shape, as for every profile."""
    inputs = [ModelInput("x", (None, 8)), ModelInput("k", (), "int32", shape_tensor=True)]

    b = CalibrationBatches.__new__(CalibrationBatches)
    b.inputs, b.batch_size = inputs, 4
    b.arrays = {"x": np.zeros((8, 8), np.float32)}
    b.shape_values, b.shape_sources = {"k": np.array(3, np.int32)}, {"k": "profile"}
    assert b.calibration_profile() == [InputShapes("x", (4, 8), (4, 8), (4, 8)), InputShapes("k", (3,), (3,), (3,), True)]
    assert b.batch_shape("k") == ()
