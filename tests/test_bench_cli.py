"""model-benchmark end to end on the CPU: ONNX Runtime on the embedded digits model,
every output format, --compare, and a suite producing CSV, Markdown and PNG plots."""

import csv
import json
import os
import struct

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


def test_compare_flags_regressions(capsys, tmp_path):
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--json"] + FAST)
    rep = json.loads(out)
    faster = json.loads(out)
    faster["results"]["throughput_qps"] = rep["results"]["throughput_qps"] * 100
    slower = json.loads(out)
    slower["results"]["throughput_qps"] = rep["results"]["throughput_qps"] / 100
    for k in ("latency_ms", "compute_ms"):
        slower["results"][k]["median"] *= 100
        slower["results"][k]["percentiles"]["99"] *= 100
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--compare", str(tmp_path / "faster.json")] + FAST)
    assert code == 1 and "REGRESSION" in out
    code, out, _ = run(capsys, [DIGITS, "--shapes", "input:1x1x8x8", "--compare", str(tmp_path / "slower.json"),
                                "--json"] + FAST)
    rep2 = json.loads(out)
    assert code == 0 and rep2["comparison"]["regressions"] == 0 and len(rep2["comparison"]["rows"]) == 4


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
