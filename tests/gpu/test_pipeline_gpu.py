"""Pipeline and multi-model runtime on a real GPU: results in frame order, none lost,
bounded read-ahead (backpressure), each result handed out when its GPU work is done (not
when a later frame arrives), preprocessed frames equal to the NumPy reference,
detections equal to the reference post-processing, several concurrent CUDA workloads."""

import threading
import time

import numpy as np
import pytest

from tegra_ai.backend.base import Runner, TensorMeta
from tegra_ai.postprocess.detection import DetectionSpec, reference
from tegra_ai.preprocess.spec import PreprocessSpec

pytestmark = pytest.mark.gpu


class EchoRunner(Runner):
    """Device runner whose 'inference' copies its input to its output (optionally after
    a spin of ``spin_us`` on the GPU), or copies the next of ``heads`` (one per call)."""

    name = "echo"

    def __init__(self, in_shape, out_shape=None, spin_us=0.0, heads=None, counter=None):
        super().__init__()
        self.in_shape, self.spin_us, self.heads = in_shape, spin_us, heads
        self.out_shape = out_shape or in_shape
        self.counter = counter if counter is not None else [0]

    def _activate(self):
        from tegra_ai.backend.workload import CudaWorkloadRunner
        from tegra_ai.cuda.driver import DeviceBuffer

        self.spin = CudaWorkloadRunner(self.spin_us)
        self.spin.activate()
        self._in = DeviceBuffer(int(np.prod(self.in_shape)) * 4)
        self._out = DeviceBuffer(int(np.prod(self.out_shape)) * 4)
        self.device_inputs, self.device_outputs = {"images": int(self._in)}, {"out": int(self._out)}
        if self.heads is not None:
            self._heads = [DeviceBuffer(h.nbytes).upload(h) for h in self.heads]

    def input_metadata(self):
        return [TensorMeta("images", "float32", tuple(self.in_shape))]

    def output_metadata(self):
        return [TensorMeta("out", "float32", tuple(self.out_shape))]

    def _infer(self, feed):
        raise NotImplementedError

    def enqueue(self, stream=0):
        from tegra_ai.cuda.driver import copy_dtod

        if self.spin_us:
            self.spin.enqueue(stream)
        if self.heads is not None:
            src = self._heads[self.counter[0] % len(self._heads)]
            copy_dtod(int(self._out), int(src), src.nbytes, stream)
        else:
            copy_dtod(int(self._out), int(self._in), self._in.nbytes, stream)
        self.counter[0] += 1

    def fork(self):
        r = EchoRunner(self.in_shape, self.out_shape, self.spin_us, self.heads, self.counter)
        r.activate()
        return r


@pytest.mark.parametrize("streams", [1, 3])
@pytest.mark.parametrize("fmt", ["bgr8", "nv12"])
def test_frames_in_order_none_lost_equal_reference(rng, streams, fmt):
    from tegra_ai.preprocess.reference import preprocess_reference
    from tegra_ai.runtime.pipeline import Pipeline

    spec = PreprocessSpec(48, 64, input_format=fmt, resize="letterbox")
    shape = (90, 120, 3) if fmt == "bgr8" else (135, 120)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(40)]
    pulled = []

    def source():
        for i, f in enumerate(frames):
            pulled.append(i)
            yield f
    pipe = Pipeline(spec, EchoRunner((1,) + spec.output_shape, spin_us=200), streams=streams, source_queue=2)
    got = []
    for r in pipe.run(source()):
        # Backpressure: the reader is at most source_queue + streams (+1 in hand) ahead.
        assert len(pulled) - r.index <= 2 + streams + 2
        got.append(r)
    assert [r.index for r in got] == list(range(40))
    for r in got[::7]:
        want = preprocess_reference(spec, frames[r.index])
        np.testing.assert_allclose(r.outputs["out"][0], want, atol=1e-5)
    s = pipe.stats()
    assert s["frames"] == 40 and s["fps"] > 0 and all(v is not None for v in s["stage_ms"].values())


@pytest.mark.parametrize("streams", [1, 2, 4])
def test_result_does_not_wait_for_a_later_frame(rng, streams):
    """A camera hands over frame k+1 only after the consumer has frame k's result
    (a source that waits for it, 2 s at most). The pipeline must deliver frame k when
    its GPU work is done; before, it was delivered only when frame k+N came to reuse its
    lane, so this source timed out on every frame."""
    from tegra_ai.runtime.pipeline import Pipeline

    spec = PreprocessSpec(48, 64, resize="letterbox")
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(10)]
    delivered = [threading.Event() for _ in frames]
    timed_out = []

    def camera():
        for k, f in enumerate(frames):
            if k and not delivered[k - 1].wait(timeout=2.0):
                timed_out.append(k - 1)
            yield f
    pipe = Pipeline(spec, EchoRunner((1,) + spec.output_shape, spin_us=500), streams=streams)
    got = []
    for r in pipe.run(camera()):
        got.append(r.index)
        delivered[r.index].set()
    assert got == list(range(10))
    assert timed_out == [], f"results of frames {timed_out} waited for a later frame"


def test_page_locked_read_only_frames_are_uploaded_in_place(rng):
    """Frames from synthetic(pinned=True) are page-locked and read-only: the lanes
    upload them without staging (no pinned copy is even allocated) and the results equal
    the reference; a writable or pageable frame is staged."""
    from tegra_ai.cuda.driver import HostBuffer, is_page_locked
    from tegra_ai.preprocess.reference import preprocess_reference
    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import Pipeline

    hb = HostBuffer((64, 64), np.uint8)
    assert is_page_locked(hb.ptr, hb.nbytes) and is_page_locked(hb.array[10:].ctypes.data, 100)
    plain = np.zeros(1 << 16, np.uint8)
    assert not is_page_locked(plain.ctypes.data, plain.nbytes)

    spec = PreprocessSpec(48, 64, resize="letterbox")
    frames = list(sources.synthetic(12, 90, 120, seed=int(rng.integers(1 << 30)), distinct=3, pinned=True))
    assert not frames[0].flags.writeable and is_page_locked(frames[0].ctypes.data, frames[0].nbytes)
    pipe = Pipeline(spec, EchoRunner((1,) + spec.output_shape, spin_us=100), streams=2)
    got = list(pipe.run(frames))
    assert [r.index for r in got] == list(range(12))
    assert all(lane.src_host is None for lane in pipe._lanes)   # nothing was staged
    for r in got[:3]:
        np.testing.assert_allclose(r.outputs["out"][0], preprocess_reference(spec, frames[r.index]), atol=1e-5)
    list(pipe.run([np.array(frames[0])]))                       # a writable copy: staged
    assert pipe._lanes[0].src_host is not None


def test_live_source_slow_consumer_drops_oldest_and_counts(rng):
    """A paced (live) source and a consumer that falls behind: the pipeline drops its
    oldest queued frames (the default for a live source), counts them, keeps frame
    order, and latency is taken from the frames' capture timestamps."""
    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import Pipeline

    stamps = {}

    class Camera(sources.PacedSource):
        def __iter__(self):
            for f in super().__iter__():
                stamps[f.sequence] = f.timestamp
                yield f

    spec = PreprocessSpec(48, 64, resize="letterbox")
    cam = Camera(sources.synthetic(60, 90, 120), fps=200)
    pipe = Pipeline(spec, EchoRunner((1,) + spec.output_shape, spin_us=200), streams=2, source_queue=2)
    got, since_capture = [], []
    for r in pipe.run(cam):
        since_capture.append((time.perf_counter() - stamps[r.index]) * 1e3 - r.latency_ms)
        got.append(r.index)
        if len(got) <= 5:
            time.sleep(0.03)   # six frame periods per result
    s = pipe.stats()
    assert got == sorted(got) and got[-1] == 59
    assert s["dropped"]["queue"] > 0 and s["dropped"]["source"] == cam.dropped
    assert len(got) + s["dropped"]["queue"] + s["dropped"]["source"] == 60
    # latency_ms is capture -> hand-out: just under the time since capture seen here.
    assert all(0 <= d < 5 for d in since_capture), max(since_capture)


def test_detection_pipeline_equals_reference(rng):
    from tegra_ai.kernels.api import box_mapping
    from tegra_ai.runtime.pipeline import Pipeline
    import sys, os
    sys.path.insert(0, os.path.dirname(__file__))
    from test_detect_gpu import yolo_head

    spec = PreprocessSpec(320, 320, resize="letterbox")
    heads = [yolo_head(rng, 1, 2100, 80) for _ in range(3)]
    det = DetectionSpec()
    pipe = Pipeline(spec, EchoRunner((1, 3, 320, 320), (1, 84, 2100), heads=heads), detection=det, streams=2)
    frames = [rng.integers(0, 256, (240, 427, 3), dtype=np.uint8) for _ in range(9)]
    m = box_mapping(spec, 240, 427)
    for r in pipe.run(frames):
        want = reference(det, [heads[r.index % 3]], mappings=[m], image_sizes=[(240, 427)])[0]
        assert np.array_equal(r.detections.anchors, want.anchors)
        assert np.array_equal(r.detections.boxes, want.boxes)


def test_stop_keeps_frames_already_read(rng):
    from tegra_ai.runtime.pipeline import Pipeline
    from tegra_ai.runtime import sources

    spec = PreprocessSpec(32, 32)
    pipe = Pipeline(spec, EchoRunner((1, 3, 32, 32), spin_us=100), streams=2)
    out = []
    for r in pipe.run(sources.synthetic(10_000, 64, 64)):
        out.append(r.index)
        if r.index == 20:
            pipe.stop()
    assert out == list(range(len(out))) and 21 <= len(out) < 40


def test_runtime_runs_workloads_concurrently():
    """Three models of 2 ms GPU work each: their requests' [start, end] intervals (taken
    in the worker threads) overlap across models, i.e. the runtime runs them at once."""
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.runtime import ModelRuntime

    intervals = []

    class Timed(CudaWorkloadRunner):
        def _infer(self, feed):
            t0 = time.perf_counter()
            out = super()._infer(feed)
            intervals.append((self.tag, t0, time.perf_counter()))
            return out

    def make(tag):
        def factory():
            r = Timed(2000, inputs={"x": ((1, 16), "float32")}, outputs={"y": ((1, 4), "float32")})
            r.tag = tag
            return r
        return factory

    feed = {"x": np.zeros((1, 16), np.float32)}
    with ModelRuntime({t: make(t) for t in "abc"}, queue_size=4) as rt:
        futs = [rt.submit(name, feed) for _ in range(10) for name in rt.models]
        assert all(f.result()["y"].shape == (1, 4) for f in futs)
    assert len(intervals) == 30
    overlaps = sum(1 for i, (ta, s0, e0) in enumerate(intervals) for tb, s1, e1 in intervals[i + 1:]
                   if ta != tb and s0 < e1 and s1 < e0)
    assert overlaps >= 10, overlaps


@pytest.mark.parametrize("fmt", ["bgr8", "nv12", "gray8"])
def test_gpu_crops_equal_reference(rng, fmt):
    """Cascade crops: one preprocessing launch over views into the frame (its row pitch)."""
    from tegra_ai.runtime.crops import GpuCropper, crop_rects, crops_reference

    order = "gray" if fmt == "gray8" else "rgb"
    spec = PreprocessSpec(24, 32, input_format=fmt, channel_order=order, resize="letterbox",
                          mean=(0.0,) if order == "gray" else (0.0, 0.0, 0.0), std=(1.0,) if order == "gray" else (1.0,) * 3)
    h, w = 120, 160
    shape = {"bgr8": (h, w, 3), "nv12": (h * 3 // 2, w), "gray8": (h, w)}[fmt]
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    xy = rng.uniform(-10, 150, (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.5, 80, (20, 2))], 1)
    boxes[0] = (0, 0, w, h)                 # the whole frame
    boxes[1] = (w - 1.2, h - 0.7, w + 5, h + 5)  # a sliver at the corner
    rects = crop_rects(boxes, h, w, fmt)
    got = GpuCropper(spec)(image, rects).astype(np.float64)
    want = crops_reference(spec, image, rects)
    assert got.shape == want.shape and np.isfinite(got).all()
    assert np.abs(got - want).max() <= 1.01 / 255, np.abs(got - want).max()


def test_ensemble_on_gpu_equals_cpu():
    pytest.importorskip("onnxruntime", reason="the example models run on ONNX Runtime")
    import os
    from tegra_ai.models import HERE
    from tegra_ai.runtime.ensemble import EnsembleRunner, load

    desc = load(os.path.join(HERE, "digits-ensemble.json"))
    with np.load(os.path.join(HERE, "digits_grid_samples.npz")) as d:
        images = d["images"][:20]
    with EnsembleRunner(desc, device="cpu") as cpu, EnsembleRunner(desc, device="gpu") as gpu:
        for im in images:
            a, b = cpu.run(im), gpu.run(im)
            assert a["pair"]["class"] == b["pair"]["class"]
            assert [(d["box"], d["label"]) for d in a["cascade"]["detections"]] == \
                   [(d["box"], d["label"]) for d in b["cascade"]["detections"]]


def test_registered_capture_ring_is_uploaded_in_place(rng):
    """A PacedSource whose ring is registered once with CUDA (cuMemHostRegister): its
    frames are page-locked and read-only, so the lanes upload them from the ring (no
    staging buffer, stage_in 0), each result equals the reference of its own frame (a
    buffer is not refilled while its upload may read it), every buffer comes back, and
    close() unregisters. Arbitrary NumPy frames are staged and their copy is timed."""
    from tegra_ai.cuda.driver import HostRegistration, is_page_locked
    from tegra_ai.errors import TegraAIError
    from tegra_ai.preprocess.reference import preprocess_reference
    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import Pipeline

    mem = sources.page_aligned(1 << 20)
    assert not is_page_locked(mem.ctypes.data, mem.nbytes)
    with HostRegistration(mem) as reg:
        assert is_page_locked(mem.ctypes.data, mem.nbytes) and reg.seconds > 0
        with pytest.raises(TegraAIError, match="cuMemHostRegister"):
            HostRegistration(mem[:4096])          # already registered: CUDA refuses
    assert not is_page_locked(mem.ctypes.data, mem.nbytes)

    spec = PreprocessSpec(48, 64, resize="letterbox")
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(30)]
    cam = sources.PacedSource(images, fps=300, buffers=4, memory="registered")
    pipe = Pipeline(spec, EchoRunner((1,) + spec.output_shape, spin_us=300), streams=2)
    got = list(pipe.run(cam))
    ring = cam.ring
    assert ring.registration is not None and is_page_locked(ring.memory.ctypes.data, ring.memory.nbytes)
    assert all(lane.src_host is None for lane in pipe._lanes)   # nothing was staged
    s = pipe.stats()
    assert len(got) + s["dropped"]["queue"] + s["dropped"]["source"] == 30 and len(got) >= 10
    for r in got:
        np.testing.assert_allclose(r.outputs["out"][0], preprocess_reference(spec, images[r.index]), atol=1e-5)
    assert all(r.stages_ms["stage_in"] == 0.0 for r in got)
    assert ring.free == 4                                       # every buffer given back
    cam.close()
    assert not is_page_locked(ring.memory.ctypes.data, ring.memory.nbytes)

    pipe.reset_stats()
    got = list(pipe.run(images[:6]))                            # arbitrary NumPy frames: staged, copy timed
    assert all(r.stages_ms["stage_in"] > 0 for r in got)
    assert pipe.stats()["stage_ms"]["stage_in"] > 0
