"""Automatic mixed precision: quantize, check the accuracy gate, and when it fails keep
the layers responsible in float until it passes or the budget is spent.

1. Quantize every eligible layer (calibration ranges computed once and reused).
2. If the gate fails, measure each quantized layer's sensitivity on the host: the
   model with *only that layer* quantized, compared with the FP32 reference on the gate
   data (ONNX Runtime). The score is the worst output cosine, and for classifiers the
   top-1 drop.
3. Keep the most sensitive layers in float, one more at a time, re-quantizing and
   re-checking, until the gate passes or ``budget`` layers are kept.

Layers kept in float have no Q/DQ: TensorRT runs them in FP32 when strongly typed (or in
FP16 with the FP16 flag on a weakly typed 8.5/10.x build). The report says what was kept
and what it cost (the share of weights left unquantized)."""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.quant import compare as cmp
from tegra_ai.quant.qdq import QuantizeResult, load_onnx, quantize
from tegra_ai.util.atomic import atomic_write_bytes, write_errors_named

log = logging.getLogger("tegra_ai.quant.fallback")


def _score(report: dict) -> tuple:
    """Smaller is worse: (worst cosine, -worst top-1 drop)."""
    cos = min(o["cosine"] for o in report["outputs"].values())
    drops = [o["classifier"]["top1_drop_points"] for o in report["outputs"].values() if o.get("classifier")]
    return (cos, -max(drops) if drops else 0.0)


def _summary(report: dict) -> dict:
    out = {}
    for name, o in report["outputs"].items():
        out[name] = {"cosine": o["cosine"], "snr_db": o["snr_db"]}
        if o.get("classifier"):
            out[name]["top1_drop_points"] = o["classifier"]["top1_drop_points"]
    return out


def weight_share(model_path: str, nodes) -> float:
    """Share of the model's weight elements that belong to ``nodes`` (their initializer inputs)."""
    model = load_onnx(model_path)
    sizes = {i.name: int(np.prod(i.dims)) if len(i.dims) else 1 for i in model.graph.initializer}
    nodes = set(nodes)
    total = sum(sizes.get(i, 0) for n in model.graph.node for i in n.input[1:2])
    kept = sum(sizes.get(i, 0) for n in model.graph.node if n.name in nodes for i in n.input[1:2])
    return kept / total if total else 0.0


def quantize_with_gate(model_path: str, calibration: str, output: str, gate_data: str, gate: cmp.Gate, *,
                       labels=None, budget: int | None = None, progress=None, **quant_kwargs) -> dict:
    """Quantize ``model_path`` to ``output`` so that it passes ``gate`` on ``gate_data``.

    Returns the report: ``passed``, ``kept_float`` (layers left unquantized), the gate
    metrics of every step, per-layer sensitivity, and the cost. ``output`` is written
    only when the gate passes."""
    if not gate.active():
        raise TegraAIError("--gate needs a threshold (--min-cosine, --max-top1-drop)", exit_code=EXIT_USAGE)
    started = time.monotonic()
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise TegraAIError(f"output directory {out_dir} does not exist", exit_code=EXIT_USAGE)

    def note(msg):
        log.info(msg)
        if progress is not None:
            progress.update(msg)

    with write_errors_named(out_dir), tempfile.TemporaryDirectory(prefix=".tegra-ai-fallback-", dir=out_dir) as tmp:
        ranges = os.path.join(tmp, "ranges.json")
        ref_runner = cmp.make_runner(model_path)
        with ref_runner:
            feed = cmp.load_feed(gate_data, ref_runner)
            ref_out = cmp.run_model(ref_runner, feed)
        lab = cmp._load_labels(labels)
        counter = [0]

        def attempt(keep) -> tuple:
            counter[0] += 1
            path = os.path.join(tmp, f"q{counter[0]}.onnx")
            res = quantize(model_path, calibration, path, keep_float=keep, range_cache=ranges, **quant_kwargs)
            rep = cmp.compare(model_path, path, feed, labels=lab, gate=gate, reference_outputs=ref_out)
            return path, res, rep

        note("quantizing every eligible layer")
        path, first, rep = attempt(())
        steps = [{"kept_float": [], "passed": rep["passed"], "metrics": _summary(rep), "failures": rep["failures"]}]
        layers = list(first.quantized_nodes)
        sensitivity = []
        kept = []
        best = (path, first, rep)
        if not rep["passed"]:
            for i, node in enumerate(layers):
                note(f"sensitivity {i + 1}/{len(layers)}: {node}")
                _p, _r, srep = attempt([n for n in layers if n != node])
                sensitivity.append({"node": node, "metrics": _summary(srep), "score": _score(srep)})
            ranking = [s["node"] for s in sorted(sensitivity, key=lambda s: s["score"])]
            limit = budget if budget is not None else max(1, len(layers) // 2)
            for node in ranking[:limit]:
                kept.append(node)
                note(f"keeping {len(kept)} layer(s) in float: {', '.join(kept)}")
                path, res, rep = attempt(list(kept))
                steps.append({"kept_float": list(kept), "passed": rep["passed"], "metrics": _summary(rep),
                              "failures": rep["failures"]})
                best = (path, res, rep)
                if rep["passed"]:
                    break
        path, res, rep = best
        passed = bool(rep["passed"])
        if passed:
            with open(path, "rb") as f:
                atomic_write_bytes(output, f.read())
    for s in sensitivity:
        s.pop("score")
    return {
        "passed": passed, "output": output if passed else None, "kept_float": kept if not first_passed(steps) else [],
        "quantized_layers": res.quantized_nodes, "initially_quantized": layers, "steps": steps,
        "sensitivity": sensitivity, "final": rep, "quantize": res.to_dict() if isinstance(res, QuantizeResult) else res,
        "cost": {"layers_kept_float": len(kept) if not first_passed(steps) else 0, "layers": len(layers),
                 "weights_kept_float": round(weight_share(model_path, kept), 6) if kept else 0.0,
                 "quantizations": counter[0], "seconds": round(time.monotonic() - started, 2)},
    }


def first_passed(steps) -> bool:
    return bool(steps and steps[0]["passed"])
