"""Lazy imports of optional dependencies, in the manner of Polygraphy's ``mod.lazy_import``:
``import tegra_ai`` works without onnx, onnxruntime, TensorRT or cuda-python, and a
missing one is reported in one line, naming what to install, only when it is used."""

from __future__ import annotations

import importlib
import types

from tegra_ai.errors import MissingDependencyError


class LazyModule(types.ModuleType):
    def __init__(self, name: str, extra: str | None, purpose: str | None):
        super().__init__(name)
        self._lazy_name = name
        self._lazy_extra = extra
        self._lazy_purpose = purpose
        self._lazy_module = None

    def _load(self):
        if self._lazy_module is None:
            self._lazy_module = require(self._lazy_name, self._lazy_extra, self._lazy_purpose)
        return self._lazy_module

    def __getattr__(self, attr):
        if attr.startswith("_lazy_"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    @property
    def available(self) -> bool:
        return is_available(self._lazy_name)


def require(name: str, extra: str | None = None, purpose: str | None = None):
    """Import ``name`` now, or raise a one-line MissingDependencyError."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        # A module that exists but fails inside its own imports is a different problem:
        # say so instead of claiming it is not installed.
        missing = getattr(exc, "name", None)
        if missing and missing != name and not name.startswith(missing + "."):
            raise MissingDependencyError(missing, extra, purpose) from None
        raise MissingDependencyError(name, extra, purpose) from None


def lazy_import(name: str, extra: str | None = None, purpose: str | None = None) -> LazyModule:
    return LazyModule(name, extra, purpose)


def is_available(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False
