"""Statistics exactly as trtexec reports them (TensorRT ``samples/common/sampleReporting.cpp``),
so that our numbers and trtexec's compare:

- percentile p of n sorted values: ``values[max(n - 1 - int((1 - p/100) * n), 0)]`` with
  the product computed in 32-bit float as the C++ code does (``findPercentile``), i.e. the
  smallest value that at most ``int((1-p/100)*n)`` values exceed; no interpolation;
- median: the middle value, or the mean of the two middle values (``findMedian``);
- latency = H2D + GPU compute + D2H of one query; end-to-end = from the start of the
  query's H2D to the end of its D2H (includes waiting behind the previous query);
- throughput = queries / (end of the last D2H - start of the first measured H2D);
- warnings: enqueue-bound when median enqueue time > 0.8 x median GPU compute time;
  H2D- or D2H-bound when their median >= the median GPU compute time.

We add a noise warning trtexec does not have: coefficient of variation (stdev/mean) of
GPU compute time above :data:`NOISY_CV`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError

DEFAULT_PERCENTILES = (90.0, 95.0, 99.0)   # trtexec's default --percentile=90,95,99
ENQUEUE_BOUND_RATIO = 0.8                  # sampleReporting.cpp enqueueBoundReportingThreshold
NOISY_CV = 0.10                            # stdev / mean of GPU compute time


def find_percentile(percentile: float, sorted_values) -> float:
    """trtexec's ``findPercentile`` on an ascending sequence."""
    n = len(sorted_values)
    if n == 0:
        return math.inf
    if not 0.0 <= percentile <= 100.0:
        raise TegraAIError(f"percentile {percentile} is not in [0, 100]", exit_code=EXIT_USAGE)
    p = np.float32(percentile)
    exclude = int((np.float32(1) - p / np.float32(100)) * np.float32(n))
    return float(sorted_values[max(n - 1 - exclude, 0)])


def find_median(sorted_values) -> float:
    n = len(sorted_values)
    if n == 0:
        return math.inf
    m = n // 2
    if n % 2:
        return float(sorted_values[m])
    return (float(sorted_values[m - 1]) + float(sorted_values[m])) / 2


@dataclass
class Summary:
    """min/max/mean/median/percentiles of one metric, in milliseconds."""

    min: float
    max: float
    mean: float
    median: float
    stdev: float
    cv: float
    percentiles: dict = field(default_factory=dict)   # "90" -> value

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Summary":
        return cls(**d)


def _pkey(p: float) -> str:
    return f"{p:g}"


def summarize(values, percentiles=DEFAULT_PERCENTILES) -> Summary | None:
    """None for an empty sequence (a metric that was not measured)."""
    v = sorted(float(x) for x in values)
    if not v:
        return None
    mean = sum(v) / len(v)
    stdev = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))
    return Summary(min=v[0], max=v[-1], mean=mean, median=find_median(v), stdev=stdev,
                   cv=stdev / mean if mean > 0 else 0.0,
                   percentiles={_pkey(p): find_percentile(p, v) for p in percentiles})


# One query's times, in ms from the start of the benchmark, in trtexec's --exportTimes names.
TRACE_FIELDS = ("startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
                "startD2hMs", "endD2hMs")


def trace_to_times(t: dict) -> dict:
    """trtexec's ``traceToTiming`` plus the derived fields of its ``exportJSONTrace``."""
    h2d = t["endH2dMs"] - t["startH2dMs"]
    compute = t["endComputeMs"] - t["startComputeMs"]
    d2h = t["endD2hMs"] - t["startD2hMs"]
    out = {k: t[k] for k in TRACE_FIELDS}
    out.update(h2dMs=h2d, computeMs=compute, d2hMs=d2h, latencyMs=h2d + compute + d2h,
               endToEndMs=t["endD2hMs"] - t["startH2dMs"])
    return out


def analyze(traces: list, batch: int = 1, percentiles=DEFAULT_PERCENTILES, transfers: bool = True,
            noisy_cv: float = NOISY_CV, device: bool = True) -> dict:
    """Performance summary of the measured (post-warm-up) ``traces`` (dicts with
    :data:`TRACE_FIELDS`). ``batch`` is the samples per query (the input's first
    dimension), so samples/s = batch x queries/s. ``device=False`` marks host-timed
    runs (no enqueue / end-to-end split)."""
    if not traces:
        raise TegraAIError("no iterations were measured", hint="raise --duration or --iterations")
    times = [trace_to_times(t) for t in traces]
    wall_ms = max(t["endD2hMs"] for t in traces) - min(t["startH2dMs"] for t in traces)
    qps = len(times) / wall_ms * 1000.0 if wall_ms > 0 else math.inf
    metric = lambda key: summarize([t[key] for t in times], percentiles)  # noqa: E731
    result = {
        "queries": len(times),
        "walltime_s": wall_ms / 1000.0,
        "throughput_qps": qps,
        "throughput_samples_per_s": qps * batch,
        "latency_ms": metric("latencyMs"),
        # a host backend (ONNX Runtime) is synchronous: enqueue and end-to-end equal the latency
        "end_to_end_ms": metric("endToEndMs") if device else None,
        "enqueue_ms": summarize([t["endEnqMs"] - t["startEnqMs"] for t in times], percentiles) if device else None,
        "h2d_ms": metric("h2dMs") if transfers else None,
        "compute_ms": metric("computeMs"),
        "d2h_ms": metric("d2hMs") if transfers else None,
    }
    result["device_timing"] = device
    result["total_compute_s"] = result["compute_ms"].mean * len(times) / 1000.0
    result["warnings"] = warnings_for(result, noisy_cv)
    return result


def warnings_for(result: dict, noisy_cv: float = NOISY_CV) -> list:
    """trtexec's throughput warnings, plus ours for noise."""
    out = []
    comp, enq = result.get("compute_ms"), result.get("enqueue_ms")
    h2d, d2h = result.get("h2d_ms"), result.get("d2h_ms")
    if comp and enq and enq.median > ENQUEUE_BOUND_RATIO * comp.median:
        out.append({"kind": "enqueue-bound",
                     "message": f"throughput may be bound by enqueue time (median {enq.median:.4g} ms > "
                                f"{ENQUEUE_BOUND_RATIO} x median GPU compute {comp.median:.4g} ms); "
                                "--cuda-graph may help"})
    if comp and h2d and h2d.median >= comp.median:
        out.append({"kind": "transfer-bound",
                    "message": f"throughput may be bound by host-to-device transfers (median {h2d.median:.4g} ms "
                               f">= GPU compute {comp.median:.4g} ms); --no-data-transfers shows the compute alone"})
    if comp and d2h and d2h.median >= comp.median:
        out.append({"kind": "transfer-bound",
                    "message": f"throughput may be bound by device-to-host transfers (median {d2h.median:.4g} ms "
                               f">= GPU compute {comp.median:.4g} ms); --no-data-transfers shows the compute alone"})
    if comp and comp.cv > noisy_cv:
        out.append({"kind": "noisy",
                    "message": f"compute time is noisy: coefficient of variation {comp.cv:.1%} > "
                               f"{noisy_cv:.0%}; fix the clocks (sudo jetson_clocks) or run longer"})
    return out
