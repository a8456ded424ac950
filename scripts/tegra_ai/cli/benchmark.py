"""model-benchmark: trtexec-compatible latency/throughput numbers with the device's
power mode, clocks and power in every report.

    model-benchmark MODEL_OR_ENGINE [--duration S] [--iterations N] [--warmup MS] [--shapes SPEC]
                    [--streams N] [--cuda-graph] [--no-data-transfers] [--spin-wait]
                    [--json | --csv] [--export-times FILE] [--compare PREVIOUS.json [--threshold PCT]]
    model-benchmark diff OLD.json NEW.json [--threshold PCT] [--json] [--markdown [FILE]]
    model-benchmark suite --models A.onnx B.onnx --precision fp32 fp16 --batch 1 4 8
                    --backend tensorrt|onnxruntime --out DIR

MODEL is a TensorRT engine (.engine/.plan: --backend tensorrt), an ONNX model (ONNX
Runtime on the CPU) or workload:MICROSECONDS (a CUDA kernel of known duration: measures
the harness itself on any NVIDIA GPU). Exit: 0 done, 1 a regression against --compare
or in diff (beyond the run-to-run noise), or a failed suite cell, 2 bad input, 69 a missing library or GPU, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys

from tegra_ai import __version__
from tegra_ai.cli.common import print_json, run_main, verbose_parent
from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, TegraAIError

PROG = "model-benchmark"


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _percentiles(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"percentiles must be in [0, 100], got {text!r}")
    return values


def _add_run_options(p):
    g = p.add_argument_group("timing (trtexec's meaning and defaults)")
    g.add_argument("--warmup", type=_positive_float, default=200.0, metavar="MS", help="warm-up time (default 200 ms)")
    g.add_argument("--duration", type=_positive_float, default=3.0, metavar="S",
                   help="measure at least S seconds (default 3)")
    g.add_argument("--iterations", type=int, default=10, metavar="N", help="and at least N queries (default 10)")
    g.add_argument("--percentile", type=_percentiles, default=(90.0, 95.0, 99.0), metavar="P[,P..]",
                   help="latency percentiles (default 90,95,99)")
    g.add_argument("--streams", type=int, default=1, metavar="N", help="CUDA streams, one execution context each")
    g.add_argument("--cuda-graph", action="store_true", help="replay each query as one CUDA graph")
    g.add_argument("--no-data-transfers", action="store_true", help="time the compute only (no H2D/D2H copies)")
    g.add_argument("--spin-wait", action="store_true", help="spin on events instead of blocking (lower latency, more CPU)")
    g.add_argument("--noisy-cv", type=float, default=10.0, metavar="PCT",
                   help="warn when GPU compute time varies more than PCT %% (stdev/mean; default 10)")
    p.add_argument("--power", choices=["auto", "sysfs", "tegrastats", "nvidia-smi", "none"], default="auto",
                   help="power source during the run (default auto: INA rails on Jetson, else tegrastats, "
                        "else nvidia-smi)")
    p.add_argument("--no-progress", action="store_true")


def _config(args):
    from tegra_ai.bench.harness import BenchConfig, prepare_streams

    if args.noisy_cv <= 0:
        raise TegraAIError(f"--noisy-cv must be a positive percentage, got {args.noisy_cv}", exit_code=EXIT_USAGE)
    prepare_streams(args.streams)   # before any CUDA context: hardware queues for N streams
    return BenchConfig(warmup_ms=args.warmup, duration_s=args.duration, iterations=args.iterations,
                       streams=args.streams, cuda_graph=args.cuda_graph, transfers=not args.no_data_transfers,
                       spin_wait=args.spin_wait, percentiles=args.percentile, noisy_cv=args.noisy_cv / 100).validate()


def _check_new_output(path, what):
    """An output must be creatable and must not overwrite a file this tool did not write."""
    from tegra_ai.cli.common import check_writable_output

    if os.path.isdir(path):
        raise TegraAIError(f"{what} {path} is a directory", exit_code=EXIT_USAGE)
    if os.path.exists(path):
        raise TegraAIError(f"{what} {path} already exists; not overwriting it", hint="remove it or choose another name",
                           exit_code=EXIT_USAGE)
    try:
        check_writable_output(path)
    except TegraAIError as exc:
        raise TegraAIError(exc.message, hint=exc.hint, exit_code=EXIT_USAGE) from None


def cmd_run(args):
    from tegra_ai.bench import report as report_mod
    from tegra_ai.bench.run import benchmark_model, shapes_dict
    from tegra_ai.spec import parse_profile
    from tegra_ai.util.atomic import atomic_write_json
    from tegra_ai.util.progress import Progress

    if args.json and args.csv:
        raise TegraAIError("--json and --csv are exclusive", exit_code=EXIT_USAGE)
    config = _config(args)
    shapes = {}
    for spec in args.shapes:
        for name, dims in shapes_dict(parse_profile(spec)).items():
            if name in shapes:
                raise TegraAIError(f"--shapes gives input {name!r} twice", exit_code=EXIT_USAGE)
            shapes[name] = dims
    if args.threshold is not None and not args.compare:
        raise TegraAIError("--threshold applies with --compare", exit_code=EXIT_USAGE)
    threshold = (args.threshold if args.threshold is not None else 5.0)
    if not 0 < threshold < 1000:
        raise TegraAIError(f"--threshold must be a percentage > 0, got {threshold}", exit_code=EXIT_USAGE)
    previous = None
    if args.compare:
        previous = report_mod.load_report(args.compare)
    if args.export_times:
        _check_new_output(args.export_times, "--export-times")
    outputs = {}
    for spec in args.workload_output:
        for name, dims in shapes_dict(parse_profile(spec)).items():
            outputs[name] = (dims, "float32")
    with Progress(f"{PROG}: {args.model}", enabled=not args.no_progress) as progress:
        rep = benchmark_model(args.model, backend=args.backend, config=config, shapes=shapes,
                              precision=None, dla_core=args.dla_core, power=args.power, progress=progress,
                              workload_outputs=outputs)
    code = 0
    if previous is not None:
        cmp = report_mod.compare(rep, previous, threshold / 100.0)
        rep["comparison"] = dict(cmp, previous=args.compare)
        code = EXIT_FAILURE if cmp["regressions"] else 0
    if args.export_times:
        atomic_write_json(args.export_times, rep["times"])
    if args.json:
        print_json(rep)
    elif args.csv:
        sys.stdout.write(report_mod.to_csv([report_mod.csv_row(rep)]))
    else:
        print(report_mod.format_table(rep))
        if previous is not None:
            print()
            print(report_mod.format_comparison(rep["comparison"], args.compare))
    return code


def cmd_suite(args):
    from tegra_ai.bench.suite import parse_model_shapes, run_suite
    from tegra_ai.util.progress import Progress

    shapes = parse_model_shapes(args.shapes, args.models)
    config = _config(args)
    with Progress(f"{PROG} suite", enabled=not args.no_progress) as progress:
        summary = run_suite(args.models, args.precision, args.batch, args.backend, args.out, config=config,
                            cache_dir=args.cache, calibration_cache=args.calibration_cache, power=args.power,
                            plots=not args.no_plots, progress=progress, force=args.force, shapes=shapes)
    if args.json:
        print_json(summary)
    else:
        for c in summary["cells"]:
            print(f"{c['name']:<40} {c['status']}" + (f": {c['error']}" if c.get("error") else ""))
        print(f"summary: {summary['files']['csv']}, {summary['files']['markdown']}"
              + "".join(f", {p}" for p in summary["files"]["plots"]))
    return EXIT_FAILURE if summary["failed"] else 0


def cmd_diff(args):
    from tegra_ai.bench import report as report_mod

    if args.json and args.markdown == "-":
        raise TegraAIError("--json and --markdown on stdout are exclusive (give --markdown FILE)",
                           exit_code=EXIT_USAGE)
    if args.markdown and args.markdown != "-":
        _check_new_output(args.markdown, "--markdown")
    threshold = 5.0 if args.threshold is None else args.threshold
    if not 0 < threshold < 1000:
        raise TegraAIError(f"--threshold must be a percentage > 0, got {threshold}", exit_code=EXIT_USAGE)
    old = report_mod.load_report(args.old, what="report")
    new = report_mod.load_report(args.new, what="report")
    cmp = report_mod.compare(new, old, threshold / 100.0)
    if args.markdown and args.markdown != "-":
        from tegra_ai.util.atomic import atomic_write_text

        atomic_write_text(args.markdown, report_mod.format_comparison_markdown(cmp, args.old, args.new))
    if args.json:
        print_json(dict(cmp, old=args.old, new=args.new))
    elif args.markdown == "-":
        sys.stdout.write(report_mod.format_comparison_markdown(cmp, args.old, args.new))
    else:
        print(report_mod.format_comparison(cmp, args.old))
    return EXIT_FAILURE if cmp["regressions"] else 0


def build_diff_parser():
    p = argparse.ArgumentParser(prog=f"{PROG} diff", description="compare two saved reports (model-benchmark "
                                "--json): exit 1 when NEW regressed beyond the noise of the two runs",
                                parents=[verbose_parent()])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("old", metavar="OLD.json")
    p.add_argument("new", metavar="NEW.json")
    p.add_argument("--threshold", type=float, metavar="PCT", help="regression threshold (default 5 %%)")
    p.add_argument("--json", action="store_true", help="the comparison as JSON on stdout")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                   help="the comparison as a Markdown table, on stdout or in FILE (a new file)")
    p.set_defaults(func=cmd_diff)
    return p


def build_run_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[verbose_parent()])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("model", metavar="MODEL_OR_ENGINE",
                   help="a TensorRT engine, an ONNX model, or workload:MICROSECONDS; 'suite' starts a suite")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "cuda-workload"])
    p.add_argument("--shapes", action="append", default=[], metavar="SPEC",
                   help="input shapes, e.g. images:1x3x640x640 (tensorrt-optimize's grammar; opt is used)")
    p.add_argument("--workload-output", action="append", default=[], metavar="NAME:DIMS",
                   help="outputs of workload:... (float32), copied back each query")
    p.add_argument("--dla-core", type=int, metavar="N", help="record the DLA core the engine was built for")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="the full report (with per-query times) as JSON on stdout")
    out.add_argument("--csv", action="store_true", help="one CSV row (with header) on stdout")
    out.add_argument("--export-times", metavar="FILE", help="per-query times in trtexec's --exportTimes layout")
    out.add_argument("--compare", metavar="PREVIOUS.json", help="a previous --json report: exit 1 on a regression")
    out.add_argument("--threshold", type=float, metavar="PCT", help="regression threshold (default 5 %%)")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)
    return p


def build_suite_parser():
    p = argparse.ArgumentParser(prog=f"{PROG} suite", description="models x precisions x batch sizes -> "
                                "summary.csv, summary.md and PNG plots in --out; finished cells are reused",
                                parents=[verbose_parent()])
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL.onnx")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "int8"])
    p.add_argument("--batch", nargs="+", type=int, default=[1], metavar="N")
    p.add_argument("--backend", default="tensorrt", choices=["tensorrt", "onnxruntime"])
    p.add_argument("--shapes", action="append", default=[], metavar="MODEL=NAME:DIMS[,NAME:DIMS]",
                   help="shapes of a model's inputs with dynamic dimensions besides the batch, e.g. "
                        "yolo.onnx=images:1x3x480x640 (the first dimension is replaced by each --batch); repeatable")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--cache", metavar="DIR", help="engine cache (default DIR/engines)")
    p.add_argument("--calibration-cache", metavar="FILE", help="INT8 calibration cache (needed for int8)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--force", action="store_true", help="re-run finished cells")
    p.add_argument("--json", action="store_true", help="the suite summary as JSON on stdout")
    _add_run_options(p)
    p.set_defaults(func=cmd_suite)
    return p


def main(argv=None) -> int:
    # run_main turns SIGINT/SIGTERM into 130/143 after unwinding (power samplers stopped,
    # no half-written file).
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "suite":
        return run_main(f"{PROG} suite", build_suite_parser(), argv[1:])
    if argv and argv[0] == "diff":
        return run_main(f"{PROG} diff", build_diff_parser(), argv[1:])
    return run_main(PROG, build_run_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
