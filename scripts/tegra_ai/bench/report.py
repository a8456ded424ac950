"""Benchmark reports: the JSON document (``format: tegra-ai-benchmark``), a human
table, CSV rows, and the comparison with a previous report."""

from __future__ import annotations

import csv
import datetime
import io
import json
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

# (metric label, path into results, True when higher is better)
COMPARED = (
    ("throughput (qps)", ("throughput_qps",), True),
    ("latency median (ms)", ("latency_ms", "median"), False),
    ("latency p99 (ms)", ("latency_ms", "percentiles", "99"), False),
    ("GPU compute median (ms)", ("compute_ms", "median"), False),
)


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


def load_report(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise TegraAIError(f"previous report {path} does not exist", exit_code=EXIT_USAGE) from None
    except OSError as exc:
        raise TegraAIError(f"cannot read previous report {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TegraAIError(f"{path} is not JSON ({exc.__class__.__name__})",
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


def compare(current: dict, previous: dict, threshold: float = DEFAULT_REGRESSION_THRESHOLD) -> dict:
    """{"rows": [...], "regressions": n, "notes": [...]} — a row regresses when the metric
    moved the wrong way by more than ``threshold`` (relative)."""
    rows = []
    for label, path, higher_better in COMPARED:
        cur, prev = _get(current["results"], path), _get(previous["results"], path)
        if cur is None or prev is None or prev == 0:
            continue
        change = (cur - prev) / prev
        worse = -change if higher_better else change
        rows.append({"metric": label, "previous": prev, "current": cur, "change": change,
                     "regression": worse > threshold})
    notes = []
    for key in ("backend", "precision", "batch", "model"):
        if current.get(key) != previous.get(key):
            notes.append(f"{key} differs: {previous.get(key)} -> {current.get(key)}")
    cd, pd = current.get("device") or {}, previous.get("device") or {}
    for key in ("module", "l4t_release", "nvpmodel", "jetson_clocks"):
        if cd.get(key) != pd.get(key):
            notes.append(f"device {key} differs: {pd.get(key)} -> {cd.get(key)}")
    return {"threshold": threshold, "rows": rows, "regressions": sum(r["regression"] for r in rows), "notes": notes}


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


def format_comparison(cmp: dict, previous_path: str) -> str:
    lines = [f"compared with {previous_path} (regression threshold {cmp['threshold']:.0%}):"]
    for row in cmp["rows"]:
        flag = "REGRESSION" if row["regression"] else "ok"
        lines.append(f"  {row['metric']:<26}{_fmt(row['previous']):>12} -> {_fmt(row['current']):>12} "
                     f"({row['change']:+.1%})  {flag}")
    for note in cmp["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
