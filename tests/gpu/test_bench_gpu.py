"""model-benchmark's harness on a real GPU with the CUDA workload backend: the measured
compute time is the kernel's, per-query times are ordered, graphs and streams work,
and the CLI produces a report with the GPU's state."""

import json

import pytest

pytestmark = pytest.mark.gpu

IO = {"inputs": {"x": ((1, 3, 32, 32), "float32")}, "outputs": {"y": ((1, 100), "float32")}}


def _run(duration_us, **cfg):
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.bench.harness import BenchConfig, benchmark

    w = CudaWorkloadRunner(duration_us, **IO)
    with w:
        res = benchmark(w, BenchConfig(**{"warmup_ms": 20, "duration_s": 0.3, "iterations": 20, **cfg}))
        launches = w.launches()
    return res, launches


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("transfers", [True, False])
def test_compute_time_is_the_kernels(graph, transfers):
    res, launches = _run(200.0, cuda_graph=graph, transfers=transfers)
    comp = res["compute_ms"]
    assert 0.199 <= comp.median <= 0.215, comp
    assert res["queries"] >= 20 and launches >= res["queries"]
    assert (res["h2d_ms"] is not None) == transfers
    for t in res["times"]:
        assert t["startH2dMs"] <= t["endH2dMs"] <= t["endComputeMs"] <= t["endD2hMs"]
        assert t["startEnqMs"] <= t["endEnqMs"]
        assert abs(t["latencyMs"] - (t["h2dMs"] + t["computeMs"] + t["d2hMs"])) < 1e-9
    # back to back on one stream: the GPU never idles, a query every (H2D + compute + D2H)
    assert 0.9 / res["latency_ms"].median * 1000 <= res["throughput_qps"] <= 1.02 / comp.median * 1000


def test_streams_scale():
    one, _ = _run(1000.0, streams=1)
    four, _ = _run(1000.0, streams=4)
    assert four["throughput_qps"] >= 3.5 * one["throughput_qps"], (one["throughput_qps"], four["throughput_qps"])


def test_cli_report_on_the_workload(tmp_path, capsys):
    from tegra_ai.cli.benchmark import main

    times = tmp_path / "times.json"
    code = main(["workload:100us", "--shapes", "x:1x3x16x16", "--workload-output", "y:1x10", "--duration", "0.3",
                 "--warmup", "20", "--json", "--no-progress", "--export-times", str(times), "--streams", "2"])
    out = capsys.readouterr().out
    assert code == 0
    rep = json.loads(out)
    assert rep["backend"] == "cuda-workload" and rep["config"]["streams"] == 2
    assert 0.099 <= rep["results"]["compute_ms"]["median"] <= 0.11
    exported = json.loads(times.read_text())
    assert len(exported) == rep["results"]["queries"] and "endToEndMs" in exported[0]
    gpu = rep["device"]["gpu"]
    if gpu is not None:  # nvidia-smi present
        assert gpu["name"]
        power = rep["results"]["power"]
        assert power is None or (power["avg_w"] > 0 and power["energy_mj_per_query"] > 0)
