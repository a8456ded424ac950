"""The implicit-INT8 calibrator's batches against what TensorRT <= 10.x reads (the
recording stand-in fake_trt.py models it: batch shape = the input's network shape or the
calibration profile, get_batch exceptions swallowed by the binding)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fake_trt import make_fake_trt
from tegra_ai import platform
from tegra_ai.spec import BuildOptions
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.trt import calibrator as calib_mod
from tegra_ai.trt import compat
from tegra_ai.trt.builder import build_engine
from tegra_ai.trt.calibrator import CalibrationBatches
from tegra_ai.spec import parse_profile
from tegra_ai.trt.shapes import ModelInput

ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")


class HostUploader:
    """Stands in for device buffers: keeps each uploaded array, returns a fake pointer."""

    def __init__(self):
        self.arrays = []

    def __call__(self, name, arr):
        self.arrays.append((name, arr.copy()))
        return 0x1000 + len(self.arrays)


@pytest.fixture
def uploader(monkeypatch):
    up = HostUploader()
    monkeypatch.setattr(calib_mod, "device_uploader", lambda: up)
    return up


def use(monkeypatch, inputs, version="10.3.0"):
    feats = compat.features_for(version)
    trt = make_fake_trt(feats, inputs=inputs)
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: ORIN)
    return trt


def calib_file(tmp_path, n, shape=(1, 8, 8), dtype=np.float32, name="input"):
    p = tmp_path / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(p, **{name: (rng.random((n,) + shape) * 4).astype(dtype)})
    return str(p)


def batches_served(trt):
    """The batches TensorRT took from the calibrator (fake_trt records one entry per batch)."""
    return [c for c in trt._fake.calibration if c[0] == "batch"]


def network_shape(trt, name="input"):
    """What TensorRT reads per batch: the calibration profile's shape, else the network's."""
    profile = trt._fake.config._calibration_profile
    if profile is not None:
        return tuple(profile._shapes[name][1])
    return next(tuple(t.shape) for t in trt._fake.network._inputs if t.name == name)


def test_static_batch_one_reads_every_sample(monkeypatch, tmp_path, default_model, uploader):
    trt = use(monkeypatch, [("input", (1, 1, 8, 8))])
    data = calib_file(tmp_path, 20)
    r = build_engine(default_model, BuildOptions(precision="int8"), calibration_data=data, show_progress=False)
    assert len(batches_served(trt)) == 20 and network_shape(trt) == (1, 1, 8, 8)
    # What TensorRT reads (the network shape) is exactly what was uploaded, sample by sample.
    assert [a.shape for _, a in uploader.arrays] == [(1, 1, 8, 8)] * 20
    src = np.load(data)["input"]
    np.testing.assert_array_equal(np.concatenate([a for _, a in uploader.arrays]), src)
    assert any("20 batch(es) of 1" in n for n in r.notes)


def test_static_batch_above_eight(monkeypatch, tmp_path, default_model, uploader):
    trt = use(monkeypatch, [("input", (16, 1, 8, 8))])
    build_engine(default_model, BuildOptions(precision="int8"), calibration_data=calib_file(tmp_path, 40),
                 show_progress=False)
    assert [a.shape for _, a in uploader.arrays] == [(16, 1, 8, 8)] * 2 and network_shape(trt) == (16, 1, 8, 8)
    assert len(batches_served(trt)) == 2


def test_static_batch_larger_than_data_is_refused(monkeypatch, tmp_path, default_model, uploader):
    use(monkeypatch, [("input", (16, 1, 8, 8))])
    with pytest.raises(TegraAIError, match="fewer than the model's static batch of 16"):
        build_engine(default_model, BuildOptions(precision="int8"), calibration_data=calib_file(tmp_path, 5),
                     show_progress=False)


def test_dynamic_batch_uses_calibration_profile(monkeypatch, tmp_path, default_model, uploader):
    trt = use(monkeypatch, [("input", (-1, 1, 8, 8))])
    r = build_engine(default_model, BuildOptions(precision="int8", profiles=[parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]),
                     calibration_data=calib_file(tmp_path, 20), calibration_batch=4, show_progress=False)
    assert trt._fake.config._calibration_profile._shapes["input"] == ((4, 1, 8, 8),) * 3
    assert [a.shape for _, a in uploader.arrays] == [(4, 1, 8, 8)] * 5
    assert len(batches_served(trt)) == 5 and network_shape(trt) == (4, 1, 8, 8)
    assert any("5 batch(es) of 4" in n for n in r.notes)


def test_dynamic_default_batch_reports_leftover(monkeypatch, tmp_path, default_model, uploader):
    use(monkeypatch, [("input", (-1, 1, 8, 8))])
    r = build_engine(default_model, BuildOptions(precision="int8", profiles=[parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")]),
                     calibration_data=calib_file(tmp_path, 20), show_progress=False)
    assert [a.shape for _, a in uploader.arrays] == [(8, 1, 8, 8)] * 2
    assert any("(4 sample(s) left over)" in n for n in r.notes)


@pytest.mark.parametrize("trt_type,np_type", [("HALF", np.float16), ("INT32", np.int32), ("FLOAT", np.float32)])
def test_batches_in_the_inputs_dtype(monkeypatch, tmp_path, default_model, uploader, trt_type, np_type):
    use(monkeypatch, [("input", (2, 1, 8, 8), trt_type)])
    data = tmp_path / "c.npz"
    np.savez(data, input=np.arange(4 * 64, dtype=np.float64).reshape(4, 1, 8, 8))
    build_engine(default_model, BuildOptions(precision="int8"), calibration_data=str(data), show_progress=False)
    assert [a.dtype for _, a in uploader.arrays] == [np.dtype(np_type)] * 2


def test_fractions_for_an_integer_input_are_refused():
    b = CalibrationBatches.__new__(CalibrationBatches)
    b.arrays, b.dtypes, b.batch_size, b.num_batches = {"x": np.full((2, 3), 0.5)}, {"x": np.dtype(np.int32)}, 2, 1
    with pytest.raises(TegraAIError, match="holds fractions"):
        b.batch(0)


def test_get_batch_exception_is_raised_after_build(monkeypatch, tmp_path, default_model):
    trt = use(monkeypatch, [("input", (1, 1, 8, 8))])
    calls = []

    def failing(name, arr):
        calls.append(arr.shape)
        if len(calls) == 3:
            raise RuntimeError("device buffer lost")
        return 1

    monkeypatch.setattr(calib_mod, "device_uploader", lambda: failing)
    with pytest.raises(TegraAIError, match="calibration failed at batch 3: RuntimeError: device buffer lost"):
        build_engine(default_model, BuildOptions(precision="int8"), calibration_data=calib_file(tmp_path, 10),
                     show_progress=False)
    assert len(batches_served(trt)) == 2  # TensorRT stopped early; we did not pretend otherwise


def _provenance(model, version="10.3.0", preprocess=None):
    return calib_mod.cache_provenance(model_digest(model)[0], version, preprocess)


def test_cache_written_with_provenance_and_reused(monkeypatch, tmp_path, default_model, uploader):
    use(monkeypatch, [("input", (1, 1, 8, 8))])
    cache = tmp_path / "calib.cache"
    build_engine(default_model, BuildOptions(precision="int8"), calibration_data=calib_file(tmp_path, 4),
                 calibration_cache=str(cache), show_progress=False)
    record = json.loads((tmp_path / "calib.cache.json").read_text())
    assert record == _provenance(default_model)
    trt = use(monkeypatch, [("input", (1, 1, 8, 8))])
    build_engine(default_model, BuildOptions(precision="int8"), calibration_cache=str(cache), show_progress=False)
    assert trt._fake.calibration == [("cache", b"CALIBRATION")]


@pytest.mark.parametrize("field,value,why", [
    ("model_sha256", "0" * 64, "another model"),
    ("tensorrt", "10.0.1", "another TensorRT version"),
])
def test_stale_cache_is_never_used_silently(monkeypatch, tmp_path, default_model, uploader, field, value, why):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"OLD")
    record = _provenance(default_model)
    record[field] = value
    (tmp_path / "calib.cache.json").write_text(json.dumps(record))
    use(monkeypatch, [("input", (1, 1, 8, 8))])
    with pytest.raises(TegraAIError, match=f"calibration cache refused: .*{why}"):
        build_engine(default_model, BuildOptions(precision="int8"), calibration_cache=str(cache), show_progress=False)
    # With data, the stale cache is recalibrated and replaced.
    trt = use(monkeypatch, [("input", (1, 1, 8, 8))])
    build_engine(default_model, BuildOptions(precision="int8"), calibration_data=calib_file(tmp_path, 3),
                 calibration_cache=str(cache), show_progress=False)
    assert len(batches_served(trt)) == 3 and cache.read_bytes() == b"CALIBRATION"
    assert json.loads((tmp_path / "calib.cache.json").read_text()) == _provenance(default_model)


def test_cache_for_another_preprocessing_spec_is_recalibrated(tmp_path, default_model):
    cache = tmp_path / "c.cache"
    cache.write_bytes(b"X")
    (tmp_path / "c.cache.json").write_text(json.dumps(_provenance(default_model, preprocess={"height": 8})))
    ok, why = calib_mod.check_cache(str(cache), _provenance(default_model, preprocess={"height": 16}))
    assert not ok and "another preprocessing spec" in why
    assert calib_mod.check_cache(str(cache), _provenance(default_model, preprocess={"height": 8}))[0]


def test_cache_without_provenance_is_used_and_said_to_be_unchecked(monkeypatch, tmp_path, default_model):
    cache = tmp_path / "legacy.cache"
    cache.write_bytes(b"TRT-8500-EntropyCalibration2\n")
    trt = use(monkeypatch, [("input", (1, 1, 8, 8))])
    r = build_engine(default_model, BuildOptions(precision="int8"), calibration_cache=str(cache), show_progress=False)
    assert trt._fake.calibration == [("cache", b"TRT-8500-EntropyCalibration2\n")]
    assert any("has no provenance record" in n and "not checked" in n for n in r.notes)


def test_pickled_calibration_data_is_refused(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, input=np.array([{"a": 1}] * 2, dtype=object))
    with pytest.raises(TegraAIError, match="never pickles"):
        CalibrationBatches(str(p), [ModelInput("input", (None, 1))])
