"""The main job on the embedded default model (the 8x8 digits CNN).

Host half (any machine): preflight for the target JetPack, reference accuracy with
ONNX Runtime on held-out samples, and the bundle (models + manifest) that the device's
``ensure`` consumes. Device half (where TensorRT is importable): ``ensure`` builds the
engine into a cache (with TensorRT-RTX: an ahead-of-time engine for an RTX GPU, which
proves the ONNX -> engine path but cannot run on a Jetson). The result says which ran."""

from __future__ import annotations

import os

from tegra_ai import models
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.errors import EXIT_FAILURE, TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions
from tegra_ai.util.lazy import is_available

# Batch 1 for latency, up to 64 for throughput.
DEFAULT_SHAPES = "input:1x1x8x8:8x1x8x8:64x1x8x8"


def reference_accuracy() -> dict:
    """Top-1 accuracy of the ONNX model on the held-out split, with ONNX Runtime (CPU)."""
    import onnxruntime as ort

    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.preprocess.reference import preprocess_batch_reference

    images, labels = models.load_samples("val")
    spec = models.load_preprocess_spec()
    batch = preprocess_batch_reference(spec, list(images), dtype=spec.dtype)
    with OnnxRuntimeRunner(models.DEFAULT_MODEL) as runner:
        logits = runner.infer({"input": batch})["logits"]
    return {"backend": f"onnxruntime {ort.__version__} (CPU)", "samples": int(len(labels)),
            "top1": float((logits.argmax(1) == labels).mean())}


def run_example(out_dir: str, target: str = "jetpack6", show_progress: bool = True, verbose: bool = False) -> dict:
    result = {"model": models.DEFAULT_MODEL, "out": os.path.abspath(out_dir), "target": target, "steps": {}}
    steps = result["steps"]
    failed = False

    if is_available("onnx"):
        from tegra_ai.onnx_tools.check import check_model
        from tegra_ai.onnx_tools.targets import resolve_target

        report = check_model(models.DEFAULT_MODEL, resolve_target(target))
        steps["preflight"] = {"ok": report.ok, "target": report.target["description"],
                              "errors": [f.message for f in report.findings if f.severity == "error"],
                              "parser": report.parser}
        failed |= not report.ok
    else:
        steps["preflight"] = {"skipped": "the onnx package is not installed (pip install 'meta-tegra-ai[onnx]')"}

    if is_available("onnxruntime"):
        steps["reference_accuracy"] = reference_accuracy()
    else:
        steps["reference_accuracy"] = {"skipped": "onnxruntime is not installed (pip install 'meta-tegra-ai[onnxruntime]')"}

    bundle_dir = os.path.join(out_dir, "bundle")
    options = BuildOptions.from_request(precision="auto", shapes=[DEFAULT_SHAPES])
    sha, files = model_digest(models.DEFAULT_MODEL)
    spec = models.load_preprocess_spec()
    manifest = add_to_bundle(bundle_dir, models.DEFAULT_NAME, files, sha, options, spec.to_dict())
    steps["bundle"] = {"manifest": os.path.abspath(manifest), "sha256": sha}

    from tegra_ai.trt import compat

    try:
        _trt, feats = compat.load()
    except TegraAIError as exc:
        feats = None
        steps["engine"] = {"skipped": exc.message}
    if feats is not None:
        from tegra_ai.cache.ensure import ensure

        summary = ensure([bundle_dir], os.path.join(out_dir, "engines"), show_progress=show_progress,
                         verbose=verbose, log=lambda msg: None)
        model = summary["models"][0] if summary["models"] else {}
        steps["engine"] = {"tensorrt": feats.describe(), "status": model.get("status"), "engine": model.get("engine"),
                           "error": model.get("error"), "device": model.get("device"),
                           "runs_here": not feats.is_rtx}
        failed |= summary["exit_code"] != 0
    result["half"] = ("host + device (engine built with " + feats.describe() + ")") if feats is not None and not feats.is_rtx \
        else ("host, plus an ahead-of-time TensorRT-RTX engine (not runnable on a Jetson)" if feats is not None
              else "host only (no TensorRT here: engines are built on the Jetson by 'ensure')")
    result["exit_code"] = EXIT_FAILURE if failed else 0
    return result


def format_example(result: dict) -> str:
    s = result["steps"]
    lines = [f"default model: {result['model']}", f"ran: {result['half']}"]
    pf = s["preflight"]
    if "skipped" in pf:
        lines.append(f"preflight:  skipped ({pf['skipped']})")
    else:
        lines.append(f"preflight:  {'OK' if pf['ok'] else 'FAIL'} for {pf['target']}"
                     + (f"; also parsed by {pf['parser']}" if pf.get("parser") else ""))
        lines += [f"  error: {e}" for e in pf["errors"]]
    acc = s["reference_accuracy"]
    lines.append(f"accuracy:   skipped ({acc['skipped']})" if "skipped" in acc else
                 f"accuracy:   top-1 {acc['top1'] * 100:.2f}% on {acc['samples']} held-out digits ({acc['backend']})")
    lines.append(f"bundle:     {s['bundle']['manifest']} (copy it to the device; 'tensorrt-optimize ensure' builds there)")
    eng = s["engine"]
    if "skipped" in eng:
        lines.append(f"engine:     not built here ({eng['skipped']})")
    else:
        where = "" if eng["runs_here"] else " [TensorRT-RTX ahead-of-time engine: for an RTX GPU, not for Jetson]"
        lines.append(f"engine:     {eng['status']}: {eng.get('engine') or eng.get('error')}{where}")
    return "\n".join(lines)
