"""Deployment targets the host preflight knows: JetPack releases and plain TensorRT
versions, with the ONNX-parser operator table to check against (data/)."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.spec import parse_version
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
OPS_DIR = os.path.join(DATA_DIR, "trt_onnx_ops")


@dataclass(frozen=True)
class Target:
    name: str
    tensorrt: tuple
    compute_capabilities: tuple = ()
    description: str = ""

    @property
    def tensorrt_string(self) -> str:
        return ".".join(str(v) for v in self.tensorrt)


def _jetpack_targets() -> dict:
    try:
        data = read_json_file(os.path.join(DATA_DIR, "jetpack_targets.json"))
    except JSONFileError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and "tensorrt" in v} if isinstance(data, dict) else {}


def known_releases() -> list:
    """TensorRT releases (major, minor) the tool has facts for: an operator table of its
    own or a JetPack target. Anything else is refused rather than guessed."""
    versions = {tuple(parse_version(t["tensorrt"])[:2]) for t in _jetpack_targets().values()}
    for path in glob.glob(os.path.join(OPS_DIR, "*.json")):
        m = re.fullmatch(r"(\d+)\.(\d+)\.json", os.path.basename(path))
        if m:
            versions.add((int(m.group(1)), int(m.group(2))))
    return sorted(versions)


def target_names() -> list:
    return sorted(_jetpack_targets()) + [f"trt-{a}.{b}" for a, b in known_releases()]


def resolve_target(name: str) -> Target:
    jp = _jetpack_targets()
    if name in jp:
        t = jp[name]
        desc = f"{name}: TensorRT {t['tensorrt']}, CUDA {t.get('cuda', '?')}, L4T {t.get('l4t', '?')}"
        return Target(name, parse_version(t["tensorrt"]), tuple(t.get("compute_capabilities", ())), desc)
    m = re.fullmatch(r"(?:trt|tensorrt)-?(\d+(?:\.\d+){1,3})", name or "")
    if m:
        v = parse_version(m.group(1))
        if tuple(v[:2]) not in known_releases():
            raise TegraAIError(f"unknown target {name!r}: no facts for TensorRT {v[0]}.{v[1]}; known targets: "
                               f"{', '.join(target_names())}", exit_code=EXIT_USAGE)
        return Target(name, v, (), f"TensorRT {m.group(1)}")
    raise TegraAIError(f"unknown target {name!r}: expected one of {', '.join(target_names())}", exit_code=EXIT_USAGE)


def op_tables() -> dict:
    """version tuple -> table dict, for every shipped table."""
    tables = {}
    for path in glob.glob(os.path.join(OPS_DIR, "*.json")):
        data = read_json_file(path)   # shipped with the package; still the one bounded reader
        tables[parse_version(data["tensorrt_version"])[:2]] = data
    return dict(sorted(tables.items()))


def op_table_for(version: tuple):
    """The newest table not newer than ``version`` (parsers only gain ops), else the oldest."""
    tables = op_tables()
    if not tables:
        return None
    older = [v for v in tables if v <= tuple(version[:2])]
    return tables[older[-1]] if older else tables[next(iter(tables))]
