"""Validate the shipped TensorRT ONNX-parser operator tables and JetPack target map."""
import json
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "scripts" / "tegra_ai" / "data"
OPS_DIR = DATA / "trt_onnx_ops"
TABLES = sorted(OPS_DIR.glob("*.json"))
COMMON_OPS = ("Conv", "Relu", "Gemm", "MatMul", "Add", "Concat", "Reshape", "Softmax", "Sigmoid", "Transpose")
TYPE_RE = re.compile(r"^[A-Z][A-Z0-9]*$")


def _key(version: str):
    return tuple(int(p) for p in version.split("."))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_tables_exist():
    assert len(TABLES) >= 2, f"expected operator tables in {OPS_DIR}"


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_schema(path):
    doc = _load(path)
    assert set(doc) == {"tensorrt_version", "source", "opset_min", "opset_max", "operators", "notes"}
    assert doc["tensorrt_version"] == path.stem
    assert re.fullmatch(r"\d+\.\d+", doc["tensorrt_version"])
    assert doc["source"].startswith("onnx/onnx-tensorrt ") and "docs/operators.md @ " in doc["source"]
    assert re.search(r"@ [0-9a-f]{40}$", doc["source"])
    assert isinstance(doc["opset_min"], int) and isinstance(doc["opset_max"], int)
    assert 1 <= doc["opset_min"] <= doc["opset_max"] <= 30
    assert isinstance(doc["notes"], str)
    ops = doc["operators"]
    assert len(ops) >= 100
    for name, entry in ops.items():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name), name
        assert set(entry) == {"supported", "types", "notes"}, name
        assert isinstance(entry["supported"], bool), name
        assert isinstance(entry["notes"], str) and entry["notes"] == entry["notes"].strip(), name
        assert isinstance(entry["types"], list), name
        assert all(isinstance(t, str) and TYPE_RE.match(t) for t in entry["types"]), name
        if not entry["supported"]:
            assert entry["types"] == [], f"{name}: unsupported op lists types"
    # supported:false rows must be kept, not dropped
    assert any(not e["supported"] for e in ops.values())


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_common_ops_supported(path):
    ops = _load(path)["operators"]
    for op in COMMON_OPS:
        assert op in ops, f"{path.name}: {op} missing"
        assert ops[op]["supported"], f"{path.name}: {op} not supported"
        assert "FP32" in ops[op]["types"], f"{path.name}: {op} lacks FP32"


def test_versions_sorted_sensibly():
    docs = sorted((_load(p) for p in TABLES), key=lambda d: _key(d["tensorrt_version"]))
    versions = [d["tensorrt_version"] for d in docs]
    assert len(set(versions)) == len(versions)
    for older, newer in zip(docs, docs[1:]):
        # opset ranges never shrink, and newer parsers don't drop table rows
        assert newer["opset_max"] >= older["opset_max"], (older["tensorrt_version"], newer["tensorrt_version"])
        assert newer["opset_min"] >= older["opset_min"]
        missing = set(older["operators"]) - set(newer["operators"])
        assert not missing, f"{newer['tensorrt_version']} drops rows {sorted(missing)}"
        lost = [k for k, e in older["operators"].items() if e["supported"] and not newer["operators"][k]["supported"]]
        assert not lost, f"{newer['tensorrt_version']} loses support for {lost}"


def test_jetpack_targets_point_at_tables():
    targets = json.loads((DATA / "jetpack_targets.json").read_text())
    names = {p.name for p in TABLES}
    jp = {k: v for k, v in targets.items() if not k.startswith("_")}
    assert {"jetpack5", "jetpack6", "jetpack7"} <= set(jp)
    for name, t in jp.items():
        for key in ("tensorrt", "cuda", "l4t", "compute_capabilities", "meta_tegra_branch", "socs", "op_table", "sources"):
            assert key in t, f"{name}: {key}"
        assert t["op_table"] in names, f"{name}: {t['op_table']} not shipped"
        table_ver = _key(t["op_table"][: -len(".json")])
        trt = _key(".".join(t["tensorrt"].split(".")[:2]))
        assert table_ver <= trt, f"{name}: op_table newer than its TensorRT"
        assert all(re.fullmatch(r"\d+\.\d+", cc) for cc in t["compute_capabilities"])
