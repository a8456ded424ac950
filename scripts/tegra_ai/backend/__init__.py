"""Inference backends behind one small interface (as Polygraphy's runners): ONNX Runtime
is the CPU reference, TensorRT runs engines on the device. Accuracy comparison,
benchmarks and multi-model inference are written against :class:`Runner`."""

from tegra_ai.backend.base import Runner, TensorMeta  # noqa: F401
