"""Engine inspection: IO tensors, profiles, per-layer info from TensorRT's engine
inspector, and a precision summary (layers per precision, GPU vs DLA)."""

from __future__ import annotations

import collections
import os
import re

from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.spec import Sidecar, sidecar_path
from tegra_ai.util.hashing import sha256_file

_PRECISION_TOKENS = [("FP32", "fp32"), ("FP16", "fp16"), ("BF16", "bf16"), ("FP8", "fp8"), ("INT8", "int8"),
                     ("INT4", "int4"), ("INT32", "int32"), ("INT64", "int64"), ("BOOL", "bool"), ("UINT8", "uint8")]


def _looks_like(data: bytes) -> str | None:
    """What a file that is clearly not an engine is, from its first bytes."""
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        return "a JSON file"
    if data[:1] == b"\x08":  # ModelProto field 1 (ir_version), varint: how every ONNX file starts
        return "an ONNX model (build an engine from it with 'tensorrt-optimize build')"
    if data[:4] == b"PK\x03\x04" or data[:6] == b"\x93NUMPY":
        return "a NumPy/zip file"
    return None


def read_engine_and_sidecar(engine_path: str):
    """(sidecar or None) for an engine file, refusing files that are not engines and
    sidecars that do not belong to the engine."""
    if os.path.isdir(engine_path):
        raise TegraAIError(f"{engine_path} is a directory, not an engine", exit_code=EXIT_USAGE)
    try:
        size = os.path.getsize(engine_path)
        with open(engine_path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise TegraAIError(f"engine {engine_path} does not exist", exit_code=EXIT_USAGE) from None
    except OSError as exc:
        raise TegraAIError(f"cannot read engine {engine_path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    if size == 0:
        raise TegraAIError(f"{engine_path} is empty, not an engine", exit_code=EXIT_USAGE)
    what = _looks_like(head)
    if what:
        raise TegraAIError(f"{engine_path} is {what}, not a TensorRT engine", exit_code=EXIT_USAGE)
    side = sidecar_path(engine_path)
    if not os.path.lexists(side):
        return None
    sidecar = Sidecar.load(side)
    if not sidecar.describes(sha256_file(engine_path), size):
        raise TegraAIError(f"sidecar {side} does not belong to {engine_path} (engine size or sha256 differs)",
                           hint="the engine was replaced or the sidecar copied from another engine", exit_code=EXIT_USAGE)
    return sidecar


def layer_precision(layer: dict) -> str:
    """Precision of a layer from its outputs' 'Format/Datatype' text (detailed verbosity)."""
    for out in layer.get("Outputs", []) or []:
        text = str(out.get("Format/Datatype", "")).upper()
        for token, name in _PRECISION_TOKENS:
            if re.search(rf"\b{token}\b", text):
                return name
    return "unknown"


def layer_device(layer: dict) -> str:
    # DLA subgraphs appear as one foreign node whose type or tactic names the DLA.
    text = " ".join(str(layer.get(k, "")) for k in ("LayerType", "TacticName", "Name")).upper()
    return "DLA" if "DLA" in text else "GPU"


def summarize_layers(inspector: dict) -> dict:
    layers = inspector.get("Layers", []) if isinstance(inspector, dict) else []
    rows, by_precision, by_device = [], collections.Counter(), collections.Counter()
    for layer in layers:
        if not isinstance(layer, dict):  # names only: the engine was built without detailed verbosity
            rows.append({"name": str(layer), "type": None, "precision": "unknown", "device": "GPU"})
            by_precision["unknown"] += 1
            by_device["GPU"] += 1
            continue
        row = {"name": layer.get("Name"), "type": layer.get("LayerType"), "precision": layer_precision(layer),
               "device": layer_device(layer), "tactic": layer.get("TacticName")}
        rows.append(row)
        by_precision[row["precision"]] += 1
        by_device[row["device"]] += 1
    return {"layers": rows, "precision_summary": dict(by_precision), "device_summary": dict(by_device)}


def inspect_engine(engine_path: str, with_layers: bool = True) -> dict:
    sc = read_engine_and_sidecar(engine_path)
    info = {"engine": os.path.abspath(engine_path), "size": os.path.getsize(engine_path),
            "sidecar": sc.to_dict() if sc else None}
    from tegra_ai.trt import compat

    try:
        trt, feats = compat.load()
        reason = "TensorRT-RTX cannot load engines here" if feats.is_rtx else None
    except TegraAIError as exc:
        reason = exc.message
    if reason:
        if sc is None:   # nothing at all to show: not "OK"
            raise TegraAIError(f"{engine_path} has no sidecar ({os.path.basename(sidecar_path(engine_path))}) and "
                               f"{reason[0].lower() + reason[1:]}; nothing to inspect",
                               hint="inspect it on the device it was built for", exit_code=EXIT_UNAVAILABLE)
        info["note"] = f"{reason}: showing the sidecar only"
        return info
    from tegra_ai.trt.loader import load_engine

    loaded = load_engine(engine_path, sidecar=sc)       # plugins first, refuses another TensorRT or GPU
    engine = loaded.engine
    info["tensorrt"] = feats.describe()
    info["io"] = compat.io_tensors(trt, engine)
    info["profiles"] = compat.engine_profiles(trt, engine)
    info.update(compat.engine_weights(trt, engine))
    if with_layers:
        info.update(summarize_layers(compat.inspector_json(trt, feats, engine)))
    return info


def format_inspection(info: dict, show_layers: bool = False) -> str:
    lines = [f"engine: {info['engine']} ({info['size'] / 1e6:.2f} MB)"]
    sc = info.get("sidecar")
    if sc:
        lines.append(f"built:  {sc.get('tensorrt', {}).get('flavor')} {sc.get('tensorrt', {}).get('version')} for "
                     f"sm_{str(sc.get('device', {}).get('compute_capability', '?')).replace('.', '')} "
                     f"({sc.get('device', {}).get('device_name')}), precision {sc.get('precision')}, "
                     f"model {sc.get('model')} {str(sc.get('model_sha256', ''))[:12]}")
    if info.get("note"):
        lines.append(f"note:   {info['note']}")
    if "weights_bytes" in info:
        lines.append(f"weights: {info['weights_bytes'] / 1e6:.2f} MB")
    for t in info.get("io", []):
        lines.append(f"{t['mode']:6}  {t['name']} {t['shape']} {t['dtype']}")
    for i, prof in enumerate(info.get("profiles", [])):
        for s in prof:
            what = "values " if s.get("values") else ""
            lines.append(f"profile {i}: {s['name']} {what}min {s['min']} opt {s['opt']} max {s['max']}")
    if "precision_summary" in info:
        lines.append(f"layers: {len(info['layers'])}; by precision: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(info["precision_summary"].items()))
                     + "; by device: " + ", ".join(f"{k} {v}" for k, v in sorted(info["device_summary"].items())))
        if show_layers:
            for row in info["layers"]:
                lines.append(f"  {row['device']:3} {row['precision']:7} {row['type'] or '':20} {row['name']}")
    return "\n".join(lines)
