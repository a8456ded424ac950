"""Statistics as trtexec computes them (sampleReporting.cpp): percentiles with its
float32 index rule, median, throughput, the split and the warnings."""

import math

import pytest

from tegra_ai.bench import stats


@pytest.mark.parametrize("p, n, expected", [
    (90, 10, 9),     # (1-0.9f)*10 = 1.0000002 in float32 -> exclude 1 -> index 8
    (95, 20, 19),
    (99, 100, 100),  # (1-0.99f)*100 = 0.999999 in float32 -> exclude 0: trtexec's p99 of 100 is the max
    (50, 4, 2),      # exclude int(2.0) = 2 -> index 1
    (100, 7, 7),
    (0, 7, 1),       # exclude 7 -> index max(-1, 0) = 0
    (90, 1, 1),
    (99, 1000, 991),  # (1-0.99f)*1000 = 9.99999 -> exclude 9 -> index 990
])
def test_percentile_rule(p, n, expected):
    values = list(range(1, n + 1))
    assert stats.find_percentile(p, values) == expected


def test_percentile_double_math_would_differ():
    # the same rule in double precision gives 99 for p99 of 1..100; trtexec gives 100
    n, p = 100, 99
    assert n - 1 - int((1 - p / 100) * n) == 98
    assert stats.find_percentile(p, list(range(1, 101))) == 100


def test_median_and_empty():
    assert stats.find_median([1, 2, 3, 4]) == 2.5
    assert stats.find_median([1, 5, 9]) == 5
    assert math.isinf(stats.find_median([]))
    assert stats.summarize([]) is None
    with pytest.raises(Exception):
        stats.find_percentile(101, [1.0])


def _trace(start, h2d, comp, d2h, enq=0.01):
    return {"startEnqMs": start, "endEnqMs": start + enq, "startH2dMs": start, "endH2dMs": start + h2d,
            "startComputeMs": start + h2d, "endComputeMs": start + h2d + comp, "startD2hMs": start + h2d + comp,
            "endD2hMs": start + h2d + comp + d2h}


def test_analyze_split_throughput_and_export_layout():
    traces = [_trace(i * 1.0, 0.1, 0.8, 0.05) for i in range(10)]
    r = stats.analyze(traces, batch=4)
    assert r["queries"] == 10
    assert r["walltime_s"] == pytest.approx((9 + 0.95) / 1000)
    assert r["throughput_qps"] == pytest.approx(10 / 9.95 * 1000)
    assert r["throughput_samples_per_s"] == pytest.approx(4 * r["throughput_qps"])
    assert r["latency_ms"].median == pytest.approx(0.95)
    assert r["compute_ms"].mean == pytest.approx(0.8)
    assert r["h2d_ms"].max == pytest.approx(0.1) and r["d2h_ms"].min == pytest.approx(0.05)
    assert r["total_compute_s"] == pytest.approx(0.008)
    assert r["warnings"] == []
    t = stats.trace_to_times(traces[3])
    assert set(t) == set(stats.TRACE_FIELDS) | {"h2dMs", "computeMs", "d2hMs", "latencyMs", "endToEndMs"}
    assert t["latencyMs"] == pytest.approx(0.95) and t["endToEndMs"] == pytest.approx(0.95)


def test_warnings():
    enq_bound = [_trace(i, 0.01, 0.1, 0.01, enq=0.2) for i in range(20)]
    kinds = [w["kind"] for w in stats.analyze(enq_bound)["warnings"]]
    assert kinds == ["enqueue-bound"]
    h2d_bound = [_trace(i, 0.5, 0.1, 0.01) for i in range(20)]
    assert [w["kind"] for w in stats.analyze(h2d_bound)["warnings"]] == ["transfer-bound"]
    noisy = [_trace(i, 0.01, 0.1 if i % 2 else 0.3, 0.01) for i in range(20)]
    assert "noisy" in [w["kind"] for w in stats.analyze(noisy)["warnings"]]
    assert "noisy" not in [w["kind"] for w in stats.analyze(noisy, noisy_cv=0.9)["warnings"]]


def test_no_traces_is_an_error():
    from tegra_ai.errors import TegraAIError

    with pytest.raises(TegraAIError, match="no iterations"):
        stats.analyze([])
