"""Models x precisions x batch sizes, one report per cell, then ``summary.csv``,
``summary.md`` and PNG plots in the output directory.

- Cells are ``DIR/cells/<model>-<precision>-b<batch>.json`` (full reports, written
  atomically); a re-run with the same settings reuses the finished ones.
- TensorRT: the engine of each cell comes from the engine cache (``tegra_ai.cache``;
  built on this GPU by ``trt.builder`` on a miss, keyed as everywhere else). INT8
  needs calibration (``calibration_cache``); without it the suite refuses INT8 up
  front instead of building an engine with made-up scales.
- ONNX Runtime runs the model's fp32 graph on the CPU: it has no fp16/int8 switch
  equal to TensorRT's, so other precisions are refused, not faked.
"""

from __future__ import annotations

import logging
import os
import re

from tegra_ai.bench import harness, report as report_mod
from tegra_ai.errors import (EXIT_CANTCREAT, EXIT_UNAVAILABLE, EXIT_USAGE, WRITE_ERRNOS, MissingDependencyError,
                             TegraAIError, write_error)
from tegra_ai.util.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger("tegra_ai.bench.suite")
SUITE_BACKENDS = ("tensorrt", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def cell_name(model: str, precision: str, batch: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(model))[0]) or "model"
    return f"{stem}-{precision}-b{batch}"


def model_input(model: str):
    """(name, dims with None for dynamic) of the model's first input, through onnx."""
    from tegra_ai.util.lazy import require

    onnx = require("onnx", extra="onnx", purpose="reading the model's inputs")
    try:
        m = onnx.load(model, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for a bad file
        raise _usage(f"{model} is not a readable ONNX model ({exc.__class__.__name__})") from None
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    if not inputs:
        raise _usage(f"{model} has no inputs")
    out = []
    for i in inputs:
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in i.type.tensor_type.shape.dim)
        out.append((i.name, dims))
    return out


def parse_model_shapes(items, models) -> dict:
    """``--shapes MODEL=NAME:DIMS[,NAME:DIMS]`` (repeatable) -> {model: {input: dims}}.
    MODEL is a path given to ``--models`` or its file name; the first dimension of DIMS is
    the batch and each cell replaces it with its ``--batch`` value."""
    from tegra_ai.spec import parse_profile

    out = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key or not spec:
            raise _usage(f"--shapes {item!r}: expected MODEL=NAME:DIMS[,NAME:DIMS], e.g. "
                         "yolo.onnx=images:1x3x480x640")
        matches = [m for m in models if m == key or os.path.basename(m) == key]
        if len(matches) != 1:
            raise _usage(f"--shapes {item!r}: {key} is {'not one of' if not matches else 'ambiguous among'} "
                         f"--models ({', '.join(models)})")
        model = matches[0]
        if model in out:
            raise _usage(f"--shapes gives {key} twice; join its inputs with commas")
        dims = {}
        for s in parse_profile(spec):
            if s.values:
                raise _usage(f"--shapes {item!r}: shape-tensor values (NAME=...) are a build option; give NAME:DIMS")
            if s.min != s.max:
                raise _usage(f"--shapes {item!r}: give one shape per input (NAME:DIMS), not MIN:OPT:MAX")
            dims[s.name] = tuple(s.opt)
        out[model] = dims
    return out


def cell_shapes(model: str, batch: int, given: dict | None = None) -> dict:
    """Every input at ``batch``: the first dimension must be dynamic or equal ``batch``;
    other dynamic dimensions come from ``given`` (``--shapes``: input -> dims, whose first
    dimension is replaced by ``batch``) and cannot be guessed."""
    given = dict(given or {})
    inputs = model_input(model)
    unknown = sorted(set(given) - {n for n, _ in inputs})
    if unknown:
        raise _usage(f"{model}: --shapes names unknown input(s) {', '.join(unknown)} "
                     f"(inputs: {', '.join(n for n, _ in inputs)})")
    shapes = {}
    for name, dims in inputs:
        if not dims:
            raise _usage(f"{model}: input {name!r} is a scalar; a batch sweep needs a batch dimension")
        if dims[0] is not None and dims[0] != batch:
            raise _usage(f"{model}: input {name!r} has a fixed batch of {dims[0]}, cannot run batch {batch}",
                         hint="export the model with a dynamic batch dimension")
        if name in given:
            g = given[name]
            if len(g) != len(dims) or any(d is not None and d != v for d, v in zip(dims[1:], g[1:])):
                raise _usage(f"{model}: --shapes {name}:{'x'.join(map(str, g))} does not fit the input "
                             f"{['?' if d is None else d for d in dims]}")
            shapes[name] = (batch,) + tuple(g[1:])
            continue
        if any(d is None for d in dims[1:]):
            raise _usage(f"{model}: input {name!r} has dynamic dimensions besides the batch {list(dims)}",
                         hint=f"give them: --shapes {os.path.basename(model)}={name}:"
                              + "x".join("1" if i == 0 else ("H" if d is None else str(d)) for i, d in enumerate(dims)))
        shapes[name] = (batch,) + tuple(dims[1:])
    return shapes


def model_precision(model: str) -> str:
    from tegra_ai.bench.run import onnx_precision

    return onnx_precision(model)


def validate(models, precisions, batches, backend, calibration_cache=None):
    if backend not in SUITE_BACKENDS:
        raise _usage(f"suite backend {backend!r}: expected one of {', '.join(SUITE_BACKENDS)}")
    if not models:
        raise _usage("--models needs at least one ONNX model")
    for m in models:
        if not os.path.isfile(m):
            raise _usage(f"model {m} does not exist" if not os.path.exists(m) else f"model {m} is not a file")
        if not m.lower().endswith(".onnx"):
            raise _usage(f"suite models are ONNX files; {m} is not (.onnx)",
                         hint="benchmark a built engine with model-benchmark ENGINE")
    stems = [cell_name(m, "x", 1) for m in models]
    if len(set(stems)) != len(stems):
        raise _usage("two models have the same file name; their cells would collide", hint="rename one")
    for p in precisions:
        if p not in PRECISIONS:
            raise _usage(f"precision {p!r}: expected one of {', '.join(PRECISIONS)}")
    if backend == "onnxruntime" and any(p != "fp32" for p in precisions):
        raise _usage("ONNX Runtime (CPU) runs the model's graph in its own types (an FP16 ONNX makes an fp16 "
                     "cell); --precision fp16/int8 are TensorRT builder precisions",
                     hint="leave --precision out, or use --backend tensorrt on the device")
    if "int8" in precisions and not calibration_cache:
        raise _usage("int8 needs calibration data: no INT8 engine is built with made-up scales",
                     hint="give --calibration-cache FILE (from 'tensorrt-optimize quantize' or a build with "
                          "--calibration), or leave int8 out")
    if calibration_cache and not os.path.isfile(calibration_cache):
        raise _usage(f"calibration cache {calibration_cache} does not exist")
    for b in batches:
        if b < 1:
            raise _usage(f"batch {b} must be >= 1")
    if len(set(batches)) != len(batches) or len(set(precisions)) != len(precisions):
        raise _usage("--batch and --precision values must not repeat")


def ensure_engine(model: str, precision: str, shapes: dict, cache_dir: str, calibration_cache: str | None = None,
                  show_progress: bool = False, contexts: int = 1):
    """(engine path, "hit"|"built") through the engine cache, keyed as ``ensure`` keys
    (:mod:`tegra_ai.spec`): one static profile at the cell's shapes, once per execution
    context (``contexts``: the benchmark's streams) when the model's inputs are dynamic."""
    from tegra_ai.cache.store import TIMING_CACHE, EngineCache
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions, BuildRequest, InputShapes, check_model_name, hash_calibration
    from tegra_ai.trt import compat
    from tegra_ai.trt.builder import build_engine, engine_key, target_facts

    trt, feats = compat.load()
    if feats.is_rtx:
        raise TegraAIError("TensorRT-RTX builds engines for RTX GPUs ahead of time; this suite runs engines here "
                           "and needs full TensorRT on the Jetson", exit_code=EXIT_UNAVAILABLE)
    engines = EngineCache(cache_dir)
    options = BuildOptions(precision=precision,
                           profiles=(tuple(InputShapes(n, tuple(d), tuple(d), tuple(d)) for n, d in shapes.items()),),
                           calibration_sha256=hash_calibration(cache=calibration_cache), contexts=contexts)
    facts = target_facts(feats, None)
    sha, _files = model_digest(model, engines.memo)
    key, _material = engine_key(sha, options, feats, facts)
    name = check_model_name(cell_name(model, precision, next(iter(shapes.values()))[0]))
    with engines.lock(name):        # no lock on a read-only cache (EngineCache.lock says why)
        found, how = engines.lookup(name, key), "hit"
        if found is None and engines.read_only is not None:
            raise engines.read_only_error(name, key, engines.describe_miss(name, key))
        if found is None:
            request = BuildRequest(model=model, options=options, calibration_cache=calibration_cache,
                                   timing_cache=os.path.join(engines.root, TIMING_CACHE))
            result = build_engine(request, show_progress=show_progress, memo=engines.memo)
            found, how = engines.store(name, key, result.engine, result.sidecar), "built"
    # The memo is the whole cache's: saved under the cache lock, merged with what other runs
    # saved (as ensure saves it), after the model lock is released.
    engines.save_memo()
    return found[0], how


def _settings(backend, timing: harness.BenchConfig) -> dict:
    return {"backend": backend, "config": timing.to_dict()}


def run_suite(models, precisions, batches, backend, out_dir, *, config: harness.BenchConfig | None = None,
              cache_dir: str | None = None, calibration_cache: str | None = None, power: str = "auto",
              plots: bool = True, progress=None, device_root: str = "/", force: bool = False,
              shapes: dict | None = None) -> dict:
    """Run every cell; returns {"cells": [...], "files": {...}, "failed": n}.

    ``shapes``: {model: {input: dims}} for inputs with dynamic dimensions besides the
    batch (:func:`parse_model_shapes`). On ONNX Runtime a cell's precision is the graph's
    own (:func:`model_precision`): an FP16 ONNX is an fp16 cell, not fp32."""
    timing = (config or harness.BenchConfig()).validate()
    validate(models, precisions, batches, backend, calibration_cache)
    shapes = shapes or {}
    for model, given in shapes.items():      # bad --shapes are bad input (exit 2), not failed cells
        for b in batches:
            cell_shapes(model, b, given)
    if backend == "onnxruntime":
        # ONNX Runtime computes in the graph's own types; the label says which
        plan = [(m, model_precision(m), b) for m in models for b in batches]
    else:
        plan = [(m, p, b) for m in models for p in precisions for b in batches]
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise _usage(f"--out {out_dir} exists and is not a directory")
    cells_dir = os.path.join(out_dir, "cells")
    made = [d for d in (out_dir, cells_dir) if not os.path.exists(d)]   # ours to take back if nothing is written
    try:
        return _run_plan(plan, shapes, backend, timing, out_dir, cells_dir, cache_dir, calibration_cache,
                         power, plots, progress, device_root, force)
    except BaseException:
        for d in reversed(made):    # a suite that stops (full disk, read-only --out) leaves no empty folder
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise


def _run_plan(plan, shapes, backend, timing, out_dir, cells_dir, cache_dir, calibration_cache, power, plots,
              progress, device_root, force) -> dict:
    from tegra_ai.bench.run import benchmark_model

    try:
        os.makedirs(cells_dir, exist_ok=True)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:       # read-only, full, not ours: 73, as every other write
            raise write_error(cells_dir, exc) from None
        raise _usage(f"cannot create {cells_dir}: {exc.strerror}") from None
    cache_dir = cache_dir or os.path.join(out_dir, "engines")
    settings = _settings(backend, timing)
    cells = []
    for i, (model, precision, batch) in enumerate(plan, 1):
        name = cell_name(model, precision, batch)
        path = os.path.join(cells_dir, name + ".json")
        if progress is not None:
            progress.update(f"cell {i}/{len(plan)}: {name}")
        cell = {"name": name, "model": model, "precision": precision, "batch": batch, "report": path}
        previous = None if force else _load_cell(path, settings)
        if previous is not None and model in shapes:
            try:
                if previous.get("shapes") != {k: list(v) for k, v in cell_shapes(model, batch, shapes[model]).items()}:
                    previous = None          # other --shapes: run the cell again
            except TegraAIError:
                previous = None
        if previous is not None:
            cell.update(status="reused", result=previous)
            cells.append(cell)
            continue
        try:
            cshapes = cell_shapes(model, batch, shapes.get(model))
            target = model
            if backend == "tensorrt":
                target, how = ensure_engine(model, precision, cshapes, cache_dir, calibration_cache,
                                            contexts=timing.streams)
                cell["engine"], cell["engine_status"] = target, how
            rep = benchmark_model(target, backend=backend, config=timing, shapes=cshapes, precision=precision,
                                  power=power, device_root=device_root)
            rep["model"] = model
            rep["suite"] = settings
            atomic_write_json(path, rep)
            cell.update(status="ran", result=rep)
        except MissingDependencyError:
            raise
        except TegraAIError as exc:
            if exc.exit_code in (EXIT_UNAVAILABLE, EXIT_CANTCREAT):   # no TensorRT; a cache that cannot be written
                raise
            log.warning("%s: %s", name, exc)
            cell.update(status="failed", error=str(exc))
        cells.append(cell)
    files = write_summary(cells, out_dir, plots=plots)
    return {"cells": [{k: v for k, v in c.items() if k != "result"} for c in cells], "files": files,
            "failed": sum(c["status"] == "failed" for c in cells)}


def _load_cell(path: str, settings: dict):
    from tegra_ai.util.jsonfile import JSONFileError, read_json_file

    try:
        rep = read_json_file(path)
    except JSONFileError:     # an unreadable earlier cell is run again
        return None
    if not isinstance(rep, dict) or rep.get("format") != report_mod.FORMAT or rep.get("suite") != settings:
        return None
    return rep


def write_summary(cells: list, out_dir: str, plots: bool = True) -> dict:
    rows = [report_mod.csv_row(c["result"]) for c in cells if c.get("result")]
    files = {}
    csv_path = os.path.join(out_dir, "summary.csv")
    atomic_write_bytes(csv_path, report_mod.to_csv(rows).encode())
    files["csv"] = csv_path
    md_path = os.path.join(out_dir, "summary.md")
    png = []
    plot_note = None
    if plots and rows:
        try:
            png = write_plots(rows, out_dir)
        except MissingDependencyError as exc:
            plot_note = f"plots skipped: {exc}"
            log.warning(plot_note)
    atomic_write_bytes(md_path, markdown(cells, rows, png, plot_note).encode())
    files["markdown"] = md_path
    files["plots"] = png
    return files


def _f(v, fmt):
    return "-" if v is None or v == "" else format(float(v), fmt)


def markdown(cells: list, rows: list, plots: list, plot_note: str | None = None) -> str:
    first = next((c["result"] for c in cells if c.get("result")), None)
    lines = ["# model-benchmark suite", ""]
    if first:
        dev, cfg = first.get("device") or {}, first.get("config") or {}
        lines += [f"Device: {report_mod.device_line(dev)}.",
                  f"Backend {first['backend']}; warm-up {cfg.get('warmup_ms')} ms, at least {cfg.get('duration_s')} s "
                  f"and {cfg.get('iterations')} queries per cell; latency = H2D + compute + D2H "
                  "(trtexec's definition); percentiles as trtexec computes them.", ""]
    lines += ["| model | precision | batch | median ms | p99 ms | cv | samples/s | W | mJ/sample | warnings |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {os.path.basename(r['model'])} | {r['precision']} | {r['batch']} | "
                     f"{_f(r['latency_median_ms'], '.4g')} | {_f(r['latency_p99_ms'], '.4g')} | "
                     f"{_f(r['latency_cv'], '.1%')} | {_f(r['throughput_samples_per_s'], '.1f')} | "
                     f"{_f(r['power_avg_w'], '.2f')} | {_f(r['energy_mj_per_sample'], '.3g')} | {r['warnings'] or ''} |")
    failed = [c for c in cells if c["status"] == "failed"]
    if failed:
        lines += ["", "Failed cells:", ""] + [f"- {c['name']}: {c['error']}" for c in failed]
    if plots:
        lines += [""] + [f"![{os.path.splitext(os.path.basename(p))[0]}]({os.path.basename(p)})" for p in plots]
    if plot_note:
        lines += ["", plot_note]
    return "\n".join(lines) + "\n"


def write_plots(rows: list, out_dir: str) -> list:
    """latency.png, throughput.png (and energy.png when power was measured): per model
    and precision, the metric against batch size."""
    from tegra_ai.util.lazy import require

    matplotlib = require("matplotlib", extra="plot", purpose="suite plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    series = {}
    for r in rows:
        series.setdefault((os.path.basename(r["model"]), r["precision"]), []).append(r)
    charts = [("latency.png", "latency_median_ms", "median latency (ms)"),
              ("throughput.png", "throughput_samples_per_s", "throughput (samples/s)")]
    if any(r.get("energy_mj_per_sample") not in (None, "") for r in rows):
        charts.append(("energy.png", "energy_mj_per_sample", "energy per sample (mJ)"))
    out = []
    for fname, key, label in charts:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for (model, precision), rs in sorted(series.items()):
            pts = sorted((int(r["batch"]), float(r[key])) for r in rs if r.get(key) not in (None, ""))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{model} {precision}")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(label + " vs batch")
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out
