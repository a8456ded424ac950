"""A synthetic CUDA workload behind the :class:`~tegra_ai.backend.base.Runner` interface:
a kernel that busy-waits a known time on the GPU, with optional host<->device copies of
inputs and outputs of given shapes through pinned host buffers.

It lets the benchmark harness and the pipeline be measured on any NVIDIA GPU (no
TensorRT, no model): whatever the harness adds on top of ``duration_us`` per iteration
is the harness's own overhead.

    w = CudaWorkloadRunner(500.0, inputs={"images": ((1, 3, 640, 640), "float16")},
                           outputs={"boxes": ((1, 100, 4), "float32")})
    with w:
        out = w.infer({"images": x})          # Runner API: H2D, kernel, D2H, synchronize
        w.upload(stream); w.enqueue(stream); w.download(stream)   # asynchronous, capturable
        other = w.fork()                      # own buffers for a second stream

The kernel reads ``%globaltimer`` (nanoseconds; on some GPUs it advances in steps of
about 1 us) in one thread per block until ``duration_us`` have passed, then counts the
launch in a device counter (:meth:`launches`). ``enqueue``/``upload``/``download`` do no
host synchronization and no pageable copies, so they can be captured in a CUDA graph.
Outputs hold zeros: this workload measures time, not arithmetic.

Only the existing CUDA helpers are used (``tegra_ai.cuda.compat``/``driver`` for both
cuda-python layouts, ``tegra_ai.kernels.loader`` for NVRTC and its on-disk cache).
"""

from __future__ import annotations

import ctypes
import math
import threading

import numpy as np

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.errors import EXIT_USAGE, TegraAIError

KERNEL_NAME = "tegra_ai_workload_spin"
MODULE_NAME = "workload"
SOURCE = rb"""
extern "C" __global__ void tegra_ai_workload_spin(unsigned long long duration_ns,
                                                  unsigned long long* counter)
{
    if (threadIdx.x != 0) return;
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    now = start;
    while (now - start < duration_ns) {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    }
    if (counter != 0 && blockIdx.x == 0) atomicAdd(counter, 1ULL);
}
"""

_modules = {}
_modules_lock = threading.Lock()


def _usage(msg: str) -> TegraAIError:
    return TegraAIError(msg, exit_code=EXIT_USAGE)


def _normalize_tensors(kind: str, tensors) -> dict:
    """{name: (shape, dtype)} -> {name: (tuple shape, numpy dtype)}, validated."""
    out = {}
    for name, spec in dict(tensors or {}).items():
        try:
            shape, dtype = spec
            shape = tuple(int(d) for d in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise _usage(f"workload {kind} {name!r}: expected (shape, dtype), got {spec!r} ({exc})") from None
        if any(d <= 0 for d in shape):
            raise _usage(f"workload {kind} {name!r}: dimensions must be positive, got {list(shape)}")
        if dtype.hasobject:
            raise _usage(f"workload {kind} {name!r}: dtype {dtype} has no fixed size")
        out[str(name)] = (shape, dtype)
    return out


def _load_function(ordinal: int):
    """The spin kernel for device ``ordinal``: compiled once per process through NVRTC
    (cached on disk by the kernel loader's key: source, target, NVRTC version)."""
    from tegra_ai.cuda.driver import compute_capability, ensure_context
    from tegra_ai.kernels import loader

    ensure_context(ordinal)
    with _modules_lock:
        if ordinal not in _modules:
            cc = compute_capability(ordinal)
            target = loader.choose_target(cc, loader.nvrtc_supported_archs())
            path = loader.cache_path(MODULE_NAME, loader.cache_key(SOURCE, target, loader.nvrtc_version()), target)
            try:
                image, kind = path.read_bytes(), "cache"
            except OSError:
                image, kind = loader.compile_nvrtc(SOURCE, f"{MODULE_NAME}.cu", target), "nvrtc"
                try:
                    from tegra_ai.util.atomic import atomic_write_bytes

                    atomic_write_bytes(path, image)
                except TegraAIError:
                    pass  # a read-only cache costs a compile per process
            module = loader.KernelModule(MODULE_NAME, image, loader.ImageSource(kind, path, target))
            _modules[ordinal] = module
        return _modules[ordinal].function(KERNEL_NAME)


class CudaWorkloadRunner(Runner):
    """A kernel that spins ``duration_us`` on the GPU, plus optional copies of
    ``inputs``/``outputs`` ({name: (shape, dtype)}) between pinned host and device memory.

    ``blocks`` spinning blocks (one thread each doing the timing) occupy that many SMs;
    several streams then overlap up to the GPU's SM count."""

    name = "cuda-workload"

    def __init__(self, duration_us: float, inputs: dict | None = None, outputs: dict | None = None, *,
                 blocks: int = 1, ordinal: int = 0):
        super().__init__()
        try:
            duration_us = float(duration_us)
        except (TypeError, ValueError):
            raise _usage(f"workload duration must be a number of microseconds, got {duration_us!r}") from None
        if not math.isfinite(duration_us) or duration_us < 0:
            raise _usage(f"workload duration must be a finite number >= 0 us, got {duration_us}")
        if int(blocks) < 1:
            raise _usage(f"workload blocks must be >= 1, got {blocks}")
        self.duration_us = duration_us
        self.inputs = _normalize_tensors("input", inputs)
        self.outputs = _normalize_tensors("output", outputs)
        clash = sorted(set(self.inputs) & set(self.outputs))
        if clash:
            raise _usage(f"workload tensor names used for both an input and an output: {', '.join(clash)}")
        self.blocks = int(blocks)
        self.ordinal = int(ordinal)
        self.host_inputs, self.host_outputs = {}, {}
        self.device_inputs, self.device_outputs = {}, {}
        self._owned = []
        self._function = None
        self._counter = None
        self._pinned = {}

    # --- Runner -----------------------------------------------------------------------

    def _activate(self):
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import DeviceBuffer, HostBuffer, check

        self._function = _load_function(self.ordinal)
        drv = compat.driver()
        self._pinned = {}
        for table, host, dev in ((self.inputs, self.host_inputs, self.device_inputs),
                                 (self.outputs, self.host_outputs, self.device_outputs)):
            for name, (shape, dtype) in table.items():
                pinned = HostBuffer(shape, dtype, self.ordinal)
                buf = DeviceBuffer(pinned.nbytes)
                check(drv.cuMemsetD8(int(buf), 0, max(1, pinned.nbytes)), "cuMemsetD8")
                self._owned += [pinned, buf]
                self._pinned[name] = pinned
                host[name] = pinned.array
                dev[name] = int(buf)
        self._counter = DeviceBuffer(8)
        check(drv.cuMemsetD8(int(self._counter), 0, 8), "cuMemsetD8")
        self._owned.append(self._counter)
        self._args = self._kernel_args()

    def _deactivate(self):
        from tegra_ai.cuda.driver import stream_synchronize

        try:
            stream_synchronize(0)
        finally:
            for obj in self._owned:
                obj.free()
            self._owned = []
            self.host_inputs, self.host_outputs = {}, {}
            self.device_inputs, self.device_outputs = {}, {}
            self._pinned = {}
            self._counter = None
            stream = getattr(self, "_infer_stream", None)
            if stream is not None:          # infer()'s stream: created once per activation
                stream.destroy()
                self._infer_stream = None

    def input_metadata(self) -> list:
        return [TensorMeta(n, dt.name, shape) for n, (shape, dt) in self.inputs.items()]

    def output_metadata(self) -> list:
        return [TensorMeta(n, dt.name, shape) for n, (shape, dt) in self.outputs.items()]

    def _infer(self, feed: dict) -> dict:
        from tegra_ai.cuda.driver import Stream

        for name, arr in feed.items():
            self.host_inputs[name][...] = np.asarray(arr, dtype=self.inputs[name][1])
        stream = getattr(self, "_infer_stream", None)
        if stream is None:
            stream = self._infer_stream = Stream()
        self.run_async(stream)
        stream.synchronize()
        return {name: arr.copy() for name, arr in self.host_outputs.items()}

    # --- device-level API (asynchronous; capturable in a CUDA graph) -------------------

    def _kernel_args(self):
        from tegra_ai.cuda.driver import kernel_args

        return kernel_args(ctypes.c_uint64(int(round(self.duration_us * 1000.0))), ctypes.c_uint64(int(self._counter)))

    def _require_active(self, what):
        if not self.active:
            raise TegraAIError(f"{self.name}: {what}() before activate()")

    def upload(self, stream=0) -> None:
        """Copy every input from its pinned host buffer to the device on ``stream``."""
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check, stream_handle

        self._require_active("upload")
        drv = compat.driver()
        h = stream_handle(stream)
        for name, dev in self.device_inputs.items():
            p = self._pinned[name]
            check(drv.cuMemcpyHtoDAsync(dev, p.ptr, p.nbytes, h), "cuMemcpyHtoDAsync")

    def enqueue(self, stream=0) -> None:
        """Launch the spin kernel on ``stream``."""
        from tegra_ai.cuda.driver import launch

        self._require_active("enqueue")
        launch(self._function, (self.blocks, 1, 1), (32, 1, 1), self._args, 0, stream)

    def download(self, stream=0) -> None:
        """Copy every output from the device to its pinned host buffer on ``stream``."""
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check, stream_handle

        self._require_active("download")
        drv = compat.driver()
        h = stream_handle(stream)
        for name, dev in self.device_outputs.items():
            p = self._pinned[name]
            check(drv.cuMemcpyDtoHAsync(p.ptr, dev, p.nbytes, h), "cuMemcpyDtoHAsync")

    def run_async(self, stream=0, transfers: bool = True) -> None:
        """upload + enqueue + download (or the kernel alone with ``transfers=False``)."""
        if transfers:
            self.upload(stream)
        self.enqueue(stream)
        if transfers:
            self.download(stream)

    def launches(self) -> int:
        """Kernel launches that completed so far (synchronizes the device)."""
        from tegra_ai.cuda import compat
        from tegra_ai.cuda.driver import check

        self._require_active("launches")
        drv = compat.driver()
        check(drv.cuCtxSynchronize(), "cuCtxSynchronize")
        out = np.zeros(1, dtype=np.uint64)
        check(drv.cuMemcpyDtoH(out.ctypes.data, int(self._counter), 8), "cuMemcpyDtoH")
        return int(out[0])

    def fork(self) -> "CudaWorkloadRunner":
        """An active runner of the same workload with its own buffers (one per stream)."""
        other = CudaWorkloadRunner(self.duration_us,
                                   {n: (s, d) for n, (s, d) in self.inputs.items()},
                                   {n: (s, d) for n, (s, d) in self.outputs.items()},
                                   blocks=self.blocks, ordinal=self.ordinal)
        other.activate()
        return other

    def calibrate(self, iterations: int = 20, stream=None) -> float:
        """Measured GPU time of one :meth:`enqueue` in microseconds (median over
        ``iterations`` launches, CUDA events), to compare with ``duration_us``."""
        from tegra_ai.cuda.driver import Event, Stream

        self._require_active("calibrate")
        s = stream if stream is not None else Stream()
        times = []
        self.enqueue(s)
        for _ in range(max(1, int(iterations))):
            a, b = Event(), Event()
            a.record(s)
            self.enqueue(s)
            b.record(s)
            times.append(b.elapsed_ms(a) * 1000.0)
        return float(np.median(times))
