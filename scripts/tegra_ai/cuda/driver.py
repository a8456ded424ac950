"""Small helpers over the CUDA driver API: errors as TegraAIError, the primary context
(shared with PyTorch, CuPy and TensorRT), device buffers, streams and events.

Pointers and streams are plain integers so that any framework's can be passed in
(``tensor.data_ptr()``, ``cupy_array.data.ptr``, ``torch.cuda.current_stream().cuda_stream``).
"""

from __future__ import annotations

import ctypes
import functools
import threading

import numpy as np

from tegra_ai.cuda import compat
from tegra_ai.errors import EXIT_UNAVAILABLE, TegraAIError


def check(result, what: str = "CUDA call"):
    """Unpack a cuda-python ``(err, *values)`` tuple; raise TegraAIError on failure."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        raise TegraAIError(f"{what} failed: {error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def error_name(err) -> str:
    drv = compat.driver()
    try:
        if isinstance(err, drv.CUresult):
            status, name = drv.cuGetErrorName(err)
            if int(status) == 0 and name:
                return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - error formatting must not raise
        pass
    return getattr(err, "name", None) or str(err)


_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _primary_context(ordinal: int):
    drv = compat.driver()
    try:
        result = drv.cuInit(0)
    except Exception as exc:  # noqa: BLE001 - cuda-python 13 raises when libcuda.so is absent
        raise TegraAIError(f"no NVIDIA driver on this machine ({exc.__class__.__name__})",
                           hint="this needs an NVIDIA GPU with its driver", exit_code=EXIT_UNAVAILABLE) from None
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise TegraAIError(f"cuInit failed: {error_name(err)}", hint="this needs an NVIDIA GPU with its driver",
                           exit_code=EXIT_UNAVAILABLE)
    device = check(drv.cuDeviceGet(ordinal), "cuDeviceGet")
    return check(drv.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain"), device


def ensure_context(ordinal: int = 0):
    """Make device ``ordinal``'s primary context current on this thread (idempotent)."""
    with _lock:
        ctx, device = _primary_context(ordinal)
    drv = compat.driver()
    check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    return device


def compute_capability(ordinal: int = 0) -> tuple:
    drv = compat.driver()
    device = ensure_context(ordinal)
    attr = drv.CUdevice_attribute
    major = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device))
    minor = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device))
    return int(major), int(minor)


def device_attribute(name: str, ordinal: int = 0) -> int:
    drv = compat.driver()
    device = ensure_context(ordinal)
    return int(check(drv.cuDeviceGetAttribute(getattr(drv.CUdevice_attribute, name), device)))


class DeviceBuffer:
    """Device memory owned by Python; ``int(buf)`` is the pointer."""

    def __init__(self, nbytes: int):
        drv = compat.driver()
        ensure_context()
        self.nbytes = int(nbytes)
        self.ptr = int(check(drv.cuMemAlloc(max(1, self.nbytes)), f"cuMemAlloc({self.nbytes})"))

    def __int__(self):
        return self.ptr

    def free(self):
        if self.ptr:
            compat.driver().cuMemFree(self.ptr)
            self.ptr = 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def upload(self, array: np.ndarray, stream: int = 0, offset: int = 0):
        array = np.ascontiguousarray(array)
        if offset + array.nbytes > self.nbytes:
            raise TegraAIError(f"upload of {array.nbytes} bytes does not fit a {self.nbytes}-byte buffer")
        copy_htod(self.ptr + offset, array, stream)
        return self

    def download(self, array: np.ndarray, stream: int = 0, offset: int = 0) -> np.ndarray:
        copy_dtoh(array, self.ptr + offset, stream)
        return array


class HostBuffer:
    """Page-locked host memory (``cuMemHostAlloc``) viewed as a NumPy array: transfers
    from and to it are truly asynchronous and run at full bus speed."""

    def __init__(self, shape, dtype, ordinal: int = 0):
        drv = compat.driver()
        ensure_context(ordinal)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.ptr = int(check(drv.cuMemHostAlloc(max(1, self.nbytes), 0), f"cuMemHostAlloc({self.nbytes})"))
        raw = (ctypes.c_uint8 * max(1, self.nbytes)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8, count=self.nbytes).view(self.dtype).reshape(self.shape)
        self.array[...] = 0

    def __int__(self):
        return self.ptr

    def free(self):
        if self.ptr:
            self.array = None
            compat.driver().cuMemFreeHost(self.ptr)
            self.ptr = 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class HostRegistration:
    """An existing host array page-locked for CUDA once (``cuMemHostRegister``) until
    :meth:`close`: the way to make a capture library's own buffers (a V4L2 USERPTR ring,
    a GStreamer pool) uploadable without a staging copy. CUDA Driver API,
    cuMemHostRegister: "Page-locks the memory range ... added to the same tracking
    mechanism as cuMemHostAlloc"; "best used sparingly to register staging areas"
    (pinning is slow, milliseconds for megabytes: register a ring once, never per frame,
    ``seconds`` says what it cost); "supported only on I/O coherent devices that have a
    non-zero value for the device attribute CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED"
    (checked first, not guessed from the SoC: CUDA for Tegra, "I/O Coherency");
    "The memory page-locked by this
    function must be unregistered with cuMemHostUnregister()", whose "base address must
    be the same one specified to cuMemHostRegister()". The registration keeps a
    reference to ``array`` so that its memory cannot be freed while registered, and
    unregisters before letting it go. Flags 0: with unified addressing (every 64-bit
    CUDA platform) the host pointer itself is valid in cuMemcpy*. Registering a range
    that overlaps a registered one fails (CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED): a
    page-aligned allocation per ring (``sources.page_aligned``) avoids sharing a page."""

    def __init__(self, array: np.ndarray, ordinal: int = 0):
        import time

        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.nbytes == 0:
            raise TegraAIError("only a non-empty C-contiguous NumPy array can be registered with CUDA")
        drv = compat.driver()
        device = ensure_context(ordinal)
        supported = check(drv.cuDeviceGetAttribute(
            drv.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED, device))
        if not int(supported):
            raise TegraAIError("this GPU cannot page-lock existing host memory (CU_DEVICE_ATTRIBUTE_HOST_REGISTER_"
                               "SUPPORTED is 0)", hint="capture into HostBuffer (cuMemHostAlloc) memory instead",
                               exit_code=EXIT_UNAVAILABLE)
        self.ptr, self.nbytes = int(array.ctypes.data), int(array.nbytes)
        t0 = time.perf_counter()
        check(drv.cuMemHostRegister(self.ptr, self.nbytes, 0), f"cuMemHostRegister({self.nbytes} bytes)")
        self.seconds = time.perf_counter() - t0
        self.array = array

    def close(self):
        if getattr(self, "array", None) is not None:
            check(compat.driver().cuMemHostUnregister(self.ptr), "cuMemHostUnregister")
            self.array = None   # only now may the memory be freed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def is_page_locked(ptr: int, nbytes: int) -> bool:
    """True when host memory ``[ptr, ptr + nbytes)`` is page-locked (``cuMemHostAlloc`` or
    ``cuMemHostRegister``), so the GPU can copy from it asynchronously without staging:
    ``cuPointerGetAttribute(CU_POINTER_ATTRIBUTE_MEMORY_TYPE)`` answers
    ``CU_MEMORYTYPE_HOST`` for such memory and ``CUDA_ERROR_INVALID_VALUE`` for pageable
    memory (CUDA Driver API, cuPointerGetAttribute)."""
    drv = compat.driver()
    attr = drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE
    host = int(drv.CUmemorytype.CU_MEMORYTYPE_HOST)
    for p in (int(ptr), int(ptr) + max(int(nbytes), 1) - 1):
        result = drv.cuPointerGetAttribute(attr, p)
        if int(result[0]) != 0 or int(result[1]) != host:
            return False
    return True


def copy_htod(dst: int, array: np.ndarray, stream: int = 0):
    drv = compat.driver()
    check(drv.cuMemcpyHtoDAsync(int(dst), array.ctypes.data, array.nbytes, stream_handle(stream)), "cuMemcpyHtoDAsync")


def copy_dtoh(array: np.ndarray, src: int, stream: int = 0, synchronize: bool = True):
    drv = compat.driver()
    check(drv.cuMemcpyDtoHAsync(array.ctypes.data, int(src), array.nbytes, stream_handle(stream)), "cuMemcpyDtoHAsync")
    if synchronize:
        stream_synchronize(stream)
    return array


def stream_handle(stream):
    """A ``CUstream`` for an integer handle, a cuda-python stream, or 0 (legacy default)."""
    drv = compat.driver()
    if isinstance(stream, drv.CUstream):
        return stream
    return drv.CUstream(int(stream or 0))


def copy_dtod(dst: int, src: int, nbytes: int, stream=0):
    check(compat.driver().cuMemcpyDtoDAsync(int(dst), int(src), int(nbytes), stream_handle(stream)),
          "cuMemcpyDtoDAsync")


def memset_async(ptr: int, value: int, nbytes: int, stream=0):
    check(compat.driver().cuMemsetD8Async(int(ptr), int(value), int(nbytes), stream_handle(stream)),
          "cuMemsetD8Async")


def stream_synchronize(stream=0):
    check(compat.driver().cuStreamSynchronize(stream_handle(stream)), "cuStreamSynchronize")


class Stream:
    """A non-blocking stream; ``int(stream)`` is its handle."""

    def __init__(self):
        drv = compat.driver()
        ensure_context()
        self.handle = check(drv.cuStreamCreate(drv.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")

    def __int__(self):
        return int(self.handle)

    def synchronize(self):
        stream_synchronize(self.handle)

    def wait(self, event: "Event"):
        """Later work on this stream waits for ``event`` (no host synchronisation)."""
        check(compat.driver().cuStreamWaitEvent(self.handle, event.handle, 0), "cuStreamWaitEvent")

    def destroy(self):
        if getattr(self, "handle", None) is not None:
            compat.driver().cuStreamDestroy(self.handle)
            self.handle = None


class Event:
    """A timing event. ``blocking=True`` makes :meth:`synchronize` yield the CPU
    (``CU_EVENT_BLOCKING_SYNC``) instead of spinning, as trtexec without --useSpinWait."""

    def __init__(self, blocking: bool = False):
        drv = compat.driver()
        ensure_context()
        flags = drv.CUevent_flags.CU_EVENT_BLOCKING_SYNC if blocking else drv.CUevent_flags.CU_EVENT_DEFAULT
        self.handle = check(drv.cuEventCreate(flags), "cuEventCreate")

    def record(self, stream=0):
        check(compat.driver().cuEventRecord(self.handle, stream_handle(stream)), "cuEventRecord")

    def synchronize(self):
        check(compat.driver().cuEventSynchronize(self.handle), "cuEventSynchronize")

    def query(self) -> bool:
        """True when the work before the event has completed."""
        return int(compat.driver().cuEventQuery(self.handle)[0]) == 0

    def elapsed_ms(self, start: "Event") -> float:
        drv = compat.driver()
        check(drv.cuEventSynchronize(self.handle), "cuEventSynchronize")
        return float(check(drv.cuEventElapsedTime(start.handle, self.handle), "cuEventElapsedTime"))

    def destroy(self):
        if self.handle is not None:
            compat.driver().cuEventDestroy(self.handle)
            self.handle = None

    def __del__(self):
        try:
            self.destroy()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Graph:
    """A CUDA graph captured from the work ``fn(stream)`` enqueues on ``stream``:

        g = Graph.capture(lambda s: runner.run_async(s), stream)
        g.launch(stream)

    ``fn`` must not synchronize nor copy from pageable memory (capture would fail)."""

    def __init__(self, graph, exec_handle):
        self.graph, self.exec = graph, exec_handle

    @classmethod
    def capture(cls, fn, stream) -> "Graph":
        drv = compat.driver()
        h = stream_handle(stream)
        mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        check(drv.cuStreamBeginCapture(h, mode), "cuStreamBeginCapture")
        try:
            fn(stream)
        except BaseException:
            drv.cuStreamEndCapture(h)
            raise
        graph = check(drv.cuStreamEndCapture(h), "cuStreamEndCapture (the captured work is not capturable)")
        exec_handle = check(compat.graph_instantiate(graph), "cuGraphInstantiate")
        return cls(graph, exec_handle)

    def launch(self, stream=0):
        check(compat.driver().cuGraphLaunch(self.exec, stream_handle(stream)), "cuGraphLaunch")

    def destroy(self):
        drv = compat.driver()
        if self.exec is not None:
            drv.cuGraphExecDestroy(self.exec)
            self.exec = None
        if self.graph is not None:
            drv.cuGraphDestroy(self.graph)
            self.graph = None

    def __del__(self):
        try:
            self.destroy()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def kernel_args(*values) -> tuple:
    """Pack kernel arguments for cuLaunchKernel: ``(holder, pointer_array)``.

    Each value is a ctypes object (scalar or Structure); the returned holder keeps them
    alive until the launch call returns (the driver copies arguments at launch).
    """
    holder = list(values)
    pointers = (ctypes.c_void_p * len(holder))(*[ctypes.addressof(v) for v in holder])
    return holder, pointers


def launch(function, grid, block, args, shared_bytes: int = 0, stream=0):
    """cuLaunchKernel with ``args`` from :func:`kernel_args`."""
    drv = compat.driver()
    holder, pointers = args
    check(
        drv.cuLaunchKernel(function, int(grid[0]), int(grid[1]), int(grid[2]),
                           int(block[0]), int(block[1]), int(block[2]),
                           int(shared_bytes), stream_handle(stream), ctypes.addressof(pointers), 0),
        "cuLaunchKernel",
    )
    del holder
