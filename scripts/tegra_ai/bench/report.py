"""Benchmark reports: the JSON document (``format: tegra-ai-benchmark``), a human
table, CSV rows, and the comparison with a previous report."""

from __future__ import annotations

import csv
import datetime
import io
import math

from tegra_ai.errors import EXIT_USAGE, TegraAIError

FORMAT, VERSION = "tegra-ai-benchmark", 1
DEFAULT_REGRESSION_THRESHOLD = 0.05   # 5 %

CSV_COLUMNS = (
    "model", "backend", "precision", "batch", "streams", "cuda_graph", "transfers", "queries", "walltime_s",
    "throughput_qps", "throughput_samples_per_s",
    "latency_min_ms", "latency_mean_ms", "latency_median_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
    "latency_max_ms", "latency_cv", "compute_median_ms", "h2d_median_ms", "d2h_median_ms", "enqueue_median_ms",
    "power_avg_w", "energy_mj_per_sample", "power_source", "device", "module", "l4t", "nvpmodel", "jetson_clocks",
    "warnings")

# (metric label, path into results, True when higher is better, per-query field and statistic
# the confidence interval is computed from)
COMPARED = (
    ("throughput (qps)", ("throughput_qps",), True, ("latencyMs", "mean")),
    ("latency median (ms)", ("latency_ms", "median"), False, ("latencyMs", "median")),
    ("latency p99 (ms)", ("latency_ms", "percentiles", "99"), False, ("latencyMs", 99.0)),
    ("GPU compute median (ms)", ("compute_ms", "median"), False, ("computeMs", "median")),
)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_MAX_SAMPLES = 2000      # per report: evenly spaced queries beyond this


def compute_label(report: dict) -> str:
    """What ``compute_ms`` measured: GPU compute (CUDA events) on TensorRT, the host-timed
    ``session.run`` on ONNX Runtime (no GPU involved), the host-timed run elsewhere."""
    if (report.get("results") or {}).get("device_timing", True):
        return "GPU compute"
    if report.get("backend") == "onnxruntime":
        return "ONNX Runtime session.run (CPU)"
    return "compute (host)"


def make_report(results: dict, *, model: str, backend: str, precision: str | None, batch: int, shapes: dict | None,
                device: dict, extra: dict | None = None) -> dict:
    res = dict(results)
    times = res.pop("times", [])
    config = res.pop("config", {})
    report = {"format": FORMAT, "version": VERSION, "tool": "model-benchmark",
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "model": model, "backend": backend, "precision": precision, "batch": batch,
              "shapes": {k: list(v) for k, v in (shapes or {}).items()}, "config": config, "device": device,
              "results": _plain(res), "times": times}
    if extra:
        report.update(extra)
    return report


def _plain(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load_report(path: str, what: str = "previous report") -> dict:
    from tegra_ai.util.jsonfile import JSONFileError, read_json_file

    try:
        data = read_json_file(path)
    except JSONFileError as exc:
        if exc.missing:
            raise TegraAIError(f"{what} {path} does not exist", exit_code=EXIT_USAGE) from None
        if exc.errno is not None:
            raise TegraAIError(f"cannot read {what} {path}: {exc}", exit_code=EXIT_USAGE) from None
        raise TegraAIError(f"{path} is not JSON we can read ({exc})",
                           hint="give a report written by model-benchmark --json", exit_code=EXIT_USAGE) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TegraAIError(f"{path} is not a model-benchmark report (no \"format\": \"{FORMAT}\")",
                           hint="give a report written by model-benchmark --json", exit_code=EXIT_USAGE)
    if data.get("version") != VERSION:
        raise TegraAIError(f"{path} is a version {data.get('version')} report; this tool reads version {VERSION}",
                           exit_code=EXIT_USAGE)
    if not isinstance(data.get("results"), dict):
        raise TegraAIError(f"{path} has no results", exit_code=EXIT_USAGE)
    return data


def _get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def _samples(report: dict, field: str):
    import numpy as np

    times = report.get("times")
    if not isinstance(times, list) or len(times) < 2:
        return None
    try:
        v = np.array([float(t[field]) for t in times], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if not np.all(np.isfinite(v)):
        return None
    if len(v) > BOOTSTRAP_MAX_SAMPLES:
        v = v[np.linspace(0, len(v) - 1, BOOTSTRAP_MAX_SAMPLES).astype(int)]
    return v


def _stat(x, stat, axis=-1):
    import numpy as np

    if stat == "mean":
        return np.mean(x, axis=axis)
    if stat == "median":
        return np.median(x, axis=axis)
    return np.percentile(x, stat, axis=axis)


def change_interval(cur, prev, stat, higher_better: bool, seed: int = 0) -> tuple:
    """Bootstrap confidence interval (:data:`CONFIDENCE`) of the relative worsening of a
    metric between two runs, from their per-query times: each run's queries are resampled
    with replacement, the statistic recomputed, and the worsening's percentiles taken.
    For throughput (``higher_better``) the statistic is the mean latency (one query in
    flight: qps = 1 / mean latency), so worsening = cur/prev - 1 as for a latency."""
    import numpy as np

    rng = np.random.default_rng(seed)
    c = _stat(cur[rng.integers(0, len(cur), (BOOTSTRAP_RESAMPLES, len(cur)))], stat)
    p = _stat(prev[rng.integers(0, len(prev), (BOOTSTRAP_RESAMPLES, len(prev)))], stat)
    worse = c / p - 1.0
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(worse, [tail, 100 - tail])
    return float(lo), float(hi)


def compare(current: dict, previous: dict, threshold: float = DEFAULT_REGRESSION_THRESHOLD) -> dict:
    """{"rows": [...], "regressions": n, "notes": [...]}.

    A row regresses when the metric moved the wrong way by more than ``threshold``
    (relative) *beyond the noise*: where both reports have per-query times, the whole
    :data:`CONFIDENCE` bootstrap interval of the worsening must lie above the threshold
    (a change inside the run-to-run noise is reported as such, not as a regression);
    without per-query times, the point change decides."""
    rows = []
    single_stream = all((r.get("config") or {}).get("streams", 1) == 1 for r in (current, previous))
    for label, path, higher_better, (field, stat) in COMPARED:
        cur, prev = _get(current["results"], path), _get(previous["results"], path)
        if cur is None or prev is None or prev == 0:
            continue
        if path == ("compute_ms", "median"):
            label = f"{compute_label(current)} median (ms)"
        change = (cur - prev) / prev
        worse = -change if higher_better else change
        ci = None
        cs, ps = _samples(current, field), _samples(previous, field)
        if cs is not None and ps is not None and (not higher_better or single_stream):
            ci = change_interval(cs, ps, stat, higher_better)
        if ci is None:
            regression, verdict = worse > threshold, ("REGRESSION" if worse > threshold else "ok")
        else:
            regression = ci[0] > threshold
            verdict = "REGRESSION" if regression else ("within noise" if worse > threshold else "ok")
        rows.append({"metric": label, "previous": prev, "current": cur, "change": change, "worse": worse,
                     "worse_ci": list(ci) if ci else None, "regression": regression, "verdict": verdict})
    notes = []
    for key in ("backend", "precision", "batch", "model"):
        if current.get(key) != previous.get(key):
            notes.append(f"{key} differs: {previous.get(key)} -> {current.get(key)}")
    cd, pd = current.get("device") or {}, previous.get("device") or {}
    for key in ("module", "l4t_release", "nvpmodel", "jetson_clocks"):
        if cd.get(key) != pd.get(key):
            notes.append(f"device {key} differs: {pd.get(key)} -> {cd.get(key)}")
    if not any(r["worse_ci"] for r in rows):
        notes.append("no per-query times in both reports: regressions are called on the point change alone")
    return {"threshold": threshold, "confidence": CONFIDENCE, "rows": rows,
            "regressions": sum(r["regression"] for r in rows), "notes": notes}


def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}g}"
    return str(v)


def device_line(device: dict) -> str:
    if device.get("jetson"):
        mode = device.get("nvpmodel") or {}
        mode_s = f"{mode.get('name') or '?'} (id {mode.get('id')})" if mode else "unknown"
        gpu = _fmt(device.get("gpu_freq_mhz"), 5)
        emc = _fmt(device.get("emc_freq_mhz"), 5)
        return (f"{device.get('module') or 'Jetson (module unknown)'}, L4T {device.get('l4t_release') or 'unknown'}, "
                f"power mode {mode_s}, jetson_clocks {device.get('jetson_clocks', 'unknown')}, "
                f"GPU {gpu} MHz, EMC {emc} MHz" + (f", DLA core {device['dla_core']}"
                                                    if device.get("dla_core") is not None else ""))
    gpu = device.get("gpu")
    if gpu:
        return (f"{gpu.get('name')} (driver {gpu.get('driver_version')}, {gpu.get('pstate')}, "
                f"SM {_fmt(gpu.get('clocks.sm'), 5)}/{_fmt(gpu.get('clocks.max.sm'), 5)} MHz, "
                f"{_fmt(gpu.get('temperature.gpu'))} C, power limit {_fmt(gpu.get('power.limit'))} W)")
    return device.get("host") or "unknown device (no Jetson sysfs, no nvidia-smi)"


def format_table(report: dict) -> str:
    r, cfg = report["results"], report.get("config", {})
    pct = [f"{float(p):g}" for p in cfg.get("percentiles", (90, 95, 99))]
    lines = [
        f"model:      {report['model']}",
        f"backend:    {report['backend']}" + (f", precision {report['precision']}" if report.get("precision") else "")
        + f", batch {report['batch']}, {cfg.get('streams', 1)} stream(s)"
        + (", CUDA graph" if cfg.get("cuda_graph") else "") + ("" if cfg.get("transfers", True) else ", no transfers")
        + (", spin-wait" if cfg.get("spin_wait") else ""),
        f"device:     {device_line(report.get('device') or {})}",
        "software:   " + (", ".join(f"{k} {v}" for k, v in (report.get("software") or {}).items()) or "unknown"),
        f"run:        {r['queries']} queries in {r['walltime_s']:.3f} s after {_fmt(cfg.get('warmup_ms'))} ms warm-up",
        f"throughput: {r['throughput_qps']:.2f} qps, {r['throughput_samples_per_s']:.2f} samples/s",
        "",
        f"{'metric (ms)':<18}{'min':>10}{'mean':>10}{'median':>10}" + "".join(f"{'p' + p:>10}" for p in pct)
        + f"{'max':>10}{'cv':>8}",
    ]
    for label, key in (("latency", "latency_ms"), ("end to end", "end_to_end_ms"), ("enqueue", "enqueue_ms"),
                       ("H2D", "h2d_ms"), ("GPU compute" if r.get("device_timing", True) else "compute (host)", "compute_ms"),
                       ("D2H", "d2h_ms")):
        s = r.get(key)
        if not s:
            continue
        lines.append(f"{label:<18}{_fmt(s['min']):>10}{_fmt(s['mean']):>10}{_fmt(s['median']):>10}"
                     + "".join(f"{_fmt(s['percentiles'].get(p)):>10}" for p in pct)
                     + f"{_fmt(s['max']):>10}{s['cv']:>8.1%}")
    power = r.get("power")
    lines.append("")
    if power:
        lines.append(f"power:      {power['avg_w']:.2f} W average ({power['rule']}; {power['samples']} samples, "
                     f"{power['source']}), {power['energy_mj_per_sample']:.3f} mJ per sample")
    else:
        lines.append("power:      unknown (no power source readable on this machine)")
    for w in r.get("warnings", []):
        lines.append(f"warning:    {w['message']}")
    return "\n".join(lines)


def csv_row(report: dict) -> dict:
    r, cfg, dev = report["results"], report.get("config", {}), report.get("device") or {}
    lat = r.get("latency_ms") or {}
    pct = lat.get("percentiles", {})
    med = lambda k: (r.get(k) or {}).get("median")  # noqa: E731
    power = r.get("power") or {}
    mode = dev.get("nvpmodel") or {}
    gpu = dev.get("gpu") or {}
    return {
        "model": report["model"], "backend": report["backend"], "precision": report.get("precision") or "",
        "batch": report["batch"], "streams": cfg.get("streams", 1), "cuda_graph": int(bool(cfg.get("cuda_graph"))),
        "transfers": int(bool(cfg.get("transfers", True))), "queries": r["queries"],
        "walltime_s": r["walltime_s"], "throughput_qps": r["throughput_qps"],
        "throughput_samples_per_s": r["throughput_samples_per_s"],
        "latency_min_ms": lat.get("min"), "latency_mean_ms": lat.get("mean"), "latency_median_ms": lat.get("median"),
        "latency_p90_ms": pct.get("90"), "latency_p95_ms": pct.get("95"), "latency_p99_ms": pct.get("99"),
        "latency_max_ms": lat.get("max"), "latency_cv": lat.get("cv"),
        "compute_median_ms": med("compute_ms"), "h2d_median_ms": med("h2d_ms"), "d2h_median_ms": med("d2h_ms"),
        "enqueue_median_ms": med("enqueue_ms"),
        "power_avg_w": power.get("avg_w"), "energy_mj_per_sample": power.get("energy_mj_per_sample"),
        "power_source": power.get("source") or "unknown",
        "device": dev.get("module") or gpu.get("name") or "unknown", "module": dev.get("module") or "",
        "l4t": dev.get("l4t_release") or "", "nvpmodel": mode.get("name") or "",
        "jetson_clocks": dev.get("jetson_clocks", "unknown"),
        "warnings": "; ".join(w["kind"] for w in r.get("warnings", [])),
    }


def to_csv(rows: list) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def _ci_text(row) -> str:
    ci = row.get("worse_ci")
    return f"[{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else "-"


def format_comparison(cmp: dict, previous_path: str) -> str:
    lines = [f"compared with {previous_path} (regression: worse by more than {cmp['threshold']:.0%}, "
             f"with {cmp.get('confidence', CONFIDENCE):.0%} confidence where per-query times allow):",
             f"  {'metric':<40}{'previous':>12}    {'current':>12} {'change':>9}  {'worse, CI':>18}  verdict"]
    for row in cmp["rows"]:
        verdict = row.get("verdict") or ("REGRESSION" if row["regression"] else "ok")
        lines.append(f"  {row['metric']:<40}{_fmt(row['previous']):>12} -> {_fmt(row['current']):>12} "
                     f"{row['change']:>+9.1%}  {_ci_text(row):>18}  {verdict}")
    for note in cmp["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def format_comparison_markdown(cmp: dict, old: str, new: str) -> str:
    lines = [f"Benchmark diff: `{old}` -> `{new}` (regression: worse by more than {cmp['threshold']:.0%}, "
             f"{cmp.get('confidence', CONFIDENCE):.0%} confidence interval from per-query times)", "",
             "| metric | old | new | change | worse (CI) | verdict |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for row in cmp["rows"]:
        lines.append(f"| {row['metric']} | {_fmt(row['previous'])} | {_fmt(row['current'])} | {row['change']:+.1%} | "
                     f"{_ci_text(row)} | {'**REGRESSION**' if row['regression'] else row.get('verdict', 'ok')} |")
    if cmp["notes"]:
        lines.append("")
        lines += [f"- {n}" for n in cmp["notes"]]
    return "\n".join(lines) + "\n"
