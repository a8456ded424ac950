"""Shared fixtures: small ONNX models made with onnx.helper (no binary blobs), and
markers that skip with a reason when a tool or library is absent."""

from __future__ import annotations

import importlib
import os
import shutil
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "scripts") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))


def _importable(name):
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


def _full_tensorrt():
    try:
        import tensorrt  # noqa: F401
        return hasattr(tensorrt, "Builder")
    except Exception:
        return False


import repo_hygiene  # noqa: E402

_REPO_BEFORE = []


def pytest_sessionstart(session):
    _REPO_BEFORE.append(repo_hygiene.snapshot(ROOT))


def pytest_sessionfinish(session, exitstatus):
    """A test run leaves nothing in the repository (a task once ran in a literal "${S}/"
    folder under the repository root): new files fail the run."""
    if not _REPO_BEFORE:
        return
    new = repo_hygiene.left_behind(_REPO_BEFORE[0], ROOT)
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "the test run left %d new path(s) in the repository: %s" % (len(new), ", ".join(new[:20]))
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("ERROR: " + msg, red=True)
        else:
            sys.stderr.write("ERROR: %s\n" % msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config, items):
    reasons = {
        "rtx": (_importable("tensorrt_rtx"), "TensorRT-RTX (pip install tensorrt-rtx) is not installed"),
        "tensorrt": (_full_tensorrt(), "full TensorRT is not installed (it exists only on Jetson/NVIDIA images)"),
        "nvcc": (shutil.which("nvcc") is not None, "nvcc (CUDA compiler) is not on PATH"),
    }
    for item in items:
        for marker, (ok, reason) in reasons.items():
            if item.get_closest_marker(marker) is not None and not ok:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _fresh_trt_loader(monkeypatch):
    from tegra_ai.trt import compat

    compat.reset_for_tests()
    yield
    compat.reset_for_tests()


# --------------------------------------------------------------------------- models

from onnx_models import make_model  # noqa: E402


@pytest.fixture
def model_factory(tmp_path):
    counter = [0]

    def factory(name=None, **kwargs):
        counter[0] += 1
        path = str(tmp_path / (name or f"model{counter[0]}.onnx"))
        return make_model(path, **kwargs)
    return factory


@pytest.fixture
def static_model(model_factory):
    return model_factory("static.onnx", input_dims=(1, 3, 16, 16))


@pytest.fixture
def dynamic_model(model_factory):
    return model_factory("dynamic.onnx", input_dims=("N", 3, "H", "W"))


@pytest.fixture
def default_model():
    from tegra_ai import models

    return models.DEFAULT_MODEL
