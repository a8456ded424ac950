"""TensorRT engines on the device (full TensorRT + cuda-python). Uses the name-based
tensor API (TensorRT 8.5+) through the compat module."""

from __future__ import annotations

import numpy as np

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: str, profile: int = 0):
        super().__init__()
        self.engine_path = engine_path
        self.profile = profile

    def _activate(self):
        from tegra_ai.cuda import driver

        self.trt, self.feats = compat.load()
        self.logger = self.trt.Logger(self.trt.Logger.ERROR)
        try:
            with open(self.engine_path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise TegraAIError(f"cannot read engine {self.engine_path}: {exc.strerror}") from None
        self.runtime, self.engine = compat.deserialize(self.trt, self.feats, self.logger, data)
        self.context = self.engine.create_execution_context()
        self.stream = driver.Stream()
        if self.profile:
            compat.set_optimization_profile(self.context, self.profile, int(self.stream))
        self.io = compat.io_tensors(self.trt, self.engine)
        self.buffers = {}

    def _deactivate(self):
        self.buffers.clear()
        self.context = self.engine = self.runtime = None

    def input_metadata(self):
        return [TensorMeta(t["name"], t["dtype"], tuple(d if d >= 0 else None for d in t["shape"]))
                for t in self.io if t["mode"] == "input"]

    def _buffer(self, name, nbytes):
        from tegra_ai.cuda import driver

        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = self.buffers[name] = driver.DeviceBuffer(nbytes)
        return buf

    def _infer(self, feed):

        for t in self.io:
            if t["mode"] == "input":
                arr = np.ascontiguousarray(feed[t["name"]], dtype=t["dtype"])
                # set_input_shape returns False for a shape outside the engine's profile
                if not self.context.set_input_shape(t["name"], arr.shape):
                    raise TegraAIError(f"input {t['name']}: shape {list(arr.shape)} is outside what "
                                       f"{self.engine_path} was built for (its optimization profile {self.profile})",
                                       exit_code=EXIT_USAGE)
                buf = self._buffer(t["name"], arr.nbytes).upload(arr, int(self.stream))
                self.context.set_tensor_address(t["name"], int(buf))
        outputs = {}
        for t in self.io:
            if t["mode"] == "output":
                shape = tuple(self.context.get_tensor_shape(t["name"]))
                out = np.empty(shape, dtype=t["dtype"])
                self.context.set_tensor_address(t["name"], int(self._buffer(t["name"], max(out.nbytes, 1))))
                outputs[t["name"]] = out
        if not self.context.execute_async_v3(int(self.stream)):
            raise TegraAIError(f"TensorRT failed to run {self.engine_path}")
        for name, out in outputs.items():
            self.buffers[name].download(out, int(self.stream))
        return outputs
