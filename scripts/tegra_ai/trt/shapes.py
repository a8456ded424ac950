"""Optimization profiles: parsing ``--shapes``, checking them against a model's inputs,
and deriving them when the model is static.

Syntax (one ``--shapes`` value is one optimization profile; repeat it for several)::

    NAME:DIMS                  min = opt = max
    NAME:MIN:OPT:MAX           each a list of dims like 1x3x640x640
    NAME:...,NAME2:...         several inputs of one profile

Names may contain ':' (``input:0``); the dims are taken from the right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tegra_ai.errors import EXIT_USAGE, TegraAIError

_DIMS = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class InputShapes:
    name: str
    min: tuple
    opt: tuple
    max: tuple

    def to_dict(self) -> dict:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict) -> "InputShapes":
        return cls(d["name"], tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))

    def format(self) -> str:
        fmt = lambda dims: "x".join(str(v) for v in dims)  # noqa: E731
        if self.min == self.opt == self.max:
            return f"{self.name}:{fmt(self.opt)}"
        return f"{self.name}:{fmt(self.min)}:{fmt(self.opt)}:{fmt(self.max)}"


def _usage(msg: str) -> TegraAIError:
    return TegraAIError(msg, hint="expected NAME:MINxC..:OPTxC..:MAXxC.. or NAME:DIMS, e.g. images:1x3x320x320:1x3x640x640:4x3x1280x1280",
                        exit_code=EXIT_USAGE)


def _dims(text: str, spec: str) -> tuple:
    if not _DIMS.match(text):
        raise _usage(f"malformed dimensions {text!r} in --shapes {spec!r}")
    dims = tuple(int(v) for v in text.split("x"))
    if any(v <= 0 for v in dims):
        raise _usage(f"dimensions must be positive in --shapes {spec!r}")
    return dims


def parse_input_shapes(spec: str) -> InputShapes:
    parts = spec.strip().split(":")
    dims_parts = []
    while parts and len(dims_parts) < 3 and _DIMS.match(parts[-1]):
        dims_parts.insert(0, parts.pop())
    name = ":".join(parts)
    if parts and re.fullmatch(r"[\dx]*\d[\dx]*", parts[-1]) and "x" in parts[-1]:
        raise _usage(f"malformed dimensions {parts[-1]!r} in --shapes {spec!r}")
    if not name:
        raise _usage(f"missing input name in --shapes {spec!r}")
    if len(dims_parts) == 0:
        raise _usage(f"missing dimensions in --shapes {spec!r}")
    if len(dims_parts) == 2:
        raise _usage(f"--shapes {spec!r} has two shapes; give one (static) or three (min:opt:max)")
    if len(dims_parts) == 1:
        d = _dims(dims_parts[0], spec)
        return InputShapes(name, d, d, d)
    mn, opt, mx = (_dims(p, spec) for p in dims_parts)
    if not (len(mn) == len(opt) == len(mx)):
        raise _usage(f"min, opt and max of {name!r} have different ranks in --shapes {spec!r}")
    for i, (a, b, c) in enumerate(zip(mn, opt, mx)):
        if not a <= b <= c:
            raise TegraAIError(f"--shapes {spec!r}: dimension {i} of {name!r} needs min <= opt <= max, got {a}, {b}, {c}",
                               exit_code=EXIT_USAGE)
    return InputShapes(name, mn, opt, mx)


def parse_profile(spec: str) -> list:
    """One ``--shapes`` value -> list of InputShapes (one per input)."""
    entries = [parse_input_shapes(s) for s in spec.split(",") if s.strip()]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TegraAIError(f"--shapes gives input(s) {', '.join(dupes)} twice in one profile", exit_code=EXIT_USAGE)
    return entries


@dataclass(frozen=True)
class ModelInput:
    """An ONNX graph input: dims are ints, or strings/None for dynamic dimensions."""
    name: str
    dims: tuple
    dtype: str = "float32"

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) or d <= 0 for d in self.dims)


def suggest_shapes(inp: ModelInput) -> InputShapes:
    """A starting point for a dynamic input's profile (the user should adjust it)."""
    mn, opt, mx = [], [], []
    rank = len(inp.dims)
    for i, d in enumerate(inp.dims):
        if isinstance(d, int) and d > 0:
            mn.append(d); opt.append(d); mx.append(d)
        elif i == 0:  # batch
            mn.append(1); opt.append(1); mx.append(8)
        elif rank == 4 and i >= 2:  # image height/width: detector-friendly multiples of 32
            mn.append(320); opt.append(640); mx.append(1280)
        else:
            mn.append(1); opt.append(64); mx.append(256)
    return InputShapes(inp.name, tuple(mn), tuple(opt), tuple(mx))


def resolve_profiles(inputs: list, profiles: list) -> list:
    """Check user profiles against the model inputs and complete them with static inputs.

    Returns a list of profiles, each a list of InputShapes in model-input order.
    Raises one error naming every dynamic input that has no shapes."""
    by_name = {i.name: i for i in inputs}
    if not profiles:
        profiles = [[]]
    resolved = []
    for p_index, profile in enumerate(profiles):
        given = {s.name: s for s in profile}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise TegraAIError(
                f"--shapes names input(s) {', '.join(unknown)} that the model does not have; its inputs are {', '.join(by_name)}",
                exit_code=EXIT_USAGE)
        missing = [i for i in inputs if i.is_dynamic and i.name not in given]
        if missing:
            suggestion = ",".join(suggest_shapes(i).format() for i in missing)
            names = ", ".join(f"{i.name} {format_dims(i.dims)}" for i in missing)
            where = f" in profile {p_index + 1}" if len(profiles) > 1 else ""
            raise TegraAIError(f"dynamic input(s) {names} need --shapes{where}",
                               hint=f"for example --shapes {suggestion}", exit_code=EXIT_USAGE)
        out = []
        for inp in inputs:
            s = given.get(inp.name)
            if s is None:
                d = tuple(inp.dims)
                s = InputShapes(inp.name, d, d, d)
            else:
                if len(s.opt) != len(inp.dims):
                    raise TegraAIError(
                        f"--shapes gives {inp.name!r} rank {len(s.opt)}, the model's input has rank {len(inp.dims)} {format_dims(inp.dims)}",
                        exit_code=EXIT_USAGE)
                for axis, d in enumerate(inp.dims):
                    if isinstance(d, int) and d > 0 and not (s.min[axis] == s.opt[axis] == s.max[axis] == d):
                        raise TegraAIError(
                            f"--shapes {s.format()}: dimension {axis} of {inp.name!r} is fixed to {d} in the model",
                            exit_code=EXIT_USAGE)
            out.append(s)
        resolved.append(out)
    return resolved


def format_dims(dims) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d > 0 else (str(d) if d else "?") for d in dims) + "]"


def profiles_to_json(profiles: list) -> list:
    return [[s.to_dict() for s in p] for p in profiles]


def profiles_from_json(data: list) -> list:
    return [[InputShapes.from_dict(s) for s in p] for p in data]
