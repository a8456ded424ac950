"""FP32 vs FP16 vs INT8 (entropy, percentile, min-max) accuracy, on the host, per model.

Every variant is made here with the library (``quantize``, ``convert_fp16``: what
``tensorrt-optimize quantize`` / ``convert-fp16`` do) and run with ONNX Runtime on the CPU.
TensorRT is not installable on this host: the numbers are ONNX Runtime's reference kernels
on the same Q/DQ models TensorRT builds; a TensorRT engine's INT8 accuracy can differ.

Sections (``--models``, default all):

- ``digits``: the embedded digits CNN, calibrated on its 256 calibration images and
  measured on its 359 held-out labeled images (top-1).
- ``ocr-cls``: PaddleOCR's text-direction classifier (ch_ppocr_mobile_v2.0_cls, 0 / 180
  degrees) on text lines rendered here with Pillow (top-1). Calibration and evaluation sets
  are generated with different seeds and share no text string.
- ``ocr-det``: PaddleOCR's PP-OCRv4 text detector (DB) on rendered scenes with known text
  boxes: precision / recall / F-score at IoU 0.5 after DB's standard post-processing.

The two PaddleOCR models come from the rapidocr-onnxruntime 1.4.4 wheel on PyPI
(Apache-2.0), fetched with ``pip download --no-deps`` into a cache directory (``--cache``,
default ``$TEGRA_AI_TEST_MODEL_CACHE`` or ``~/.cache/meta-tegra-ai/pypi-models``), never
committed; a section whose model or fonts cannot be had is skipped with the reason.

Every accuracy has its 95 % interval (Wilson for top-1, bootstrap over images for the
F-score) and every difference to FP32 a paired bootstrap interval (same images), so "INT8
within 1 point of FP32" is judged with its noise. When an INT8 method misses that goal on a
classifier, ``--fallback`` adds a row for the same method with quantize's
accuracy-gate fallback (``tensorrt-optimize quantize --gate``: the most sensitive layers
kept in float), gated on a third rendered set, never on the evaluation set; on the
detector, ``--det-exclude OPS`` (default ConvTranspose) adds a row for such a method
quantized with ``quantize --exclude OPS``.

    python3 benchmarks/bench_quant_accuracy.py [--models digits,ocr-cls,ocr-det] [--write] [--json]

Prints a Markdown table (``--json``: the measurements as JSON on stdout instead);
``--write`` replaces its section in benchmarks/RESULTS.md. Progress goes to stderr.
Exit status: 0 when every measured INT8 method loses at most 1 point against FP32 (point
estimate), 1 when one loses more or nothing was measured, 2 on bad arguments. ``--write``
writes nothing when a section was skipped.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import string
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))

import numpy as np  # noqa: E402

SECTION = "## Host quantization accuracy table (bench_quant_accuracy.py)"
MODELS = ("digits", "ocr-cls", "ocr-det")
METHODS = ("entropy", "percentile", "minmax")
GOAL_POINTS = 1.0
BOOTSTRAP = 2000

OCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"
OCR_FILES = {"ocr-cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr-det": "ch_PP-OCRv4_det_infer.onnx"}


class Skip(Exception):
    """A section that cannot run here (no network, no fonts): its reason is reported."""


def progress(msg: str) -> None:
    print(f"[bench_quant_accuracy] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- statistics

def wilson(k: int, n: int, z: float = 1.96) -> tuple:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_indices(n: int, seed: int = 0, rounds: int = BOOTSTRAP) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def interval(values: np.ndarray) -> tuple:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------- running models

def session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def infer(path: str, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """First output of ``path`` on ``x`` (batched along axis 0)."""
    s = session(path)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def make_variants(model: str, calib: str, workdir: str, methods) -> list:
    """[(name, path, method)] for FP16 and each INT8 method, made with the library."""
    from tegra_ai.onnx_fp16 import convert_fp16
    from tegra_ai.quant.qdq import quantize

    out = [("FP16 (convert-fp16)", os.path.join(workdir, "fp16.onnx"), None)]
    convert_fp16(model, out[0][1])
    for method in methods:
        path = os.path.join(workdir, f"int8-{method}.onnx")
        t = time.monotonic()
        quantize(model, calib, path, method=method, range_cache=range_cache(workdir, method))
        progress(f"  INT8 {method}: quantized in {time.monotonic() - t:.1f} s")
        out.append((f"INT8 Q/DQ, {method}", path, method))
    return out


def range_cache(workdir: str, method: str) -> str:
    """Where a section's calibration ranges for ``method`` are kept (computed once, reused)."""
    return os.path.join(workdir, f"ranges-{method}.json")


def activation_ranges(path: str) -> dict:
    """tensor -> (|range| of its per-tensor activation Q/DQ, consumer op types) in a Q/DQ model."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    consts = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output} | set(inits)
    dq_of = {n.input[0]: n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    users = {}
    for n in m.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n.op_type)
    out = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in consts and inits.get(n.input[1]) is not None \
                and inits[n.input[1]].size == 1:
            ops = sorted(set(users.get(dq_of.get(n.output[0], ""), [])))
            out[n.input[0]] = (float(inits[n.input[1]]) * 127, ops)
    return out


def clipping_note(variants: list, rows: list) -> str | None:
    """Why entropy misses where min-max does not: the activations it clips hardest."""
    paths = {m: p for _n, p, m in variants if m}
    missed = {r["method"] for r in rows if r.get("method") == "entropy" and r["delta_points"] < -GOAL_POINTS}
    if not missed or "minmax" not in paths:
        return None
    ent, mm = activation_ranges(paths["entropy"]), activation_ranges(paths["minmax"])
    ratios = sorted((ent[k][0] / mm[k][0], k, mm[k][1]) for k in ent.keys() & mm.keys() if mm[k][0] > 0)
    hard = [r for r in ratios if r[0] <= 0.125]
    if not hard:
        return None
    shown = ", ".join(f"{k} ({'/'.join(ops) or 'no consumer'}) {ratio:.3f}" for ratio, k, ops in hard[:4])
    return (f"entropy's KL thresholds clip {len(hard)} of {len(ratios)} activations to 1/8 of their min-max range or "
            f"less (tensor, its consumer, entropy / min-max range): {shown}"
            f"{f' and {len(hard) - 4} more' if len(hard) > 4 else ''}")


# --------------------------------------------------------------------------- classifier sections

def classifier_rows(model: str, variants: list, x: np.ndarray, labels: np.ndarray, batch: int = 64) -> list:
    ref = infer(model, x, batch)
    ref_ok = ref.argmax(1) == labels
    idx = bootstrap_indices(len(labels))
    rows = [_cls_row("FP32", ref_ok, ref_ok, ref, ref, model, idx)]
    for name, path, method in variants:
        t = time.monotonic()
        out = infer(path, x, batch)
        progress(f"  {name}: {len(x)} samples in {time.monotonic() - t:.1f} s")
        rows.append(_cls_row(name, out.argmax(1) == labels, ref_ok, out, ref, path, idx, method))
    return rows


def _cls_row(name, ok, ref_ok, out, ref, path, idx, method=None) -> dict:
    n, k = len(ok), int(ok.sum())
    okf, reff = ok.astype(np.float64), ref_ok.astype(np.float64)
    diff = (okf[idx].mean(1) - reff[idx].mean(1)) * 100
    return {"variant": name, "method": method, "metric": "top1", "value": k / n, "correct": k, "samples": n,
            "ci95": list(wilson(k, n)), "delta_points": (k - int(ref_ok.sum())) / n * 100,
            "delta_ci95": list(interval(diff)), "cosine": cosine(out, ref), "file_bytes": os.path.getsize(path)}


def measure_digits(workdir: str, args) -> dict:
    from tegra_ai import models
    from tegra_ai.dataset.calibration import build_dataset
    from tegra_ai.trt.calibrator import load_calibration_arrays

    spec = models.load_preprocess_spec()
    calib, val = os.path.join(workdir, "calib.npz"), os.path.join(workdir, "val.npz")
    build_dataset([models.DEFAULT_SAMPLES], calib, spec, arrays=["calib_images"], show_progress=False)
    build_dataset([models.DEFAULT_SAMPLES], val, spec, arrays=["val_images"], show_progress=False)
    _, labels = models.load_samples("val")
    x = np.asarray(next(iter(load_calibration_arrays(val).values())), dtype=np.float32)
    n_calib = len(next(iter(load_calibration_arrays(calib).values())))
    variants = make_variants(models.DEFAULT_MODEL, calib, workdir, args.methods)
    rows = classifier_rows(models.DEFAULT_MODEL, variants, x, np.asarray(labels))
    return {"model": "digits", "title": "Embedded digits CNN", "metric": "top-1", "samples": len(labels),
            "calibration_samples": n_calib,
            "data": "its 359 held-out labeled images (digits_samples.npz 'val'); calibration: its 256 'calib' images",
            "rows": rows}


def fetch_ocr_models(cache: str) -> dict:
    """The two PaddleOCR models from the rapidocr-onnxruntime wheel, extracted into ``cache``."""
    os.makedirs(cache, exist_ok=True)
    out = {k: os.path.join(cache, v) for k, v in OCR_FILES.items()}
    if all(os.path.isfile(p) for p in out.values()):
        return out
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", OCR_PACKAGE, "-d", cache],
                           capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"cannot download {OCR_PACKAGE}: {exc}") from None
    wheels = [f for f in os.listdir(cache) if f.startswith("rapidocr_onnxruntime-1.4.4") and f.endswith(".whl")]
    if r.returncode or not wheels:
        raise Skip(f"cannot download {OCR_PACKAGE} from the package index: {(r.stderr or r.stdout).strip()[-200:]}")
    with zipfile.ZipFile(os.path.join(cache, wheels[0])) as z:
        for k, name in OCR_FILES.items():
            tmp = out[k] + ".part"
            with z.open(f"rapidocr_onnxruntime/models/{name}") as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, out[k])
    return out


# --------------------------------------------------------------------------- rendered text

WORDS = ("the quick brown fox jumps over a lazy dog invoice total amount date number street city order price "
         "qty serial model jetson orin engine batch lot weight net gross expiry made in tel fax www com ref "
         "part no item code zone gate exit stop open close level power input output voltage warning").split()


def find_fonts() -> list:
    """DejaVu TrueType fonts: the system's, else matplotlib's bundled copies."""
    pats = ["/usr/share/fonts/truetype/dejavu/DejaVu*.ttf", "/usr/share/fonts/dejavu*/DejaVu*.ttf"]
    try:
        import matplotlib

        pats.append(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVu*.ttf"))
    except ImportError:
        pass
    for pat in pats:
        fonts = sorted(f for f in glob.glob(pat) if "Math" not in f and "ExtraLight" not in f and "Display" not in f)
        if fonts:
            return fonts
    raise Skip("no DejaVu TrueType font found (install fonts-dejavu-core or matplotlib)")


def random_text(rng, avoid=frozenset()) -> str:
    while True:
        kind = rng.integers(0, 4)
        if kind == 0:
            t = " ".join(rng.choice(WORDS, rng.integers(1, 5)))
        elif kind == 1:
            t = "".join(rng.choice(list(string.digits), rng.integers(3, 12)))
        elif kind == 2:
            t = "".join(rng.choice(list(string.ascii_letters + string.digits + "-/.:"), rng.integers(4, 16)))
        else:
            t = " ".join(rng.choice(WORDS, rng.integers(1, 3))).upper() + " " + str(rng.integers(0, 10000))
        if t not in avoid:
            return t


def _background(rng) -> tuple:
    """Mostly light, sometimes dark."""
    return tuple(int(c) for c in (rng.integers(150, 256, 3) if rng.random() < 0.8 else rng.integers(0, 90, 3)))


def _ink(rng, bg) -> tuple:
    """A colour that contrasts with ``bg``."""
    return tuple(int(c) for c in (rng.integers(0, 80, 3) if sum(bg) / 3 > 128 else rng.integers(170, 256, 3)))


def _noisy_bgr(im, rng) -> np.ndarray:
    a = np.asarray(im).astype(np.float32)
    a += rng.normal(0, rng.uniform(0, 8), a.shape)
    return np.ascontiguousarray(np.clip(a, 0, 255).astype(np.uint8)[:, :, ::-1])  # BGR, as cv2.imread gives


def render_line(rng, fonts, avoid=frozenset()) -> tuple:
    """One text-line crop (BGR uint8, as OCR's detector hands it to the classifier) and its text."""
    from PIL import Image, ImageDraw, ImageFont

    t = random_text(rng, avoid)
    font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(18, 44)))
    left, top, right, bottom = font.getbbox(t)
    pad = rng.integers(2, 10, 4)
    w, h = int(right - left + pad[0] + pad[1]), int(bottom - top + pad[2] + pad[3])
    bg = _background(rng)
    im = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(im).text((int(pad[0]) - left, int(pad[2]) - top), t, font=font, fill=_ink(rng, bg))
    return _noisy_bgr(im, rng), t


def cls_resize_norm(img: np.ndarray, shape=(3, 48, 192)) -> np.ndarray:
    """PaddleOCR's classifier preprocessing, as rapidocr-onnxruntime 1.4.4 does it
    (rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py, TextClassifier.resize_norm_img, with
    config.yaml's cls_image_shape [3, 48, 192]): resize to height 48 keeping the aspect
    ratio (width ceil(48 * w / h), at most 192), (x / 255 - 0.5) / 0.5, zero-pad on the right."""
    import cv2

    img_c, img_h, img_w = shape
    h, w = img.shape[:2]
    ratio = w / float(h)
    resized_w = img_w if math.ceil(img_h * ratio) > img_w else int(math.ceil(img_h * ratio))
    resized = cv2.resize(img, (resized_w, img_h)).astype("float32").transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def cls_set(seed: int, n: int, fonts, avoid=frozenset()) -> tuple:
    """n preprocessed lines, label 0 (upright) or 1 ("180": the crop rotated by 180 degrees,
    the classifier's label_list ['0', '180']), half each; and the texts used."""
    rng = np.random.default_rng(seed)
    xs, labels, texts = [], [], set()
    for i in range(n):
        img, t = render_line(rng, fonts, avoid)
        texts.add(t)
        label = i % 2
        if label:
            img = np.ascontiguousarray(img[::-1, ::-1])
        xs.append(cls_resize_norm(img))
        labels.append(label)
    return np.stack(xs), np.array(labels, dtype=np.int64), texts


def measure_ocr_cls(workdir: str, args) -> dict:
    model = fetch_ocr_models(args.cache)["ocr-cls"]
    fonts = find_fonts()
    progress(f"ocr-cls: rendering {args.samples} evaluation + {args.calib} calibration text lines")
    x, labels, used = cls_set(1, args.samples, fonts)
    calx, _, cal_texts = cls_set(2, args.calib, fonts, avoid=used)
    calib = os.path.join(workdir, "calib.npz")
    np.savez(calib, x=calx)
    variants = make_variants(model, calib, workdir, args.methods)
    rows = classifier_rows(model, variants, x, labels)
    notes = [n for n in [clipping_note(variants, rows)] if n]
    if args.fallback:
        missed = [r for r in rows if r["method"] and r["delta_points"] < -GOAL_POINTS]
        if missed:
            gx, glab, _ = cls_set(3, args.gate_samples, fonts, avoid=used | cal_texts)
            gate, gate_lab = os.path.join(workdir, "gate.npz"), os.path.join(workdir, "gate-labels.npy")
            np.savez(gate, x=gx)
            np.save(gate_lab, glab)
            for r in missed:
                rows.append(_fallback_row(model, calib, gate, gate_lab, r["method"], workdir, x, labels))
            notes.append(f"fallback rows: `quantize --gate` with --max-top1-drop 0.5 on {args.gate_samples} more "
                         "rendered lines (seed 3, no text shared with the other sets)")
    return {"model": "ocr-cls", "title": "PaddleOCR text-direction classifier (ch_ppocr_mobile_v2.0_cls, 0 / 180)",
            "metric": "top-1", "samples": len(labels), "calibration_samples": len(calx),
            "data": (f"{len(labels)} text lines rendered with Pillow ({len(fonts)} DejaVu fonts, 18-43 px, random "
                     "words / digits / symbols, random colours, Gaussian noise), half rotated by 180 degrees; "
                     "PaddleOCR's resize_norm_img to 3x48x192; calibration: "
                     f"{len(calx)} other lines (no text shared)"),
            "fonts": [os.path.basename(f) for f in fonts], "rows": rows, "notes": notes}


class _Progress:
    """What quantize_with_gate reports, to stderr."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def update(self, msg: str) -> None:
        progress(self.prefix + msg)


def _fallback_row(model, calib, gate, gate_labels, method, workdir, x, labels) -> dict:
    """``quantize --gate`` (the accuracy fallback) for ``method``, gated on its own data,
    then measured on the evaluation set like the other rows."""
    from tegra_ai.quant import compare as cmp
    from tegra_ai.quant.fallback import quantize_with_gate

    out = os.path.join(workdir, f"int8-{method}-fallback.onnx")
    t = time.monotonic()
    rep = quantize_with_gate(model, calib, out, gate, cmp.Gate(max_top1_drop=0.5), labels=gate_labels, method=method,
                             progress=_Progress(f"  INT8 {method} + fallback: "))
    kept = len(rep["kept_float"])
    progress(f"  INT8 {method} + fallback: {kept} layer(s) kept float in {time.monotonic() - t:.1f} s "
             f"({'passed' if rep['passed'] else 'gate not passed'})")
    if not rep["passed"]:  # nothing written: the row says so
        return {"variant": f"INT8 Q/DQ, {method} + fallback", "method": f"{method}+fallback", "metric": "top1",
                "value": None, "note": f"the gate did not pass with {kept} layer(s) kept float"}
    ref = infer(model, x)
    res = infer(out, x)
    row = _cls_row(f"INT8 Q/DQ, {method} + fallback ({kept} of {rep['cost']['layers']} layers float)",
                   res.argmax(1) == labels, ref.argmax(1) == labels, res, ref, out, bootstrap_indices(len(labels)),
                   f"{method}+fallback")
    row["kept_float"] = rep["kept_float"]
    return row


# --------------------------------------------------------------------------- detector section

DET_H, DET_W = 320, 480  # multiples of 32: DetPreProcess leaves such an image at its size


def render_scene(rng, fonts, avoid=frozenset()) -> tuple:
    """A BGR scene with 1-5 non-overlapping text lines and their boxes (x0, y0, x1, y1, ink extent)."""
    from PIL import Image, ImageDraw, ImageFont

    bg = _background(rng)
    im = Image.new("RGB", (DET_W, DET_H), bg)
    draw = ImageDraw.Draw(im)
    boxes = []
    for _ in range(int(rng.integers(1, 6))):
        for _attempt in range(20):
            t = random_text(rng, avoid)
            font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(16, 40)))
            left, top, right, bottom = font.getbbox(t)
            w, h = right - left, bottom - top
            if w >= DET_W - 16:
                continue
            x, y = int(rng.integers(8, DET_W - 8 - w)), int(rng.integers(8, DET_H - 8 - h))
            box = (x, y, x + w, y + h)
            if any(not (box[2] + 12 < o[0] or o[2] + 12 < box[0] or box[3] + 12 < o[1] or o[3] + 12 < box[1])
                   for o in boxes):
                continue
            draw.text((x - left, y - top), t, font=font, fill=_ink(rng, bg))
            boxes.append(box)
            break
    return _noisy_bgr(im, rng), np.array(boxes, dtype=np.float32).reshape(-1, 4)


def det_preprocess(img: np.ndarray) -> np.ndarray:
    """PaddleOCR's DB preprocessing (rapidocr_onnxruntime/ch_ppocr_det/utils.py, DetPreProcess:
    mean = std = 0.5, x / 255; NCHW). Its resize to multiples of 32 is the identity for the
    480x320 scenes rendered here (PaddleOCR's default det_limit_type 'max' with 960 does not
    upscale them; rapidocr's 'min' 736 would, at 5x the cost)."""
    return ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def db_postprocess(pred: np.ndarray, thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, min_size=3) -> np.ndarray:
    """DB's standard post-processing with rapidocr-onnxruntime 1.4.4's settings (config.yaml:
    thresh 0.3, box_thresh 0.5, unclip_ratio 1.6, use_dilation true, score_mode fast), after
    ch_ppocr_det/utils.py DBPostProcess.boxes_from_bitmap: threshold, 2x2 dilation, contours,
    minimum-area rectangle, mean probability inside it >= box_thresh, unclip by
    area * ratio / perimeter, size checks. A rectangle's unclip (pyclipper's round offset by d)
    has the rectangle grown by d on each side as its minimum-area rectangle, so cv2 alone does
    it here. ``pred``: H x W probabilities; returns axis-aligned boxes N x 4 (x0, y0, x1, y1)."""
    import cv2

    h, w = pred.shape
    mask = cv2.dilate((pred > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours[:1000]:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < min_size:
            continue
        pts = cv2.boxPoints(rect)
        x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int), 0, [w - 1, h - 1])
        m = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(m, [(pts - [x0, y0]).astype(np.int32)], 1)
        if cv2.mean(pred[y0:y1 + 1, x0:x1 + 1], m)[0] < box_thresh:
            continue
        (cx, cy), (rw, rh), angle = rect
        d = rw * rh * unclip_ratio / (2 * (rw + rh))
        grown = ((cx, cy), (rw + 2 * d, rh + 2 * d), angle)
        if min(grown[1]) < min_size + 2:
            continue
        p = cv2.boxPoints(grown)
        out.append([*np.clip(np.round(p.min(0)), 0, [w, h]), *np.clip(np.round(p.max(0)), 0, [w, h])])
    return np.array(out, dtype=np.float32).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def true_positives(det: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> int:
    """Greedy one-to-one matching, best IoU first (each box matches at most once)."""
    if not len(det) or not len(gt):
        return 0
    m = box_iou(det, gt)
    tp = 0
    while True:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        if m[i, j] < iou:
            return tp
        tp += 1
        m[i, :] = -1
        m[:, j] = -1


def _detect(path: str, x: np.ndarray, batch: int = 8) -> tuple:
    """(boxes per image after DB post-processing, probability maps)."""
    probs = infer(path, x, batch)[:, 0]
    return [db_postprocess(p) for p in probs], probs


def _counts(dets: list, gts: list) -> np.ndarray:
    """Per image (true positives, detections, ground-truth boxes) at IoU 0.5."""
    return np.array([(true_positives(d, g), len(d), len(g)) for d, g in zip(dets, gts)], dtype=np.float64)


def _fscore(c: np.ndarray) -> np.ndarray:
    return 2 * c[..., 0] / np.maximum(c[..., 1] + c[..., 2], 1)  # F = 2 TP / (detections + boxes)


def _det_row(name, dets, ref_dets, gts, out, ref, path, idx, method=None) -> dict:
    counts, ref_counts = _counts(dets, gts), _counts(ref_dets, gts)
    tp, nd, ng = counts.sum(0)
    boot, ref_boot = _fscore(counts[idx].sum(1)), _fscore(ref_counts[idx].sum(1))
    value = float(_fscore(counts.sum(0)))
    agree = float(_fscore(_counts(dets, ref_dets).sum(0)))  # the same boxes as FP32's, at IoU 0.5
    area = lambda ds: np.mean([(b[2] - b[0]) * (b[3] - b[1]) for d in ds for b in d] or [0.0])  # noqa: E731
    return {"variant": name, "method": method, "metric": "f1", "value": value, "precision": tp / max(nd, 1),
            "recall": tp / max(ng, 1), "true_positives": int(tp), "detections": int(nd), "boxes": int(ng),
            "ci95": list(interval(boot)), "delta_points": (value - float(_fscore(ref_counts.sum(0)))) * 100,
            "delta_ci95": list(interval((boot - ref_boot) * 100)), "fp32_box_agreement": agree,
            "box_area_vs_fp32": float(area(dets) / max(area(ref_dets), 1e-9)),
            "cosine": cosine(out, ref), "file_bytes": os.path.getsize(path)}


def bn_variances(model_path: str) -> list:
    """The running-variance arrays of an ONNX model's BatchNormalization nodes (initializers
    or Constant nodes), in their stored dtype."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(model_path)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    return [consts[n.input[4]] for n in m.graph.node if n.op_type == "BatchNormalization" and n.input[4] in consts]


def fp16_bn_note(model_path: str, fp16_path: str, delta_points: float) -> str:
    """Why a plain FP16 copy loses accuracy when BatchNormalization variances overflow FP16."""
    fp32 = bn_variances(model_path)
    big = max((float(v.max()) for v in fp32), default=0.0)
    clamped = sum(1 for v in bn_variances(fp16_path) if v.dtype == np.float16 and np.any(v == np.float16(65504)))
    text = f"plain `convert-fp16` loses {-delta_points:.1f} points"
    if big > 65504:
        text += (f"; the FP32 model's BatchNormalization running variances reach {big:.3g}, above FP16's largest value "
                 f"65504, and {clamped} BatchNormalization variance tensor(s) of the FP16 file hold 65504 (clamped)")
    return text + "; the next row keeps BatchNormalization in FP32 (`--keep-fp32 BatchNormalization`)"


def measure_ocr_det(workdir: str, args) -> dict:
    from tegra_ai.quant.qdq import quantize

    model = fetch_ocr_models(args.cache)["ocr-det"]
    fonts = find_fonts()
    progress(f"ocr-det: rendering {args.det_samples} evaluation + {args.det_calib} calibration scenes")
    rng = np.random.default_rng(11)
    scenes = [render_scene(rng, fonts) for _ in range(args.det_samples)]
    x = np.stack([det_preprocess(img) for img, _ in scenes])
    gts = [b for _, b in scenes]
    rng = np.random.default_rng(12)
    calx = np.stack([det_preprocess(render_scene(rng, fonts)[0]) for _ in range(args.det_calib)])
    calib = os.path.join(workdir, "calib.npz")
    np.savez(calib, x=calx)
    variants = make_variants(model, calib, workdir, args.methods)
    t = time.monotonic()
    ref_dets, ref = _detect(model, x)
    progress(f"  FP32: {len(x)} scenes in {time.monotonic() - t:.1f} s")
    idx = bootstrap_indices(len(x))
    rows = [_det_row("FP32", ref_dets, ref_dets, gts, ref, ref, model, idx)]
    for name, path, method in variants:
        t = time.monotonic()
        dets, out = _detect(path, x)
        progress(f"  {name}: {len(x)} scenes in {time.monotonic() - t:.1f} s")
        rows.append(_det_row(name, dets, ref_dets, gts, out, ref, path, idx, method))
    if args.det_exclude:
        for r in [r for r in rows if r.get("method") in METHODS and r["delta_points"] < -GOAL_POINTS]:
            path = os.path.join(workdir, f"int8-{r['method']}-exclude.onnx")
            quantize(model, calib, path, method=r["method"], exclude=list(args.det_exclude),
                     range_cache=range_cache(workdir, r["method"]))
            dets, out = _detect(path, x)
            flag = " ".join(f"--exclude {e}" for e in args.det_exclude)
            progress(f"  INT8 {r['method']} {flag}: measured")
            rows.append(_det_row(f"INT8 Q/DQ, {r['method']}, {flag}", dets, ref_dets, gts, out, ref, path, idx,
                                 f"{r['method']}+exclude"))
    notes = [n for n in [clipping_note(variants, rows)] if n]
    fp16 = rows[1]
    if fp16["delta_points"] < -GOAL_POINTS and bn_variances(model):
        # An older convert-fp16 clamped this model's variances (up to 9.8e7) to 65504: F-score 31 % (FP32 94 %).
        from tegra_ai.onnx_fp16 import convert_fp16

        notes.append(fp16_bn_note(model, variants[0][1], fp16["delta_points"]))
        path = os.path.join(workdir, "fp16-keep-bn.onnx")
        convert_fp16(model, path, keep_fp32=["BatchNormalization"])
        dets, out = _detect(path, x)
        rows.insert(2, _det_row("FP16 (convert-fp16 --keep-fp32 BatchNormalization)", dets, ref_dets, gts, out, ref,
                                path, idx))
    above = [r for r in rows[1:] if r["delta_ci95"][0] > 0]
    if above:
        notes.append("an F-score above FP32's is not a better detector: the boxes moved (same boxes as FP32: "
                     + ", ".join(f"{r['variant']} {r['fp32_box_agreement'] * 100:.1f} %, mean box area "
                                 f"{r['box_area_vs_fp32']:.3f}x FP32's" for r in above)
                     + ") against ground truth that is the tight ink box of each line")
    return {"model": "ocr-det", "title": "PaddleOCR PP-OCRv4 text detector (DB)", "metric": "F-score",
            "samples": len(x), "calibration_samples": len(calx), "boxes": int(sum(len(g) for g in gts)),
            "data": (f"{len(x)} rendered 480x320 scenes holding {int(sum(len(g) for g in gts))} text lines "
                     "(1-5 each, 16-39 px, same generator as the classifier's), ground truth = each line's ink "
                     f"box; calibration: {len(calx)} other scenes; DB post-processing with rapidocr's "
                     "settings, one-to-one matching at IoU 0.5"),
            "fonts": [os.path.basename(f) for f in fonts], "rows": rows, "notes": notes}


MEASURE = {"digits": measure_digits, "ocr-cls": measure_ocr_cls, "ocr-det": measure_ocr_det}


# --------------------------------------------------------------------------- report

def goal(section: dict) -> dict:
    """INT8 loses at most GOAL_POINTS against FP32 (point estimate), per INT8 method; the
    closest plain method (no fallback or exclusion) is the one with the smallest |difference|."""
    int8 = [r for r in section["rows"] if r.get("method") and r.get("value") is not None]
    met = [r["method"] for r in int8 if r["delta_points"] >= -GOAL_POINTS]
    missed = [r["method"] for r in int8 if r["delta_points"] < -GOAL_POINTS]
    plain = [r for r in int8 if "+" not in r["method"]]
    closest = min(plain, key=lambda r: abs(r["delta_points"]))["method"] if plain else None
    return {"points": GOAL_POINTS, "met_by": met, "missed_by": missed, "closest": closest,
            "met": bool(int8) and not [m for m in missed if "+" not in m]}


def _pct(v):
    return f"{v * 100:.2f} %"


def _ci(lo_hi, scale=100.0, signed=False):
    lo, hi = (v * scale for v in lo_hi)
    return f"[{lo:+.2f}, {hi:+.2f}]" if signed else f"[{lo:.2f}, {hi:.2f}]"


def section_markdown(s: dict) -> str:
    lines = [f"### {s['title']}", "", f"{s['metric']} on {s['data']}.", ""]
    det = s["metric"] == "F-score"
    head = "| model | " + ("F-score | 95 % interval | precision | recall" if det else "top-1 | 95 % interval") + \
           " | vs FP32 (points) | 95 % interval (paired) |" + (" same boxes as FP32 (IoU 0.5) |" if det else "") + \
           " cosine vs FP32 | file |"
    ncols = head.count("|") - 1
    lines += [head, "|" + " --- |" * ncols]
    for r in s["rows"]:
        if r.get("value") is None:
            lines.append(f"| {r['variant']} | {r.get('note', 'not measured')} |" + " |" * (ncols - 2))
            continue
        cells = [r["variant"], _pct(r["value"]), _ci(r["ci95"])]
        if det:
            cells += [f"{r['precision'] * 100:.1f} %", f"{r['recall'] * 100:.1f} %"]
        cells += [f"{r['delta_points']:+.2f}", _ci(r["delta_ci95"], 1.0, signed=True)]
        if det:
            cells.append(f"{r['fp32_box_agreement'] * 100:.1f} %")
        cells += [f"{r['cosine']:.6f}", f"{r['file_bytes'] / 1024:.1f} kB"]
        lines.append("| " + " | ".join(cells) + " |")
    g = s["goal"]
    by = {r["method"]: r for r in s["rows"] if r.get("method") and r.get("value") is not None}
    desc = lambda m: f"{m} ({by[m]['delta_points']:+.2f}, {_ci(by[m]['delta_ci95'], 1.0, True)})"  # noqa: E731
    text = f"Goal (INT8 loses at most {g['points']:g} point against FP32): "
    text += ("met by " + ", ".join(desc(m) for m in g["met_by"]) if g["met_by"] else "met by no method")
    if g["missed_by"]:
        text += "; missed by " + ", ".join(desc(m) for m in g["missed_by"])
    text += f"; closest to FP32: {g['closest']}." if g["closest"] else "."
    lines += ["", text]
    for n in s.get("notes", []):
        lines += ["", f"Note: {n}."]
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    out = [SECTION, "", report["header"], ""]
    for s in report["sections"]:
        out.append(section_markdown(s))
    for sk in report["skipped"]:
        out.append(f"Skipped {sk['model']}: {sk['reason']}\n")
    return "\n".join(out).rstrip("\n") + "\n"


def header(report: dict) -> str:
    return (f"Measured {report['date']} with ONNX Runtime {report['onnxruntime']} on the CPU "
            f"({report['cpus']} cores). **TensorRT is not installable on this host: these are ONNX Runtime's "
            "reference kernels running the same FP16 / Q/DQ models that TensorRT builds; INT8 accuracy of a "
            "TensorRT engine can differ** (its INT8 kernels, layer fusions and precision choices differ). "
            f"INT8: `quantize` with entropy (TensorRT's 2048-bin KL), percentile (99.99th) or min-max calibration; "
            f"FP16: `convert-fp16`. Intervals are 95 %: Wilson for top-1, bootstrap over images ({BOOTSTRAP} "
            "resamples) for F-scores, and paired bootstrap (same images) for every difference to FP32. "
            f"Regenerate: `{report['command']}` ({report['seconds']:.0f} s wall, {report['cpu_seconds']:.0f} s CPU "
            f"here; load average {report['load'][0]:.1f} at the start, {report['load'][1]:.1f} at the end).")


def command(args) -> str:
    """The command line that reproduces ``args`` (defaults left out), with --write."""
    defaults = parser().parse_args([])
    words = ["python3", "benchmarks/bench_quant_accuracy.py"]
    for name in ("models", "methods", "samples", "calib", "gate_samples", "det_samples", "det_calib", "det_exclude"):
        v = getattr(args, name)
        if v != getattr(defaults, name):
            words += [f"--{name.replace('_', '-')}", (",".join(v) or "''") if isinstance(v, list) else str(v)]
    if args.fallback:
        words.append("--fallback")
    return " ".join(words + ["--write"])


def run(args) -> dict:
    import onnxruntime

    started, cpu = time.monotonic(), time.process_time()
    load0 = os.getloadavg()[0]
    report = {"command": command(args), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
              "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(), "backend": "onnxruntime-cpu",
              "tensorrt": "not installed: ONNX Runtime CPU reference kernels (TensorRT's INT8 accuracy can differ)",
              "goal_points": GOAL_POINTS, "sections": [], "skipped": []}
    for name in args.models:
        progress(f"{name}: measuring")
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"bench-acc-{name}-") as d:
            try:
                s = MEASURE[name](d, args)
            except Skip as exc:
                reason = " ".join(str(exc).split())
                progress(f"{name}: skipped: {reason}")
                report["skipped"].append({"model": name, "reason": reason})
                continue
        s["goal"] = goal(s)
        s["seconds"] = round(time.monotonic() - t, 1)
        progress(f"{name}: done in {s['seconds']} s")
        report["sections"].append(s)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["cpu_seconds"] = round(time.process_time() - cpu, 1)
    report["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    report["header"] = header(report)
    report["goal_met"] = bool(report["sections"]) and all(s["goal"]["met"] for s in report["sections"])
    return report


def write_results(text: str, path: str) -> None:
    with open(path) as f:
        old = f.read()
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        old = head + (rest[nxt + 1:] if nxt >= 0 else "")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + text)
    os.replace(tmp, path)


def _names(choices, what: str):
    """argparse type: a comma-separated list of ``choices``."""
    def parse(value: str) -> list:
        names = [v.strip() for v in value.split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0] if bad else value!r}: "
                                             f"expected {', '.join(choices)}")
        return names
    return parse


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=_names(MODELS, "model"), default=list(MODELS), help=f"sections to run (default {','.join(MODELS)})")
    ap.add_argument("--methods", type=_names(METHODS, "method"), default=list(METHODS), help="INT8 calibration methods (default all)")
    ap.add_argument("--samples", type=_positive, default=1000, help="classifier evaluation lines (default 1000)")
    ap.add_argument("--calib", type=_positive, default=256, help="classifier calibration lines (default 256)")
    ap.add_argument("--gate-samples", type=_positive, default=200, help="fallback gate lines (default 200)")
    ap.add_argument("--det-samples", type=_positive, default=200, help="detector evaluation scenes (default 200)")
    ap.add_argument("--det-calib", type=_positive, default=32, help="detector calibration scenes (default 32)")
    ap.add_argument("--det-exclude", type=lambda v: [t for t in v.split(",") if t], default=["ConvTranspose"],
                    metavar="OPS", help="detector: for an INT8 method that misses the goal, a row quantized with "
                    "quantize --exclude OPS (default ConvTranspose: DB's upsampling head; '' for none)")
    ap.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=False,
                    help="add a quantize --gate fallback row for a classifier's INT8 method that misses the goal "
                         "(a sensitivity pass over every layer: minutes)")
    ap.add_argument("--cache", default=os.environ.get("TEGRA_AI_TEST_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "meta-tegra-ai", "pypi-models"),
        help="where the downloaded PaddleOCR models are kept")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON (stdout holds only JSON)")
    ap.add_argument("--write", action="store_true", help="replace the section in benchmarks/RESULTS.md")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    report = run(args)
    text = markdown(report)
    if args.json:
        print(json.dumps(report, indent=1, default=float))
    else:
        print(text)
    if args.write and report["skipped"]:
        progress(f"benchmarks/RESULTS.md not written: {', '.join(s['model'] for s in report['skipped'])} skipped")
        return 1
    if args.write:
        write_results(text, os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    return 0 if report["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
