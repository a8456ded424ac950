"""meta-tegra-ai: ONNX models to fast, verified TensorRT engines on NVIDIA Jetson.

The library is usable without its CLI (``tegra_ai.cli``); heavy optional
dependencies (onnx, onnxruntime, TensorRT, cuda-python) are imported lazily.
"""

__version__ = "0.1.0"
