"""Accuracy comparison of a candidate (Q/DQ or FP16 ONNX, or a TensorRT engine) against
the FP32 reference on ONNX Runtime, over the same samples, and the gate built on it.

Per output: max/mean absolute and relative error, cosine similarity (over all values and
the worst sample), SNR in dB. Classifier outputs (N x C, C >= 2): top-1 agreement,
top-5 agreement (the reference's top-1 among the candidate's top 5) and, with labels,
the top-1 accuracy of both. Detector outputs (``detections="yolo"``: N x (4+C) x A,
centre-x/centre-y/w/h then class scores, as YOLOv5u/v8/11 export): boxes after
per-class NMS (:func:`tegra_ai.kernels.nms_reference.nms_reference`), matched at IoU >= 0.5
with the same class; the candidate's precision and recall against the reference.

The gate: every output's cosine >= ``min_cosine``; a classifier's top-1 drop <=
``max_top1_drop`` percentage points — with labels the drop in accuracy, without them
``100 * (1 - top-1 agreement)`` (an upper bound of it)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError

DETECTION_FORMATS = ("yolo",)


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


# --------------------------------------------------------------------------- metrics

def error_metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    r = np.asarray(ref, np.float64).reshape(len(ref), -1) if np.ndim(ref) else np.asarray(ref, np.float64).reshape(1, 1)
    c = np.asarray(cand, np.float64).reshape(r.shape)
    d = np.abs(r - c)
    finite = bool(np.isfinite(c).all())
    denom = np.maximum(np.abs(r), 1e-6 * max(float(np.abs(r).max()), 1e-12))
    rel = d / denom

    def cos(a, b):
        na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
        both_zero = (na == 0) & (nb == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.sum(a * b, axis=-1) / (na * nb)
        return np.where(both_zero, 1.0, np.nan_to_num(v, nan=0.0))

    noise = float(np.sum(d * d))
    signal = float(np.sum(r * r))
    snr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "max_rel": float(rel.max()),
            "mean_rel": float(rel.mean()), "cosine": float(cos(r.ravel(), c.ravel())),
            "min_sample_cosine": float(cos(r, c).min()), "snr_db": round(snr, 3) if np.isfinite(snr) else snr,
            "finite": finite}


def classifier_metrics(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None) -> dict:
    ref_top1 = ref.argmax(1)
    cand_top1 = cand.argmax(1)
    k = min(5, ref.shape[1])
    cand_top5 = np.argsort(-cand, axis=1, kind="stable")[:, :k]
    out = {"top1_agreement": float((ref_top1 == cand_top1).mean()),
           "top5_agreement": float((cand_top5 == ref_top1[:, None]).any(1).mean())}
    if labels is not None:
        out["reference_top1_accuracy"] = float((ref_top1 == labels).mean())
        out["candidate_top1_accuracy"] = float((cand_top1 == labels).mean())
        ref_top5 = np.argsort(-ref, axis=1, kind="stable")[:, :k]
        out["reference_top5_accuracy"] = float((ref_top5 == labels[:, None]).any(1).mean())
        out["candidate_top5_accuracy"] = float((cand_top5 == labels[:, None]).any(1).mean())
        out["top1_drop_points"] = round(100 * (out["reference_top1_accuracy"] - out["candidate_top1_accuracy"]), 4)
    else:
        out["top1_drop_points"] = round(100 * (1 - out["top1_agreement"]), 4)
    return out


def _iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def yolo_detections(out: np.ndarray, score_threshold: float, iou_threshold: float) -> list:
    """(N, 4+C, A) raw YOLO head -> per image (boxes xyxy, scores, classes) after class-aware NMS."""
    from tegra_ai.kernels.nms_reference import nms_reference

    if out.ndim != 3 or out.shape[1] < 5:
        raise _usage(f"--detections yolo expects an output of shape N x (4+classes) x anchors, got {list(out.shape)}")
    res = []
    for img in out:
        cx, cy, w, h = img[:4]
        cls_scores = img[4:]
        classes = cls_scores.argmax(0)
        scores = cls_scores.max(0)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        keep_mask = scores > score_threshold
        idx = np.nonzero(keep_mask)[0]
        kept = nms_reference(boxes[idx], scores[idx], iou_threshold, classes=classes[idx]) if len(idx) else []
        sel = idx[np.asarray(kept, dtype=np.int64)] if len(idx) else idx
        res.append((boxes[sel], scores[sel], classes[sel]))
    return res


def box_agreement(ref_dets: list, cand_dets: list, iou: float = 0.5) -> dict:
    """Greedy one-to-one matching (candidate boxes by score) at IoU >= ``iou``, same class."""
    tp = n_ref = n_cand = 0
    for (rb, _rs, rc), (cb, cs, cc) in zip(ref_dets, cand_dets):
        n_ref += len(rb)
        n_cand += len(cb)
        if not len(rb) or not len(cb):
            continue
        ious = _iou(cb, rb)
        used = np.zeros(len(rb), bool)
        for i in np.argsort(-cs, kind="stable"):
            cand_ious = np.where((rc == cc[i]) & ~used, ious[i], -1)
            j = int(cand_ious.argmax())
            if cand_ious[j] >= iou:
                used[j] = True
                tp += 1
    precision = tp / n_cand if n_cand else (1.0 if not n_ref else 0.0)
    recall = tp / n_ref if n_ref else 1.0
    return {"reference_boxes": n_ref, "candidate_boxes": n_cand, "matched": tp, "precision": precision,
            "recall": recall}


# --------------------------------------------------------------------------- running

def make_runner(path: str):
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner

    if not os.path.isfile(path):
        raise _usage(f"{path} does not exist")
    if path.endswith(".onnx"):
        from tegra_ai.util.lazy import require

        onnx = require("onnx", extra="onnx", purpose="accuracy comparison")
        try:
            onnx.load(path, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            raise _usage(f"cannot load {path} as ONNX ({type(exc).__name__})") from None
        return OnnxRuntimeRunner(path)
    from tegra_ai.backend.tensorrt import TensorRTRunner

    return TensorRTRunner(path)


def _load_labels(labels) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        if not os.path.isfile(labels):
            raise _usage(f"labels {labels} do not exist")
        path = labels
        try:
            labels = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _usage(f"labels file is not a .npy array without pickles ({str(exc).splitlines()[0]})") from None
        if not isinstance(labels, np.ndarray):  # an .npz from calibration-dataset: its _labels
            with labels as z:
                if "_labels" not in z.files:
                    raise _usage(f"{path} has no _labels (calibration-dataset writes them for images in class "
                                 "sub-folders); give an .npy of class indices")
                labels = z["_labels"]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _usage(f"labels must be a 1-D integer array of class indices, got {labels.dtype} {list(labels.shape)}")
    return labels.astype(np.int64)


def _static_batch(runner) -> int | None:
    static = {m.shape[0] for m in runner.input_metadata() if m.shape and m.shape[0] is not None}
    return static.pop() if len(static) == 1 else None


def run_model(runner, feed: dict, default_batch: int = 64) -> dict:
    """Every output of ``runner`` over all samples (batched as the model allows)."""
    n = next(iter(feed.values())).shape[0]
    static = _static_batch(runner)
    b = static or default_batch
    outs = {}
    for i in range(0, n, b):
        chunk = {k: v[i:i + b] for k, v in feed.items()}
        real = next(iter(chunk.values())).shape[0]
        if static is not None and real < static:
            # a static batch the samples do not fill: the last batch is padded with copies of its
            # last sample and only the real rows are kept, so every sample is compared (none dropped)
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], static - real, axis=0)]) for k, v in chunk.items()}
        res = runner.infer(chunk)
        for k, v in res.items():
            v = np.asarray(v)
            if static is not None and real < static:
                if v.ndim == 0 or v.shape[0] != static:
                    raise _usage(f"output {k!r} has no batch dimension of {static}, so {n} samples cannot be "
                                 f"padded to the model's static batch", hint=f"give a multiple of {static} samples")
                v = v[:real]
            outs.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


def load_feed(data, runner) -> dict:
    from tegra_ai.trt.calibrator import load_calibration_arrays

    arrays = load_calibration_arrays(data) if isinstance(data, str) else dict(data)
    feed = {}
    for m in runner.input_metadata():
        if m.name not in arrays:
            raise _usage(f"data has no array for input {m.name!r} (it has {', '.join(arrays) or 'none'})")
        a = np.asarray(arrays[m.name])
        if a.ndim != len(m.shape) or any(d is not None and i and d != s for i, (d, s) in enumerate(zip(m.shape, a.shape))):
            raise _usage(f"data array {m.name!r} has shape {list(a.shape)}, the model input is "
                         f"{[d if d is not None else '?' for d in m.shape]}")
        feed[m.name] = np.ascontiguousarray(a, dtype=m.dtype if m.dtype in ("float32", "float16", "int32", "int64",
                                                                            "uint8", "int8") else None)
    if len({v.shape[0] for v in feed.values()}) != 1 or not next(iter(feed.values())).shape[0]:
        raise _usage("data has no samples or different sample counts per input")
    return feed


# --------------------------------------------------------------------------- report and gate

@dataclasses.dataclass
class Gate:
    min_cosine: float | None = None
    max_top1_drop: float | None = None
    min_box_recall: float | None = None

    def active(self) -> bool:
        return any(v is not None for v in (self.min_cosine, self.max_top1_drop, self.min_box_recall))


def evaluate_gate(outputs: dict, gate: Gate) -> list:
    """Why the gate fails (empty when it passes)."""
    failures = []
    for name, o in outputs.items():
        if not o["finite"]:
            failures.append(f"{name}: the candidate produced NaN/Inf")
        if gate.min_cosine is not None and o["cosine"] < gate.min_cosine:
            failures.append(f"{name}: cosine {o['cosine']:.6f} < {gate.min_cosine}")
        cls = o.get("classifier")
        if gate.max_top1_drop is not None and cls and cls["top1_drop_points"] > gate.max_top1_drop:
            failures.append(f"{name}: top-1 drop {cls['top1_drop_points']:.2f} points > {gate.max_top1_drop}")
        det = o.get("detections")
        if gate.min_box_recall is not None and det and det["recall"] < gate.min_box_recall:
            failures.append(f"{name}: box recall {det['recall']:.4f} < {gate.min_box_recall}")
    return failures


def compare_outputs(ref_out: dict, cand_out: dict, labels=None, detections: str | None = None,
                    score_threshold: float = 0.25, iou_threshold: float = 0.45) -> dict:
    if set(ref_out) == set(cand_out):
        pairs = [(k, k) for k in ref_out]
    elif len(ref_out) == len(cand_out):
        pairs = list(zip(ref_out, cand_out))
    else:
        raise _usage(f"the models' outputs differ: {', '.join(ref_out)} vs {', '.join(cand_out)}")
    if detections is not None and not any(v.ndim == 3 for v in ref_out.values()):
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in ref_out.items())
        raise _usage(f"--detections {detections} expects an output of shape N x (4+classes) x anchors ({shapes})")
    result = {}
    for rk, ck in pairs:
        r, c = ref_out[rk], cand_out[ck]
        if r.shape != c.shape:
            raise _usage(f"output {rk!r} has shape {list(r.shape)} in the reference, {list(c.shape)} in the candidate")
        m = error_metrics(r, c)
        if r.ndim == 2 and r.shape[1] >= 2 and detections is None:
            if labels is not None and len(labels) != len(r):
                raise _usage(f"{len(labels)} labels for {len(r)} samples")
            m["classifier"] = classifier_metrics(r.astype(np.float64), c.astype(np.float64), labels)
        if detections == "yolo" and r.ndim == 3:
            m["detections"] = box_agreement(yolo_detections(r.astype(np.float32), score_threshold, iou_threshold),
                                            yolo_detections(c.astype(np.float32), score_threshold, iou_threshold))
        result[rk] = m
    return result


def compare(reference: str, candidate: str, data, labels=None, gate: Gate | None = None,
            detections: str | None = None, max_samples: int | None = None, reference_outputs: dict | None = None) -> dict:
    """Run both models over ``data`` (.npz path or dict) and compare; returns the report dict
    (``passed`` is None without thresholds). ``reference_outputs`` skips re-running the reference."""
    if detections is not None and detections not in DETECTION_FORMATS:
        raise _usage(f"unknown --detections {detections!r}: expected {', '.join(DETECTION_FORMATS)}")
    labels = _load_labels(labels)
    cand_runner = make_runner(candidate)
    ref_runner = make_runner(reference) if reference_outputs is None else None
    with cand_runner:
        feed = load_feed(data, cand_runner)
        if max_samples:
            feed = {k: v[:max_samples] for k, v in feed.items()}
        n = next(iter(feed.values())).shape[0]
        if labels is not None:
            if len(labels) < n:
                raise _usage(f"{len(labels)} labels for {n} samples")
            labels = labels[:n]
        cand_out = run_model(cand_runner, feed)
    if reference_outputs is None:
        with ref_runner:
            ref_feed = load_feed(feed, ref_runner)
            ref_out = run_model(ref_runner, ref_feed)
    else:
        ref_out = reference_outputs
    outputs = compare_outputs(ref_out, cand_out, labels, detections)
    gate = gate or Gate()
    failures = evaluate_gate(outputs, gate)
    return {"reference": reference, "candidate": candidate, "samples": int(n), "labels": labels is not None,
            "outputs": outputs, "gate": dataclasses.asdict(gate),
            "passed": (not failures) if gate.active() else None, "failures": failures}


def format_markdown(report: dict) -> str:
    lines = [f"# Accuracy: `{os.path.basename(report['candidate'])}` vs `{os.path.basename(report['reference'])}`", "",
             f"{report['samples']} samples" + (", with labels" if report["labels"] else ""), "",
             "| output | cosine | min sample cosine | SNR dB | max abs | mean abs | max rel | mean rel |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, o in report["outputs"].items():
        lines.append(f"| {name} | {o['cosine']:.6f} | {o['min_sample_cosine']:.6f} | {o['snr_db']} | {o['max_abs']:.4g} | "
                     f"{o['mean_abs']:.4g} | {o['max_rel']:.4g} | {o['mean_rel']:.4g} |")
    for name, o in report["outputs"].items():
        c = o.get("classifier")
        if c:
            lines += ["", f"**{name}** (classifier): top-1 agreement {100 * c['top1_agreement']:.2f} %, "
                          f"top-5 agreement {100 * c['top5_agreement']:.2f} %"]
            if "reference_top1_accuracy" in c:
                lines.append(f"top-1 accuracy: reference {100 * c['reference_top1_accuracy']:.2f} %, candidate "
                             f"{100 * c['candidate_top1_accuracy']:.2f} % (drop {c['top1_drop_points']:.2f} points); "
                             f"top-5: {100 * c['reference_top5_accuracy']:.2f} % / {100 * c['candidate_top5_accuracy']:.2f} %")
        d = o.get("detections")
        if d:
            lines += ["", f"**{name}** (detections): {d['matched']}/{d['reference_boxes']} reference boxes matched; "
                          f"precision {d['precision']:.4f}, recall {d['recall']:.4f}"]
    if report["passed"] is not None:
        lines += ["", "**gate: PASSED**" if report["passed"] else "**gate: FAILED**"]
        lines += [f"- {f}" for f in report["failures"]]
    return "\n".join(lines) + "\n"
