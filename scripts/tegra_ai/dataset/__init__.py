"""Calibration and validation datasets: sources (image folders, videos, .npy/.npz) turned
into a model's input tensors with its :class:`~tegra_ai.preprocess.spec.PreprocessSpec`."""
