"""model-benchmark end to end on the CPU: ONNX Runtime on the embedded digits model,
every output format, --compare, and a suite producing CSV, Markdown and PNG plots."""

import csv
import json
import os
import struct

import numpy as np
import pytest

from tegra_ai.cli.benchmark import main
from tegra_ai.models import __file__ as models_init

DIGITS = os.path.join(os.path.dirname(models_init), "digits.onnx")
FAST = ["--duration", "0.05", "--warmup", "5", "--iterations", "20", "--no-progress", "--power", "none"]


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_onnxruntime_report_json(capsys, tmp_path):
    times = tmp_path / "t.json"
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:2x1x8x8", "--json", "--export-times", str(times)] + FAST)
    assert code == 0
    rep = json.loads(out)
    assert rep["format"] == "tegra-ai-benchmark" and rep["backend"] == "onnxruntime" and rep["precision"] == "fp32"
    assert rep["batch"] == 2 and rep["results"]["queries"] >= 20
    r = rep["results"]
    assert r["throughput_samples_per_s"] == pytest.approx(2 * r["throughput_qps"])
    assert r["latency_ms"]["min"] <= r["latency_ms"]["median"] <= r["latency_ms"]["max"]
    assert set(r["latency_ms"]["percentiles"]) == {"90", "95", "99"}
    assert r["h2d_ms"] is None and r["enqueue_ms"] is None  # host backend: no device split
    assert len(rep["times"]) == r["queries"] and "latencyMs" in rep["times"][0]
    assert json.loads(times.read_text()) == rep["times"]
    assert "device" in rep and rep["config"]["duration_s"] == 0.05


def test_table_and_csv(capsys):
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8"] + FAST)
    assert code == 0
    for word in ("model:", "throughput:", "latency", "compute (host)", "power:", "p99"):
        assert word in out
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--csv"] + FAST)
    rows = list(csv.DictReader(out.splitlines()))
    assert code == 0 and len(rows) == 1 and rows[0]["backend"] == "onnxruntime" and float(rows[0]["throughput_qps"]) > 0


def scaled(rep: dict, factor: float) -> dict:
    """The report a run ``factor`` times slower would give: summaries and per-query times."""
    out = json.loads(json.dumps(rep))
    out["results"]["throughput_qps"] /= factor
    for k in ("latency_ms", "compute_ms"):
        out["results"][k]["median"] *= factor
        out["results"][k]["percentiles"]["99"] *= factor
    for t in out["times"]:
        for k in ("latencyMs", "computeMs"):
            t[k] *= factor
    return out


def test_compare_flags_regressions(capsys, tmp_path):
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--json"] + FAST)
    rep = json.loads(out)
    (tmp_path / "faster.json").write_text(json.dumps(scaled(rep, 0.01)))
    (tmp_path / "slower.json").write_text(json.dumps(scaled(rep, 100)))
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--compare", str(tmp_path / "faster.json")] + FAST)
    assert code == 1 and "REGRESSION" in out
    # ONNX Runtime's host-timed session.run is labelled as such, never "GPU compute"
    assert "ONNX Runtime session.run (CPU) median" in out and "GPU compute" not in out
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--compare", str(tmp_path / "slower.json"),
                                "--json"] + FAST)
    rep2 = json.loads(out)
    assert code == 0 and rep2["comparison"]["regressions"] == 0 and len(rep2["comparison"]["rows"]) == 4
    assert all(r["worse_ci"] is not None for r in rep2["comparison"]["rows"])


def noisy_report(rng, n=300, median_ms=2.0, sigma=0.4, backend="onnxruntime"):
    """A report of a noisy CPU run: lognormal per-query latencies (heavy right tail)."""
    lat = median_ms * rng.lognormal(0.0, sigma, n)
    times = [{"latencyMs": float(v), "computeMs": float(v)} for v in lat]
    s = np.sort(lat)
    return {"format": "tegra-ai-benchmark", "version": 1, "backend": backend, "model": "m.onnx", "batch": 1,
            "precision": None, "config": {"streams": 1},
            "results": {"throughput_qps": 1000.0 / float(lat.mean()), "device_timing": False,
                        "latency_ms": {"median": float(np.median(s)), "percentiles": {"99": float(np.percentile(s, 99))}},
                        "compute_ms": {"median": float(np.median(s)), "percentiles": {"99": float(np.percentile(s, 99))}}},
            "times": times}


def test_compare_calls_regressions_only_outside_the_noise():
    from tegra_ai.bench.report import compare

    rng = np.random.default_rng(7)
    # two runs of the same model on a noisy CPU: the point estimates move by more than 5 %
    # (a threshold-only rule would call regressions), the intervals say it is noise
    same = [(noisy_report(rng), noisy_report(rng)) for _ in range(12)]
    point_flags = sum(any(r["worse"] > 0.05 for r in compare(a, b, 0.05)["rows"]) for a, b in same)
    assert point_flags >= 3, "the noise must be large enough that the point change alone would flag"
    assert sum(compare(a, b, 0.05)["regressions"] for a, b in same) == 0
    # a real 40 % slowdown under the same noise is called
    slow = noisy_report(rng, median_ms=2.8)
    c = compare(slow, noisy_report(rng), 0.05)
    assert c["regressions"] >= 3 and all(r["worse_ci"][0] > 0.05 for r in c["rows"] if r["regression"])
    assert {r["verdict"] for r in c["rows"]} <= {"REGRESSION", "within noise"}


def test_diff_two_saved_reports(capsys, tmp_path):
    rng = np.random.default_rng(3)
    old, new = noisy_report(rng), noisy_report(rng, median_ms=3.0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "same.json").write_text(json.dumps(noisy_report(rng)))
    code, out, _ = run(capsys, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert code == 1 and "REGRESSION" in out and "ONNX Runtime session.run (CPU) median" in out
    code, out, _ = run(capsys, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"])
    d = json.loads(out)
    assert code == 1 and d["regressions"] >= 1 and d["old"].endswith("old.json")
    code, out, _ = run(capsys, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--markdown"])
    assert code == 1 and "| metric | old | new | change | worse (CI) | verdict |" in out and "**REGRESSION**" in out
    code, out, _ = run(capsys, ["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json",
                                "--markdown", str(tmp_path / "diff.md")])
    assert code == 1 and json.loads(out)["regressions"] >= 1
    assert "**REGRESSION**" in (tmp_path / "diff.md").read_text()
    code, out, _ = run(capsys, ["diff", str(tmp_path / "old.json"), str(tmp_path / "same.json"),
                                "--threshold", "10"])
    assert code == 0 and "REGRESSION" not in out


def test_compare_function_threshold():
    from tegra_ai.bench.report import compare

    prev = {"results": {"throughput_qps": 100.0, "latency_ms": {"median": 1.0, "percentiles": {"99": 2.0}}}}
    cur = {"results": {"throughput_qps": 96.0, "latency_ms": {"median": 1.04, "percentiles": {"99": 2.2}}}}
    c = compare(cur, prev, 0.05)
    assert [r["regression"] for r in c["rows"]] == [False, False, True]
    assert compare(cur, prev, 0.2)["regressions"] == 0


def png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_suite_writes_csv_markdown_plots_and_reuses_cells(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (extra 'plot') is not installed")
    out_dir = tmp_path / "suite"
    argv = ["suite", "--models", DIGITS, "--batch", "1", "4", "--backend", "onnxruntime", "--precision", "fp32",
            "--out", str(out_dir)] + FAST
    code, out, _ = run(capsys, argv)
    assert code == 0 and out.count(" ran") == 2
    rows = list(csv.DictReader((out_dir / "summary.csv").read_text().splitlines()))
    assert [(r["batch"], r["precision"]) for r in rows] == [("1", "fp32"), ("4", "fp32")]
    md = (out_dir / "summary.md").read_text()
    assert "| digits.onnx | fp32 | 4 |" in md and "![latency](latency.png)" in md
    for name in ("latency.png", "throughput.png"):
        w, h = png_size(out_dir / name)
        assert (w, h) == (600, 400)
    assert not (out_dir / "energy.png").exists()  # no power measured
    code, out, _ = run(capsys, argv + ["--json"])
    summary = json.loads(out)
    assert code == 0 and [c["status"] for c in summary["cells"]] == ["reused", "reused"]


def test_library_api_without_cli():
    from tegra_ai.bench.harness import BenchConfig
    from tegra_ai.bench.run import benchmark_model

    rep = benchmark_model(DIGITS, shapes={"input": (1, 1, 8, 8)}, power="none",
                          config=BenchConfig(warmup_ms=0, duration_s=0.0, iterations=5))
    assert rep["results"]["queries"] >= 5 and rep["backend"] == "onnxruntime"


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signals_exit_codes(tmp_path, sig, code):
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.benchmark", DIGITS, "--shapes", "input:1x1x8x8",
                             "--duration", "30", "--no-progress", "--power", "none", "--export-times",
                             str(tmp_path / "t.json")], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    time.sleep(3)
    proc.send_signal(getattr(signal, sig))
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and not (tmp_path / "t.json").exists()


def test_suite_shapes_per_model_and_fp16_onnx_label(capsys, tmp_path):
    """A detector with dynamic height and width runs in a suite with --shapes MODEL=...;
    an FP16 ONNX (convert-fp16) is an fp16 cell on ONNX Runtime, not fp32."""
    from onnx_models import make_model
    from tegra_ai.onnx_fp16 import convert_fp16

    det = make_model(str(tmp_path / "det.onnx"), input_dims=("N", 3, "H", "W"))
    half = str(tmp_path / "half.onnx")
    convert_fp16(make_model(str(tmp_path / "full.onnx"), input_dims=("N", 3, 16, 16)), half)
    out_dir = tmp_path / "suite"
    argv = ["suite", "--models", det, half, "--batch", "1", "2", "--backend", "onnxruntime", "--out", str(out_dir),
            "--shapes", "det.onnx=input:1x3x24x40", "--no-plots", "--json"] + FAST
    code, out, _ = run(capsys, argv)
    summary = json.loads(out)
    assert code == 0, [c.get("error") for c in summary["cells"]]
    cells = {c["name"]: c for c in summary["cells"]}
    assert sorted(cells) == ["det-fp32-b1", "det-fp32-b2", "half-fp16-b1", "half-fp16-b2"]
    rep = json.loads((out_dir / "cells" / "det-fp32-b2.json").read_text())
    assert rep["shapes"] == {"input": [2, 3, 24, 40]} and rep["precision"] == "fp32"
    assert json.loads((out_dir / "cells" / "half-fp16-b1.json").read_text())["precision"] == "fp16"
    # without --shapes the detector cannot be in a suite (its H and W cannot be guessed)
    code, out, _ = run(capsys, argv[:-len(FAST) - 4] + ["--out", str(tmp_path / "s2"), "--no-plots", "--json"] + FAST)
    assert code == 1
    # other --shapes: the cells are run again, not reused
    code, out, _ = run(capsys, argv[:-len(FAST) - 3] + ["det.onnx=input:1x3x32x32", "--no-plots", "--json"] + FAST)
    assert code == 0 and {c["name"]: c["status"] for c in json.loads(out)["cells"]}["det-fp32-b1"] == "ran"
