"""tensorrt-optimize: ONNX -> verified TensorRT engine, host preflight, bundles and the engine cache."""

from __future__ import annotations

import argparse
import os
import sys

from tegra_ai import __version__
from tegra_ai.cli.common import check_writable_output, print_json, run_main
from tegra_ai.errors import EXIT_USAGE, TegraAIError

PROG = "tensorrt-optimize"


def _add_build_options(p):
    g = p.add_argument_group("build options (the same for build, bundle and the Yocto class)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8", "best"],
                   help="auto: FP16 where the TensorRT release has weak typing, else the model's own types; "
                        "int8 needs --calibration(-cache) or a Q/DQ model; best: FP16 + INT8 when INT8 is possible")
    g.add_argument("--shapes", action="append", default=[], metavar="SPEC",
                   help="one optimization profile: NAME:MIN:OPT:MAX (dims like 1x3x640x640) or NAME:DIMS, "
                        "comma-separated for several inputs; repeat for several profiles")
    g.add_argument("--workspace", metavar="SIZE", help="builder workspace limit, e.g. 512M, 2G")
    st = g.add_mutually_exclusive_group()
    st.add_argument("--strongly-typed", dest="strongly_typed", action="store_true", default=None,
                    help="strongly typed network (default: automatic for Q/DQ models and on TensorRT 11)")
    st.add_argument("--weakly-typed", dest="strongly_typed", action="store_false",
                    help="force weak typing (TensorRT <= 10.x)")
    g.add_argument("--dla-core", type=int, metavar="N", help="build for DLA core N (Xavier, Orin)")
    g.add_argument("--gpu-fallback", action="store_true", help="let layers the DLA cannot run fall back to the GPU")
    g.add_argument("--opt-level", type=int, metavar="0-5", help="builder optimization level (TensorRT 8.6+)")
    g.add_argument("--calibration", metavar="DATA",
                   help="INT8 calibration data: .npz (or directory of .npy) with one preprocessed array per input, "
                        "samples on axis 0 (implicit INT8, TensorRT <= 10.x)")
    g.add_argument("--calibration-cache", metavar="FILE",
                   help="INT8 calibration cache: read if present, written after calibrating with --calibration")
    g.add_argument("--plugin", action="append", default=[], metavar="LIB.so", help="plugin library to load first")
    g.add_argument("--compute-capability", metavar="M.m",
                   help="TensorRT-RTX only: the GPU architecture to build for (8.0, 8.6, 8.9, 12.0)")


def _options_from_args(args):
    from tegra_ai.spec import BuildOptions

    return BuildOptions.from_request(
        precision=args.precision, shapes=args.shapes, workspace=args.workspace, dla_core=args.dla_core,
        gpu_fallback=args.gpu_fallback, opt_level=args.opt_level, strongly_typed=args.strongly_typed,
        calibration=args.calibration, calibration_cache=args.calibration_cache, plugins=args.plugin,
        compute_capability=args.compute_capability)


# --------------------------------------------------------------------------- commands

def cmd_build(args):
    from tegra_ai.onnx_files import model_files
    from tegra_ai.spec import check_output_paths
    from tegra_ai.trt.builder import build_engine, write_engine

    options = _options_from_args(args)
    output = args.output or os.path.splitext(os.path.basename(args.model))[0] + ".engine"
    check_writable_output(output)
    inputs = [args.model, args.timing_cache, args.calibration, args.calibration_cache, *args.plugin]
    if os.path.isfile(args.model):
        inputs += model_files(args.model)
    check_output_paths(output, protect=tuple(p for p in inputs if p))
    result = build_engine(args.model, options, timing_cache_path=args.timing_cache,
                          calibration_data=args.calibration, calibration_cache=args.calibration_cache,
                          plugin_libraries=tuple(args.plugin), show_progress=not args.no_progress,
                          verbose=args.verbose)
    sidecar_path = write_engine(result, output, protect=tuple(p for p in inputs if p))
    sc = result.sidecar
    if args.json:
        print_json({"engine": os.path.abspath(output), "sidecar": os.path.abspath(sidecar_path), **sc.to_dict()})
    else:
        for note in result.notes:
            print(f"note: {note}")
        print(f"engine:  {output} ({len(result.engine) / 1e6:.2f} MB, {sc.tensorrt['flavor']} "
              f"{sc.tensorrt['version']}, sm_{sc.device['compute_capability'].replace('.', '')}, "
              f"built in {sc.build_seconds:.1f} s)")
        print(f"sidecar: {sidecar_path}")
        print(f"key:     {sc.cache_key[:24]}")
    return 0


def cmd_inspect(args):
    from tegra_ai.trt.inspect import format_inspection, inspect_engine

    info = inspect_engine(args.engine, with_layers=not args.no_layers)
    if args.json:
        print_json(info)
    else:
        print(format_inspection(info, show_layers=args.layers))
    return 0


def cmd_check(args):
    from tegra_ai.onnx_tools.check import check_model, format_report
    from tegra_ai.onnx_tools.targets import resolve_target

    report = check_model(args.model, resolve_target(args.target), use_parser=not args.no_parser)
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def cmd_bundle(args):
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest

    options = _options_from_args(args)
    preprocess = None
    if args.preprocess:
        from tegra_ai.preprocess.spec import PreprocessSpec

        try:
            with open(args.preprocess) as f:
                preprocess = PreprocessSpec.from_json(f.read()).to_dict()
        except OSError as exc:
            raise TegraAIError(f"cannot read {args.preprocess}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    if args.target and not args.no_check:
        from tegra_ai.onnx_tools.check import check_model, format_report
        from tegra_ai.onnx_tools.targets import resolve_target

        report = check_model(args.model, resolve_target(args.target))
        if not report.ok:
            print(format_report(report), file=sys.stderr)
            raise TegraAIError(f"{args.model} fails the preflight for {args.target}; not bundled")
    sha, files = model_digest(args.model)
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
    if args.calibration and os.path.isdir(args.calibration):
        raise TegraAIError("bundle takes calibration data as one .npz file", exit_code=EXIT_USAGE)
    manifest = add_to_bundle(args.out, name, files, sha, options, preprocess,
                             calibration_data=args.calibration, calibration_cache=args.calibration_cache,
                             timing_cache=args.timing_cache)
    if args.json:
        print_json({"manifest": os.path.abspath(manifest), "name": name, "sha256": sha})
    else:
        print(f"bundled {name} ({sha[:12]}) into {manifest}")
    return 0


def cmd_ensure(args):
    from tegra_ai.cache.ensure import ensure

    summary = ensure(args.manifest, args.cache, prune=args.prune, loader="default" if not args.no_load_check else None,
                     seeds=tuple(args.seed), show_progress=not args.no_progress, verbose=args.verbose)
    if args.json:
        print_json(summary)
    else:
        if "error" in summary:
            print(f"{PROG}: error: {summary['error']}", file=sys.stderr)
        for m in summary["models"]:
            extra = f" ({m['error']})" if m.get("error") else f" -> {m.get('engine')}"
            print(f"{m['name']}: {m.get('status', 'not built')}{extra}")
        print(f"{summary['hits']} cached, {summary['seeded']} prebuilt in the image, {summary['fetched']} fetched, "
              f"{summary['built']} built, {summary['failed']} failed")
    return summary["exit_code"]


def cmd_verify_cache(args):
    from tegra_ai.cache.verify import verify_cache

    result = verify_cache(args.cache, trt_version=args.trt_version, compute_capability=args.compute_capability,
                          library_version=args.library_version, module=args.module, l4t_release=args.l4t_release,
                          manifests=tuple(args.manifest))
    if args.json:
        print_json(result)
    else:
        for line in result["problems"]:
            print(line)
        print(f"{result['engines']} engine(s), {len(result['problems'])} problem(s)")
    return 0 if not result["problems"] else 1


def cmd_example(args):
    from tegra_ai.example import format_example, run_example

    result = run_example(args.out, target=args.target, show_progress=not args.no_progress, verbose=args.verbose)
    if args.json:
        print_json(result)
    else:
        print(format_example(result))
    return result["exit_code"]


# --------------------------------------------------------------------------- parser

def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="TensorRT log and tracebacks")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("build", help="build an engine (on the target GPU) with a JSON sidecar")
    p.add_argument("model", help="ONNX model")
    p.add_argument("-o", "--output", help="engine path (default: MODEL.engine here); the sidecar is ENGINE.json "
                   "(e.g. yolo.engine.json); files the tool did not write are never overwritten")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache: loaded, updated and saved atomically")
    _add_build_options(p)
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="IO tensors, profiles, layers and precisions of an engine")
    p.add_argument("engine")
    p.add_argument("--layers", action="store_true", help="list every layer")
    p.add_argument("--no-layers", action="store_true", help="skip the engine inspector")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", help="host preflight of an ONNX model against a target TensorRT (no GPU)")
    p.add_argument("model")
    p.add_argument("--target", default="jetpack6", help="jetpack5, jetpack6, jetpack7 or trt-X.Y (default jetpack6)")
    p.add_argument("--no-parser", action="store_true", help="skip the real ONNX parser even if TensorRT is importable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bundle", help="add a model (validated, hashed, with its build options) to a bundle for 'ensure'")
    p.add_argument("model")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory (holds manifest.json)")
    p.add_argument("--name", help="model name in the manifest (default: file name)")
    p.add_argument("--preprocess", metavar="SPEC.json", help="preprocessing spec to record with the model")
    p.add_argument("--target", help="run the preflight for this target first and refuse a failing model")
    p.add_argument("--no-check", action="store_true", help="skip the preflight (no onnx package needed)")
    p.add_argument("--timing-cache", metavar="FILE", help="a timing cache to ship with the model (seeds the device's)")
    _add_build_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("ensure", help="every model in the manifests gets a valid engine in the cache (first boot)")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH",
                   help="manifest.json or a directory of */manifest.json; repeatable")
    p.add_argument("--cache", required=True, metavar="DIR", help="engine cache directory")
    p.add_argument("--seed", action="append", default=[], metavar="DIR",
                   help="read-only cache of prebuilt engines (e.g. from the image) copied in on a miss; repeatable")
    p.add_argument("--prune", default="stale", choices=["none", "stale", "unlisted"],
                   help="stale: drop engines of other keys of listed models; unlisted: also models no longer listed")
    p.add_argument("--no-load-check", action="store_true", help="trust sidecars without deserializing cached engines")
    p.add_argument("--json", action="store_true", help="JSON summary on stdout (logs go to stderr)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ensure)

    p = sub.add_parser("verify-cache", help="check every engine's sidecar against a TensorRT version and GPU (no TensorRT needed)")
    p.add_argument("cache")
    p.add_argument("--trt-version", metavar="X.Y[.Z]", help="TensorRT version of the image (bindings)")
    p.add_argument("--library-version", metavar="X.Y[.Z]", help="libnvinfer version of the image")
    p.add_argument("--compute-capability", metavar="M.m")
    p.add_argument("--module", metavar="MODEL", help="Jetson module as /proc/device-tree/model names it")
    p.add_argument("--l4t-release", metavar="R.x", help="L4T release, e.g. 36.4.3")
    p.add_argument("--manifest", action="append", default=[], metavar="PATH",
                   help="also check each engine's model and build options against these manifests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify_cache)

    p = sub.add_parser("example", help="the whole workflow on the embedded default model (digits CNN)")
    p.add_argument("--out", default="tegra-ai-example", metavar="DIR", help="output directory (default ./tegra-ai-example)")
    p.add_argument("--target", default="jetpack6", help="deployment target for the preflight (default jetpack6)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_example)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
