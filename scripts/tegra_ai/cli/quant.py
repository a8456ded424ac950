"""tensorrt-optimize quantize | convert-fp16 | compare: INT8 and FP16 on the host, with an
accuracy gate. Argument parsing and wiring only; the work is in :mod:`tegra_ai.quant`."""

from __future__ import annotations

import os
import sys

from tegra_ai.cli.common import check_writable_output, print_json
from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, TegraAIError


def _fresh_output(path: str, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise TegraAIError(f"{path} exists", hint="pass --force to replace it", exit_code=EXIT_USAGE)
    if os.path.isdir(path):
        raise TegraAIError(f"{path} is a directory", exit_code=EXIT_USAGE)
    check_writable_output(path)


def _exists(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise TegraAIError(f"{what} {path} does not exist", exit_code=EXIT_USAGE)


def _gate(args):
    from tegra_ai.quant.compare import Gate

    for name in ("min_cosine", "max_top1_drop", "min_box_recall"):
        v = getattr(args, name, None)
        if v is not None and (v != v or v < 0 or (name != "max_top1_drop" and v > 1)):
            flag = "--" + name.replace("_", "-")
            raise TegraAIError(f"{flag} {v} is out of range" + (" (0..1)" if name != "max_top1_drop" else " (>= 0)"),
                               exit_code=EXIT_USAGE)
    return Gate(min_cosine=args.min_cosine, max_top1_drop=args.max_top1_drop,
                min_box_recall=getattr(args, "min_box_recall", None))


def _write_report(path: str | None, text: str) -> None:
    if path:
        from tegra_ai.util.atomic import atomic_write_text

        atomic_write_text(path, text)


def cmd_quantize(args):
    from tegra_ai.util.progress import Progress

    _exists(args.model, "model")
    _exists(args.calibration, "calibration data")
    _fresh_output(args.output, args.force)
    gate = _gate(args)
    if (gate.active() or args.labels) and not args.gate:
        raise TegraAIError("--min-cosine/--max-top1-drop/--labels need --gate DATA.npz", exit_code=EXIT_USAGE)
    if args.budget is not None and args.budget < 0:
        raise TegraAIError("--budget must be >= 0", exit_code=EXIT_USAGE)
    kwargs = {"target": args.target, "method": args.method, "exclude": args.exclude, "backend": args.backend,
              "max_samples": args.max_samples}
    if args.gate:
        from tegra_ai.quant.compare import format_markdown
        from tegra_ai.quant.fallback import quantize_with_gate

        _exists(args.gate, "gate data")
        if not gate.active():
            raise TegraAIError("--gate needs a threshold: --min-cosine and/or --max-top1-drop", exit_code=EXIT_USAGE)
        with Progress(f"quantizing {os.path.basename(args.model)} with an accuracy gate",
                      enabled=not args.no_progress) as progress:
            result = quantize_with_gate(args.model, args.calibration, args.output, args.gate, gate, labels=args.labels,
                                        budget=args.budget, progress=progress, **kwargs)
        _write_report(args.markdown, format_markdown(result["final"]))
        if args.json:
            print_json(result)
        else:
            s = result["steps"][-1]
            print(f"{'PASSED' if result['passed'] else 'FAILED'}: {len(result['quantized_layers'])} layer(s) INT8, "
                  f"{len(result['kept_float'])} kept in float" + (f" ({', '.join(result['kept_float'])}; "
                  f"{100 * result['cost']['weights_kept_float']:.1f} % of the weights)" if result["kept_float"] else ""))
            for name, m in s["metrics"].items():
                print(f"  {name}: " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
            for f in s["failures"]:
                print(f"  gate: {f}")
            print(f"{args.output}" if result["passed"] else "no model written (the gate did not pass within the budget)")
        return 0 if result["passed"] else EXIT_FAILURE
    from tegra_ai.quant.qdq import quantize

    with Progress(f"quantizing {os.path.basename(args.model)}", enabled=not args.no_progress):
        res = quantize(args.model, args.calibration, args.output, **kwargs)
    if args.json:
        print_json(res.to_dict())
    else:
        print(f"{args.output}: {len(res.quantized_nodes)} layer(s) INT8 ({res.qdq_nodes} Q/DQ nodes, opset {res.opset}, "
              f"{res.method} calibration on {res.samples} samples, target {res.target})")
        if res.excluded_nodes:
            print(f"kept in float: {', '.join(res.excluded_nodes)}")
        for n in res.notes:
            print(f"note: {n}")
    return 0


def cmd_convert_fp16(args):
    from tegra_ai.onnx_fp16 import convert_fp16

    _exists(args.model, "model")
    _fresh_output(args.output, args.force)
    gate = _gate(args)
    if gate.active() and not args.data:
        raise TegraAIError("--min-cosine/--max-top1-drop need --data DATA.npz", exit_code=EXIT_USAGE)
    if args.data:
        _exists(args.data, "data")
    if not args.data:
        summary = convert_fp16(args.model, args.output, keep_fp32=args.keep_fp32)
        report = None
    else:
        import tempfile

        from tegra_ai.quant.compare import compare
        from tegra_ai.util.atomic import atomic_write_bytes, write_errors_named

        out_dir = os.path.dirname(os.path.abspath(args.output))
        with write_errors_named(out_dir), tempfile.TemporaryDirectory(prefix=".tegra-ai-fp16-", dir=out_dir) as tmp:
            tmp_out = os.path.join(tmp, "fp16.onnx")
            summary = convert_fp16(args.model, tmp_out, keep_fp32=args.keep_fp32)
            report = compare(args.model, tmp_out, args.data, labels=args.labels, gate=gate)
            report["candidate"] = args.output
            if report["passed"] is not False:
                with open(tmp_out, "rb") as f:
                    atomic_write_bytes(args.output, f.read())
        summary["output"] = args.output if report["passed"] is not False else None
        summary["accuracy"] = report
    if args.json:
        print_json(summary)
    else:
        if summary["output"]:
            print(f"{args.output}: FP16 with FP32 inputs/outputs; {len(summary['kept_fp32'])} of {summary['nodes']} "
                  f"node(s) kept in FP32, {summary['casts_added']} Cast(s) added")
        if report is not None:
            from tegra_ai.quant.compare import format_markdown

            print(format_markdown(report), end="")
            if report["passed"] is False:
                print("no model written (the gate failed)")
    return EXIT_FAILURE if report is not None and report["passed"] is False else 0


def cmd_compare(args):
    from tegra_ai.quant.compare import compare, format_markdown

    _exists(args.reference, "reference")
    _exists(args.candidate, "candidate")
    _exists(args.data, "data")
    if args.max_samples is not None and args.max_samples <= 0:
        raise TegraAIError("--max-samples must be positive", exit_code=EXIT_USAGE)
    report = compare(args.reference, args.candidate, args.data, labels=args.labels, gate=_gate(args),
                     detections=args.detections, max_samples=args.max_samples)
    md = format_markdown(report)
    _write_report(args.markdown, md)
    if args.json:
        print_json(report)
    else:
        print(md, end="")
    return EXIT_FAILURE if report["passed"] is False else 0


def _gate_flags(p, labels=True):
    p.add_argument("--min-cosine", type=float, metavar="X", help="gate: every output's cosine similarity >= X (0..1)")
    p.add_argument("--max-top1-drop", type=float, metavar="POINTS",
                   help="gate: classifier top-1 accuracy drop <= POINTS percentage points (without --labels: "
                        "100 x (1 - top-1 agreement))")
    if labels:
        p.add_argument("--labels", metavar="LABELS", help="class indices of the samples, .npy (N,) or a "
                       "calibration-dataset .npz of class sub-folders (its _labels): accuracies of both")


def add_commands(sub, parents=()):
    from tegra_ai.cli.common import add_renamed_option
    from tegra_ai.onnx_tools.targets import target_names
    from tegra_ai.quant.compare import DETECTION_FORMATS
    from tegra_ai.quant.qdq import BACKENDS, METHODS

    p = sub.add_parser("quantize", parents=list(parents), help="INT8 Q/DQ ONNX on the host (explicit quantization), optionally gated")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--calibration", required=True, metavar="DATA.npz", help="calibration samples (calibration-dataset)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.int8.onnx")
    p.add_argument("--target", default="jetpack6", help=f"{', '.join(target_names())} (default jetpack6; jetpack5 keeps "
                   "opset <= 17 and TensorRT 8.5's Q/DQ form)")
    p.add_argument("--method", default="entropy", choices=METHODS, help="activation range calibration (default entropy)")
    p.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="NODE_OR_OPTYPE",
                   help="keep these nodes (names) or operator types in float")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                   help="onnxruntime (default) or NVIDIA Model Optimizer's ONNX PTQ where installed")
    p.add_argument("--max-samples", type=int, metavar="N", help="calibrate on the first N samples")
    g = p.add_argument_group("accuracy gate with automatic mixed-precision fallback")
    g.add_argument("--gate", metavar="DATA.npz", help="samples to check the quantized model on (held out)")
    _gate_flags(g)
    g.add_argument("--budget", type=int, metavar="N", help="keep at most N layers in float (default: half of them)")
    g.add_argument("--markdown", metavar="REPORT.md", help="write the final accuracy report as Markdown")
    add_renamed_option(g, "--report", "--markdown", metavar="REPORT.md")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("convert-fp16", parents=list(parents), help="FP16 ONNX on the host (for strongly typed TensorRT 11 / TensorRT-RTX)")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.fp16.onnx")
    p.add_argument("--keep-fp32", nargs="+", action="extend", default=[], metavar="NODE_OR_OPTYPE",
                   help="more nodes or operator types to keep in FP32")
    p.add_argument("--data", metavar="DATA.npz", help="check the result against the FP32 model on these samples")
    _gate_flags(p)
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert_fp16)

    p = sub.add_parser("compare", parents=list(parents), help="accuracy of a Q/DQ, FP16 ONNX or engine against the FP32 ONNX; a gate with thresholds")
    p.add_argument("reference", help="FP32 ONNX model (run on ONNX Runtime)")
    p.add_argument("candidate", help="ONNX model (ONNX Runtime) or TensorRT engine (TensorRT, on the device)")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="samples, one array per input")
    _gate_flags(p)
    p.add_argument("--min-box-recall", type=float, metavar="X", help="gate (detectors): candidate box recall >= X")
    p.add_argument("--detections", choices=DETECTION_FORMATS, help="compare detector outputs as boxes after NMS "
                   "(yolo: N x (4+classes) x anchors)")
    p.add_argument("--max-samples", type=int, metavar="N")
    p.add_argument("--markdown", metavar="REPORT.md", help="also write the report as Markdown")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)


__all__ = ["add_commands"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: tensorrt-optimize quantize|convert-fp16|compare")
