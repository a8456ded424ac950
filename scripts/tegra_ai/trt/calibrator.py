"""Implicit INT8 calibrators (TensorRT <= 10.x; deprecated in 10.1, gone in 11.0 — the
compat module refuses them there)."""

from __future__ import annotations

import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat


def cache_only_calibrator(cache_path: str):
    """A calibrator that hands TensorRT an existing calibration cache and has no data:
    TensorRT reads the scales from the cache and never asks for a batch."""
    trt, feats = compat.load()
    base = compat.calibrator_base(trt, feats)
    if not os.path.isfile(cache_path):
        raise TegraAIError(f"calibration cache {cache_path} does not exist", exit_code=EXIT_USAGE)
    with open(cache_path, "rb") as f:
        data = f.read()
    if not data:
        raise TegraAIError(f"calibration cache {cache_path} is empty", exit_code=EXIT_USAGE)

    class CacheOnlyCalibrator(base):
        def __init__(self):
            base.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None  # no data: TensorRT must use the cache

        def read_calibration_cache(self):
            return data

        def write_calibration_cache(self, cache):
            pass

    return CacheOnlyCalibrator()
