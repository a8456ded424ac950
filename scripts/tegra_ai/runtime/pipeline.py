"""The end-to-end pipeline: source -> GPU preprocessing -> inference -> post-processing
-> results in frame order, over N CUDA streams.

    pipe = Pipeline(preprocess_spec, runner, detection=DetectionSpec(), streams=3)
    for r in pipe.run(sources.video("cam.mp4")):      # FrameResult, in frame order
        print(r.index, len(r.detections))
    print(pipe.stats())                                # FPS, latency, per-stage time, drops

Each stream is a *lane* that owns everything one frame needs, allocated once: a pinned
host buffer and a device buffer for the source frame, a preprocessor, the runner's
input and output buffers (``runner.fork()`` for lanes past the first) and a detection
post-processor whose results land in pinned host memory. A frame goes to the next free
lane; at most N frames are on the GPU.

A result is handed out as soon as its GPU work has completed and every earlier frame's
result has been handed out (frame order): a completion thread waits on each lane's last
event in frame order and wakes the consumer, so a frame never waits for a later frame
to arrive (at a camera's pace that wait was N frame periods). The wait yields the CPU
(``CU_EVENT_BLOCKING_SYNC``) unless ``spin_wait``, as trtexec without ``--useSpinWait``.
With every lane busy the consumer has nothing else to do and waits for the oldest frame
itself. Latency runs from the frame's capture timestamp (a
:class:`~tegra_ai.runtime.sources.Frame`) or from when the reader took it.

A reader thread takes frames from the source into a queue of ``source_queue`` frames.
When the queue is full (the consumer or the GPU is slower than the source),
``queue_policy`` decides: ``"block"`` stops reading the source (files: nothing is lost),
``"drop-oldest"`` drops the oldest queued frame (live sources: the newest frame is the
one worth processing). The default is ``"drop-oldest"`` for a source with ``live = True``
(:class:`~tegra_ai.runtime.sources.PacedSource`) and ``"block"`` otherwise. Dropped
frames are counted in :meth:`Pipeline.stats` (``dropped.queue``), and so are frames the
source itself lost (gaps in :class:`~tegra_ai.runtime.sources.Frame` sequence numbers,
``dropped.source``); results keep the source's frame numbers, so a drop is a gap in
``FrameResult.index``.

A read-only frame in page-locked memory (a :class:`~tegra_ai.runtime.sources.CaptureRing`
registered once with ``cuMemHostRegister``, as a capture path that writes into buffers the
application allocated once) is uploaded from where it is; any other frame is first copied
into the lane's pinned buffer, and that host copy is timed as the stage ``stage_in`` (work
the frame needs, so it counts in the stage sum). A frame with ``release`` (a capture
buffer, V4L2's ``VIDIOC_QBUF``) is given back once: right after that copy, or when its
result is handed out, or when it is dropped or never started.

The runner is a device runner: ``device_inputs`` / ``device_outputs`` (name -> device
pointer), ``output_metadata()``, ``enqueue(stream)`` and ``fork()``
(:class:`~tegra_ai.backend.workload.CudaWorkloadRunner`, or a TensorRT engine).
With ``serialize_inference`` (default) one frame's inference waits for the previous
frame's, as one engine that fills the GPU would: frames then overlap only their
copies, pre- and post-processing with other frames' inference.
"""

from __future__ import annotations

import collections
import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError

log = logging.getLogger("tegra_ai.runtime.pipeline")

# ``stage_in``: host time copying a pageable frame into the lane's pinned buffer (0 for a
# frame uploaded in place); the others: device time between the lane's events.
DEVICE_STAGES = ("upload", "preprocess", "infer", "postprocess")
STAGES = ("stage_in",) + DEVICE_STAGES
QUEUE_POLICIES = ("block", "drop-oldest")


@dataclass
class FrameResult:
    index: int                           # the source's frame number (gaps: dropped frames)
    detections: object = None            # Detections (with a DetectionSpec)
    outputs: dict | None = None          # host copies of the model outputs (without one)
    latency_ms: float = 0.0              # frame captured (or read) -> result handed out
    stages_ms: dict = field(default_factory=dict)  # device time of each stage


@dataclass
class PipelineStats:
    frames: int = 0
    wall_s: float = 0.0
    latency_ms: list = field(default_factory=list)
    stages_ms: dict = field(default_factory=lambda: {s: [] for s in STAGES})
    host_ms: list = field(default_factory=list)    # host time to enqueue one frame
    source_wait_ms: list = field(default_factory=list)  # GPU idle, waiting for a frame
    dropped_queue: int = 0     # dropped by the pipeline (queue_policy "drop-oldest")
    dropped_source: int = 0    # lost by the source (gaps in Frame.sequence)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        def med(v):
            return round(statistics.median(v), 4) if v else None

        def p99(v):
            return round(statistics.quantiles(v, n=100)[98], 4) if len(v) >= 2 else med(v)
        return {"frames": self.frames, "wall_s": round(self.wall_s, 4), "fps": round(self.fps, 2),
                "latency_ms": {"p50": med(self.latency_ms), "p99": p99(self.latency_ms)},
                "stage_ms": {s: med(v) for s, v in self.stages_ms.items()},
                "host_enqueue_ms": med(self.host_ms), "source_wait_ms": med(self.source_wait_ms),
                "dropped": {"queue": self.dropped_queue, "source": self.dropped_source}}


class _Lane:
    """One CUDA stream and everything one frame needs. ``start`` enqueues a frame,
    ``wait`` blocks until its GPU work is done (completion thread), ``finish`` reads
    the result (consumer thread, after ``wait``)."""

    def __init__(self, pipe, runner):
        from tegra_ai.cuda.driver import Event, Stream
        from tegra_ai.kernels.api import Preprocessor

        self.pipe, self.runner = pipe, runner
        self.stream = Stream()
        self.pre = Preprocessor(pipe.spec)
        # events[4] ends the frame's work; the consumer spins on it when every lane is
        # busy (nothing else to do), the completion thread waits on ``done`` recorded
        # right after it, yielding the CPU unless spin_wait.
        self.events = [Event() for _ in range(5)]
        self.done = Event(blocking=not pipe.spin_wait)
        self.src_host = self.src_dev = None
        self.src_shape = None
        self.pending = None  # (index, host_ms, stage_in_ms, frame read by the GPU in place or None)
        self.staged = False  # the last frame was copied (its source buffer is free again)
        self.post = None
        self.out_host = {}
        if pipe.detection is not None:
            from tegra_ai.postprocess.gpu import DetectionPostprocessor

            metas = runner.output_metadata()
            self.head_ptrs = [runner.device_outputs[m.name] for m in metas]
            self.post = DetectionPostprocessor(pipe.detection, [m.shape for m in metas], dtype=metas[0].dtype)
        elif pipe.copy_outputs:
            from tegra_ai.cuda.driver import HostBuffer

            for m in runner.output_metadata():
                self.out_host[m.name] = HostBuffer(m.shape, m.dtype)

    def _ensure_source(self, frame, staged):
        from tegra_ai.cuda.driver import DeviceBuffer, HostBuffer

        if self.src_shape != frame.shape:
            # Only when the frame size changes (once per source): never in the steady state.
            self.src_host = None
            self.src_dev = DeviceBuffer(frame.nbytes)
            self.src_shape = frame.shape
        if staged and self.src_host is None:
            self.src_host = HostBuffer(frame.shape, np.uint8)

    def start(self, index, frame, serial_event):
        from tegra_ai.cuda.driver import check, is_page_locked, stream_handle
        from tegra_ai.cuda import compat
        from tegra_ai.kernels.api import _source_size
        from tegra_ai.kernels.layout import SourceImage

        t0 = time.perf_counter()
        pipe, s, ev = self.pipe, int(self.stream), self.events
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w = _source_size(pipe.spec.input_format, frame)
        # A read-only frame in page-locked memory (the source promises not to change it
        # while the pipeline holds it) is uploaded from where it is; any other frame is
        # first copied into this lane's pinned buffer (the source may reuse its memory).
        in_place = not frame.flags.writeable and is_page_locked(frame.ctypes.data, frame.nbytes)
        self._ensure_source(frame, staged=not in_place)
        stage_in_ms = 0.0
        if in_place:
            src_ptr = frame.ctypes.data
        else:
            t_copy = time.perf_counter()
            pipe._copy(self.src_host.array, frame)
            stage_in_ms = (time.perf_counter() - t_copy) * 1e3
            src_ptr = self.src_host.ptr
        self.staged = not in_place
        drv = compat.driver()
        ev[0].record(s)
        check(drv.cuMemcpyHtoDAsync(int(self.src_dev), src_ptr, frame.nbytes, stream_handle(s)),
              "cuMemcpyHtoDAsync")
        ev[1].record(s)
        maps = self.pre.run_device([SourceImage(int(self.src_dev), h, w)],
                                   self.runner.device_inputs[pipe.input_name], s)
        ev[2].record(s)
        if serial_event is not None:
            self.stream.wait(serial_event)
        self.runner.enqueue(s)
        ev[3].record(s)
        if self.post is not None:
            self.post.set_mappings(maps, [(h, w)], s)
            self.post.launch(self.head_ptrs, s)
        else:
            for name, hb in self.out_host.items():
                check(drv.cuMemcpyDtoHAsync(hb.ptr, self.runner.device_outputs[name], hb.nbytes,
                                            stream_handle(s)), "cuMemcpyDtoHAsync")
        ev[4].record(s)
        self.done.record(s)
        self.pending = (index, (time.perf_counter() - t0) * 1e3, stage_in_ms, frame if in_place else None)
        return ev[3]

    def wait(self):
        """Until the frame's work is done (the completion thread; yields the CPU)."""
        self.done.synchronize()

    def sync(self):
        """Until the frame's work is done (the consumer, when it has nothing else to do)."""
        self.events[4].synchronize()

    def finish(self) -> FrameResult:
        index, host_ms, stage_in_ms, _ = self.pending
        ev = self.events
        ev[4].synchronize()  # already complete: returns at once
        self.pending = None
        stages = {"stage_in": stage_in_ms}
        stages.update({name: ev[i + 1].elapsed_ms(ev[i]) for i, name in enumerate(DEVICE_STAGES)})
        r = FrameResult(index, stages_ms=stages)
        if self.post is not None:
            r.detections = self.post.results()[0]
        else:
            r.outputs = {n: hb.array.copy() for n, hb in self.out_host.items()}
        st = self.pipe._stats
        st.host_ms.append(host_ms)
        for k, v in stages.items():
            st.stages_ms[k].append(v)
        return r


class _Copier:
    """Copies a frame into pinned memory, split by rows over ``threads`` threads for
    frames of 1 MiB and more (NumPy releases the GIL while copying; one core's memory
    bandwidth is the limit for a 6 MB 1080p frame)."""

    def __init__(self, threads: int):
        self.threads = int(threads)
        self.pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="tegra-ai-copy")

    def __call__(self, dst, src):
        rows = src.shape[0]
        if self.pool is None or src.nbytes < (1 << 20) or rows < self.threads:
            np.copyto(dst, src)
            return
        cut = [rows * i // self.threads for i in range(self.threads + 1)]
        futs = [self.pool.submit(np.copyto, dst[a:b], src[a:b]) for a, b in zip(cut[1:-1], cut[2:])]
        np.copyto(dst[:cut[1]], src[:cut[1]])
        for f in futs:
            f.result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


def _unpack(item, counter):
    """(index, image, capture time, release or None) of a source item: a sources.Frame
    or a plain array."""
    seq = getattr(item, "sequence", None)
    if seq is not None and hasattr(item, "image") and hasattr(item, "timestamp"):
        return int(seq), item.image, float(item.timestamp), getattr(item, "release", None)
    return counter, item, time.perf_counter(), None


def _release(item):
    """Give a frame's capture buffer back to its source (``sources.Frame.release``)."""
    if item[3] is not None:
        item[3]()


class _Flow:
    """What the reader, the completion thread and the consumer share, under one lock."""

    def __init__(self, capacity, policy, stats):
        self.cv = threading.Condition()
        self.frames = collections.deque()   # (index, image, t_capture, release), read and not started
        self.capacity, self.policy, self.stats = capacity, policy, stats
        self.stop = False
        self.ended = False          # the reader has finished
        self.source_error = None    # raised after the frames read before it
        self.gpu_error = None       # raised at once
        self.completed = 0          # frames started before this one are known complete


def _reader(frames, flow):
    last = -1
    try:
        for counter, item in enumerate(frames):
            item = _unpack(item, counter)
            index = item[0]
            with flow.cv:
                if flow.stop:
                    _release(item)
                    return
                if index > last + 1:
                    flow.stats.dropped_source += index - last - 1
                last = max(last, index)
                while len(flow.frames) >= flow.capacity:
                    if flow.policy == "drop-oldest":
                        _release(flow.frames.popleft())
                        flow.stats.dropped_queue += 1
                        break
                    flow.cv.wait()
                    if flow.stop:
                        _release(item)
                        return
                flow.frames.append(item)
                flow.cv.notify_all()
    except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer after earlier frames
        with flow.cv:
            flow.source_error = exc
    finally:
        with flow.cv:
            flow.ended = True
            flow.cv.notify_all()


def _completion(flow, todo):
    """Waits for each started frame in start order and counts it complete. A lane may
    have been restarted by the time it is waited for (the consumer waited itself): the
    wait then covers the later frame too, which is still true of this one."""
    while True:
        job = todo.get()
        if job is None:
            return
        ticket, lane = job
        try:
            lane.wait()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            with flow.cv:
                flow.gpu_error = exc
                flow.cv.notify_all()
            return
        with flow.cv:
            flow.completed = max(flow.completed, ticket + 1)
            flow.cv.notify_all()


def stream_results(lanes, frames, *, stats, capacity, policy, serialize=True, flow_hook=None, thread_init=None):
    """Generator of results in frame order over ``lanes`` (objects with ``start(index,
    image, serial) -> serial``, ``wait()`` and ``sync()`` (until the frame's work is
    done), ``finish() -> FrameResult`` and ``pending``; a lane whose ``staged`` is true
    after ``start`` has copied the frame, so its source buffer is given back at once,
    else when the frame's result is handed out). The scheduling of
    :meth:`Pipeline.run`, apart from CUDA so that it is testable with stand-in lanes.

    The consumer starts every frame it can (a free lane and a queued frame), hands out
    the oldest frame once it is complete, and otherwise sleeps until the reader or the
    completion thread wakes it; with every lane busy it waits for the oldest frame
    itself."""
    flow = _Flow(capacity, policy, stats)
    if flow_hook is not None:
        flow_hook(flow)
    todo = queue.SimpleQueue()
    free = collections.deque(lanes)
    inflight = collections.deque()     # (ticket, lane, capture time, release), in frame order
    tickets = 0

    def complete():
        if thread_init is not None:
            thread_init()
        _completion(flow, todo)

    def launch(item):
        nonlocal serial, tickets
        index, image, t, release = item
        lane = free.popleft()
        try:
            serial = lane.start(index, image, serial if serialize else None)
        except BaseException:
            free.appendleft(lane)
            _release(item)
            raise
        if release is not None and getattr(lane, "staged", False):
            release()        # copied: the source may refill its buffer now
            release = None
        inflight.append((tickets, lane, t, release))
        todo.put((tickets, lane))
        tickets += 1

    reader = threading.Thread(target=_reader, args=(frames, flow), name="tegra-ai-source", daemon=True)
    waiter = threading.Thread(target=complete, name="tegra-ai-completion", daemon=True)
    waiter.start()
    reader.start()
    serial = None
    t_start = None
    try:
        while True:
            item = None
            with flow.cv:
                t_wait = None
                while True:
                    if flow.gpu_error is not None:
                        raise flow.gpu_error
                    if free and flow.frames:
                        item = flow.frames.popleft()
                        flow.cv.notify_all()   # room in the queue: a blocked reader goes on
                        break
                    if inflight and (flow.completed > inflight[0][0] or not free):
                        break
                    if flow.ended and not flow.frames and not inflight:
                        if flow.source_error is not None:
                            raise flow.source_error
                        return
                    if t_wait is None and not inflight:
                        t_wait = time.perf_counter()
                    flow.cv.wait()
                if t_wait is not None and t_start is not None:
                    stats.source_wait_ms.append((time.perf_counter() - t_wait) * 1e3)
            if item is not None:
                if t_start is None:
                    t_start = time.perf_counter()
                launch(item)
                continue
            ticket, lane, t, release = inflight.popleft()
            lane.sync()   # at once if complete; with every lane busy, the wait is here
            r = lane.finish()
            free.append(lane)
            if release is not None:
                release()    # its upload is done: the buffer goes back to the source
            # Frames waiting for a lane go to the GPU before the consumer runs.
            while free:
                with flow.cv:
                    if not flow.frames:
                        break
                    item = flow.frames.popleft()
                    flow.cv.notify_all()
                launch(item)
            r.latency_ms = (time.perf_counter() - t) * 1e3
            stats.frames += 1
            stats.latency_ms.append(r.latency_ms)
            yield r
    finally:
        with flow.cv:
            flow.stop = True
            flow.cv.notify_all()
        todo.put(None)
        waiter.join()
        # A consumer that stopped early, or an error: the GPU may still write into the
        # lanes' buffers; wait for it before they are reused.
        for _, lane, _, release in inflight:
            try:
                lane.sync()
            except Exception:  # noqa: BLE001 - the first error is already propagating
                pass
            lane.pending = None
            if release is not None:
                release()
        reader.join(timeout=5)
        with flow.cv:
            while flow.frames:   # read, never started: their buffers go back too
                _release(flow.frames.popleft())
        if t_start is not None:
            stats.wall_s += time.perf_counter() - t_start
        if stats.dropped_queue or stats.dropped_source:
            log.warning("pipeline dropped %d frame(s) in its queue, the source lost %d",
                        stats.dropped_queue, stats.dropped_source)


class Pipeline:
    """``streams`` lanes; ``source_queue`` frames read ahead; ``queue_policy`` (None: by
    the source's ``live``) when that queue is full; ``spin_wait``: the completion thread
    spins instead of yielding the CPU; ``copy_threads``: threads that copy a large
    pageable frame into pinned memory. :meth:`close` stops the copy threads."""

    def __init__(self, spec, runner, *, detection=None, streams: int = 2, input_name: str | None = None,
                 serialize_inference: bool = True, source_queue: int = 4, copy_outputs: bool = True,
                 queue_policy: str | None = None, spin_wait: bool = False, copy_threads: int = 1):
        if int(streams) < 1:
            raise TegraAIError(f"streams must be at least 1, got {streams}", exit_code=EXIT_USAGE)
        if int(source_queue) < 1:
            raise TegraAIError(f"source_queue must be at least 1, got {source_queue}", exit_code=EXIT_USAGE)
        if queue_policy is not None and queue_policy not in QUEUE_POLICIES:
            raise TegraAIError(f"queue_policy must be one of {', '.join(QUEUE_POLICIES)}, got {queue_policy!r}",
                               exit_code=EXIT_USAGE)
        if int(copy_threads) < 1:
            raise TegraAIError(f"copy_threads must be at least 1, got {copy_threads}", exit_code=EXIT_USAGE)
        for attr in ("enqueue", "fork", "output_metadata"):
            if not hasattr(runner, attr):
                raise TegraAIError(f"pipeline: runner {getattr(runner, 'name', runner)!r} has no {attr}(); the "
                                   "pipeline needs a device runner (TensorRT engine or CUDA workload)",
                                   exit_code=EXIT_USAGE)
        runner.activate()  # device_inputs / device_outputs exist once active
        self.spec, self.detection, self.copy_outputs = spec, detection, copy_outputs
        names = list(runner.device_inputs)
        if input_name is None:
            if len(names) != 1:
                raise TegraAIError(f"pipeline: the model has inputs {', '.join(names)}; name the image input",
                                   exit_code=EXIT_USAGE)
            input_name = names[0]
        if input_name not in runner.device_inputs:
            raise TegraAIError(f"pipeline: the model has no input {input_name!r} ({', '.join(names)})",
                               exit_code=EXIT_USAGE)
        meta = {m.name: m for m in runner.input_metadata()}[input_name]
        want = (1,) + tuple(spec.output_shape)
        # Dynamic dimensions (None) were fixed when the runner was prepared.
        fits = len(meta.shape) == len(want) and all(d is None or d == w for d, w in zip(meta.shape, want))
        if not fits or meta.dtype != spec.dtype:
            raise TegraAIError(f"pipeline: input {input_name} is {meta.dtype} {list(meta.shape)}, the preprocessing "
                               f"spec makes {spec.dtype} {list(want)}", exit_code=EXIT_USAGE)
        self.input_name = input_name
        self.serialize_inference = serialize_inference
        self.source_queue = int(source_queue)
        self.queue_policy = queue_policy
        self.spin_wait = bool(spin_wait)
        self._copy = _Copier(copy_threads)
        self._lanes = [_Lane(self, runner)] + [_Lane(self, runner.fork()) for _ in range(int(streams) - 1)]
        self._stats = PipelineStats()
        self._flow = None

    def stats(self) -> dict:
        return self._stats.summary()

    def reset_stats(self) -> None:
        self._stats = PipelineStats()

    def run_sequential(self, frames):
        """The same work without overlap: one frame at a time, waiting for each (the
        loop a user writes by hand; benchmarks compare against it)."""
        lane = self._lanes[0]
        for i, item in enumerate(frames):
            index, image, t, release = _unpack(item, i)
            try:
                lane.start(index, image, None)
                lane.sync()
                r = lane.finish()
            finally:
                if release is not None:
                    release()
            r.latency_ms = (time.perf_counter() - t) * 1e3
            self._stats.frames += 1
            self._stats.latency_ms.append(r.latency_ms)
            yield r

    def stop(self):
        """Stop reading the source; frames already read are still processed and returned."""
        flow = self._flow
        if flow is not None:
            with flow.cv:
                flow.stop = True
                flow.cv.notify_all()

    def _policy(self, frames) -> str:
        if self.queue_policy is not None:
            return self.queue_policy
        return "drop-oldest" if getattr(frames, "live", False) else "block"

    def run(self, frames):
        """Generator of :class:`FrameResult` in frame order, each as soon as its GPU work
        is done."""
        from tegra_ai.cuda.driver import ensure_context

        def hook(flow):
            self._flow = flow

        yield from stream_results(self._lanes, frames, stats=self._stats, capacity=self.source_queue,
                                  policy=self._policy(frames), serialize=self.serialize_inference,
                                  flow_hook=hook, thread_init=ensure_context)

    def close(self):
        self._copy.close()
