"""tensorrt-optimize: ONNX -> verified TensorRT engine, host preflight, bundles and the engine cache."""

from __future__ import annotations

import argparse
import os
import sys

from tegra_ai import __version__
from tegra_ai.cli.common import check_writable_output, print_json, run_main, verbose_parent
from tegra_ai.errors import EXIT_CANTCREAT, EXIT_USAGE, TegraAIError

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
    g.add_argument("--contexts", type=int, metavar="N",
                   help="execution contexts that may run a dynamic-shape engine at once (pipeline streams, "
                        "runtime workers); the engine gets one copy of the profiles per context (default 1)")
    g.add_argument("--compute-capability", metavar="M.m",
                   help="TensorRT-RTX only: the GPU architecture to build for (8.0, 8.6, 8.9, 12.0)")
    return g


def _request_from_args(args):
    """The one BuildRequest of build and bundle, constructed here from the flags."""
    from tegra_ai.spec import BuildRequest

    return BuildRequest.from_request(
        args.model, timing_cache=getattr(args, "timing_cache", None), calibration=args.calibration,
        calibration_cache=args.calibration_cache, plugins=args.plugin,
        precision=args.precision, shapes=args.shapes, workspace=args.workspace, dla_core=args.dla_core,
        gpu_fallback=args.gpu_fallback, opt_level=args.opt_level, strongly_typed=args.strongly_typed,
        compute_capability=args.compute_capability, contexts=args.contexts)


# --------------------------------------------------------------------------- commands

def cmd_build(args):
    from tegra_ai.onnx_files import model_files
    from tegra_ai.spec import check_output_paths
    from tegra_ai.cache.build_child import build_in_child
    from tegra_ai.trt.builder import write_engine

    request = _request_from_args(args)
    output = args.output or os.path.splitext(os.path.basename(args.model))[0] + ".engine"
    check_writable_output(output)
    inputs = [args.model, args.timing_cache, args.calibration, args.calibration_cache, *args.plugin]
    inputs += model_files(args.model)      # a missing, empty or corrupt model is refused before TensorRT loads
    check_output_paths(output, protect=tuple(p for p in inputs if p))
    # The build runs in a child process: Ctrl-C / SIGTERM stop it at once (TensorRT's C++
    # builder would otherwise hold them until it returns) and a crash is one line.
    out_dir = os.path.dirname(os.path.abspath(output))
    result = build_in_child(request, temp_prefix=os.path.join(out_dir, f".{os.path.basename(output)}"
                                                              f".build-{os.getpid()}"),
                            timeout=args.timeout, show_progress=not args.no_progress, verbose=args.verbose,
                            timeout_flag="--timeout")
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


def _request_from_file(path: str):
    """``bundle --request FILE``: a BuildRequest as ``BuildRequest.to_dict`` writes it (the
    Yocto class writes one per model), taken whole. Relative paths are relative to the
    file's directory; the calibration files must be the ones its options were hashed from."""
    from tegra_ai.spec import BuildRequest, hash_calibration
    from tegra_ai.util.jsonfile import JSONFileError, read_json_file

    def bad(msg):
        return TegraAIError(f"request {path}: {msg}", exit_code=EXIT_USAGE)

    try:
        data = read_json_file(path, max_bytes=1 << 20)
        request = BuildRequest.from_dict(data)
    except JSONFileError as exc:
        raise bad(str(exc)) from None
    except TegraAIError as exc:
        raise bad(exc.message.removeprefix("build request: ")) from None
    base = os.path.dirname(os.path.abspath(path))
    request = request.map_files(lambda p: os.path.normpath(os.path.join(base, p)))   # absolute: as it is
    try:
        digest = hash_calibration(request.calibration_data, request.calibration_cache)
    except TegraAIError as exc:
        raise bad(exc.message) from None
    if digest != request.options.calibration_sha256:
        raise bad(f"options.calibration_sha256 is not the sha256 of "
                  f"{request.calibration_data or request.calibration_cache or 'its calibration files (none)'}: "
                  "the file changed after the request was written; write the request again")
    return request


def _bundle_request(args):
    """The one BuildRequest of ``bundle``: from --request FILE, or from MODEL and the flags
    (``args.request_flags``: bundle's flags that the request holds, with their defaults)."""
    if args.request is None:
        if args.model is None:
            raise TegraAIError("bundle needs MODEL.onnx (with build flags) or --request FILE", exit_code=EXIT_USAGE)
        return _request_from_args(args)
    if args.model is not None:
        raise TegraAIError(f"bundle: give the model in --request {args.request} or as MODEL ({args.model}), "
                           "not both", exit_code=EXIT_USAGE)
    # the request file is the whole request: a flag beside it would silently be one or the other
    given = [flag for dest, flag, default in args.request_flags if getattr(args, dest) != default]
    if given:
        raise TegraAIError(f"bundle --request {args.request}: the request file holds the build options; "
                           f"drop {', '.join(given)} (or change the request)", exit_code=EXIT_USAGE)
    return _request_from_file(args.request)


def cmd_bundle(args):
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest

    request = _bundle_request(args)
    options = request.options
    preprocess = None
    if args.preprocess:
        from tegra_ai.preprocess.spec import PreprocessSpec

        preprocess = PreprocessSpec.load(args.preprocess).to_dict()
    if request.calibration_data and os.path.isdir(request.calibration_data):
        raise TegraAIError("bundle takes calibration data as one .npz file", exit_code=EXIT_USAGE)
    if request.timing_cache and not os.path.isfile(request.timing_cache):
        raise TegraAIError(f"timing cache {request.timing_cache} does not exist", exit_code=EXIT_USAGE)
    if request.plugins:
        from tegra_ai.cache.manifest import check_plugin_name

        for lib in request.plugins:
            check_plugin_name(lib)
    if args.target and not args.no_check:
        from tegra_ai.onnx_tools.check import check_build_options, check_model, format_report
        from tegra_ai.onnx_tools.targets import resolve_target

        target = resolve_target(args.target)
        report = check_model(request.model, target)
        if not report.ok:
            print(format_report(report), file=sys.stderr)
            raise TegraAIError(f"{request.model} fails the preflight for {args.target}; not bundled")
        # what 'build' would refuse on the device, refused here on the host
        check_build_options(report, options, target, calibration_data=request.calibration_data,
                            calibration_cache=request.calibration_cache)
    elif request.calibration_data:
        from tegra_ai.trt.calibrator import load_calibration_arrays

        load_calibration_arrays(request.calibration_data)
    sha, files = model_digest(request.model)
    name = args.name or os.path.splitext(os.path.basename(request.model))[0]
    manifest = add_to_bundle(args.out, name, files, sha, request, preprocess)
    if args.json:
        print_json({"manifest": os.path.abspath(manifest), "name": name, "sha256": sha})
    else:
        print(f"bundled {name} ({sha[:12]}) into {manifest}")
    return 0


def _env_float(name: str, default: float):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise TegraAIError(f"{name}={value!r}: expected seconds", exit_code=EXIT_USAGE) from None


def _mirror_sources(args) -> list:
    """--mirror and friends; the service passes them as environment variables
    (TEGRA_AI_ENGINE_MIRRORS, TEGRA_AI_MIRROR_KEYS, TEGRA_AI_MIRROR_TIMEOUT, TEGRA_AI_MIRROR_TOTAL_TIMEOUT)
    from its defaults file."""
    from tegra_ai.cache.mirror import DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, mirror_sources, parse_mirror_list

    urls = args.mirror if args.mirror else parse_mirror_list(os.environ.get("TEGRA_AI_ENGINE_MIRRORS"))
    keys = args.mirror_key if args.mirror_key else parse_mirror_list(os.environ.get("TEGRA_AI_MIRROR_KEYS"))
    if not urls:
        for flag, value in (("--mirror-unsigned", args.mirror_unsigned), ("--allow-http", args.allow_http),
                            ("--mirror-allow-redirects", args.mirror_allow_redirects), ("--mirror-ca", args.mirror_ca),
                            ("--mirror-key", args.mirror_key), ("--mirror-timeout", args.mirror_timeout),
                            ("--mirror-total-timeout", args.mirror_total_timeout)):
            if value not in (None, False, []):
                raise TegraAIError(f"{flag} needs --mirror URL", exit_code=EXIT_USAGE)
        return []
    timeout = args.mirror_timeout if args.mirror_timeout is not None else _env_float("TEGRA_AI_MIRROR_TIMEOUT",
                                                                                     DEFAULT_TIMEOUT)
    total = args.mirror_total_timeout if args.mirror_total_timeout is not None else \
        _env_float("TEGRA_AI_MIRROR_TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT)
    return mirror_sources(urls, keys, unsigned=args.mirror_unsigned, allow_http=args.allow_http,
                          allow_redirects=args.mirror_allow_redirects, timeout=timeout, total_timeout=total,
                          ca_file=args.mirror_ca)


def cmd_ensure(args):
    from tegra_ai.cache.ensure import ensure

    sources = _mirror_sources(args)
    summary = ensure(args.manifest, args.cache, prune=args.prune, loader="default" if not args.no_load_check else None,
                     seeds=tuple(args.seed), sources=tuple(sources), show_progress=not args.no_progress,
                     verbose=args.verbose, model_timeout=args.model_timeout, lock_timeout=args.lock_timeout)
    if sources:
        summary["mirrors"] = [s.url for s in sources]
    error = summary.get("error")
    if summary["exit_code"] == EXIT_CANTCREAT and not error:   # a full or read-only cache: its one line
        error = next((m["error"] for m in summary["models"] if m.get("exit_code") == EXIT_CANTCREAT), None)
    if args.json:
        if error and summary["exit_code"] == EXIT_CANTCREAT:
            print(f"{PROG}: error: {error}", file=sys.stderr)
        print_json(summary)
    else:
        if error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
        for m in summary["models"]:
            extra = f" ({m['error']})" if m.get("error") else f" -> {m.get('engine')}"
            if m.get("source"):
                extra += f" (from {m['source']})"
            print(f"{m['name']}: {m.get('status', 'not built')}{extra}")
        rekeyed = f"{summary['rekeyed']} re-keyed (key format 2), " if summary.get("rekeyed") else ""
        print(f"{summary['hits']} cached, {rekeyed}{summary['seeded']} prebuilt in the image, "
              f"{summary['fetched']} fetched, {summary['built']} built, {summary['failed']} failed")
    return summary["exit_code"]


def cmd_publish(args):
    from tegra_ai.cache.publish import publish

    summary = publish(args.cache, args.to, args.key, names=tuple(args.name), index_expiry_days=args.index_expiry,
                      lock_timeout=args.lock_timeout)
    if args.json:
        print_json(summary)
    else:
        for row in summary["engines"]:
            extra = f" ({row['reason']})" if row.get("reason") else ""
            print(f"{row['name']}: {row['status']} {row['engine']}{extra}")
        for row in summary["skipped"]:
            print(f"{row['name']}: skipped {row['sidecar']} ({row['reason']})")
        print(f"{summary['published']} published, {summary['present']} already there, "
              f"{summary['conflicts']} conflict(s); signed with key {summary['key_id']} into {summary['mirror']}")
        print(f"index sequence {summary['sequence']}"
              + (f", expires {summary['expires']}" if summary["expires"] else ", no expiry"))
    return summary["exit_code"]


def _detections(args) -> dict:
    from tegra_ai.postprocess.detection import DetectionSpec
    from tegra_ai.spec import check_model_name

    out = {}
    for item in args.detection:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise TegraAIError(f"--detection {item!r}: expected NAME=SPEC.json", exit_code=EXIT_USAGE)
        check_model_name(name)
        try:
            out[name] = DetectionSpec.load(path)
        except TegraAIError as exc:
            raise TegraAIError(f"--detection {exc.message}", exit_code=EXIT_USAGE) from None
    return out


def cmd_export(args):
    from tegra_ai.export.common import collect

    if not args.triton and not args.deepstream:
        raise TegraAIError("export needs --triton REPO and/or --deepstream DIR", exit_code=EXIT_USAGE)
    for flag, value, needs in (("--copy", args.copy, args.triton), ("--instances", args.instances != 1, args.triton),
                               ("--detection", args.detection, args.deepstream),
                               ("--bbox-parser", args.bbox_parser, args.deepstream)):
        if value and not needs:
            raise TegraAIError(f"{flag} needs {'--triton' if flag in ('--copy', '--instances') else '--deepstream'}",
                               exit_code=EXIT_USAGE)
    if args.instances < 1:
        raise TegraAIError(f"--instances {args.instances}: need at least 1", exit_code=EXIT_USAGE)
    detections = _detections(args)
    bbox_parser = None
    if args.bbox_parser:
        from tegra_ai.export.deepstream import parse_bbox_parser

        bbox_parser = parse_bbox_parser(args.bbox_parser)
    models, skipped = collect(args.manifest, args.cache, names=tuple(args.name))
    unknown = sorted(set(detections) - {m.name for m in models} - {s["name"] for s in skipped})
    if unknown:
        raise TegraAIError(f"--detection names {', '.join(unknown)}, not a model of the manifests",
                           exit_code=EXIT_USAGE)
    summary = {"models": [m.name for m in models], "skipped": skipped, "notes": []}
    # every config of both targets is made (and refused) before either writes a file
    if args.deepstream:
        from tegra_ai.export.deepstream import nvinfer_config

        for m in models:
            nvinfer_config(m, detection=detections.get(m.name), bbox_parser=bbox_parser)
    if args.triton:
        from tegra_ai.export.triton import config_pbtxt, export_triton

        for m in models:
            config_pbtxt(m, instances=args.instances)
        summary["triton"] = export_triton(models, args.triton, copy=args.copy, instances=args.instances)
    if args.deepstream:
        from tegra_ai.export.deepstream import export_deepstream

        summary["deepstream"], summary["notes"] = export_deepstream(models, args.deepstream, detections=detections,
                                                                    bbox_parser=bbox_parser)
    summary["exit_code"] = 1 if skipped else 0
    if args.json:
        print_json(summary)
    else:
        for row in summary.get("triton", []):
            print(f"{row['name']}: triton {row['config']} (max_batch_size {row['max_batch_size']})")
        for row in summary.get("deepstream", []):
            print(f"{row['name']}: deepstream {row['config']}")
        for row in skipped:
            print(f"{row['name']}: skipped ({row['reason']})")
        for note in summary["notes"]:
            print(f"note: {note}")
    return summary["exit_code"]


def cmd_mirror_keygen(args):
    from tegra_ai.cache.signing import generate_keypair

    result = generate_keypair(args.out, name=args.name)
    if args.json:
        print_json(result)
    else:
        print(f"private key: {result['private_key']} (keep it on the publishing machine; publish --key)")
        print(f"public key:  {result['public_key']} (install on devices; ensure --mirror-key)")
        print(f"key id:      {result['key_id']}")
    return 0


def cmd_path(args):
    from tegra_ai.cache.ensure import engine_path_for

    info = engine_path_for(args.cache, args.name)
    if args.json:
        print_json(info)
    else:
        print(info["target"] if args.resolve else info["engine"])
    return 0


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
    common = [verbose_parent()]

    p = sub.add_parser("build", parents=common, help="build an engine (on the target GPU) with a JSON sidecar")
    p.add_argument("model", help="ONNX model")
    p.add_argument("-o", "--output", help="engine path (default: MODEL.engine here); the sidecar is ENGINE.json "
                   "(e.g. yolo.engine.json); files the tool did not write are never overwritten")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache: loaded, updated and saved atomically")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the build after this long (exit 1)")
    _add_build_options(p)
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", parents=common, help="IO tensors, profiles, layers and precisions of an engine")
    p.add_argument("engine")
    p.add_argument("--layers", action="store_true", help="list every layer")
    p.add_argument("--no-layers", action="store_true", help="skip the engine inspector")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("check", parents=common, help="host preflight of an ONNX model against a target TensorRT (no GPU)")
    p.add_argument("model")
    p.add_argument("--target", default="jetpack6", help="jetpack5, jetpack6, jetpack7 or trt-X.Y (default jetpack6)")
    p.add_argument("--no-parser", action="store_true", help="skip the real ONNX parser even if TensorRT is importable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bundle", parents=common, help="add a model (validated, hashed, with its build options) to a bundle for 'ensure'")
    p.add_argument("model", nargs="?", help="the ONNX model (or give --request instead)")
    p.add_argument("--request", metavar="FILE",
                   help="a build request (JSON, as the Yocto class writes it: model, build options, calibration "
                        "and timing cache files relative to FILE's directory) in place of MODEL and the build flags")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory (holds manifest.json)")
    p.add_argument("--name", help="model name in the manifest (default: file name)")
    p.add_argument("--preprocess", metavar="SPEC.json", help="preprocessing spec to record with the model")
    p.add_argument("--target", help="run the preflight for this target first and refuse a failing model")
    p.add_argument("--no-check", action="store_true", help="skip the preflight (no onnx package needed)")
    timing = p.add_argument("--timing-cache", metavar="FILE",
                            help="a timing cache to ship with the model (seeds the device's)")
    group = _add_build_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bundle)
    # refused beside --request: every build option, and the timing cache (a file of the request)
    names, defaults = {}, {}
    for action in list(group._group_actions) + [timing]:
        names.setdefault(action.dest, []).extend(action.option_strings)
        defaults.setdefault(action.dest, action.default)    # as parse_args fills them in: the first wins
    p.set_defaults(request_flags=[(dest, "/".join(opts), defaults[dest]) for dest, opts in names.items()])

    p = sub.add_parser("ensure", parents=common, help="every model in the manifests gets a valid engine in the cache (first boot)")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH",
                   help="manifest.json or a directory of */manifest.json; repeatable")
    p.add_argument("--cache", required=True, metavar="DIR", help="engine cache directory")
    p.add_argument("--seed", action="append", default=[], metavar="DIR",
                   help="read-only cache of prebuilt engines (e.g. from the image) copied in on a miss; repeatable")
    p.add_argument("--prune", default="stale", choices=["none", "stale", "unlisted"],
                   help="stale: drop engines of other keys of listed models; unlisted: also models no longer listed")
    p.add_argument("--no-load-check", action="store_true", help="trust sidecars without deserializing cached engines")
    p.add_argument("--model-timeout", type=float, metavar="SECONDS",
                   help="stop a model's engine build after this long (that model fails, the others go on)")
    p.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                   help="wait at most this long for a model another process holds (that model fails naming the "
                        "holder's PID, the others go on; exit 75 when that is the only failure); default 3600, or "
                        "--model-timeout + 300 when longer")
    m = p.add_argument_group("engine mirrors (on a miss, before building; default from the environment: "
                             "TEGRA_AI_ENGINE_MIRRORS, TEGRA_AI_MIRROR_KEYS, TEGRA_AI_MIRROR_TIMEOUT)")
    m.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="https://HOST/PATH or file:///DIR holding NAME/NAME-KEY.engine(.json,.sig); repeatable, "
                        "asked in order")
    m.add_argument("--mirror-key", action="append", default=[], metavar="PUB",
                   help="trusted Ed25519 public key (PEM), or a directory of *.pub; repeatable")
    m.add_argument("--mirror-unsigned", action="store_true",
                   help="accept engines without a signature (key material and sha256 are still checked)")
    m.add_argument("--mirror-timeout", type=float, metavar="SECONDS",
                   help="time budget per model for all mirrors together, bounding each whole fetch (connect, TLS, "
                        "headers, body, redirects), then build locally (default 30)")
    m.add_argument("--mirror-total-timeout", type=float, metavar="SECONDS",
                   help="cap on all mirror traffic of one run, every model together (default 300)")
    m.add_argument("--allow-http", action="store_true", help="allow http:// mirrors and redirects to http")
    m.add_argument("--mirror-allow-redirects", action="store_true", help="follow redirects to another host")
    m.add_argument("--mirror-ca", metavar="FILE", help="CA certificates (PEM) that https mirrors are checked against, instead of the system's")
    p.add_argument("--json", action="store_true", help="JSON summary on stdout (logs go to stderr)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ensure)

    p = sub.add_parser("publish", parents=common, help="sign the engines of a cache into an engine mirror (for a fleet's ensure --mirror)")
    p.add_argument("--cache", required=True, metavar="DIR", help="engine cache (or seed) holding the engines")
    p.add_argument("--to", required=True, metavar="MIRROR_DIR", help="mirror directory (created; serve it over https)")
    p.add_argument("--key", required=True, metavar="PRIVATE_KEY", help="Ed25519 private key (PEM) from mirror-keygen")
    p.add_argument("--name", action="append", default=[], metavar="MODEL", help="only this model; repeatable")
    p.add_argument("--index-expiry", type=float, metavar="DAYS",
                   help="devices refuse the signed index this many days after this publish (default: no expiry; "
                        "publish again before then)")
    p.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                   help="wait at most this long for another publish into the same mirror (then exit 75 naming its "
                        "PID; default 3600)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("mirror-keygen", parents=common, help="make an Ed25519 key pair for signing engine mirrors")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for NAME.key (0600) and NAME.pub")
    p.add_argument("--name", default="mirror", help="file name stem (default mirror)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mirror_keygen)

    p = sub.add_parser("export", parents=common, help="a Triton model repository and/or DeepStream nvinfer configs "
                       "for the models of manifests that have an engine in a cache")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH",
                   help="manifest.json or a directory of */manifest.json; repeatable")
    p.add_argument("--cache", required=True, metavar="DIR", help="engine cache directory (filled by ensure)")
    p.add_argument("--name", action="append", default=[], metavar="MODEL", help="only this model; repeatable")
    p.add_argument("--triton", metavar="REPO", help="write REPO/NAME/config.pbtxt and REPO/NAME/1/model.plan")
    p.add_argument("--copy", action="store_true", help="copy the engines into the Triton repository (default: "
                   "link to the cache's stable CACHE/NAME.engine)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="Triton instances per model on the GPU "
                   "(instance_group count, default 1)")
    p.add_argument("--deepstream", metavar="DIR", help="write DIR/NAME_nvinfer.txt (Gst-nvinfer config files)")
    p.add_argument("--detection", action="append", default=[], metavar="NAME=SPEC.json",
                   help="the detector post-processing spec of a model (num-detected-classes, thresholds); repeatable")
    p.add_argument("--bbox-parser", metavar="FUNCTION:LIBRARY",
                   help="nvinfer custom bounding-box parser for the detectors (parse-bbox-func-name, custom-lib-path)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("path", parents=common, help="the stable path of a model's current engine in a cache "
                       "(CACHE/NAME.engine, a link ensure updates; for DeepStream's model-engine-file)")
    p.add_argument("name", help="model name in the manifest")
    p.add_argument("--cache", required=True, metavar="DIR", help="engine cache directory")
    p.add_argument("--resolve", action="store_true", help="print the engine file the link points at")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("verify-cache", parents=common, help="check every engine's sidecar against a TensorRT version and GPU (no TensorRT needed)")
    p.add_argument("cache")
    p.add_argument("--trt-version", metavar="X.Y[.Z]", help="TensorRT version of the image (bindings)")
    p.add_argument("--library-version", metavar="X.Y[.Z]", help="libnvinfer version of the image")
    p.add_argument("--compute-capability", metavar="M.m")
    p.add_argument("--module", metavar="PART", help="Jetson module part number from the device tree compatible "
                   "(e.g. p3767-0005 from nvidia,p3767-0005 in /proc/device-tree/compatible)")
    p.add_argument("--l4t-release", metavar="R.x", help="L4T release, e.g. 36.4.3")
    p.add_argument("--manifest", action="append", default=[], metavar="PATH",
                   help="also check each engine's model and build options against these manifests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify_cache)

    p = sub.add_parser("example", parents=common, help="the whole workflow on the embedded default model (digits CNN)")
    p.add_argument("--out", default="tegra-ai-example", metavar="DIR", help="output directory (default ./tegra-ai-example)")
    p.add_argument("--target", default="jetpack6", help="deployment target for the preflight (default jetpack6)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_example)
    __import__("tegra_ai.cli.quant", fromlist=["add_commands"]).add_commands(sub, parents=common)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
