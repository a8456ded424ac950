"""FP32 vs FP16 vs INT8 (entropy, percentile, min-max) top-1 accuracy, on the host.

Model: the embedded digits CNN (``tegra_ai.models.DEFAULT_MODEL``), calibrated on its 256
calibration images and measured on its 359 held-out labeled images; every variant is made
here with the library (``quantize``, ``convert_fp16``) and run with ONNX Runtime on the
CPU. Prints a Markdown table; ``--write`` replaces its section in benchmarks/RESULTS.md.

    python3 benchmarks/bench_quant_accuracy.py [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))

import numpy as np  # noqa: E402

SECTION = "## Host quantization accuracy table (bench_quant_accuracy.py)"


def measure(workdir: str) -> list:
    from tegra_ai import models
    from tegra_ai.dataset.calibration import build_dataset
    from tegra_ai.onnx_fp16 import convert_fp16
    from tegra_ai.quant import compare as cmp
    from tegra_ai.quant.qdq import quantize

    spec = models.load_preprocess_spec()
    calib, val = os.path.join(workdir, "calib.npz"), os.path.join(workdir, "val.npz")
    build_dataset([models.DEFAULT_SAMPLES], calib, spec, arrays=["calib_images"], show_progress=False)
    build_dataset([models.DEFAULT_SAMPLES], val, spec, arrays=["val_images"], show_progress=False)
    _, labels = models.load_samples("val")
    lab = os.path.join(workdir, "labels.npy")
    np.save(lab, labels)

    variants = [("FP16 (convert-fp16)", os.path.join(workdir, "fp16.onnx"), None)]
    convert_fp16(models.DEFAULT_MODEL, variants[0][1])
    for method in ("entropy", "percentile", "minmax"):
        out = os.path.join(workdir, f"int8-{method}.onnx")
        quantize(models.DEFAULT_MODEL, calib, out, method=method)
        variants.append((f"INT8 Q/DQ, {method}", out, method))
    rows = []
    for name, path, _ in variants:
        rep = cmp.compare(models.DEFAULT_MODEL, path, val, labels=lab)
        out = next(iter(rep["outputs"].values()))
        c = out["classifier"]
        if not rows:
            rows.append(("FP32", c["reference_top1_accuracy"], 1.0, os.path.getsize(models.DEFAULT_MODEL)))
        rows.append((name, c["candidate_top1_accuracy"], out["cosine"], os.path.getsize(path)))
    return rows, rep["samples"]


def table(rows, samples) -> str:
    fp32 = rows[0][1]
    lines = [SECTION, "",
             f"Embedded digits CNN, {samples} held-out labeled images, ONNX Runtime CPU; INT8 calibrated on "
             "256 images (2048-bin KL for entropy, 99.99th percentile, min-max).", "",
             "| model | top-1 | vs FP32 (points) | cosine vs FP32 | file |", "| --- | --- | --- | --- | --- |"]
    for name, acc, cos, size in rows:
        lines.append(f"| {name} | {acc * 100:.2f} % | {(acc - fp32) * 100:+.2f} | {cos:.8f} | {size / 1024:.1f} kB |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the section in benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        rows, samples = measure(d)
    text = table(rows, samples)
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path) as f:
            old = f.read()
        if SECTION in old:
            head, rest = old.split(SECTION, 1)
            nxt = rest.find("\n## ")
            old = head + (rest[nxt + 1:] if nxt >= 0 else "")
        with open(path, "w") as f:
            f.write(old.rstrip("\n") + "\n\n" + text)
    worst = min(r[1] for r in rows[1:]) - rows[0][1]
    return 0 if worst * 100 >= -1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
