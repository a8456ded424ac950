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
  the ring full is lost. It yields :class:`Frame` (image, capture timestamp, sequence).

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
    """A frame as a capture device hands it over (V4L2's ``struct v4l2_buffer``)."""

    image: np.ndarray
    timestamp: float   # time.perf_counter() seconds at capture
    sequence: int      # the source's frame counter; a gap is a frame it dropped


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
    """

    live = True

    def __init__(self, images, fps: float, buffers: int = 4, clock=time.perf_counter, sleep=time.sleep):
        if not fps > 0:
            raise TegraAIError(f"paced source: fps must be positive, got {fps}", exit_code=EXIT_USAGE)
        if int(buffers) < 1:
            raise TegraAIError(f"paced source: buffers must be at least 1, got {buffers}", exit_code=EXIT_USAGE)
        self.images, self.fps, self.buffers = images, float(fps), int(buffers)
        self.clock, self.sleep = clock, sleep
        self.dropped = 0
        self.captured = 0

    def __iter__(self):
        images = iter(self.images)
        ring = collections.deque()
        t0 = None
        upcoming = next(images, _NONE)  # the next frame's image, taken ahead (no sleep past the end)
        while True:
            now = self.clock()
            if t0 is None:
                t0 = now  # VIDIOC_STREAMON: the first frame is captured now
            # Frames captured since the last read, in capture order.
            while upcoming is not _NONE and t0 + self.captured / self.fps <= now:
                if len(ring) < self.buffers:
                    ring.append(Frame(upcoming, t0 + self.captured / self.fps, self.captured))
                else:
                    self.dropped += 1
                self.captured += 1
                upcoming = next(images, _NONE)
            if ring:
                yield ring.popleft()
            elif upcoming is _NONE:
                return
            else:
                self.sleep(max(0.0, t0 + self.captured / self.fps - now))


_NONE = object()
