"""TensorRT engines on the device (full TensorRT + cuda-python). Uses the name-based
tensor API (TensorRT 8.5+) through the compat module.

Besides ``infer`` (NumPy in and out), a runner is a *device runner* for the pipeline
and the multi-model runtime: :meth:`TensorRTRunner.prepare` fixes the input shapes and
allocates every input and output once (``device_inputs`` / ``device_outputs``: name ->
device pointer, tensor addresses set once), :meth:`enqueue` runs the engine on a stream
with no host synchronisation and no allocation, and :meth:`fork` gives another
execution context of the same engine with its own buffers (one per CUDA stream)."""

from __future__ import annotations

import numpy as np

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: str, profile: int = 0, shapes: dict | None = None):
        super().__init__()
        self.engine_path = engine_path
        self.profile = profile
        self.shapes = dict(shapes or {})
        self.device_inputs, self.device_outputs = {}, {}
        self._shared = None  # (trt, feats, logger, runtime, engine) of the runner this one was forked from

    def _activate(self):
        from tegra_ai.cuda import driver

        if self._shared is not None:
            self.trt, self.feats, self.logger, self.runtime, self.engine = self._shared
        else:
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
        inputs = [t for t in self.io if t["mode"] == "input"]
        if self.shapes or all(d >= 0 for t in inputs for d in t["shape"]):
            self.prepare(self.shapes)

    def _deactivate(self):
        self.buffers.clear()
        self.device_inputs, self.device_outputs = {}, {}
        self.context = self.engine = self.runtime = None

    # -- device runner ------------------------------------------------------------------
    def prepare(self, shapes: dict | None = None) -> None:
        """Fix the input shapes (name -> shape; needed for dynamic dimensions) and
        allocate every input and output on the device once."""
        from tegra_ai.cuda import driver

        shapes = dict(shapes or {})
        self.device_inputs, self.device_outputs, self._out_shapes, self._pinned = {}, {}, {}, {}
        for t in self.io:
            if t["mode"] != "input":
                continue
            shape = tuple(shapes.get(t["name"], t["shape"]))
            if any(int(d) < 0 for d in shape):
                raise TegraAIError(f"{self.engine_path}: input {t['name']} has dynamic shape {t['shape']}; "
                                   f"give its shape to prepare()", exit_code=EXIT_USAGE)
            self.context.set_input_shape(t["name"], shape)
            nbytes = int(np.prod(shape)) * np.dtype(t["dtype"]).itemsize
            buf = self.buffers[t["name"]] = driver.DeviceBuffer(nbytes)
            self.context.set_tensor_address(t["name"], int(buf))
            self.device_inputs[t["name"]] = int(buf)
            self._pinned[t["name"]] = driver.HostBuffer(shape, t["dtype"])
            self.shapes[t["name"]] = shape
        for t in self.io:
            if t["mode"] == "output":
                shape = tuple(self.context.get_tensor_shape(t["name"]))
                nbytes = max(1, int(np.prod(shape)) * np.dtype(t["dtype"]).itemsize)
                buf = self.buffers[t["name"]] = driver.DeviceBuffer(nbytes)
                self.context.set_tensor_address(t["name"], int(buf))
                self.device_outputs[t["name"]] = int(buf)
                self._out_shapes[t["name"]] = shape
                self._pinned[t["name"]] = driver.HostBuffer(shape, t["dtype"])

    def output_metadata(self):
        shapes = getattr(self, "_out_shapes", {})
        return [TensorMeta(t["name"], t["dtype"], tuple(shapes.get(t["name"], t["shape"])))
                for t in self.io if t["mode"] == "output"]

    def enqueue(self, stream=0) -> None:
        """Run the engine on ``stream`` on the prepared buffers (asynchronous)."""
        if not self.device_inputs:
            raise TegraAIError(f"{self.engine_path}: enqueue() before prepare()", exit_code=EXIT_USAGE)
        if not self.context.execute_async_v3(int(stream)):
            raise TegraAIError(f"TensorRT failed to run {self.engine_path}")

    def fork(self) -> "TensorRTRunner":
        """Another execution context of the same engine (deserialized once) with its own
        buffers, active and prepared with the same shapes."""
        other = TensorRTRunner(self.engine_path, self.profile, self.shapes)
        other._shared = (self.trt, self.feats, self.logger, self.runtime, self.engine)
        other.activate()
        return other

    def input_metadata(self):
        return [TensorMeta(t["name"], t["dtype"], tuple(self.shapes[t["name"]]) if t["name"] in self.device_inputs
                           else tuple(d if d >= 0 else None for d in t["shape"]))
                for t in self.io if t["mode"] == "input"]

    def _buffer(self, name, nbytes):
        from tegra_ai.cuda import driver

        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = self.buffers[name] = driver.DeviceBuffer(nbytes)
        return buf

    def _infer(self, feed):
        if self.device_inputs:
            return self._infer_prepared(feed)
        return self._infer_any(feed)

    def _infer_prepared(self, feed):
        """Prepared shapes: through pinned host buffers made once, no allocation but the
        returned copies."""
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check, stream_handle

        drv, h = compat.driver(), stream_handle(int(self.stream))
        for name, ptr in self.device_inputs.items():
            hb = self._pinned[name]
            np.copyto(hb.array, np.asarray(feed[name]), casting="same_kind")
            check(drv.cuMemcpyHtoDAsync(ptr, hb.ptr, hb.nbytes, h), "cuMemcpyHtoDAsync")
        self.enqueue(int(self.stream))
        for name, ptr in self.device_outputs.items():
            hb = self._pinned[name]
            check(drv.cuMemcpyDtoHAsync(hb.ptr, ptr, hb.nbytes, h), "cuMemcpyDtoHAsync")
        self.stream.synchronize()
        return {name: self._pinned[name].array.copy() for name in self.device_outputs}

    def _infer_any(self, feed):

        for t in self.io:
            if t["mode"] == "input":
                arr = np.ascontiguousarray(feed[t["name"]], dtype=t["dtype"])
                self.context.set_input_shape(t["name"], arr.shape)
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
