"""The engine spec: the one definition of what an engine is built from and how it is named.

Owns, for every caller (``build``, ``bundle``, ``ensure``, ``verify-cache``, ``inspect``,
the builder, and the Yocto class through ``addpylib``):

* the grammar of model names, sizes (``512M``, ``1.5G``), versions and ``--shapes``;
* :class:`BuildOptions`, validated once, with calibration files hashed from their
  paths (:meth:`BuildOptions.from_request`), so no caller can forget it;
* :class:`BuildRequest`: the options plus the files one build reads (model, timing
  cache, calibration data, plugin libraries), constructed once by the CLI, ``ensure``
  and the Yocto class and passed whole to the child builder and the builder;
* the cache key: :func:`key_material` and :func:`cache_key` (a golden test pins the digest);
* :class:`Sidecar`, the JSON file beside every engine, with its schema version and its
  path rule (:func:`sidecar_path`: ``ENGINE`` + ``.json``, which cannot collide with
  another file's sidecar).

Standard library only (no numpy, onnx or TensorRT): BitBake imports it at parse time.
Every error is a :class:`~tegra_ai.errors.TegraAIError` with exit code 2 (bad input).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields

from tegra_ai.errors import EXIT_USAGE, TegraAIError

__all__ = [
    "PRECISIONS", "KEY_FORMAT", "KEY_LENGTH", "SIDECAR_FORMAT", "SIDECAR_VERSION", "SIDECAR_SUFFIX",
    "check_model_name", "parse_size", "format_size", "parse_version", "parse_precision", "parse_dla_core",
    "parse_opt_level", "InputShapes", "parse_input_shapes", "parse_profile", "profiles_to_json",
    "profiles_from_json", "BuildOptions", "BuildRequest", "hash_calibration", "key_material", "cache_key", "short_key",
    "key_differences", "sidecar_path", "Sidecar", "is_ours", "check_output_paths", "write_engine_files",
]

PRECISIONS = ("auto", "fp32", "fp16", "int8", "best")
KEY_FORMAT = 3          # 2: TensorRT library version and plugin digests joined the key
                        # 3: SM count, CUDA driver version and the module's part number (device-tree
                        #    compatible) instead of the GPU name and the carrier board's model string
KEY_LENGTH = 24         # hex digits of the key in file names; the sidecar keeps the full digest
SIDECAR_FORMAT = "tegra-ai-engine"
SIDECAR_VERSION = 2
SIDECAR_SUFFIX = ".json"
SIDECAR_MAX_BYTES = 1 << 22   # a sidecar is a few kilobytes; bigger is not one of ours
MAX_OPT_LEVEL = 5
MAX_DLA_CORE = 15       # TensorRT's own bound is the device's DLA count, checked where the engine is built
MAX_CONTEXTS = 64       # execution contexts one dynamic-shape engine serves (one profile set each)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # fullmatch: "$" would accept a trailing newline
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)
_DIMS = re.compile(r"^\d+(x\d+)*$")
_VALUES = re.compile(r"^-?\d+(x-?\d+)*$")   # shape-tensor values: integers, any sign, joined by 'x'
INT64 = (-(1 << 63), (1 << 63) - 1)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _usage(message: str, hint: str | None = None) -> TegraAIError:
    return TegraAIError(message, hint=hint, exit_code=EXIT_USAGE)


# --------------------------------------------------------------------------- scalar grammar

def check_model_name(name) -> str:
    """A model name names files and directories: letters, digits, '.', '_', '+', '-'; no leading dot."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise _usage(f"model name {name!r}: use letters, digits, '.', '_', '+', '-' (at most 128, "
                     "starting with a letter or digit; it names files)")
    return name


def parse_size(text) -> int | None:
    """'512M', '1.5G', '2GiB', '1048576' -> bytes (binary units); None/'' -> None."""
    if text is None or text == "":
        return None
    if isinstance(text, bool):
        raise _usage(f"size {text!r}: expected a number of bytes or e.g. 512M, 2G")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE.match(str(text).strip())
        if not m:
            raise _usage(f"size {text!r}: expected a number of bytes or e.g. 512M, 1.5G, 2GiB")
        value = int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    if value <= 0:
        raise _usage(f"size {text!r} must be positive")
    return value


def format_size(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def parse_version(text) -> tuple:
    """'10.3.0.30' -> (10, 3, 0, 30); at most four numbers."""
    nums = re.findall(r"\d+", str(text))
    if not nums:
        raise _usage(f"not a version: {text!r}", hint="e.g. 10.3 or 8.5.2")
    return tuple(int(n) for n in nums[:4])


def parse_precision(value) -> str:
    v = "auto" if value is None or value == "" else value
    if v not in PRECISIONS:
        raise _usage(f"precision {value!r}: expected one of {', '.join(PRECISIONS)}")
    return v


def _int_in(value, what: str, lo: int, hi: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _usage(f"{what} {value!r}: expected an integer {lo}..{hi}")
    try:
        n = int(str(value).strip())
    except ValueError:
        raise _usage(f"{what} {value!r}: expected an integer {lo}..{hi}") from None
    if not lo <= n <= hi:
        raise _usage(f"{what} {n}: expected {lo}..{hi}")
    return n


def parse_dla_core(value) -> int | None:
    return _int_in(value, "DLA core", 0, MAX_DLA_CORE)


def parse_opt_level(value) -> int | None:
    return _int_in(value, "optimization level", 0, MAX_OPT_LEVEL)


def parse_contexts(value) -> int:
    """``--contexts N``: how many execution contexts of a dynamic-shape engine may run at
    once (pipeline streams, runtime workers); 1 when not given."""
    n = _int_in(value, "--contexts", 1, MAX_CONTEXTS)
    return 1 if n is None else n


# --------------------------------------------------------------------------- shapes

_SHAPES_HINT = ("expected NAME:DIMS or NAME:MIN:OPT:MAX, e.g. images:1x3x320x320:1x3x640x640:4x3x1280x1280; "
                "a shape-tensor input's values: NAME=VALUES or NAME=MIN:OPT:MAX, e.g. k=1:5:10")


@dataclass(frozen=True)
class InputShapes:
    """One input of one optimization profile: its dimensions, or with ``values`` the
    min/opt/max *values* of a shape-tensor input (``IOptimizationProfile.set_shape_input``:
    integers of any sign, one per element, e.g. a TopK's K or a Reshape's -1 wildcard)."""
    name: str
    min: tuple
    opt: tuple
    max: tuple
    values: bool = False

    def to_dict(self) -> dict:
        d = {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}
        if self.values:   # only then: profiles of execution tensors keep their keys
            d["values"] = True
        return d

    @classmethod
    def from_dict(cls, d) -> "InputShapes":
        if not isinstance(d, dict) or not {"name", "min", "opt", "max"} <= set(d) <= {"name", "min", "opt", "max",
                                                                                      "values"}:
            raise _usage(f"profile entry {d!r}: expected an object with name, min, opt and max (and values)")
        name = d["name"]
        if not isinstance(name, str) or not name:
            raise _usage(f"profile entry {d!r}: name must be a non-empty string")
        values = d.get("values", False)
        if not isinstance(values, bool):
            raise _usage(f"profile entry {name!r}: values must be true or false, got {values!r}")
        dims = []
        for k in ("min", "opt", "max"):
            v = d[k]
            ok = isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            if values and not (ok and all(INT64[0] <= x <= INT64[1] for x in v)):
                raise _usage(f"profile entry {name!r}: {k} must be a list of 64-bit integers, got {v!r}")
            if not values and not (ok and all(x > 0 for x in v)):
                raise _usage(f"profile entry {name!r}: {k} must be a list of positive integers, got {v!r}")
            dims.append(tuple(v))
        return _checked(name, *dims, spec=json.dumps(d), values=values)

    def format(self) -> str:
        fmt = lambda dims: "x".join(str(v) for v in dims)  # noqa: E731
        sep = "=" if self.values else ":"
        if self.min == self.opt == self.max:
            return f"{self.name}{sep}{fmt(self.opt)}"
        return f"{self.name}{sep}{fmt(self.min)}:{fmt(self.opt)}:{fmt(self.max)}"


def _checked(name, mn, opt, mx, spec, values=False) -> InputShapes:
    what = "values" if values else "ranks"
    if not (len(mn) == len(opt) == len(mx)):
        raise _usage(f"min, opt and max of {name!r} have different {what} in {spec!r}", _SHAPES_HINT)
    for i, (a, b, c) in enumerate(zip(mn, opt, mx)):
        if not a <= b <= c:
            raise _usage(f"{spec!r}: {'value' if values else 'dimension'} {i} of {name!r} needs min <= opt <= max, "
                         f"got {a}, {b}, {c}")
    return InputShapes(name, tuple(mn), tuple(opt), tuple(mx), values)


def _shape_values(spec: str):
    """``NAME=VALUES`` or ``NAME=MIN:OPT:MAX`` (a shape-tensor input's values) -> InputShapes,
    or None when ``spec`` is not of that form (a name may contain '=' as it may ':')."""
    name, sep, tail = str(spec).strip().rpartition("=")
    parts = tail.split(":")
    if not sep or not all(_VALUES.match(p) for p in parts):
        return None
    if not name:
        raise _usage(f"missing input name in --shapes {spec!r}", _SHAPES_HINT)
    if len(parts) not in (1, 3):
        raise _usage(f"--shapes {spec!r} has {len(parts)} sets of values; give one (fixed) or three (min:opt:max)")
    sets = [tuple(int(v) for v in p.split("x")) for p in parts]
    if any(not INT64[0] <= v <= INT64[1] for vals in sets for v in vals):
        raise _usage(f"--shapes {spec!r}: shape-tensor values must fit in 64 bits")
    if len(sets) == 1:
        return InputShapes(name, sets[0], sets[0], sets[0], True)
    return _checked(name, *sets, f"--shapes {spec}", values=True)


def _dims(text: str, spec: str) -> tuple:
    if not _DIMS.match(text):
        raise _usage(f"malformed dimensions {text!r} in --shapes {spec!r}", _SHAPES_HINT)
    dims = tuple(int(v) for v in text.split("x"))
    if any(v <= 0 for v in dims):
        raise _usage(f"dimensions must be positive in --shapes {spec!r}", _SHAPES_HINT)
    return dims


def parse_input_shapes(spec: str) -> InputShapes:
    """``NAME:DIMS`` or ``NAME:MIN:OPT:MAX``; names may contain ':' (dims are taken from the right).
    ``NAME=VALUES`` or ``NAME=MIN:OPT:MAX``: a shape-tensor input's values (integers of any
    sign joined by 'x', one per element), not its dims."""
    values = _shape_values(spec)
    if values is not None:
        return values
    parts = str(spec).strip().split(":")
    dims_parts = []
    while parts and len(dims_parts) < 3 and _DIMS.match(parts[-1]):
        dims_parts.insert(0, parts.pop())
    name = ":".join(parts)
    if parts and re.fullmatch(r"[\dx]*\d[\dx]*", parts[-1]) and "x" in parts[-1]:
        raise _usage(f"malformed dimensions {parts[-1]!r} in --shapes {spec!r}", _SHAPES_HINT)
    if not name:
        raise _usage(f"missing input name in --shapes {spec!r}", _SHAPES_HINT)
    if not dims_parts:
        raise _usage(f"missing dimensions in --shapes {spec!r}", _SHAPES_HINT)
    if len(dims_parts) == 2:
        raise _usage(f"--shapes {spec!r} has two shapes; give one (static) or three (min:opt:max)")
    if len(dims_parts) == 1:
        d = _dims(dims_parts[0], spec)
        return InputShapes(name, d, d, d)
    mn, opt, mx = (_dims(p, spec) for p in dims_parts)
    return _checked(name, mn, opt, mx, f"--shapes {spec}")


def parse_profile(spec: str) -> list:
    """One ``--shapes`` value (inputs joined by ',') -> list of InputShapes."""
    entries = [parse_input_shapes(s) for s in str(spec).split(",") if s.strip()]
    if not entries:
        raise _usage(f"empty --shapes {spec!r}", _SHAPES_HINT)
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _usage(f"--shapes gives input(s) {', '.join(dupes)} twice in one profile")
    return entries


def profiles_to_json(profiles) -> list:
    return [[s.to_dict() for s in profile] for profile in profiles]


def profiles_from_json(data) -> list:
    if not isinstance(data, list) or not all(isinstance(p, list) and p for p in data):
        raise _usage(f"profiles {data!r}: expected a list of profiles, each a non-empty list of inputs")
    out = []
    for p in data:
        profile = [InputShapes.from_dict(s) for s in p]
        names = [s.name for s in profile]
        if len(set(names)) != len(names):
            raise _usage(f"profiles: an input appears twice in one profile ({', '.join(names)})")
        out.append(profile)
    return out


# --------------------------------------------------------------------------- build options

def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise _usage(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def hash_calibration(data: str | None = None, cache: str | None = None) -> str | None:
    """Digest of what INT8 calibration reads: the data (.npz/.npy, or a directory of .npy)
    or else the calibration cache. Part of the key, so new data means a new engine."""
    if data:
        if os.path.isdir(data):
            names = sorted(n for n in os.listdir(data) if n.endswith(".npy") and os.path.isfile(os.path.join(data, n)))
            if not names:
                raise _usage(f"calibration data {data}: the directory holds no .npy files")
            h = hashlib.sha256()
            for n in names:
                h.update(f"{n}\0{_sha256_file(os.path.join(data, n))}\n".encode())
            return h.hexdigest()
        if not os.path.isfile(data):
            raise _usage(f"calibration data {data} does not exist")
        return _sha256_file(data)
    if cache:
        if not os.path.isfile(cache):
            raise _usage(f"calibration cache {cache} does not exist")
        return _sha256_file(cache)
    return None


def _known_fields(cls, d, not_object: str, unknown_fields: str) -> dict:
    """A copy of ``d`` after checking that it is an object naming only fields of ``cls``."""
    if not isinstance(d, dict):
        raise _usage(not_object.format(d))
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise _usage(unknown_fields.format(", ".join(unknown)))
    return dict(d)


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes the engine besides the model, TensorRT and the GPU.

    Construct from user input with :meth:`from_request` and from JSON with
    :meth:`from_dict`; both validate every field. ``to_dict`` is the canonical form
    that manifests, sidecars and the key store."""
    precision: str = "auto"
    profiles: tuple = ()                    # tuple of tuples of InputShapes
    workspace: int | None = None            # bytes
    dla_core: int | None = None
    gpu_fallback: bool = False
    opt_level: int | None = None
    strongly_typed: bool | None = None      # None: automatic (Q/DQ models, TensorRT 11)
    calibration_sha256: str | None = None
    plugins: tuple = ()                     # basenames of plugin libraries, sorted
    compute_capability: str | None = None   # TensorRT-RTX ahead-of-time target only
    # Execution contexts a dynamic-shape engine must serve at once. NvInferRuntime.h
    # (IExecutionContext, 8.5 line 2241, 10.3 line 3562): "If the engine supports dynamic
    # shapes, each execution context in concurrent use must use a separate optimization
    # profile", so the builder adds every profile this many times (same shape ranges).
    # Static-shape engines need no profile per context and ignore it.
    contexts: int = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("precision", parse_precision(self.precision))
        profiles = self.profiles
        if profiles and isinstance(profiles[0], (list, tuple)) and profiles[0] and isinstance(profiles[0][0], dict):
            profiles = profiles_from_json([list(p) for p in profiles])
        set_("profiles", tuple(tuple(p) for p in profiles))
        for p in self.profiles:
            if not p or not all(isinstance(s, InputShapes) for s in p):
                raise _usage("profiles: each profile must be a non-empty list of inputs")
        set_("workspace", parse_size(self.workspace))
        set_("dla_core", parse_dla_core(self.dla_core))
        set_("opt_level", parse_opt_level(self.opt_level))
        set_("contexts", parse_contexts(self.contexts))
        for k in ("gpu_fallback",):
            if not isinstance(getattr(self, k), bool):
                raise _usage(f"{k} {getattr(self, k)!r}: expected true or false")
        if self.strongly_typed is not None and not isinstance(self.strongly_typed, bool):
            raise _usage(f"strongly_typed {self.strongly_typed!r}: expected true, false or null")
        if self.gpu_fallback and self.dla_core is None:
            raise _usage("GPU fallback only applies with a DLA core (--dla-core)")
        if self.calibration_sha256 is not None and not (isinstance(self.calibration_sha256, str)
                                                        and _HEX64.match(self.calibration_sha256)):
            raise _usage(f"calibration_sha256 {self.calibration_sha256!r}: expected a sha256 hex digest")
        if isinstance(self.plugins, str) or not all(isinstance(p, str) for p in self.plugins):
            raise _usage(f"plugins {self.plugins!r}: expected a list of library file names")
        plugins = tuple(sorted(os.path.basename(p) for p in self.plugins))
        if any(not p for p in plugins):
            raise _usage(f"plugins {self.plugins!r}: a plugin library needs a file name")
        set_("plugins", plugins)
        if self.compute_capability is not None and not re.fullmatch(r"\d{1,2}\.\d", str(self.compute_capability)):
            raise _usage(f"compute capability {self.compute_capability!r}: expected M.m, e.g. 8.7")
        if self.strongly_typed and self.precision in ("fp16", "int8", "best") and self.calibration_sha256:
            raise _usage("a strongly typed network takes its types from the ONNX; it cannot use INT8 calibration")

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_request(cls, *, precision=None, shapes=(), workspace=None, dla_core=None, gpu_fallback=False,
                     opt_level=None, strongly_typed=None, calibration=None, calibration_cache=None, plugins=(),
                     compute_capability=None, contexts=None) -> "BuildOptions":
        """From user input (CLI flags, Yocto varflags): ``shapes`` are ``--shapes`` strings,
        ``workspace`` a size string, ``calibration``/``calibration_cache`` and ``plugins`` paths."""
        if isinstance(shapes, str):
            shapes = [shapes]
        return cls(precision=precision, profiles=tuple(tuple(parse_profile(s)) for s in shapes),
                   workspace=workspace, dla_core=dla_core, gpu_fallback=bool(gpu_fallback), opt_level=opt_level,
                   strongly_typed=strongly_typed,
                   calibration_sha256=hash_calibration(calibration, calibration_cache),
                   plugins=tuple(plugins), compute_capability=compute_capability, contexts=contexts)

    @classmethod
    def from_dict(cls, d) -> "BuildOptions":
        if d is None:
            return cls()
        d = _known_fields(cls, d, "build options {!r}: expected an object", "unknown build option(s): {}")
        if "profiles" in d:
            d["profiles"] = profiles_from_json(d["profiles"]) if d["profiles"] is not None else ()
        if "plugins" in d and isinstance(d["plugins"], list):
            d["plugins"] = tuple(d["plugins"])
        return cls(**d)

    # -- views ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Canonical JSON form (what manifests, sidecars and the key hold)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["profiles"] = profiles_to_json(self.profiles)
        d["plugins"] = list(self.plugins)
        if d["contexts"] == 1:   # the default stays out: keys of engines built before --contexts keep
            del d["contexts"]
        return d

    normalized = to_dict

    def profile_objects(self) -> list:
        return [list(p) for p in self.profiles]

    def shapes_args(self) -> list:
        """``--shapes`` values that reproduce the profiles."""
        return [",".join(s.format() for s in p) for p in self.profiles]


# --------------------------------------------------------------------------- build request

def _opt_path(value, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "\0" in value:
        raise _usage(f"build request: {what} {value!r} is not a path")
    return value


@dataclass(frozen=True)
class BuildRequest:
    """One engine build, whole: the model, its :class:`BuildOptions` and the files the
    build reads besides the model (timing cache, INT8 calibration data or cache, plugin
    libraries as the device finds them: absolute paths or sonames).

    The CLI (``build``), ``ensure`` (from a manifest entry) and the Yocto class construct
    it once; the child builder receives it as JSON (:meth:`to_dict`) and the builder
    takes it whole; the sidecar records :meth:`record`. Its ``options.plugins`` are the
    basenames of ``plugins``, so the key and the files loaded cannot disagree."""
    model: str
    options: BuildOptions = field(default_factory=BuildOptions)
    timing_cache: str | None = None
    calibration_data: str | None = None
    calibration_cache: str | None = None
    calibration_batch: int | None = None
    plugins: tuple = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        if not isinstance(self.model, str) or not self.model:
            raise _usage(f"build request: model {self.model!r} is not a path")
        if isinstance(self.options, dict):
            set_("options", BuildOptions.from_dict(self.options))
        if not isinstance(self.options, BuildOptions):
            raise _usage("build request: options must be build options")
        for k in ("timing_cache", "calibration_data", "calibration_cache"):
            set_(k, _opt_path(getattr(self, k), k.replace("_", " ")))
        if self.calibration_batch is not None:
            set_("calibration_batch", _int_in(self.calibration_batch, "calibration batch", 1, 1 << 16))
        if isinstance(self.plugins, str) or not all(isinstance(p, str) and p for p in self.plugins):
            raise _usage(f"build request: plugins {self.plugins!r}: expected library paths or sonames")
        set_("plugins", tuple(self.plugins))
        names = sorted(os.path.basename(p) for p in self.plugins)
        if names != list(self.options.plugins):
            raise _usage(f"build request: plugin libraries {list(self.plugins)} do not match the build options' "
                         f"plugins {list(self.options.plugins)}")

    @classmethod
    def from_request(cls, model: str, *, timing_cache=None, calibration=None, calibration_cache=None,
                     calibration_batch=None, plugins=(), **options) -> "BuildRequest":
        """From user input (CLI flags, Yocto varflags): ``options`` as
        :meth:`BuildOptions.from_request` takes them; the calibration files are hashed there."""
        opts = BuildOptions.from_request(calibration=calibration, calibration_cache=calibration_cache,
                                         plugins=tuple(plugins), **options)
        return cls(model=model, options=opts, timing_cache=timing_cache, calibration_data=calibration,
                   calibration_cache=calibration_cache, calibration_batch=calibration_batch, plugins=tuple(plugins))

    @classmethod
    def from_dict(cls, d) -> "BuildRequest":
        d = _known_fields(cls, d, "build request {!r}: expected an object", "build request: unknown field(s) {}")
        d["options"] = BuildOptions.from_dict(d.get("options"))
        d["plugins"] = tuple(d.get("plugins") or ())
        return cls(**d)

    def to_dict(self) -> dict:
        return {"model": self.model, "options": self.options.to_dict(), "timing_cache": self.timing_cache,
                "calibration_data": self.calibration_data, "calibration_cache": self.calibration_cache,
                "calibration_batch": self.calibration_batch, "plugins": list(self.plugins)}

    def replace(self, **changes) -> "BuildRequest":
        import dataclasses

        return dataclasses.replace(self, **changes)

    def map_files(self, fn) -> "BuildRequest":
        """The same request with ``fn(path)`` for each file the build host reads (model,
        timing cache, calibration data and cache; absent ones stay None): how a request
        file's relative paths are resolved and a bundle's copies replace the sources.
        Plugin libraries are paths on the device and stay as they are."""
        keys = ("model", "timing_cache", "calibration_data", "calibration_cache")
        return self.replace(**{k: fn(getattr(self, k)) for k in keys if getattr(self, k)})

    @property
    def has_calibration(self) -> bool:
        return bool(self.calibration_data or self.calibration_cache)

    def record(self, plugin_digests: dict | None = None) -> dict:
        """What the sidecar keeps of the request besides the key: file names (not host
        paths) of what the build read, and each plugin library as the device finds it with
        the sha256 the engine was built against (what the engine loader checks)."""
        digests = plugin_digests or {}
        base = lambda p: os.path.basename(p) if p else None  # noqa: E731
        return {"model": base(self.model), "timing_cache": base(self.timing_cache),
                "calibration_data": base(self.calibration_data), "calibration_cache": base(self.calibration_cache),
                "calibration_batch": self.calibration_batch,
                "plugins": [{"name": os.path.basename(p), "path": p, "sha256": digests.get(os.path.basename(p))}
                            for p in self.plugins]}


# --------------------------------------------------------------------------- the key

TENSORRT_FIELDS = ("flavor", "version", "library_version")
DEVICE_FIELDS = ("compute_capability", "sm_count", "module", "cuda_version", "l4t_release")
# Key format 2 keyed the GPU name and /proc/device-tree/model (the carrier board's name);
# ensure re-keys such engines once (tegra_ai.cache.ensure.RekeySource), never rebuilds them.
DEVICE_FIELDS_V2 = ("compute_capability", "device_name", "module", "l4t_release")

# Human names of key inputs, for "which one differs" messages.
_FIELD_NAMES = {
    "model_sha256": "model (sha256)",
    "tensorrt.flavor": "TensorRT flavour",
    "tensorrt.version": "TensorRT version (Python bindings)",
    "tensorrt.library_version": "TensorRT library version (libnvinfer)",
    "device.compute_capability": "compute capability",
    "device.device_name": "GPU name",
    "device.sm_count": "GPU SM count",
    "device.cuda_version": "CUDA driver version",
    "device.module": "Jetson module",
    "device.l4t_release": "L4T release",
    "plugins": "plugin libraries",
    "format": "key format",
}


def key_material(model_sha256: str, options: BuildOptions, tensorrt: dict, device: dict,
                 plugins: dict | None = None, transform: str | None = None) -> dict:
    """What the cache key hashes. ``tensorrt`` has flavor, version (the bindings') and
    library_version (libnvinfer's; on meta-tegra master they differ); ``device`` has
    compute capability, SM count, Jetson module (part number), CUDA driver and L4T release
    (never the carrier board's name); ``plugins`` maps plugin
    library basenames to their sha256 (a new plugin build means a new engine); ``transform``
    names what rewrites the model before the parser sees it (the FP16 copy of strongly typed
    releases), present only where one can (so other keys do not change)."""
    if not isinstance(model_sha256, str) or not _HEX64.match(model_sha256):
        raise _usage(f"model sha256 {model_sha256!r}: expected a sha256 hex digest")
    if not isinstance(options, BuildOptions):
        raise TypeError("options must be BuildOptions")
    trt = {k: (tensorrt or {}).get(k) for k in TENSORRT_FIELDS}
    if not trt["library_version"]:
        trt["library_version"] = trt["version"]
    return {
        "format": KEY_FORMAT,
        "model_sha256": model_sha256,
        "options": options.to_dict(),
        "tensorrt": trt,
        "device": {k: (device or {}).get(k) for k in DEVICE_FIELDS},
        "plugins": dict(sorted((plugins or {}).items())),
        **({"transform": transform} if transform else {}),
    }


def cache_key(material: dict) -> str:
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def short_key(key: str) -> str:
    return key[:KEY_LENGTH]


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and k != "plugins":
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def key_differences(expected: dict, actual: dict) -> list:
    """Human-readable differences between two key materials: ``['L4T release: 36.4.3 vs 36.4.0', ...]``
    (expected first). Empty when they are equal."""
    e, a = _flatten(expected or {}), _flatten(actual or {})
    out = []
    for k in sorted(set(e) | set(a)):
        if e.get(k) != a.get(k):
            name = _FIELD_NAMES.get(k) or ("build option " + k.split(".", 1)[1] if k.startswith("options.") else k)
            out.append(f"{name}: {e.get(k)!r} expected, {a.get(k)!r} found")
    return out


# --------------------------------------------------------------------------- the sidecar

def sidecar_path(engine_path: str) -> str:
    """The sidecar of ``x.engine`` is ``x.engine.json``: appending cannot hit another file's sidecar."""
    return engine_path + SIDECAR_SUFFIX


@dataclass
class Sidecar:
    """What was built, from what, for what. Written after the engine (the commit point):
    an engine counts only with a sidecar whose size and sha256 match it."""
    cache_key: str
    key_material: dict
    engine_file: str = ""
    engine_size: int = 0
    engine_sha256: str = ""
    model: str = ""
    model_files: list = field(default_factory=list)
    tool: str = ""
    created: str = ""
    strongly_typed: bool | None = None
    builder_flags: list = field(default_factory=list)
    qdq: bool = False
    float_precision: dict = field(default_factory=dict)  # {"path": fp16-flag|fp16-copy|model-types|fp32, "why"}
    profiles: list = field(default_factory=list)       # as completed for static inputs
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    build_seconds: float | None = None
    notes: list = field(default_factory=list)
    request: dict = field(default_factory=dict)        # BuildRequest.record(): plugin paths and digests, ...
    format: str = SIDECAR_FORMAT
    version: int = SIDECAR_VERSION

    # -- derived views (the key material is the single source) -----------------------
    @property
    def options(self) -> BuildOptions:
        return BuildOptions.from_dict(self.key_material.get("options"))

    @property
    def tensorrt(self) -> dict:
        return dict(self.key_material.get("tensorrt") or {})

    @property
    def device(self) -> dict:
        return dict(self.key_material.get("device") or {})

    @property
    def model_sha256(self) -> str:
        return self.key_material.get("model_sha256", "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(tensorrt=self.tensorrt, device=self.device, model_sha256=self.model_sha256,
                 precision=self.key_material.get("options", {}).get("precision"))
        return d

    @classmethod
    def new(cls, material: dict, **kw) -> "Sidecar":
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(cache_key=cache_key(material), key_material=material, created=kw.pop("created", created), **kw)

    @classmethod
    def from_dict(cls, data, where: str = "sidecar") -> "Sidecar":
        if not isinstance(data, dict):
            raise _usage(f"{where}: not a sidecar (expected a JSON object)")
        if data.get("format") != SIDECAR_FORMAT:
            raise _usage(f"{where}: not a {SIDECAR_FORMAT} sidecar")
        if data.get("version") != SIDECAR_VERSION:
            raise _usage(f"{where}: sidecar version {data.get('version')!r} is not supported (expected "
                         f"{SIDECAR_VERSION}); rebuild the engine")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        try:
            sc = cls(**kw)
        except TypeError as exc:
            raise _usage(f"{where}: incomplete sidecar ({exc})") from None
        if not isinstance(sc.key_material, dict) or not isinstance(sc.cache_key, str):
            raise _usage(f"{where}: key material missing")
        if cache_key(sc.key_material) != sc.cache_key:
            raise _usage(f"{where}: its cache key does not match its key material (edited or corrupt)")
        if not isinstance(sc.engine_size, int) or not isinstance(sc.engine_sha256, str):
            raise _usage(f"{where}: engine size/sha256 missing")
        return sc

    @classmethod
    def load(cls, path: str) -> "Sidecar":
        from tegra_ai.util.jsonfile import JSONFileError, read_json_file

        try:
            data = read_json_file(path, max_bytes=SIDECAR_MAX_BYTES)
        except JSONFileError as exc:
            if exc.errno is not None:
                raise _usage(f"cannot read sidecar {path}: {exc}") from None
            raise _usage(f"{path}: not a sidecar ({exc})") from None
        return cls.from_dict(data, where=path)

    @classmethod
    def read_if_ours(cls, path: str) -> "Sidecar | None":
        """The sidecar at ``path`` if it is a valid sidecar of ours, else None (never raises)."""
        try:
            return cls.load(path)
        except TegraAIError:
            return None

    def with_engine(self, engine_path: str, engine: bytes, sha256: str | None = None) -> "Sidecar":
        """Describe ``engine``; ``sha256``: its digest when the caller just computed it (a verified download)."""
        self.engine_file = os.path.basename(engine_path)
        self.engine_size = len(engine)
        self.engine_sha256 = sha256 or hashlib.sha256(engine).hexdigest()
        return self

    def describes(self, engine_sha256: str, engine_size: int | None = None) -> bool:
        return self.engine_sha256 == engine_sha256 and (engine_size is None or engine_size == self.engine_size)


def is_ours(path: str) -> bool:
    """True when ``path`` is a sidecar of ours, or an engine with a sidecar of ours that
    describes it by size: the files a tool may replace or delete."""
    if path.endswith(SIDECAR_SUFFIX) and Sidecar.read_if_ours(path) is not None:
        return True
    sc = Sidecar.read_if_ours(sidecar_path(path))
    if sc is None:
        return False
    try:
        return os.path.getsize(path) == sc.engine_size
    except OSError:
        return False


# --------------------------------------------------------------------------- writing engines

def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_paths(engine_path: str, protect: tuple = ()) -> None:
    """Refuse to write an engine where it would destroy something the tool did not make:
    an input (``protect``), a directory, or an existing file that is not an engine or
    sidecar of ours."""
    for path in (engine_path, sidecar_path(engine_path)):
        if os.path.isdir(path):
            raise TegraAIError(f"{path} is a directory", hint="give a file name for -o", exit_code=EXIT_USAGE)
        for p in protect:
            if p and (_same_file(path, p) or os.path.abspath(path) == os.path.abspath(p)):
                raise TegraAIError(f"output {path} is an input of this command; refusing to overwrite it",
                                   hint="choose another -o", exit_code=EXIT_USAGE)
    if os.path.lexists(engine_path):
        sc = Sidecar.read_if_ours(sidecar_path(engine_path))
        if sc is None or not sc.engine_file == os.path.basename(engine_path):
            raise TegraAIError(f"{engine_path} exists and is not an engine this tool wrote (no matching sidecar "
                               f"{os.path.basename(sidecar_path(engine_path))}); refusing to overwrite it",
                               hint="remove it yourself or choose another -o", exit_code=EXIT_USAGE)
    side = sidecar_path(engine_path)
    if os.path.lexists(side) and Sidecar.read_if_ours(side) is None:
        raise TegraAIError(f"{side} exists and is not a sidecar this tool wrote; refusing to overwrite it",
                           hint="remove it yourself or choose another -o", exit_code=EXIT_USAGE)


def write_engine_files(engine_path: str, engine: bytes, sidecar: Sidecar, sha256: str | None = None) -> Sidecar:
    """Write an engine, then its sidecar (the commit point), both atomically."""
    from tegra_ai.util.atomic import atomic_write_bytes, atomic_write_json

    sidecar.with_engine(engine_path, engine, sha256)
    atomic_write_bytes(engine_path, engine)
    try:
        atomic_write_json(sidecar_path(engine_path), sidecar.to_dict())
    except TegraAIError:
        # no sidecar, no engine: the engine just written would only take space (on a full disk)
        try:
            os.unlink(engine_path)
        except OSError:
            pass
        raise
    return sidecar
