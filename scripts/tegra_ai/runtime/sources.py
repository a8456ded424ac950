"""Frame sources for the pipeline: iterables of uint8 NumPy frames in the layout of a
:class:`~tegra_ai.preprocess.spec.PreprocessSpec` input format (``bgr8``/``rgb8``
HxWx3, ``gray8`` HxW, ``nv12`` (H*3/2)xW as Jetson decoders produce it).

* :func:`synthetic` - random frames (benchmarks, tests);
* :func:`image_folder` - every image of a folder, sorted by name (OpenCV);
* :func:`video` - a file, a camera index or a GStreamer pipeline string (OpenCV's
  ``VideoCapture``; a string containing ``!`` is opened with ``CAP_GSTREAMER``, e.g.
  ``nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink``);
* :class:`PacedSource` - any of these replayed as a live camera: frames arrive at a fixed
  rate whether or not they are taken, into a ring of a few buffers; a frame that finds
  the ring full is lost. It yields :class:`Frame` (image, capture timestamp, sequence,
  release). With ``memory="registered"`` the ring is a :class:`CaptureRing` registered
  once with CUDA, as a capture path that writes into buffers the application allocated
  once: the pipeline uploads those frames without a host copy.

A source may yield plain arrays (the pipeline stamps them when it reads them) or
:class:`Frame` objects (the pipeline measures latency from ``timestamp`` and counts gaps
in ``sequence`` as frames the source dropped). A source with ``live = True`` makes the
pipeline drop its oldest queued frame rather than stall the source (``queue_policy``).
"""

from __future__ import annotations

import collections
import os
import time
from typing import NamedTuple

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.lazy import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def bgr_to_format(frame: np.ndarray, input_format: str) -> np.ndarray:
    """Convert an OpenCV BGR frame to ``input_format`` (host, OpenCV)."""
    if input_format == "bgr8":
        return frame
    cv2 = require("cv2", extra="opencv", purpose="reading images and video")
    if input_format == "rgb8":
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if input_format == "gray8":
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    h, w = frame.shape[:2]
    # I420: the Y plane, then the U and V planes of (h/2) x (w/2) each, packed back to back
    # (not row-aligned when h is not a multiple of 4).
    chroma = i420[h:].reshape(-1)
    q = (h // 2) * (w // 2)
    y, u, v = i420[:h], chroma[:q].reshape(h // 2, w // 2), chroma[q:2 * q].reshape(h // 2, w // 2)
    uv = np.stack([u, v], -1).reshape(h // 2, w)
    return np.ascontiguousarray(np.concatenate([y, uv], 0))


def synthetic(count: int, height: int, width: int, input_format: str = "bgr8", seed: int = 0, distinct: int = 8,
              pinned: bool = False):
    """``count`` frames cycling through ``distinct`` random ones (no generator cost per frame).

    ``pinned``: the frames live in page-locked memory and are read-only, as frames a
    capture path writes into CUDA-accessible buffers; the pipeline then uploads them
    without a host copy (needs a CUDA GPU)."""
    if count < 0 or height <= 0 or width <= 0:
        raise TegraAIError(f"synthetic source: count {count}, size {height}x{width} must be positive",
                           exit_code=EXIT_USAGE)
    rng = np.random.default_rng(seed)
    shape = {"bgr8": (height, width, 3), "rgb8": (height, width, 3), "gray8": (height, width),
             "nv12": (height * 3 // 2, width)}[input_format]
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(max(1, min(distinct, count or 1)))]
    if pinned:
        frames = [_page_locked_copy(f) for f in frames]
    for i in range(count):
        yield frames[i % len(frames)]


def _page_locked_copy(frame):
    """A read-only copy of ``frame`` in page-locked memory that keeps its buffer alive."""
    from tegra_ai.cuda.driver import HostBuffer

    buf = HostBuffer(frame.shape, frame.dtype)
    np.copyto(buf.array, frame)
    out = buf.array
    root = out
    while isinstance(root, np.ndarray):
        root = root.base
    root._owner = buf   # the ctypes array under the view holds the allocation
    out.flags.writeable = False
    return out


def image_folder(path: str, input_format: str = "bgr8"):
    if not os.path.isdir(path):
        raise TegraAIError(f"image folder {path} does not exist", exit_code=EXIT_USAGE)
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise TegraAIError(f"image folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})", exit_code=EXIT_USAGE)
    cv2 = require("cv2", extra="opencv", purpose="reading images")
    for n in names:
        img = cv2.imread(os.path.join(path, n), cv2.IMREAD_COLOR)
        if img is None:
            raise TegraAIError(f"cannot read image {os.path.join(path, n)}", exit_code=EXIT_USAGE)
        yield bgr_to_format(img, input_format)


def video(uri, input_format: str = "bgr8", limit: int | None = None):
    cv2 = require("cv2", extra="opencv", purpose="reading video")
    if isinstance(uri, str) and uri.isdigit():
        uri = int(uri)
    if isinstance(uri, str) and "!" in uri:
        cap = cv2.VideoCapture(uri, cv2.CAP_GSTREAMER)
    else:
        if isinstance(uri, str) and not os.path.exists(uri) and "://" not in uri:
            raise TegraAIError(f"video {uri} does not exist", exit_code=EXIT_USAGE)
        cap = cv2.VideoCapture(uri)
    if not cap.isOpened():
        raise TegraAIError(f"OpenCV cannot open video source {uri!r}", exit_code=EXIT_USAGE,
                           hint="for a GStreamer pipeline, OpenCV must be built with GStreamer")
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok:
                return
            n += 1
            yield bgr_to_format(frame, input_format)
    finally:
        cap.release()


class Frame(NamedTuple):
    """A frame as a capture device hands it over (V4L2's ``struct v4l2_buffer``).

    ``release``: when the image lives in one of the source's capture buffers, the call
    that gives the buffer back to the source (V4L2 ``VIDIOC_QBUF``); whoever consumes the
    frame calls it exactly once, when nothing reads the image any more (the pipeline
    does). None: the image is the consumer's to keep."""

    image: np.ndarray
    timestamp: float   # time.perf_counter() seconds at capture
    sequence: int      # the source's frame counter; a gap is a frame it dropped
    release: object = None


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def page_aligned(nbytes: int) -> np.ndarray:
    """``nbytes`` of zeroed uint8 starting on a page boundary, and a whole number of pages
    long (what ``posix_memalign`` gives a V4L2 USERPTR application): no other allocation
    shares its pages, so it can be registered with CUDA on its own."""
    size = -(-int(nbytes) // PAGE) * PAGE
    raw = np.zeros(size + PAGE, np.uint8)
    start = (-raw.ctypes.data) % PAGE
    return raw[start:start + size]


class CaptureRing:
    """``count`` frame buffers of ``shape`` (uint8) in one page-aligned allocation made
    once: the buffers an application hands a capture driver (V4L2 ``V4L2_MEMORY_USERPTR``;
    NvBufSurface and GStreamer pools are the same idea). ``register=True`` page-locks the
    whole ring once with CUDA (:class:`~tegra_ai.cuda.driver.HostRegistration`,
    ``cuMemHostRegister``), so the pipeline uploads captured frames from where they are,
    without a staging copy; ``register_s`` is what that cost.

    A buffer is the driver's (free, or being filled) or the application's (``acquire``
    to ``release``); ``release`` twice is an error, as ``VIDIOC_QBUF`` of a queued buffer
    fails with EINVAL (V4L2 uAPI, ioctl VIDIOC_QBUF). :meth:`close` unregisters; frames
    still held keep the memory alive but are no longer page-locked."""

    def __init__(self, count: int, shape, register: bool = False, clock=time.perf_counter):
        import threading

        if int(count) < 1:
            raise TegraAIError(f"capture ring: at least 1 buffer, got {count}", exit_code=EXIT_USAGE)
        self.shape = tuple(int(d) for d in shape)
        frame = int(np.prod(self.shape, dtype=np.int64))
        stride = -(-frame // PAGE) * PAGE   # each buffer starts on a page, as USERPTR drivers require
        self.memory = page_aligned(stride * int(count))
        self.buffers = [self.memory[i * stride:i * stride + frame].reshape(self.shape) for i in range(int(count))]
        self.clock = clock
        self._free = collections.deque((i, float("-inf")) for i in range(int(count)))   # (index, free since)
        self._lock = threading.Lock()
        self.registration = None
        self.register_s = 0.0
        if register:
            from tegra_ai.cuda.driver import HostRegistration

            self.registration = HostRegistration(self.memory)
            self.register_s = self.registration.seconds

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._free)

    def acquire(self, at: float | None = None):
        """The index of a buffer that was free at time ``at`` (default: now; the driver
        starts filling it), or None. A source that decides captures after the fact asks
        for the capture's time, so a buffer given back later does not count."""
        with self._lock:
            for k, (index, since) in enumerate(self._free):
                if at is None or since <= at:
                    del self._free[k]
                    return index
            return None

    def release(self, index: int) -> None:
        with self._lock:
            if any(i == index for i, _ in self._free):
                raise TegraAIError(f"capture ring: buffer {index} released twice")
            self._free.append((index, self.clock()))

    def frame(self, index: int) -> np.ndarray:
        """A read-only view of buffer ``index`` (what the application may do with it)."""
        view = self.buffers[index].view()
        view.flags.writeable = False
        return view

    def close(self) -> None:
        if self.registration is not None:
            self.registration.close()
            self.registration = None


class PacedSource:
    """``images`` (any source above) replayed as a live camera at ``fps``.

    Streaming starts at the first read. Frame ``s`` is captured at ``t0 + s / fps`` and
    waits in a ring of ``buffers`` frames until it is read. A frame captured while the
    ring is full is lost, as a V4L2 capture driver fills only buffers the application
    has queued back (V4L2 uAPI, "Streaming I/O (Memory Mapping)": a full outgoing queue
    leaves the driver no buffer; ``struct v4l2_buffer.sequence`` counts frames, so the
    application sees the loss as a gap). ``buffers=4`` is OpenCV's V4L2 default
    (``DEFAULT_V4L_BUFFERS`` in modules/videoio/src/cap_v4l.cpp). A read before the next
    capture sleeps until it. Every captured frame consumes one image of ``images``, so a
    frame's content follows its sequence number. ``dropped`` counts lost frames.

    ``memory`` says where captured frames live:

    * None: they are the arrays ``images`` yields (arbitrary NumPy frames; the pipeline
      copies each into pinned memory first, and reports that copy as the ``stage_in``
      stage). The ring only counts frames.
    * ``"registered"``: a :class:`CaptureRing` of ``buffers`` buffers allocated at the
      first capture and registered once with CUDA (``cuMemHostRegister``), as a capture
      application does with its USERPTR buffers. Each frame is written into a free buffer
      and handed out read-only with ``Frame.release``; a buffer is busy from its capture
      until the frame is released (the pipeline releases it when its upload is done), so
      a frame is lost when no buffer has been given back. The simulated driver writes a
      frame (a host copy on the reading thread) just before its capture time when a
      buffer is free then, as a DMA completes at its end-of-frame timestamp; the
      pipeline uploads it in place.
    * ``"pageable"``: the same ring, not registered (the pipeline stages each frame and
      releases its buffer right after that copy).

    :meth:`close` unregisters the ring: call it once the consumer is done with the frames
    (after ``Pipeline.run`` returned), never while an upload may still read them.
    """

    live = True
    MEMORY = (None, "registered", "pageable")

    def __init__(self, images, fps: float, buffers: int = 4, clock=time.perf_counter, sleep=time.sleep,
                 memory: str | None = None):
        if not fps > 0:
            raise TegraAIError(f"paced source: fps must be positive, got {fps}", exit_code=EXIT_USAGE)
        if int(buffers) < 1:
            raise TegraAIError(f"paced source: buffers must be at least 1, got {buffers}", exit_code=EXIT_USAGE)
        if memory not in self.MEMORY:
            raise TegraAIError(f"paced source: memory must be one of registered, pageable or None, got {memory!r}",
                               exit_code=EXIT_USAGE)
        self.images, self.fps, self.buffers = images, float(fps), int(buffers)
        self.clock, self.sleep, self.memory = clock, sleep, memory
        self.ring = None
        self.fill_s = 0.0   # how long the simulated driver's last write of a frame took
        self.dropped = 0
        self.captured = 0

    def _fill(self, image, at):
        """The driver writes ``image`` into a buffer free at time ``at``: its index, or None."""
        image = np.asarray(image, dtype=np.uint8)
        if self.ring is None:
            self.ring = CaptureRing(self.buffers, image.shape, register=self.memory == "registered", clock=self.clock)
        elif image.shape != self.ring.shape:
            raise TegraAIError(f"paced source: frame {self.captured} is {image.shape}, the capture ring holds "
                               f"{self.ring.shape} (a camera does not change format while streaming)",
                               exit_code=EXIT_USAGE)
        index = self.ring.acquire(at)
        if index is not None:
            np.copyto(self.ring.buffers[index], image)
        return index

    def __iter__(self):
        images = iter(self.images)
        pending = collections.deque()   # captured, not read yet
        t0 = None
        upcoming = next(images, _NONE)  # the next frame's image, taken ahead (no sleep past the end)
        filled = None                   # ring buffer already holding ``upcoming`` (memory set)
        if self.memory is not None and self.ring is None and upcoming is not _NONE:
            # VIDIOC_REQBUFS before VIDIOC_STREAMON: allocating and registering the ring
            # is set-up, not part of the first frame's latency.
            shape = np.shape(upcoming)
            self.ring = CaptureRing(self.buffers, shape, register=self.memory == "registered", clock=self.clock)
        try:
            while True:
                now = self.clock()
                if t0 is None:
                    t0 = now  # VIDIOC_STREAMON: the first frame is captured now
                # Frames captured since the last read, in capture order.
                while upcoming is not _NONE and t0 + self.captured / self.fps <= now:
                    stamp = t0 + self.captured / self.fps
                    if self.memory is None:
                        if len(pending) < self.buffers:
                            pending.append(Frame(upcoming, stamp, self.captured))
                        else:
                            self.dropped += 1
                    else:
                        index = filled if filled is not None else self._fill(upcoming, stamp)
                        filled = None
                        if index is None:
                            self.dropped += 1
                        else:
                            pending.append(Frame(self.ring.frame(index), stamp, self.captured,
                                                 _Release(self.ring, index)))
                    self.captured += 1
                    upcoming = next(images, _NONE)
                if pending:
                    yield pending.popleft()
                elif upcoming is _NONE:
                    return
                else:
                    due = t0 + self.captured / self.fps
                    if self.memory is not None and filled is None:
                        # The DMA of the next frame ends at its timestamp: write it just
                        # before (the last fill's time + 2 ms ahead), not while the
                        # previous frame is being processed.
                        start = due - self.fill_s - 0.002
                        if start > now:
                            self.sleep(start - now)
                        t_fill = self.clock()
                        filled = self._fill(upcoming, t_fill)
                        now = self.clock()
                        self.fill_s = now - t_fill
                    self.sleep(max(0.0, due - now))
        finally:
            if filled is not None:
                self.ring.release(filled)
            for f in pending:
                if f.release is not None:
                    f.release()

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


class _Release:
    """``Frame.release`` of a ring buffer: gives it back once (a second call would hand
    back a buffer the driver may be filling with a later frame)."""

    __slots__ = ("ring", "index")

    def __init__(self, ring, index):
        self.ring, self.index = ring, index

    def __call__(self):
        if self.index is None:
            raise TegraAIError("capture ring: a frame's buffer released twice")
        index, self.index = self.index, None
        self.ring.release(index)


_NONE = object()
