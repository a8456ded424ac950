"""Our Q/DQ placement against NVIDIA Model Optimizer's (issue #18 part 2), on the graphs of
tests/qdq_graphs.py, through benchmarks/compare_qdq_placement.py. Runs only where
``modelopt.onnx.quantization`` is importable (never in CI: it pulls torch, CUDA wheels and
onnxruntime-gpu); the full table with the PyPI models is in benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("modelopt.onnx.quantization",
                    reason="NVIDIA Model Optimizer (pip install nvidia-modelopt[onnx]) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every kind of disagreement is explained in benchmarks/RESULTS.md; a new kind fails here.
EXPLAINED = {
    ("Add", "Mul", "modelopt"),  # MO quantizes the SiLU branch of a residual Add too (no Conv-SiLU partition)
    ("Concat", "Add", "modelopt"), ("Concat", "Split", "modelopt"), ("Concat", "Mul", "modelopt"),
    ("Concat", "MaxPool", "modelopt"), ("Concat", "Relu", "modelopt"),  # MO's shared DQ, ours a dedicated pair
    ("MaxPool", "Mul", "modelopt"), ("MaxPool", "MaxPool", "modelopt"), ("MaxPool", "Relu", "modelopt"),
    ("MatMul", "Flatten", "ours"), ("MatMul", "Relu", "ours"),  # MO leaves a GEMV-shaped MatMul float
}


def test_placement_against_modelopt(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compare_qdq_placement.py"), "--json",
                        "--method", "minmax", "--samples", "8"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    results = {x["model"]: x for x in json.loads(r.stdout)["results"]}
    for name, x in results.items():
        conv = x["rows"].get("Conv")
        assert conv and conv["both"] == conv["inputs"], (name, conv)  # every Conv input: both quantize it
        assert x["requantizations"]["ours"] == 0 and x["fusion_splits"]["ours"] == [], (name, x)
        kinds = {(d["op"], d["from"], d["quantized_by"]) for d in x["disagreements"]}
        assert kinds <= EXPLAINED, (name, kinds - EXPLAINED)
    c2f = results["c2f-sppf (built)"]
    skips = [d for d in c2f["disagreements"] if d["op"] == "Add"]
    # the 4 bottleneck Adds: both quantize the skip input; the SiLU branch input only MO
    assert c2f["rows"]["Add"]["both"] == 4 and len(skips) == 4 and all(d["from"] == "Mul" for d in skips)
