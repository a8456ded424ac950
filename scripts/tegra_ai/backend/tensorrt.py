"""TensorRT engines on the device (full TensorRT + cuda-python). Uses the name-based
tensor API (TensorRT 8.5+) through the compat module."""

from __future__ import annotations

import numpy as np

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: str, profile: int = 0, shapes: dict | None = None):
        super().__init__()
        self.engine_path = engine_path
        self.profile = profile
        self.shapes = dict(shapes or {})   # {input name: dims} for dynamic inputs (device API)
        self._prepared = None

    def _activate(self):
        from tegra_ai.cuda import driver

        self.trt, self.feats = compat.load()
        if self.feats.is_rtx:
            raise TegraAIError(f"running {self.engine_path} needs full TensorRT on the device; this machine has "
                               f"{self.feats.describe()}, which builds engines for RTX GPUs but does not run Jetson ones",
                               exit_code=EXIT_UNAVAILABLE)
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
        if self._prepared:
            for pinned in self._prepared["pinned"].values():
                pinned.free()
        self._prepared = None
        self.context = self.engine = self.runtime = None

    def output_metadata(self):
        """Output shapes; once prepared, the concrete shapes of the prepared buffers."""
        pinned = self._prepared["pinned"] if self._prepared else {}
        return [TensorMeta(t["name"], t["dtype"], tuple(pinned[t["name"]].shape) if t["name"] in pinned
                           else tuple(d if d >= 0 else None for d in t["shape"]))
                for t in self.io if t["mode"] == "output"]

    @property
    def device_inputs(self) -> dict:
        """name -> device pointer of each prepared input (the pipeline writes there)."""
        prep = self.prepare()
        return {t["name"]: int(prep["device"][t["name"]]) for t in self.io if t["mode"] == "input"}

    @property
    def device_outputs(self) -> dict:
        prep = self.prepare()
        return {t["name"]: int(prep["device"][t["name"]]) for t in self.io if t["mode"] == "output"}

    # --- device-level API (benchmark harness, pipelines): one execution context and one
    # set of pinned host / device buffers per instance; fork() for another stream.

    def prepare(self):
        """Fix the input shapes (``self.shapes`` for dynamic ones), allocate pinned host
        and device buffers for every IO tensor and bind their addresses (once)."""
        from tegra_ai.backend.workload import PinnedHostBuffer
        from tegra_ai.cuda import driver

        if self._prepared is not None:
            return self._prepared
        pinned, device = {}, {}
        for t in self.io:
            if t["mode"] != "input":
                continue
            dims = tuple(self.shapes.get(t["name"], t["shape"]))
            if any(d < 0 for d in dims):
                raise TegraAIError(f"input {t['name']!r} of {self.engine_path} has dynamic dimensions {list(t['shape'])}",
                                   hint=f"give them with --shapes {t['name']}:1x...", exit_code=EXIT_USAGE)
            if not self.context.set_input_shape(t["name"], dims):
                raise TegraAIError(f"shape {list(dims)} of input {t['name']!r} is outside the engine's profile",
                                   exit_code=EXIT_USAGE)
        for t in self.io:
            dims = tuple(self.context.get_tensor_shape(t["name"]))
            dtype = np.dtype(t["dtype"])
            pinned[t["name"]] = PinnedHostBuffer(dims, dtype)
            device[t["name"]] = buf = driver.DeviceBuffer(max(pinned[t["name"]].nbytes, 1))
            self.context.set_tensor_address(t["name"], int(buf))
        self._prepared = {"pinned": pinned, "device": device}
        return self._prepared

    @property
    def host_buffers(self) -> dict:
        return {n: p.array for n, p in self.prepare()["pinned"].items()}

    def upload(self, stream=0):
        from tegra_ai.cuda import compat, driver

        prep, drv = self.prepare(), compat.driver()
        for t in self.io:
            if t["mode"] == "input":
                p = prep["pinned"][t["name"]]
                driver.check(drv.cuMemcpyHtoDAsync(int(prep["device"][t["name"]]), p.ptr, p.nbytes,
                                                   driver.stream_handle(stream)), "cuMemcpyHtoDAsync")

    def enqueue(self, stream=0):
        self.prepare()
        if not self.context.execute_async_v3(int(stream)):
            raise TegraAIError(f"TensorRT failed to enqueue {self.engine_path}")

    def download(self, stream=0):
        from tegra_ai.cuda import compat, driver

        prep, drv = self.prepare(), compat.driver()
        for t in self.io:
            if t["mode"] == "output":
                p = prep["pinned"][t["name"]]
                driver.check(drv.cuMemcpyDtoHAsync(p.ptr, int(prep["device"][t["name"]]), p.nbytes,
                                                   driver.stream_handle(stream)), "cuMemcpyDtoHAsync")

    def run_async(self, stream=0, transfers: bool = True):
        if transfers:
            self.upload(stream)
        self.enqueue(stream)
        if transfers:
            self.download(stream)

    def fork(self) -> "TensorRTRunner":
        """Another execution context of the same engine with its own buffers (one per
        stream, as TensorRT requires), already prepared."""
        other = TensorRTRunner(self.engine_path, self.profile, self.shapes)
        other.trt, other.feats, other.logger = self.trt, self.feats, self.logger
        other.runtime, other.engine, other.io, other.buffers = self.runtime, self.engine, self.io, {}
        other.context = self.engine.create_execution_context()
        other.stream = self.stream
        if self.profile:
            compat.set_optimization_profile(other.context, self.profile, int(self.stream))
        other.active = True
        other.prepare()
        mine = self.prepare()["pinned"]
        for name, pinned in other._prepared["pinned"].items():
            pinned.array[...] = mine[name].array   # same inputs on every stream
        return other

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
        if self._prepared is not None:
            self._bind_prepared()   # infer() rebound the context; the device API expects its own buffers
        return outputs

    def _bind_prepared(self):
        for t in self.io:
            if t["mode"] == "input":
                self.context.set_input_shape(t["name"], tuple(self._prepared["pinned"][t["name"]].shape))
        for t in self.io:
            self.context.set_tensor_address(t["name"], int(self._prepared["device"][t["name"]]))
