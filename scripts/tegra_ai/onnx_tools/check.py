"""Host preflight: will this ONNX model build with a target's TensorRT? No GPU needed.

Checks, each a finding with a severity: the ONNX checker, external data, shape
inference, opset against the parser's range, every operator against that release's
supported-operator table (data/trt_onnx_ops, from onnx-tensorrt's docs/operators.md),
dynamic dimensions (with suggested profiles), INT64/DOUBLE tensors, and TensorRT 8.5's
Q/DQ constraints. Where a TensorRT-family library is importable, the model is also
parsed by its real ONNX parser."""

from __future__ import annotations

import collections
import os
import re
from dataclasses import asdict, dataclass, field

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.onnx_files import model_files
from tegra_ai.onnx_tools.targets import Target, op_table_for
from tegra_ai.trt.shapes import ModelInput, format_dims, suggest_profile
from tegra_ai.util.lazy import require

ERROR, WARNING, INFO = "error", "warning", "info"
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Finding:
    severity: str
    code: str
    message: str
    nodes: list = field(default_factory=list)


@dataclass
class Report:
    model: str
    target: dict
    findings: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    opset: int | None = None
    operators: dict = field(default_factory=dict)
    suggested_shapes: str | None = None
    parser: str | None = None

    def add(self, severity, code, message, nodes=()):
        self.findings.append(Finding(severity, code, message, list(nodes)))

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _dtype_name(onnx, elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type not in (16,) else "bfloat16"
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _value_info_dims(vi) -> tuple:
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return tuple(dims)


def _node_label(node, index) -> str:
    return node.name or f"{node.op_type}#{index}"


def _all_nodes(graph):
    """Nodes of the graph and of every subgraph (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for g in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                yield from _all_nodes(g)


def check_model(model_path: str, target: Target, use_parser: bool = True) -> Report:
    onnx = require("onnx", extra="onnx", purpose="tensorrt-optimize check")
    report = Report(model=os.path.abspath(model_path), target={"name": target.name, "tensorrt": target.tensorrt_string,
                                                               "description": target.description})
    # 1. Files: the .onnx and every external data file it names.
    try:
        model_files(model_path)
    except TegraAIError as exc:
        if not os.path.isfile(model_path) or "not a valid ONNX" in exc.message or "is empty" in exc.message \
                or "cannot read" in exc.message:
            raise     # not a model at all: bad input (exit 2), not a report about a model
        report.add(ERROR, "files", exc.message)
    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as exc:
        report.add(ERROR, "load", f"not a valid ONNX model ({str(exc).splitlines()[0][:200]})")
        return report

    # 2. The ONNX checker (by path, so large models and external data work).
    try:
        onnx.checker.check_model(model_path)
    except Exception as exc:
        report.add(ERROR, "checker", f"ONNX checker: {str(exc).splitlines()[0][:300]}")

    # 3. Opset against the parser's range.
    table = op_table_for(target.tensorrt)
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)
    report.opset = opset
    if table is None:
        report.add(WARNING, "op-table", "no operator table shipped; operators not checked")
    elif opset is not None:
        lo, hi = table.get("opset_min"), table.get("opset_max")
        if hi is not None and opset > hi:
            report.add(ERROR, "opset", f"opset {opset} is newer than TensorRT {target.tensorrt_string}'s ONNX parser supports "
                       f"({lo}-{hi})", )
        elif lo is not None and opset < lo:
            report.add(WARNING, "opset", f"opset {opset} is older than the parser's range ({lo}-{hi}); "
                       "convert with onnx.version_converter")

    # 4. Operators.
    counts = collections.Counter()
    unsupported = collections.defaultdict(list)
    custom = collections.defaultdict(list)
    for i, node in enumerate(_all_nodes(model.graph)):
        counts[node.op_type] += 1
        if node.domain not in DEFAULT_DOMAINS:
            custom[f"{node.domain}::{node.op_type}"].append(_node_label(node, i))
        elif table is not None:
            info = table["operators"].get(node.op_type)
            if info is None or not info.get("supported", False):
                unsupported[node.op_type].append(_node_label(node, i))
    report.operators = dict(sorted(counts.items()))
    for op, nodes in sorted(unsupported.items()):
        report.add(ERROR, "operator", f"{op} is not supported by TensorRT {target.tensorrt_string}'s ONNX parser "
                   f"({len(nodes)} node(s))", nodes[:20])
    for op, nodes in sorted(custom.items()):
        report.add(WARNING, "custom-op", f"{op} is a custom-domain operator: it needs a TensorRT plugin registered under "
                   "that name", nodes[:20])
    if table is not None:
        for op in sorted(counts):
            notes = (table["operators"].get(op) or {}).get("notes")
            if notes and op not in unsupported:
                report.add(INFO, "operator-notes", f"{op}: {_clean_notes(notes)}")
        _check_resize(model, table, target, report)

    # 5. Inputs, outputs, dynamic dims.
    initializer_names = {t.name for t in model.graph.initializer}
    real_inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    dynamic = []
    for vi in real_inputs:
        dims = _value_info_dims(vi)
        dtype = _dtype_name(onnx, vi.type.tensor_type.elem_type)
        report.inputs.append({"name": vi.name, "dims": list(dims), "dtype": dtype})
        mi = ModelInput(vi.name, dims, dtype)
        if mi.is_dynamic:
            dynamic.append(mi)
    for vi in model.graph.output:
        report.outputs.append({"name": vi.name, "dims": list(_value_info_dims(vi)),
                               "dtype": _dtype_name(onnx, vi.type.tensor_type.elem_type)})
    if dynamic:
        report.suggested_shapes = ",".join(s.format() for s in suggest_profile(dynamic))
        names = ", ".join(f"{i.name} {format_dims(i.dims)}" for i in dynamic)
        report.add(INFO, "dynamic", f"dynamic input(s) {names}: build with an optimization profile, e.g. "
                   f"--shapes {report.suggested_shapes}")

    # 6. INT64 / DOUBLE.
    for io in report.inputs + report.outputs:
        if io["dtype"] == "float64":
            report.add(ERROR, "dtype", f"tensor {io['name']} is DOUBLE: TensorRT has no FP64 I/O; cast it to float32")
        elif io["dtype"] == "int64" and target.tensorrt < (10, 0):
            report.add(WARNING, "dtype", f"tensor {io['name']} is INT64: TensorRT {target.tensorrt_string} has no INT64 I/O "
                       "(the parser casts to INT32; values must fit)")
    doubles = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    if doubles:
        report.add(WARNING, "dtype", f"{len(doubles)} DOUBLE initializer(s) (e.g. {doubles[0]}); TensorRT casts them "
                   "to FP32")
    int64_weights = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64]
    if int64_weights and target.tensorrt < (10, 0):
        report.add(INFO, "dtype", f"{len(int64_weights)} INT64 initializer(s): TensorRT {target.tensorrt_string} casts "
                   "them to INT32")

    # 7. Q/DQ layout constraints of TensorRT 8.x.
    _check_qdq(onnx, model, target, report)

    # 8. Shape inference (strict: a model whose shapes don't infer often fails to parse).
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        report.add(WARNING, "shape-inference", f"shape inference failed: {str(exc).splitlines()[0][:300]}")

    # 9. The real parser of whatever TensorRT-family library is here.
    if use_parser:
        _real_parse(model_path, report)
    return report


def _clean_notes(text: str) -> str:
    return re.sub(r"\s*<br\s*/?>\s*", "; ", text).replace("`", "")


def _check_resize(model, table, target, report):
    """Resize attributes against the restrictions the target's parser table states."""
    notes = _clean_notes((table["operators"].get("Resize") or {}).get("notes") or "")
    if not notes:
        return

    def listed(label):
        m = re.search(label + r"[^:]*:\s*([^;]+)", notes, re.IGNORECASE)
        return {w.strip(" .") for w in m.group(1).split(",") if w.strip(" .")} if m else None

    modes, transforms = listed("Supported resize modes"), listed("Supported resize transformation modes")
    if modes:
        modes = {m.split()[-1] for m in modes}  # "and linear" -> "linear"
    if transforms:
        transforms = {t.split()[-1] for t in transforms}
    bad = collections.defaultdict(list)
    for i, node in enumerate(_all_nodes(model.graph)):
        if node.op_type != "Resize":
            continue
        attrs = {a.name: (a.s.decode() if a.s else a.i) for a in node.attribute}
        mode = attrs.get("mode", "nearest")
        ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
        if modes and mode not in modes:
            bad[f"mode {mode}"].append(_node_label(node, i))
        if transforms and ctm not in transforms:
            bad[f"coordinate_transformation_mode {ctm}"].append(_node_label(node, i))
        if attrs.get("antialias") and "antialias" in notes.lower():
            bad["antialias=1"].append(_node_label(node, i))
    for what, nodes in sorted(bad.items()):
        report.add(ERROR, "operator-attr", f"Resize with {what} is not supported by TensorRT {target.tensorrt_string}",
                   nodes[:20])


def _check_qdq(onnx, model, target, report):
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    qdq_nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq_nodes:
        return
    report.add(INFO, "qdq", f"{len(qdq_nodes)} Q/DQ node(s): explicit quantization (built strongly typed on TensorRT 9+)")
    bad_zero, bad_type, block = [], [], []
    for i, node in enumerate(qdq_nodes):
        if len(node.input) > 2 and node.input[2] in inits:
            zp = inits[node.input[2]]
            if zp.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.INT4, onnx.TensorProto.FLOAT8E4M3FN):
                bad_type.append(_node_label(node, i))
            elif zp.data_type == onnx.TensorProto.INT8 and numpy_helper.to_array(zp).any():
                bad_zero.append(_node_label(node, i))
            elif zp.data_type != onnx.TensorProto.INT8 and target.tensorrt < (10, 0):
                bad_type.append(_node_label(node, i))
        if any(a.name == "block_size" and a.i for a in node.attribute):
            block.append(_node_label(node, i))
    if bad_zero:
        report.add(ERROR, "qdq", "TensorRT needs symmetric quantization: zero-point must be 0", bad_zero[:20])
    if bad_type:
        allowed = "INT8" if target.tensorrt < (10, 0) else "INT8, INT4 or FP8"
        report.add(ERROR, "qdq", f"TensorRT {target.tensorrt_string} quantizes to {allowed} only (uint8 zero-points are "
                   "not supported)", bad_type[:20])
    if block and target.tensorrt < (10, 0):
        report.add(ERROR, "qdq", f"block quantization needs TensorRT 10+; the target has {target.tensorrt_string}", block[:20])


def _real_parse(model_path: str, report: Report):
    from tegra_ai.trt import compat

    try:
        trt, feats = compat.load()
    except TegraAIError:
        report.parser = None
        return
    from tegra_ai.util.stdio import native_stdout_to_stderr

    report.parser = feats.describe()
    with native_stdout_to_stderr():       # TensorRT's own log lines never reach stdout (--json)
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = compat.create_network(trt, feats, builder, strongly_typed=feats.strongly_typed_only)
        parser = trt.OnnxParser(network, logger)
        parsed = parser.parse_from_file(os.path.abspath(model_path))
    if parsed:
        report.add(INFO, "parser", f"{feats.describe()}'s ONNX parser accepts the model"
                   + (" (the target's TensorRT may differ)" if feats.is_rtx else ""))
        return
    for node, desc in compat.parser_errors(parser):
        report.add(ERROR, "parser", f"{feats.describe()}'s ONNX parser: {desc}", [node] if node else [])


def format_report(report: Report) -> str:
    lines = [f"model:  {report.model}", f"target: {report.target['description'] or report.target['name']}"]
    if report.opset is not None:
        lines.append(f"opset:  {report.opset}; {sum(report.operators.values())} nodes, {len(report.operators)} operator types")
    for io in report.inputs:
        lines.append(f"input:  {io['name']} {format_dims(io['dims'])} {io['dtype']}")
    for io in report.outputs:
        lines.append(f"output: {io['name']} {format_dims(io['dims'])} {io['dtype']}")
    if report.parser:
        lines.append(f"parser: {report.parser}")
    for f in sorted(report.findings, key=lambda f: {ERROR: 0, WARNING: 1, INFO: 2}[f.severity]):
        nodes = f" [nodes: {', '.join(f.nodes[:5])}{' ...' if len(f.nodes) > 5 else ''}]" if f.nodes else ""
        lines.append(f"{f.severity.upper():7} {f.code}: {f.message}{nodes}")
    n_err = sum(f.severity == ERROR for f in report.findings)
    n_warn = sum(f.severity == WARNING for f in report.findings)
    lines.append(f"result: {'OK' if report.ok else 'FAIL'} ({n_err} error(s), {n_warn} warning(s))")
    return "\n".join(lines)


def check_build_options(report: Report, options, target: Target, *, calibration_data: str | None = None,
                        calibration_cache: str | None = None) -> list:
    """On the host, what ``build`` would refuse on the device for these options: dynamic
    inputs without ``--shapes``, unknown input names and wrong ranks
    (:func:`tegra_ai.trt.shapes.resolve_profiles`), a precision the target's TensorRT cannot
    give (INT8 without calibration data or Q/DQ, weak typing on 11.x:
    :func:`tegra_ai.trt.compat.resolve_typing`), and calibration data that does not load
    (no pickles) or does not fit the inputs. Raises a one-line error (exit 2); returns notes."""
    from tegra_ai.onnx_files import has_qdq
    from tegra_ai.trt import compat
    from tegra_ai.trt.shapes import resolve_profiles

    inputs = [ModelInput(i["name"], tuple(i["dims"]), i["dtype"]) for i in report.inputs]
    profiles = resolve_profiles(inputs, options.profile_objects())
    feats = compat.features_for(target.tensorrt)
    typing = compat.resolve_typing(feats, options.precision, has_qdq(report.model), options.strongly_typed,
                                   has_calibration=bool(calibration_data or calibration_cache))
    if options.dla_core is not None and target.compute_capabilities and not any(
            cc in compat.DLA_COMPUTE_CAPABILITIES for cc in target.compute_capabilities):
        raise TegraAIError(f"--dla-core: {target.name} has no DLA", exit_code=EXIT_USAGE)
    if calibration_data:
        from tegra_ai.trt.calibrator import CalibrationBatches

        CalibrationBatches(calibration_data, inputs, profile=profiles[0])
    return list(typing["notes"])
