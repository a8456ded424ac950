"""model-ensemble: run the ensembles of a description file (parallel models with a
combine rule, detector -> classifier cascades) on an input set; print results and timing.

    model-ensemble digits-ensemble.json --npz samples.npz --npz-key val_images --labels val_labels
    model-ensemble cascade.yaml --images frames/ --device gpu --json
    model-ensemble cascade.json --check          # validate the description and its files only

Exit codes: 0 done; 1 a request failed (its error is in the results); 2 bad input
(description, input set, options); 69 a required library (ONNX Runtime, TensorRT,
cuda-python, OpenCV, PyYAML) is missing; 130 interrupted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from tegra_ai import __version__
from tegra_ai.cli.common import add_renamed_option, print_json, run_main, verbose_parent
from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError

PROG = "model-ensemble"


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _synthetic(text):
    """N or NxHxW."""
    parts = text.lower().split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or NxHxW, got {text!r}") from None
    if len(nums) not in (1, 3) or any(n < 1 for n in nums):
        raise argparse.ArgumentTypeError(f"expected N or NxHxW with positive numbers, got {text!r}")
    return (nums[0], 480, 640) if len(nums) == 1 else tuple(nums)


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Run ensembles of models (parallel with a combine rule, "
                                "detector -> classifier cascades) described in a JSON/YAML file.",
                                parents=[verbose_parent()])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("description", help="ensemble description (.json, or .yaml with PyYAML)")
    p.add_argument("--ensemble", action="append", metavar="NAME", help="run only this ensemble (repeatable)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="every image of a folder, sorted by name")
    src.add_argument("--npz", metavar="FILE", help="images as an array in a .npz (N x H x W [x 3], uint8)")
    src.add_argument("--video", metavar="URI", help="video file, camera index or GStreamer pipeline (OpenCV)")
    src.add_argument("--synthetic", type=_synthetic, metavar="N[xHxW]", help="N random BGR frames (default 480x640)")
    p.add_argument("--npz-key", default=None, help="array of --npz to read (default: the first uint8 array)")
    p.add_argument("--labels", metavar="KEY", help="array of --npz with the true class of each image: report accuracy")
    p.add_argument("--max-samples", type=_positive, metavar="N", help="at most this many images")
    add_renamed_option(p, "--limit", "--max-samples", type=_positive, metavar="N")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where pre/post-processing and crops run (gpu: the CUDA kernels; default cpu)")
    p.add_argument("--cache", default=None, metavar="DIR", help="engine cache for models given as 'cached' "
                   "(default /var/lib/tegra-ai/engines)")
    add_renamed_option(p, "--engine-cache", "--cache", metavar="DIR")
    p.add_argument("--queue-size", type=_positive, default=8, help="requests queued per model (default 8)")
    p.add_argument("--check", action="store_true", help="validate the description and its files; run nothing")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=cmd)
    return p


def _images(args):
    from tegra_ai.runtime import sources

    if args.images:
        return sources.image_folder(args.images), None
    if args.video:
        return sources.video(args.video, limit=args.max_samples), None
    if args.synthetic:
        n, h, w = args.synthetic
        return sources.synthetic(n, h, w), None
    if args.npz:
        try:
            data = np.load(args.npz, allow_pickle=False)
        except FileNotFoundError:
            raise _usage(f"--npz {args.npz}: no such file") from None
        except (OSError, ValueError) as exc:
            raise _usage(f"--npz {args.npz}: not a readable .npz ({str(exc).splitlines()[0]})") from None
        with data:
            keys = list(data.keys())
            from tegra_ai.dataset.calibration import MANIFEST_KEY

            if MANIFEST_KEY in keys:
                raise _usage(f"--npz {args.npz}: a calibration-dataset file (model inputs already resized and "
                             "stored for calibration), not images", hint="give the images it was made from "
                             "(--images DIR)")
            key = args.npz_key or next((k for k in keys if data[k].dtype == np.uint8 and data[k].ndim >= 3), None)
            if key is None or key not in keys:
                raise _usage(f"--npz {args.npz}: no array {args.npz_key!r}" if args.npz_key else
                             f"--npz {args.npz}: no uint8 image array (N x H x W)", hint=f"it has {', '.join(keys)}")
            images = data[key]
            if images.dtype != np.uint8 or images.ndim not in (3, 4):
                raise _usage(f"--npz {args.npz}: {key} is {images.dtype} {list(images.shape)}, expected uint8 "
                             "N x H x W or N x H x W x 3")
            labels = None
            if args.labels:
                if args.labels not in keys:
                    raise _usage(f"--labels {args.labels}: not an array of {args.npz}", hint=f"it has {', '.join(keys)}")
                labels = data[args.labels]
                if labels.shape[:1] != images.shape[:1]:
                    raise _usage(f"--labels {args.labels}: {labels.shape[0] if labels.ndim else 0} labels for "
                                 f"{images.shape[0]} images")
        return iter(images), labels
    raise _usage("no input set: give --images, --npz, --video or --synthetic (or --check)")


def cmd(args) -> int:
    from tegra_ai.runtime.ensemble import DEFAULT_ENGINE_CACHE, EnsembleRunner, _runner_factory, check_shapes, load
    from tegra_ai.util.progress import Progress

    if args.labels and not args.npz:
        raise _usage("--labels needs --npz")
    if args.npz_key and not args.npz:
        raise _usage("--npz-key needs --npz")
    desc = load(args.description)
    ensembles = desc.select(args.ensemble)
    cache = args.cache or DEFAULT_ENGINE_CACHE
    if args.check:
        for m in desc.models_used(args.ensemble):
            _runner_factory(desc.models[m], cache)  # files exist, cached engines resolve
    problems = check_shapes(desc, args.ensemble, cache)      # chained models fit each other
    if problems:
        raise _usage(f"{args.description}: " + "; ".join(problems))
    if args.check:
        report = {"description": args.description, "valid": True, "models": desc.models_used(args.ensemble),
                  "ensembles": {e.name: type(e).__name__.lower() for e in ensembles}}
        if args.json:
            print_json(report)
        else:
            print(f"{args.description}: valid; ensembles {', '.join(report['ensembles'])}; "
                  f"models {', '.join(report['models'])}")
        return 0
    images, labels = _images(args)
    results = {e.name: [] for e in ensembles}
    failures = 0
    t0 = time.perf_counter()
    n = 0
    with EnsembleRunner(desc, args.ensemble, device=args.device, engine_cache=cache,
                        queue_size=args.queue_size) as runner, \
            Progress(PROG, enabled=not args.no_progress) as progress:
        for i, image in enumerate(images):
            if args.max_samples and i >= args.max_samples:
                break
            try:
                out = runner.run(image)
            except TegraAIError as exc:
                if exc.exit_code in (EXIT_USAGE, EXIT_UNAVAILABLE):
                    raise            # bad input or a missing library: once, not once per image
                failures += 1
                out = {e.name: {"error": str(exc)} for e in ensembles}
            except Exception as exc:  # noqa: BLE001 - a model's failure on one image, reported per image
                failures += 1
                out = {e.name: {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                       for e in ensembles}
            for name, r in out.items():
                results[name].append(dict(index=i, **r))
            n += 1
            progress.update(f"{n} images")
        stats = runner.runtime.stats()
        timing = {name: {"p50_ms": round(statistics.median(v), 4) if v else None,
                         "mean_ms": round(statistics.fmean(v), 4) if v else None} for name, v in runner.timing.items()}
    wall = time.perf_counter() - t0
    if n == 0:
        raise _usage("the input set holds no images")
    summary = {"images": n, "wall_s": round(wall, 4), "images_per_s": round(n / wall, 2), "failures": failures,
               "timing": timing, "models": stats, "device": args.device}
    if labels is not None:
        summary["accuracy"] = {}
        for e in ensembles:
            got = [r.get("class") for r in results[e.name]]
            if all(g is not None for g in got):
                summary["accuracy"][e.name] = round(float(np.mean(np.array(got) == labels[:n])), 4)
    if args.json:
        print_json({"summary": summary, "results": results})
    else:
        print(f"{n} images in {wall:.2f} s ({n / wall:.1f}/s) on {args.device}; failures: {failures}")
        for e in ensembles:
            t = timing[e.name]
            acc = summary.get("accuracy", {}).get(e.name)
            print(f"  {e.name}: p50 {t['p50_ms']} ms" + (f", accuracy {acc:.4f}" if acc is not None else ""))
            for r in results[e.name][:3]:
                print(f"    image {r['index']}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "index")[:160])
        for m, s in stats.items():
            print(f"  model {m}: {s['requests']} requests, p50 {s['latency_ms']['p50']} ms, failures {s['failures']}")
    return 1 if failures else 0


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
