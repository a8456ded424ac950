"""The only place that chooses between the two layouts of cuda-python.

cuda-python 12.6+ and 13.x: ``cuda.bindings.driver`` / ``.nvrtc`` / ``.runtime``.
cuda-python 11.8 to 12.x (JetPack 5 and 6 images): ``cuda.cuda`` / ``cuda.nvrtc`` /
``cuda.cudart``. The function signatures are the same in both; only the import
paths differ (13.x removed the old ones), so callers get modules from here.
"""

from __future__ import annotations

import functools
import importlib

from tegra_ai.errors import MissingDependencyError

# (driver, nvrtc, runtime) module paths, newest layout first.
LAYOUTS = (
    ("cuda.bindings.driver", "cuda.bindings.nvrtc", "cuda.bindings.runtime"),
    ("cuda.cuda", "cuda.nvrtc", "cuda.cudart"),
)


def _import_first(candidates, importer=importlib.import_module):
    """Import the first module path of ``candidates`` that exists."""
    for name in candidates:
        try:
            return importer(name)
        except ImportError:
            continue
    raise MissingDependencyError("cuda-python", extra="cuda", purpose="running CUDA kernels")


def _pick(kind: int, importer=importlib.import_module):
    return _import_first([layout[kind] for layout in LAYOUTS], importer)


@functools.lru_cache(maxsize=None)
def driver():
    """The CUDA driver API module of the installed cuda-python."""
    return _pick(0)


@functools.lru_cache(maxsize=None)
def nvrtc():
    """The NVRTC module of the installed cuda-python."""
    return _pick(1)


@functools.lru_cache(maxsize=None)
def runtime():
    """The CUDA runtime API module of the installed cuda-python."""
    return _pick(2)


def graph_instantiate(graph):
    """``cuGraphInstantiate`` with flags 0: ``cuGraphInstantiateWithFlags(graph, 0)`` in
    cuda-python 11.4 to 12.x, ``cuGraphInstantiate(graph, 0)`` in 13.x (which dropped
    the WithFlags name; 11.x's ``cuGraphInstantiate`` took a log buffer instead)."""
    drv = driver()
    fn = getattr(drv, "cuGraphInstantiateWithFlags", None)
    if fn is not None:
        return fn(graph, 0)
    return drv.cuGraphInstantiate(graph, 0)


def available() -> bool:
    try:
        driver()
        return True
    except MissingDependencyError:
        return False


def bindings_version() -> str:
    """Version of the installed bindings, for logs and cache keys."""
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            from importlib.metadata import version

            return version(dist)
        except Exception:  # noqa: BLE001 - metadata missing in some images
            continue
    return "unknown"


