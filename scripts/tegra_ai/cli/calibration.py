"""calibration-dataset: image folders, videos or arrays -> one deterministic .npz of
preprocessed samples (with a manifest) for INT8 calibration and accuracy checks."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tegra_ai import __version__
from tegra_ai.cli.common import add_renamed_option, check_writable_output, print_json, run_main, verbose_parent
from tegra_ai.errors import EXIT_USAGE, TegraAIError

PROG = "calibration-dataset"

SPEC_FLAGS = ("height", "width", "input_format", "channel_order", "resize", "pad_value", "scale", "mean", "std",
              "layout", "dtype", "resize_short", "antialias")


def _floats(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_spec_flags(p):
    """The PreprocessSpec fields as flags (they override --spec)."""
    from tegra_ai.preprocess import spec as s

    g = p.add_argument_group("preprocessing (PreprocessSpec fields; override --spec)")
    g.add_argument("--spec", metavar="SPEC.json", help="preprocessing spec JSON (tegra_ai.preprocess.spec)")
    g.add_argument("--height", type=int)
    g.add_argument("--width", type=int)
    g.add_argument("--input-format", choices=s.INPUT_FORMATS,
                   help="format of raw images in .npy/.npz sources (files decode to bgr8, or gray8 when given)")
    g.add_argument("--channel-order", choices=s.CHANNEL_ORDERS)
    g.add_argument("--resize", choices=s.RESIZE_MODES)
    g.add_argument("--resize-short", type=int, metavar="N",
                   help="center_crop: the shorter side in pixels before the crop (torchvision Resize(N))")
    g.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=None,
                   help="resample as PIL/torchvision antialiased bilinear (default: OpenCV INTER_LINEAR)")
    g.add_argument("--pad-value", type=float)
    g.add_argument("--scale", type=float)
    g.add_argument("--mean", type=_floats, metavar="M[,M,M]")
    g.add_argument("--std", type=_floats, metavar="S[,S,S]")
    g.add_argument("--layout", choices=s.LAYOUTS)
    g.add_argument("--dtype", choices=s.DTYPES)


def spec_fields(args) -> dict:
    """--spec file fields updated by the flags given."""
    fields = {}
    if args.spec:
        from tegra_ai.preprocess.spec import PreprocessSpec

        fields = PreprocessSpec.load(args.spec).to_dict()
    for name in SPEC_FLAGS:
        v = getattr(args, name, None)
        if v is not None:
            fields[name] = v
    if fields.get("channel_order") == "gray" or fields.get("input_format") == "gray8":
        fields.setdefault("channel_order", "gray")
        for k in ("mean", "std"):
            fields.setdefault(k, [0.0] if k == "mean" else [1.0])
    return fields


def cmd_dataset(args):
    from tegra_ai.dataset.calibration import build_dataset, model_input, reconcile_spec
    from tegra_ai.preprocess.spec import PreprocessSpec

    fields = spec_fields(args)
    if args.model:
        if not os.path.isfile(args.model):
            raise TegraAIError(f"model {args.model} does not exist", exit_code=EXIT_USAGE)
        name, dims, dtype = model_input(args.model, args.input)
        spec = reconcile_spec(fields, dims, dtype)
    else:
        if not fields:
            raise TegraAIError("no preprocessing given", hint="use --spec SPEC.json, --model MODEL.onnx or "
                               "--height/--width and the other spec flags", exit_code=EXIT_USAGE)
        if fields.get("height") is None or fields.get("width") is None:
            raise TegraAIError("the preprocessing needs --height and --width (or --spec / --model)",
                               exit_code=EXIT_USAGE)
        try:
            spec = PreprocessSpec.from_dict(fields)
        except TegraAIError as exc:
            raise TegraAIError(exc.message, exit_code=EXIT_USAGE) from None
        name = args.input or "input"
    if os.path.exists(args.output) and not args.force:
        raise TegraAIError(f"{args.output} exists", hint="pass --force to replace it", exit_code=EXIT_USAGE)
    check_writable_output(args.output)
    manifest = build_dataset(args.sources, args.output, spec, input_name=name, count=args.max_samples, seed=args.seed,
                             class_balanced=args.class_balanced, video_every=args.every_nth_frame,
                             video_frames=args.frames_per_video, workers=args.workers,
                             show_progress=not args.no_progress, arrays=args.array)
    summary = {"output": os.path.abspath(args.output), **{k: manifest[k] for k in
               ("input", "count", "shape", "dtype", "spec", "stats", "skipped", "candidates", "decoder")}}
    if args.json:
        print_json(summary)
    else:
        print(f"{args.output}: {manifest['count']} sample(s) of {manifest['input']} {manifest['shape'][1:]} "
              f"{manifest['dtype']} from {len(manifest['sources'])} file(s) ({manifest['candidates']} candidates)")
        for s in manifest["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}")
        print("per-channel mean " + json.dumps(manifest["stats"]["mean"]) + ", std " + json.dumps(manifest["stats"]["std"]))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, parents=[verbose_parent()])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image folder (recursive), image file, video file, or .npy/.npz of images or samples")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    p.add_argument("--model", metavar="MODEL.onnx", help="take the input name, size and dtype from the model and "
                   "check the spec against it")
    p.add_argument("--input", metavar="NAME", help="input name (required with --model when it has several)")
    p.add_argument("--max-samples", type=int, metavar="N", help="samples to draw (default: every candidate)")
    add_renamed_option(p, "--count", "--max-samples", type=int, metavar="N")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--class-balanced", action="store_true",
                   help="draw equally from each first-level sub-folder of an image folder")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--every-nth-frame", type=int, metavar="N", help="videos: every Nth frame")
    v.add_argument("--frames-per-video", type=int, default=16, metavar="N",
                   help="videos: N frames evenly spaced (default 16)")
    p.add_argument("--array", action="append", metavar="KEY",
                   help=".npz sources: use only these arrays (repeatable; default: every image-shaped array)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.npz")
    add_spec_flags(p)
    p.add_argument("--json", action="store_true", help="summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_dataset)
    return p


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
