"""The embedded default model: a small CNN trained on scikit-learn's bundled 8x8
handwritten digits (made by ``make_digits.py``), with its preprocessing spec and
held-out samples for calibration and validation."""

from __future__ import annotations

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "digits.onnx")
DEFAULT_SAMPLES = os.path.join(HERE, "digits_samples.npz")
DEFAULT_PREPROCESS = os.path.join(HERE, "digits.preprocess.json")
DEFAULT_NAME = "digits"


def load_samples(split: str = "val"):
    """(uint8 images N x 8 x 8, int labels N) of the 'calib' or 'val' split."""
    with np.load(DEFAULT_SAMPLES, allow_pickle=False) as data:
        return data[f"{split}_images"], data[f"{split}_labels"]


def load_preprocess_spec():
    from tegra_ai.preprocess.spec import PreprocessSpec

    return PreprocessSpec.load(DEFAULT_PREPROCESS)
