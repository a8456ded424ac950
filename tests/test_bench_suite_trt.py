"""The suite's TensorRT path without a GPU: engines come from the engine cache (built
through trt.builder with the recording TensorRT stand-in on a miss, reused on a hit),
one cell per model x precision x batch, finished cells reused; the timing itself is
stubbed here (GPU tests and the device cover it)."""

import pytest

from fake_trt import make_fake_trt
from tegra_ai import platform
from tegra_ai.bench import report as report_mod, stats, suite
from tegra_ai.spec import Sidecar, sidecar_path
from tegra_ai.trt import compat

ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")


@pytest.fixture
def fake_orin(monkeypatch):
    feats = compat.features_for("10.3.0")
    trt = make_fake_trt(feats)
    monkeypatch.setattr(compat, "load", lambda: (trt, feats))
    monkeypatch.setattr(platform, "detect", lambda *a, **k: ORIN)
    return trt


@pytest.fixture
def timed(monkeypatch):
    """benchmark_model stub: records what it was asked to run, returns a real report."""
    calls = []

    def fake_benchmark_model(target, *, backend, config, shapes, precision, power, device_root):
        calls.append({"target": target, "backend": backend, "shapes": shapes, "precision": precision})
        batch = next(iter(shapes.values()))[0]
        traces = [{"startEnqMs": i, "endEnqMs": i + 0.01, "startH2dMs": i, "endH2dMs": i + 0.1,
                   "startComputeMs": i + 0.1, "endComputeMs": i + 0.1 + 0.2 * batch, "startD2hMs": i + 0.1 + 0.2 * batch,
                   "endD2hMs": i + 0.15 + 0.2 * batch} for i in range(20)]
        res = stats.analyze(traces, batch=batch)
        res["power"] = {"source": "sysfs", "rule": "VDD_IN", "samples": 10, "avg_w": 12.0,
                        "energy_mj_per_query": 12.0 * batch, "energy_mj_per_sample": 12.0, "rails_avg_w": {}}
        res["times"] = [stats.trace_to_times(t) for t in traces]
        res["config"] = config.to_dict()
        return report_mod.make_report(res, model=target, backend=backend, precision=precision, batch=batch,
                                      shapes=shapes, device={"jetson": True, "module": ORIN.module,
                                                             "l4t_release": ORIN.l4t_release,
                                                             "nvpmodel": {"id": 0, "name": "MAXN"},
                                                             "jetson_clocks": "on"})

    monkeypatch.setattr("tegra_ai.bench.run.benchmark_model", fake_benchmark_model)
    return calls


def test_tensorrt_cells_build_then_reuse_engines(fake_orin, timed, default_model, tmp_path):
    out = tmp_path / "out"
    r = suite.run_suite([default_model], ["fp32", "fp16"], [1, 8], "tensorrt", str(out), plots=False, power="none")
    assert r["failed"] == 0
    assert [c["engine_status"] for c in r["cells"]] == ["built"] * 4
    assert [c["backend"] for c in timed] == ["tensorrt"] * 4
    assert [c["shapes"] for c in timed][1] == {"input": (8, 1, 8, 8)}
    assert all(c["target"].endswith(".engine") for c in timed)
    options = Sidecar.load(sidecar_path(timed[3]["target"])).options
    assert options.precision == "fp16"
    assert options.to_dict()["profiles"] == [[{"name": "input", "min": [8, 1, 8, 8], "opt": [8, 1, 8, 8],
                                               "max": [8, 1, 8, 8]}]]
    # a re-run reuses the finished cells; with --force it re-times them on cached engines
    again = suite.run_suite([default_model], ["fp32", "fp16"], [1, 8], "tensorrt", str(out), plots=False, power="none")
    assert [c["status"] for c in again["cells"]] == ["reused"] * 4 and len(timed) == 4
    forced = suite.run_suite([default_model], ["fp32", "fp16"], [1, 8], "tensorrt", str(out), plots=False,
                             power="none", force=True)
    assert [c["engine_status"] for c in forced["cells"]] == ["hit"] * 4
    md = (out / "summary.md").read_text()
    assert "NVIDIA Jetson AGX Orin Developer Kit" in md and "MAXN" in md and "| 12.00 | 12 |" in md


def test_energy_plot_when_power_was_measured(fake_orin, timed, default_model, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (extra 'plot') is not installed")
    r = suite.run_suite([default_model], ["fp16"], [1, 2], "tensorrt", str(tmp_path / "o"), power="none")
    assert sorted(p.rsplit("/", 1)[1] for p in r["files"]["plots"]) == ["energy.png", "latency.png", "throughput.png"]


def test_int8_uses_the_calibration_cache(fake_orin, timed, default_model, tmp_path, monkeypatch):
    from tegra_ai.trt import builder
    from tegra_ai.util.hashing import sha256_file

    asked = []
    real_build = builder.build_engine

    def recording_build(request, **kw):
        asked.append((request.options, request.calibration_cache))
        return real_build(request, **kw)

    monkeypatch.setattr(builder, "build_engine", recording_build)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8500-EntropyCalibration2\ninput: 3c010a14\n")
    r = suite.run_suite([default_model], ["int8"], [1], "tensorrt", str(tmp_path / "o"), plots=False, power="none",
                        calibration_cache=str(cache))
    assert len(asked) == 1, r
    options, calibration = asked[0]
    assert options.precision == "int8" and calibration == str(cache)
    assert options.calibration_sha256 == sha256_file(str(cache))
    assert r["failed"] == 0, r["cells"]
    assert Sidecar.load(sidecar_path(timed[0]["target"])).options.calibration_sha256 == options.calibration_sha256


def test_fixed_batch_model_fails_only_its_cells(fake_orin, timed, default_model, model_factory, tmp_path):
    fixed = model_factory("fixed.onnx", input_dims=(1, 3, 16, 16))
    r = suite.run_suite([default_model, fixed], ["fp16"], [4], "tensorrt", str(tmp_path / "o"), plots=False,
                        power="none")
    assert [c["status"] for c in r["cells"]] == ["ran", "failed"] and r["failed"] == 1
    assert "fixed batch of 1" in r["cells"][1]["error"]
    assert "fixed batch of 1" in (tmp_path / "o" / "summary.md").read_text()
