"""Build options: one normalized form shared by ``build``, the manifest, the cache key
and the Yocto class, so that equal requests give equal keys."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt.shapes import profiles_from_json, profiles_to_json

PRECISIONS = ("auto", "fp32", "fp16", "int8", "best")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(text) -> int | None:
    """'512M', '2G', '1048576' -> bytes (binary units)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text).strip())
    if not m:
        raise TegraAIError(f"size {text!r}: expected a number of bytes or e.g. 512M, 2G", exit_code=EXIT_USAGE)
    value = float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " ")
    if value <= 0:
        raise TegraAIError(f"size {text!r} must be positive", exit_code=EXIT_USAGE)
    return int(value)


@dataclass
class BuildOptions:
    precision: str = "auto"
    profiles: list = field(default_factory=list)        # [[InputShapes.to_dict(), ...], ...]
    workspace: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    opt_level: int | None = None
    strongly_typed: bool | None = None
    calibration_sha256: str | None = None               # of the calibration cache or data
    plugins: list = field(default_factory=list)         # basenames of plugin libraries
    compute_capability: str | None = None               # TensorRT-RTX target only

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise TegraAIError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}", exit_code=EXIT_USAGE)
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise TegraAIError(f"dla core {self.dla_core}: must be 0 or more", exit_code=EXIT_USAGE)
        if self.gpu_fallback and self.dla_core is None:
            raise TegraAIError("--gpu-fallback only applies with --dla-core", exit_code=EXIT_USAGE)
        if self.opt_level is not None and not 0 <= int(self.opt_level) <= 5:
            raise TegraAIError(f"opt level {self.opt_level}: expected 0..5", exit_code=EXIT_USAGE)
        # Accept InputShapes objects too; store JSON-able dicts.
        if self.profiles and not isinstance(self.profiles[0][0] if self.profiles[0] else {}, dict):
            self.profiles = profiles_to_json(self.profiles)

    def profile_objects(self) -> list:
        return profiles_from_json(self.profiles)

    def normalized(self) -> dict:
        """The options that change the engine, in canonical form (what the key hashes)."""
        d = asdict(self)
        d["plugins"] = sorted(d["plugins"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BuildOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise TegraAIError(f"unknown build option(s): {', '.join(unknown)}", exit_code=EXIT_USAGE)
        return cls(**d)
