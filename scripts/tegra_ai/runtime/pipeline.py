"""The end-to-end pipeline: source -> GPU preprocessing -> inference -> post-processing
-> results in frame order, over N CUDA streams.

    pipe = Pipeline(preprocess_spec, runner, detection=DetectionSpec(), streams=3)
    for r in pipe.run(sources.video("cam.mp4")):      # FrameResult, in frame order
        print(r.index, len(r.detections))
    print(pipe.stats())                                # FPS, per-stage latency

Each stream is a *lane* that owns everything one frame needs, allocated once: a pinned
host buffer and a device buffer for the source frame, a preprocessor, the runner's
input and output buffers (``runner.fork()`` for lanes past the first) and a detection
post-processor whose results land in pinned host memory. Frame ``i`` goes to lane
``i % N``; before reusing a lane the pipeline waits for its previous frame (``i - N``),
whose result is then the oldest in flight: results come out in frame order, at most N
frames are on the GPU and ``source_queue`` decoded frames wait on the host
(backpressure; nothing is dropped). A reader thread decodes the source meanwhile.

The runner is a device runner: ``device_inputs`` / ``device_outputs`` (name -> device
pointer), ``output_metadata()``, ``enqueue(stream)`` and ``fork()``
(:class:`~tegra_ai.backend.workload.CudaWorkloadRunner`, or a TensorRT engine).
With ``serialize_inference`` (default) one frame's inference waits for the previous
frame's, as one engine that fills the GPU would: frames then overlap only their
copies, pre- and post-processing with other frames' inference.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError

log = logging.getLogger("tegra_ai.runtime.pipeline")

STAGES = ("upload", "preprocess", "infer", "postprocess")


@dataclass
class FrameResult:
    index: int
    detections: object = None            # Detections (with a DetectionSpec)
    outputs: dict | None = None          # host copies of the model outputs (without one)
    latency_ms: float = 0.0              # frame decoded -> result on the host
    stages_ms: dict = field(default_factory=dict)  # device time of each stage


@dataclass
class PipelineStats:
    frames: int = 0
    wall_s: float = 0.0
    latency_ms: list = field(default_factory=list)
    stages_ms: dict = field(default_factory=lambda: {s: [] for s in STAGES})
    host_ms: list = field(default_factory=list)    # host time to enqueue one frame
    source_wait_ms: list = field(default_factory=list)

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
                "host_enqueue_ms": med(self.host_ms), "source_wait_ms": med(self.source_wait_ms)}


class _Lane:
    def __init__(self, pipe, runner):
        from tegra_ai.cuda.driver import Event, Stream
        from tegra_ai.kernels.api import Preprocessor

        self.pipe, self.runner = pipe, runner
        self.stream = Stream()
        self.pre = Preprocessor(pipe.spec)
        self.events = [Event() for _ in range(5)]
        self.src_host = self.src_dev = None
        self.src_shape = None
        self.pending = None  # (index, t_read, t_host, mapping)
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

    def _ensure_source(self, frame):
        from tegra_ai.cuda.driver import DeviceBuffer, HostBuffer

        if self.src_shape == frame.shape:
            return
        # Only when the frame size changes (once per source): never in the steady state.
        self.src_host = HostBuffer(frame.shape, np.uint8)
        self.src_dev = DeviceBuffer(frame.nbytes)
        self.src_shape = frame.shape

    def start(self, index, frame, t_read, serial_event):
        from tegra_ai.cuda.driver import check, stream_handle
        from tegra_ai.cuda import compat
        from tegra_ai.kernels.api import _source_size
        from tegra_ai.kernels.layout import SourceImage

        t0 = time.perf_counter()
        pipe, s, ev = self.pipe, int(self.stream), self.events
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w = _source_size(pipe.spec.input_format, frame)
        self._ensure_source(frame)
        np.copyto(self.src_host.array, frame)
        drv = compat.driver()
        ev[0].record(s)
        check(drv.cuMemcpyHtoDAsync(int(self.src_dev), self.src_host.ptr, frame.nbytes, stream_handle(s)),
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
        self.pending = (index, t_read, (time.perf_counter() - t0) * 1e3)
        return ev[3]

    def finish(self) -> FrameResult:
        index, t_read, host_ms = self.pending
        ev = self.events
        ev[4].synchronize()
        self.pending = None
        stages = {name: ev[i + 1].elapsed_ms(ev[i]) for i, name in enumerate(STAGES)}
        r = FrameResult(index, stages_ms=stages)
        if self.post is not None:
            r.detections = self.post.results()[0]
        else:
            r.outputs = {n: hb.array.copy() for n, hb in self.out_host.items()}
        r.latency_ms = (time.perf_counter() - t_read) * 1e3
        st = self.pipe._stats
        st.frames += 1
        st.latency_ms.append(r.latency_ms)
        st.host_ms.append(host_ms)
        for k, v in stages.items():
            st.stages_ms[k].append(v)
        return r


_END = object()


class Pipeline:
    def __init__(self, spec, runner, *, detection=None, streams: int = 2, input_name: str | None = None,
                 serialize_inference: bool = True, source_queue: int = 4, copy_outputs: bool = True):
        if int(streams) < 1:
            raise TegraAIError(f"streams must be at least 1, got {streams}", exit_code=EXIT_USAGE)
        if int(source_queue) < 1:
            raise TegraAIError(f"source_queue must be at least 1, got {source_queue}", exit_code=EXIT_USAGE)
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
        self._lanes = [_Lane(self, runner)] + [_Lane(self, runner.fork()) for _ in range(int(streams) - 1)]
        self._stats = PipelineStats()
        self._stop = threading.Event()

    def stats(self) -> dict:
        return self._stats.summary()

    def reset_stats(self) -> None:
        self._stats = PipelineStats()

    def run_sequential(self, frames):
        """The same work without overlap: one frame at a time, waiting for each (the
        loop a user writes by hand; benchmarks compare against it)."""
        lane = self._lanes[0]
        for i, frame in enumerate(frames):
            t = time.perf_counter()
            lane.start(i, frame, t, None)
            yield lane.finish()

    def stop(self):
        """Stop reading the source; frames already read are still processed and returned."""
        self._stop.set()

    def _reader(self, frames, q):
        try:
            for i, frame in enumerate(frames):
                if self._stop.is_set():
                    break
                while True:  # bounded queue; wake up to notice stop()
                    try:
                        q.put((i, frame, time.perf_counter()), timeout=0.1)
                        break
                    except queue.Full:
                        if self._stop.is_set():
                            return
        except BaseException as exc:  # noqa: BLE001 - re-raised in run()
            q.put(exc)
            return
        q.put(_END)

    def run(self, frames):
        """Generator of :class:`FrameResult` in frame order."""
        q = queue.Queue(maxsize=self.source_queue)
        reader = threading.Thread(target=self._reader, args=(frames, q), name="tegra-ai-source", daemon=True)
        self._stop.clear()
        reader.start()
        lanes, n = self._lanes, len(self._lanes)
        serial = None
        t_start = None
        k = 0
        try:
            while True:
                t_wait = time.perf_counter()
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                self._stats.source_wait_ms.append((time.perf_counter() - t_wait) * 1e3)
                index, frame, t_read = item
                if t_start is None:
                    t_start = time.perf_counter()
                lane = lanes[k % n]
                if lane.pending is not None:
                    yield lane.finish()
                infer_done = lane.start(index, frame, t_read, serial if self.serialize_inference else None)
                serial = infer_done
                k += 1
            for j in range(k, k + n):  # drain in frame order
                lane = lanes[j % n]
                if lane.pending is not None:
                    yield lane.finish()
        finally:
            self._stop.set()
            for j in range(k, k + n):  # a consumer that stopped early: still wait for the GPU
                lane = lanes[j % n]
                if lane.pending is not None:
                    lane.events[4].synchronize()
                    lane.pending = None
            reader.join(timeout=5)
            if t_start is not None:
                self._stats.wall_s += time.perf_counter() - t_start
