"""TensorRT engines on the device (full TensorRT + cuda-python). Uses the name-based
tensor API (TensorRT 8.5+) through the compat module; engines load through the one
engine loader (:mod:`tegra_ai.trt.loader`: plugins first, then deserialization).

TensorRT's rules this runner follows, per release (NvInferRuntime.h, IExecutionContext):

* each execution context of a dynamic-shape engine in concurrent use has its own
  optimization profile: the first runner and every :meth:`TensorRTRunner.fork` take a
  profile slot of the engine (``--contexts N`` at build time gives N slots); a
  static-shape engine has no such limit;
* shape-tensor inputs live in host memory (int32 on 8.5; the engine's dtype on 10.x);
* outputs whose shape depends on data get an ``IOutputAllocator`` (8.5+; 10.x through
  ``reallocate_output_async``) and their shape comes from ``notify_shape``.
"""

from __future__ import annotations

import numpy as np

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat


class _Outputs:
    """Device memory and shapes of data-dependent outputs (one per execution context),
    grown by TensorRT through the output allocator."""

    def __init__(self):
        self.buffers, self.shapes = {}, {}

    def reallocate(self, name, current, size, alignment):
        from tegra_ai.cuda import driver

        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < size:
            if buf is not None:
                buf.free()
            buf = self.buffers[name] = driver.DeviceBuffer(max(int(size), 1))
        return int(buf)

    def notify_shape(self, name, dims):
        self.shapes[name] = tuple(dims)

    def free(self):
        for buf in self.buffers.values():
            buf.free()
        self.buffers.clear()


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path: str, profile: int = 0, shapes: dict | None = None,
                 shape_values: dict | None = None, loaded=None):
        """``profile``: the optimization profile among the engine's profiles per context;
        ``shapes``: {input: dims} for dynamic inputs (device API); ``shape_values``: {shape
        tensor input: values} (device API); ``loaded``: a :class:`~tegra_ai.trt.loader.LoadedEngine`
        to share (several runners, one deserialized engine)."""
        super().__init__()
        self.engine_path = engine_path
        self.profile = profile
        self.shapes = dict(shapes or {})
        self.shape_values = {k: np.asarray(v) for k, v in (shape_values or {}).items()}
        self.loaded = loaded
        self._prepared = None
        self._slot = None
        self._own_stream = False
        self._allocator = None

    # --- lifetime ---------------------------------------------------------------------

    def _activate(self):
        from tegra_ai.cuda import driver
        from tegra_ai.trt.loader import load_engine

        if self.loaded is None:
            self.loaded = load_engine(self.engine_path)
        self._bind_engine(self.loaded)
        self.stream = driver.Stream()
        self._own_stream = True
        try:
            self._open_context()
        except BaseException:
            self.stream.destroy()       # refused (e.g. no profile slot left): nothing stays behind
            self._own_stream = False
            raise

    def _bind_engine(self, loaded):
        self.trt, self.feats, self.logger = loaded.trt, loaded.feats, loaded.logger
        self.runtime, self.engine, self.io = loaded.runtime, loaded.engine, loaded.io
        self.buffers = {}

    def _open_context(self):
        self.context, self._slot = self.loaded.acquire_context(int(self.stream), self.profile)
        self._dds = _Outputs()
        self._allocator = None
        if any(t["mode"] == "output" for t in self.io):
            self._allocator = compat.make_output_allocator(self.trt, self.feats, self._dds.reallocate,
                                                           self._dds.notify_shape)

    def _deactivate(self):
        for buf in getattr(self, "buffers", {}).values():
            buf.free()
        self.buffers = {}
        if self._prepared:
            for pinned in self._prepared["pinned"].values():
                pinned.free()
            for buf in self._prepared["device"].values():
                buf.free()
        self._prepared = None
        if getattr(self, "_dds", None) is not None:
            self._dds.free()
        self.context = None            # TensorRT destroys the execution context with its last reference
        self._allocator = None
        if self.loaded is not None:
            self.loaded.release(self._slot)
        self._slot = None
        if self._own_stream:
            self.stream.destroy()
            self._own_stream = False
        self.stream = None
        self.engine = self.runtime = None

    def close(self):
        """Deactivate (a forked runner: its context, buffers and profile slot)."""
        if self.active:
            self.deactivate()

    # --- metadata ---------------------------------------------------------------------

    def output_metadata(self):
        """Output shapes; once prepared, the concrete shapes of the prepared buffers
        (a data-dependent output: its last reported shape, else None dimensions)."""
        pinned = self._prepared["pinned"] if self._prepared else {}
        out = []
        for t in self.io:
            if t["mode"] != "output":
                continue
            if t["name"] in pinned:
                shape = tuple(pinned[t["name"]].shape)
            elif getattr(self, "_dds", None) is not None and t["name"] in self._dds.shapes:
                shape = self._dds.shapes[t["name"]]
            else:
                shape = tuple(d if d >= 0 else None for d in t["shape"])
            out.append(TensorMeta(t["name"], t["dtype"], shape))
        return out

    def input_metadata(self):
        return [TensorMeta(t["name"], t["dtype"], tuple(d if d >= 0 else None for d in t["shape"]))
                for t in self.io if t["mode"] == "input"]

    @property
    def device_inputs(self) -> dict:
        """name -> device pointer of each prepared input (the pipeline writes there);
        shape tensors are host inputs and are not listed."""
        prep = self.prepare()
        return {t["name"]: int(prep["device"][t["name"]]) for t in self.io
                if t["mode"] == "input" and t["name"] in prep["device"]}

    @property
    def device_outputs(self) -> dict:
        """name -> device pointer of each prepared output. A data-dependent output's memory
        is TensorRT's to size (output allocator): it is listed after the first enqueue."""
        prep = self.prepare()
        out = {t["name"]: int(prep["device"][t["name"]]) for t in self.io
               if t["mode"] == "output" and t["name"] in prep["device"]}
        out.update({n: int(b) for n, b in self._dds.buffers.items()})
        return out

    # --- binding ------------------------------------------------------------------------

    def _set_input(self, t, arr):
        """Shape (and, for a shape tensor, host address) of one input; returns the array."""
        if t["shape_tensor"] or t["location"] == "host":
            # NvInferRuntime.h (8.5 l.2939-2940): "If the TensorLocation of the tensor is kHOST, the
            # pointer must point to a host buffer of sufficient size. For shape tensors, the only
            # supported data type is int32_t." The engine's dtype says which (int32 on 8.5).
            if not self.context.set_input_shape(t["name"], arr.shape):
                raise TegraAIError(f"shape tensor {t['name']!r}: {list(arr.shape)} values do not fit the engine",
                                   exit_code=EXIT_USAGE)
            if not self.context.set_tensor_address(t["name"], int(arr.ctypes.data)):
                raise TegraAIError(f"TensorRT refused the host address of shape tensor {t['name']!r}")
            return arr
        # set_input_shape returns False for a shape outside the engine's profile
        if not self.context.set_input_shape(t["name"], arr.shape):
            raise TegraAIError(f"input {t['name']}: shape {list(arr.shape)} is outside what "
                               f"{self.engine_path} was built for (its optimization profile {self.profile})",
                               exit_code=EXIT_USAGE)
        return arr

    def _bind_output_allocators(self, names):
        for name in names:
            # NvInferRuntime.h (8.5 l.2937): "each output must have a non-null address or an
            # IOutputAllocator to set it later"
            self.context.set_tensor_address(name, 0)
            if not self.context.set_output_allocator(name, self._allocator):
                raise TegraAIError(f"TensorRT refused an output allocator for {name!r}")

    # --- device-level API (benchmark harness, pipelines): one execution context and one
    # set of pinned host / device buffers per instance; fork() for another stream.

    def prepare(self):
        """Fix the input shapes (``self.shapes`` for dynamic ones, ``self.shape_values`` for
        shape tensors), allocate pinned host and device buffers for every IO tensor (shape
        tensors: host only; data-dependent outputs: an output allocator) and bind their
        addresses (once)."""
        from tegra_ai.cuda import driver

        if self._prepared is not None:
            return self._prepared
        pinned, device, dds = {}, {}, []
        for t in self.io:
            if t["mode"] != "input":
                continue
            if t["shape_tensor"] or t["location"] == "host":
                if t["name"] not in self.shape_values:
                    raise TegraAIError(f"input {t['name']!r} of {self.engine_path} is a shape tensor: give its values",
                                       hint="TensorRTRunner(..., shape_values={NAME: [...]})", exit_code=EXIT_USAGE)
                values = np.ascontiguousarray(self.shape_values[t["name"]], dtype=t["dtype"])
                pinned[t["name"]] = host = driver.HostBuffer(values.shape, values.dtype)
                host.array[...] = values
                self._set_input(t, host.array)
                continue
            dims = tuple(self.shapes.get(t["name"], t["shape"]))
            if any(d < 0 for d in dims):
                raise TegraAIError(f"input {t['name']!r} of {self.engine_path} has dynamic dimensions {list(t['shape'])}",
                                   hint=f"give them with --shapes {t['name']}:1x...", exit_code=EXIT_USAGE)
            if not self.context.set_input_shape(t["name"], dims):
                raise TegraAIError(f"shape {list(dims)} of input {t['name']!r} is outside the engine's profile",
                                   exit_code=EXIT_USAGE)
        for t in self.io:
            if t["name"] in pinned:
                continue
            dims = tuple(self.context.get_tensor_shape(t["name"]))
            if t["mode"] == "output" and any(d < 0 for d in dims):
                dds.append(t["name"])      # data-dependent: TensorRT sizes it through the allocator
                continue
            dtype = np.dtype(t["dtype"])
            pinned[t["name"]] = driver.HostBuffer(dims, dtype)
            device[t["name"]] = buf = driver.DeviceBuffer(max(pinned[t["name"]].nbytes, 1))
            self.context.set_tensor_address(t["name"], int(buf))
        self._bind_output_allocators(dds)
        self._prepared = {"pinned": pinned, "device": device, "dds": dds, "dds_host": {}}
        return self._prepared

    @property
    def host_buffers(self) -> dict:
        prep = self.prepare()
        return {**{n: p.array for n, p in prep["pinned"].items()},
                **{n: p.array for n, p in prep["dds_host"].items()}}

    def upload(self, stream=0):
        from tegra_ai.cuda import compat, driver

        prep, drv = self.prepare(), compat.driver()
        for t in self.io:
            if t["mode"] == "input" and t["name"] in prep["device"]:
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
            if t["mode"] != "output":
                continue
            if t["name"] in prep["dds"]:
                # notifyShape is called "sometime between when it calls reallocateOutput and enqueueV3
                # returns" (NvInferRuntime.h 8.5 l.2224): the shape is known once enqueue returned.
                shape = self._dds.shapes.get(t["name"])
                if shape is None:
                    raise TegraAIError(f"{t['name']!r} is data-dependent: enqueue before download")
                host = prep["dds_host"].get(t["name"])
                if host is None or tuple(host.shape) != tuple(shape):
                    if host is not None:
                        host.free()
                    host = prep["dds_host"][t["name"]] = driver.HostBuffer(shape, np.dtype(t["dtype"]))
                if host.nbytes:
                    driver.check(drv.cuMemcpyDtoHAsync(host.ptr, int(self._dds.buffers[t["name"]]), host.nbytes,
                                                       driver.stream_handle(stream)), "cuMemcpyDtoHAsync")
                continue
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
        stream, as TensorRT requires) and, for a dynamic-shape engine, its own optimization
        profile slot (refused past the engine's ``--contexts``), already prepared. Close it
        with :meth:`close`."""
        other = TensorRTRunner(self.engine_path, self.profile, self.shapes, self.shape_values, loaded=self.loaded)
        other._bind_engine(self.loaded)
        other.stream, other._own_stream = self.stream, False     # the profile is selected on it, then synchronized
        other._open_context()
        other.active = True
        try:
            other.prepare()
        except BaseException:
            other.deactivate()
            raise
        mine = self.prepare()["pinned"]
        for name, pinned in other._prepared["pinned"].items():
            pinned.array[...] = mine[name].array   # same inputs on every stream
        return other

    # --- Runner.infer ---------------------------------------------------------------------

    def _buffer(self, name, nbytes):
        from tegra_ai.cuda import driver

        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self.buffers[name] = driver.DeviceBuffer(nbytes)
        return buf

    def _infer(self, feed):
        host_inputs = []      # keep shape-tensor arrays alive until the enqueue returned
        for t in self.io:
            if t["mode"] == "input":
                arr = np.ascontiguousarray(feed[t["name"]], dtype=t["dtype"])
                if t["shape_tensor"] or t["location"] == "host":
                    host_inputs.append(self._set_input(t, arr))
                    continue
                self._set_input(t, arr)
                buf = self._buffer(t["name"], arr.nbytes).upload(arr, int(self.stream))
                self.context.set_tensor_address(t["name"], int(buf))
        outputs, dds = {}, []
        for t in self.io:
            if t["mode"] == "output":
                shape = tuple(self.context.get_tensor_shape(t["name"]))
                if any(d < 0 for d in shape):
                    dds.append(t)
                    continue
                out = np.empty(shape, dtype=t["dtype"])
                self.context.set_tensor_address(t["name"], int(self._buffer(t["name"], max(out.nbytes, 1))))
                outputs[t["name"]] = out
        self._bind_output_allocators([t["name"] for t in dds])
        if not self.context.execute_async_v3(int(self.stream)):
            raise TegraAIError(f"TensorRT failed to run {self.engine_path}")
        for name, out in outputs.items():
            self.buffers[name].download(out, int(self.stream))
        for t in dds:
            shape = self._dds.shapes.get(t["name"])
            if shape is None:
                raise TegraAIError(f"TensorRT reported no shape for the data-dependent output {t['name']!r}")
            out = np.empty(shape, dtype=t["dtype"])
            if out.nbytes:
                self._dds.buffers[t["name"]].download(out, int(self.stream))
            outputs[t["name"]] = out
        del host_inputs
        if self._prepared is not None:
            self._bind_prepared()   # infer() rebound the context; the device API expects its own buffers
        return outputs

    def _bind_prepared(self):
        prep = self._prepared
        for t in self.io:
            if t["mode"] == "input":
                if t["shape_tensor"] or t["location"] == "host":
                    self._set_input(t, prep["pinned"][t["name"]].array)
                else:
                    self.context.set_input_shape(t["name"], tuple(prep["pinned"][t["name"]].shape))
        for t in self.io:
            if t["name"] in prep["device"]:
                self.context.set_tensor_address(t["name"], int(prep["device"][t["name"]]))
        self._bind_output_allocators(prep["dds"])


def shared_engine_factory(engine_path: str, **runner_kwargs):
    """A zero-argument factory of :class:`TensorRTRunner` (for ``ModelRuntime`` workers)
    that deserializes the engine once, on first use, and gives each runner its own
    execution context (and, for a dynamic-shape engine, its own profile slot)."""
    import threading

    shared, lock = {}, threading.Lock()

    def make():
        from tegra_ai.trt.loader import load_engine

        with lock:
            if "engine" not in shared:
                shared["engine"] = load_engine(engine_path)
        return TensorRTRunner(engine_path, loaded=shared["engine"], **runner_kwargs)
    return make
