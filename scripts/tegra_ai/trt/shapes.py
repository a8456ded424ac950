"""Optimization profiles against a model: checking ``--shapes`` (grammar in
:mod:`tegra_ai.spec`) against a model's inputs, completing them with static inputs, and
suggesting them for dynamic ones.

Syntax (one ``--shapes`` value is one optimization profile; repeat it for several)::

    NAME:DIMS                  min = opt = max
    NAME:MIN:OPT:MAX           each a list of dims like 1x3x640x640
    NAME:...,NAME2:...         several inputs of one profile
    NAME=VALUES                a shape-tensor input's values (min = opt = max)
    NAME=MIN:OPT:MAX           its min/opt/max values: integers of any sign joined by 'x',
                               one per element (a scalar K: k=1:5:10)

Names may contain ':' (``input:0``); the dims are taken from the right.

Shape-tensor inputs (TensorRT: ``ITensor.is_shape_tensor``; int32, or int32/int64 from
10.0) take values, never dims: NvInferRuntime.h, IOptimizationProfile::setShapeValues
(8.5 l.1182-1184, 10.3 l.2210-2212, 11.1 setShapeValuesV2 l.2684-2686): "This function must
be called three times for every input tensor t that is a shape tensor ... This function
must not be called for any input tensor that is not a shape tensor." The builder knows
which inputs are shape tensors (from the parsed network); a host check knows only that a
floating-point input is not one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.spec import InputShapes


@dataclass(frozen=True)
class ModelInput:
    """An ONNX graph input: dims are ints, or strings/None for dynamic dimensions.
    ``shape_tensor``: True/False where TensorRT said (a parsed network), None unknown."""
    name: str
    dims: tuple
    dtype: str = "float32"
    shape_tensor: bool | None = None

    @property
    def can_be_shape_tensor(self) -> bool:
        if self.shape_tensor is not None:
            return self.shape_tensor
        return self.dtype in ("int32", "int64")   # shape tensors are integer tensors (8.5: int32 only)

    @property
    def volume(self) -> int | None:
        """Number of elements (1 for a scalar), None while a dimension is dynamic."""
        n = 1
        for d in self.dims:
            if not isinstance(d, int) or d <= 0:
                return None
            n *= d
        return n

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


def suggest_profile(inputs: list) -> list:
    """Suggestions for several dynamic inputs of one model. A symbolic dimension shared by
    name (``batch`` in two inputs) gets the same min/opt/max everywhere (the first input's
    suggestion), as TensorRT requires of a valid profile."""
    chosen = {}
    out = []
    for inp in inputs:
        s = suggest_shapes(inp)
        mn, opt, mx = list(s.min), list(s.opt), list(s.max)
        for axis, d in enumerate(inp.dims):
            if isinstance(d, str) and d:
                if d in chosen:
                    mn[axis], opt[axis], mx[axis] = chosen[d]
                else:
                    chosen[d] = (mn[axis], opt[axis], mx[axis])
        out.append(InputShapes(inp.name, tuple(mn), tuple(opt), tuple(mx)))
    return out


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
        where = f" in profile {p_index + 1}" if len(profiles) > 1 else ""
        need_values = [i for i in inputs if i.shape_tensor and not (i.name in given and given[i.name].values)]
        for inp in need_values:
            if inp.name in given:
                raise TegraAIError(f"--shapes {given[inp.name].format()}: {inp.name!r} is a shape-tensor input; its "
                                   f"profile takes values, not dimensions",
                                   hint=f"--shapes {inp.name}=MIN:OPT:MAX with {inp.volume} value(s) each, "
                                        f"e.g. {inp.name}=" + ":".join(["x".join(["1"] * (inp.volume or 1))] * 3),
                                   exit_code=EXIT_USAGE)
        if need_values:
            names = ", ".join(f"{i.name} ({i.volume} value(s))" for i in need_values)
            raise TegraAIError(f"shape-tensor input(s) {names} need their values in --shapes{where}",
                               hint=f"for example --shapes {need_values[0].name}=MIN:OPT:MAX (TensorRT needs the "
                                    "range of values the engine will be run with)", exit_code=EXIT_USAGE)
        missing = [i for i in inputs if i.is_dynamic and i.name not in given]
        if missing:
            suggestion = ",".join(s.format() for s in suggest_profile(missing))
            names = ", ".join(f"{i.name} {format_dims(i.dims)}" for i in missing)
            raise TegraAIError(f"dynamic input(s) {names} need --shapes{where}",
                               hint=f"for example --shapes {suggestion}", exit_code=EXIT_USAGE)
        out = []
        for inp in inputs:
            s = given.get(inp.name)
            if s is None:
                d = tuple(inp.dims)
                s = InputShapes(inp.name, d, d, d)
            elif s.values:
                if not inp.can_be_shape_tensor:
                    kind = "not a shape tensor" if inp.shape_tensor is False else f"a {inp.dtype} input"
                    raise TegraAIError(f"--shapes {s.format()}: {inp.name!r} is {kind}; values are for shape-tensor "
                                       f"inputs, its profile takes dimensions ({inp.name}:MIN:OPT:MAX)",
                                       exit_code=EXIT_USAGE)
                if inp.volume is not None and len(s.opt) != inp.volume:
                    raise TegraAIError(f"--shapes {s.format()}: {inp.name!r} {format_dims(inp.dims)} holds {inp.volume} "
                                       f"value(s), --shapes gives {len(s.opt)}", exit_code=EXIT_USAGE)
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
