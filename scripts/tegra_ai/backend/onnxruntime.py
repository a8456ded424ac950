"""ONNX Runtime on the CPU: the reference backend (host and CI)."""

from __future__ import annotations

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.util.lazy import require

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
              "tensor(bool)": "bool"}


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path: str, providers=("CPUExecutionProvider",)):
        super().__init__()
        self.model_path = model_path
        self.providers = list(providers)
        self.session = None

    def _activate(self):
        ort = require("onnxruntime", extra="onnxruntime", purpose="the ONNX Runtime reference backend")
        self.session = ort.InferenceSession(self.model_path, providers=self.providers)

    def _deactivate(self):
        self.session = None

    def input_metadata(self):
        return [TensorMeta(i.name, _ORT_TYPES.get(i.type, i.type),
                           tuple(d if isinstance(d, int) else None for d in i.shape)) for i in self.session.get_inputs()]

    def _infer(self, feed):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed)))
