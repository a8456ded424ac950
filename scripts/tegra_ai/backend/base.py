"""The runner interface shared by every backend."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str          # numpy name, e.g. "float32"
    shape: tuple        # ints; None for dynamic dimensions


class Runner(abc.ABC):
    """activate() -> infer(feed) ... -> deactivate(); also a context manager."""

    name = "runner"

    def __init__(self):
        self.active = False

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False

    def activate(self) -> None:
        if not self.active:
            self._activate()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    @abc.abstractmethod
    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        pass

    @abc.abstractmethod
    def input_metadata(self) -> list: ...

    @abc.abstractmethod
    def _infer(self, feed: dict) -> dict: ...

    def infer(self, feed: dict) -> dict:
        """name -> numpy array in, name -> numpy array out."""
        if not self.active:
            raise TegraAIError(f"{self.name}: infer() before activate()")
        self.check_feed(feed)
        return self._infer(feed)

    def check_feed(self, feed: dict) -> None:
        expected = {m.name: m for m in self.input_metadata()}
        missing = sorted(set(expected) - set(feed))
        extra = sorted(set(feed) - set(expected))
        if missing or extra:
            raise TegraAIError(f"{self.name}: inputs {'missing ' + ', '.join(missing) if missing else ''}"
                               f"{'; ' if missing and extra else ''}{'unknown ' + ', '.join(extra) if extra else ''}"
                               f" (the model takes {', '.join(expected)})", exit_code=EXIT_USAGE)
        for name, meta in expected.items():
            arr = np.asarray(feed[name])
            if arr.ndim != len(meta.shape) or any(d is not None and d != a for d, a in zip(meta.shape, arr.shape)):
                raise TegraAIError(f"{self.name}: input {name!r} has shape {list(arr.shape)}, the model expects "
                                   f"{[d if d is not None else '?' for d in meta.shape]}", exit_code=EXIT_USAGE)
