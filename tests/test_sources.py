"""Pipeline frame sources on the CPU: synthetic frames, an image folder and a video file
through OpenCV, and the BGR -> NV12 conversion (the layout Jetson decoders produce)."""

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.runtime import sources


def test_synthetic_shapes_and_count():
    for fmt, shape in (("bgr8", (6, 8, 3)), ("gray8", (6, 8)), ("nv12", (9, 8))):
        frames = list(sources.synthetic(5, 6, 8, fmt, distinct=2))
        assert len(frames) == 5 and all(f.shape == shape and f.dtype == np.uint8 for f in frames)
        assert frames[0] is frames[2] and not np.array_equal(frames[0], frames[1])
    with pytest.raises(TegraAIError, match="must be positive"):
        list(sources.synthetic(1, 0, 8))


def test_bgr_to_nv12_matches_opencv_planes():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    nv12 = sources.bgr_to_format(bgr, "nv12")
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    assert nv12.shape == (9, 8)
    assert np.array_equal(nv12[:6], i420[:6])                               # Y
    chroma = i420[6:].reshape(-1)                                          # U (3x4) then V (3x4)
    assert np.array_equal(nv12[6:, 0::2].reshape(-1), chroma[:12])          # U, interleaved
    assert np.array_equal(nv12[6:, 1::2].reshape(-1), chroma[12:])          # V
    assert np.array_equal(sources.bgr_to_format(bgr, "rgb8"), bgr[..., ::-1])


def test_image_folder_sorted_and_converted(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in range(3)]
    for name, im in zip(("b.png", "a.png", "c.png"), imgs):
        cv2.imwrite(str(tmp_path / name), im)
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(sources.image_folder(str(tmp_path)))
    assert [g.shape for g in got] == [(10, 12, 3)] * 3
    assert np.array_equal(got[0], imgs[1]) and np.array_equal(got[1], imgs[0])  # by name
    assert list(sources.image_folder(str(tmp_path), "gray8"))[0].shape == (10, 12)
    with pytest.raises(TegraAIError, match="does not exist"):
        list(sources.image_folder(str(tmp_path / "missing")))


def test_image_folder_errors(tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TegraAIError, match="holds no images"):
        list(sources.image_folder(str(tmp_path / "empty")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(TegraAIError, match="cannot read image"):
        list(sources.image_folder(str(tmp_path / "bad")))


def test_video_file_frames_and_limit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    if not w.isOpened():
        pytest.skip("this OpenCV cannot write MJPG")
    for i in range(6):
        w.write(np.full((24, 32, 3), 40 * i, np.uint8))
    w.release()
    frames = list(sources.video(path))
    assert len(frames) == 6 and frames[0].shape == (24, 32, 3)
    assert abs(int(frames[3].mean()) - 120) < 8  # in order
    assert len(list(sources.video(path, limit=2))) == 2
    assert list(sources.video(path, "nv12", limit=1))[0].shape == (36, 32)
    with pytest.raises(TegraAIError, match="does not exist"):
        list(sources.video(str(tmp_path / "nope.mp4")))


class _FakeClock:
    def __init__(self):
        self.t, self.slept = 100.0, []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


def test_paced_source_frames_arrive_at_their_rate():
    clock = _FakeClock()
    src = sources.PacedSource(sources.synthetic(5, 4, 6), fps=25, clock=clock, sleep=clock.sleep)
    assert src.live
    got = list(src)
    assert [f.sequence for f in got] == [0, 1, 2, 3, 4]
    assert np.allclose([f.timestamp for f in got], [100 + s / 25 for s in range(5)])
    assert np.allclose(clock.slept, [0.04] * 4)       # a reader ahead of the camera waits for it
    assert got[0].image.shape == (4, 6, 3) and src.dropped == 0


def test_paced_source_slow_reader_gets_the_ring_then_a_gap():
    """A reader that falls 10 frames behind finds the 4 oldest frames in the ring (the
    driver had no free buffer for the rest) and then the next frame after the gap."""
    clock = _FakeClock()
    images = [np.full((2, 2), k, np.uint8) for k in range(30)]
    src = sources.PacedSource(images, fps=10, buffers=4, clock=clock, sleep=clock.sleep)
    it = iter(src)
    first = next(it)
    clock.t += 1.0 + 1e-9                 # 10 frame periods later: frames 1..10 captured
    got = [next(it) for _ in range(5)]
    assert first.sequence == 0 and [f.sequence for f in got] == [1, 2, 3, 4, 11]
    assert [int(f.image[0, 0]) for f in got] == [1, 2, 3, 4, 11]   # content follows the sequence
    assert src.dropped == 6                                          # frames 5..10
    assert all(f.timestamp == 100 + f.sequence / 10 for f in got)
    rest = list(it)
    assert rest[-1].sequence == 29 and src.captured == 30


def test_paced_source_errors():
    with pytest.raises(TegraAIError, match="fps must be positive"):
        sources.PacedSource([], fps=0)
    with pytest.raises(TegraAIError, match="buffers must be at least 1"):
        sources.PacedSource([], fps=30, buffers=0)


def test_paced_source_capture_ring_buffers_come_back_only_when_released():
    """memory="pageable": frames are read-only views of the ring's buffers (written by
    the simulated driver), a buffer is busy until its frame is released (VIDIOC_QBUF),
    and a frame captured while no buffer was given back is lost."""
    clock = _FakeClock()
    images = [np.full((3, 5), k, np.uint8) for k in range(12)]
    src = sources.PacedSource(images, fps=10, buffers=2, clock=clock, sleep=clock.sleep, memory="pageable")
    it = iter(src)
    f0, f1 = next(it), next(it)
    ring = src.ring
    assert ring.registration is None and ring.shape == (3, 5)
    assert not f0.image.flags.writeable and int(f0.image[0, 0]) == 0 and int(f1.image[0, 0]) == 1
    assert any(np.shares_memory(f0.image, b) for b in ring.buffers)   # in the ring, not the source's array
    assert ring.free == 0
    clock.t += 0.3 + 1e-9            # frames 2..4 captured while both buffers are held: lost
    f0.release()
    f2 = next(it)                    # the next capture after the buffer came back
    assert f2.sequence == 5 and int(f2.image[0, 0]) == 5 and src.dropped == 3
    with pytest.raises(TegraAIError, match="released twice"):
        f0.release()
    f1.release()
    f2.release()
    rest = []
    for f in it:
        rest.append(f.sequence)
        f.release()
    assert rest == list(range(6, 12)) and ring.free == 2 and src.captured == 12


def test_paced_source_capture_ring_is_filled_before_the_capture_time():
    """The simulated driver writes the next frame into a free buffer while the reader
    waits for its capture time (a DMA completes before its end-of-frame timestamp), so a
    frame's copy is not inside its latency; a frame the reader never took gives its
    buffer back when the iteration stops."""
    clock = _FakeClock()
    seen_free = []

    def sleep(s):
        seen_free.append((round(clock.t + s, 6), src.ring.free))
        clock.sleep(s)

    src = sources.PacedSource(sources.synthetic(4, 4, 6), fps=25, buffers=3, clock=clock, sleep=sleep,
                              memory="pageable")
    it = iter(src)
    f0 = next(it)
    f0.release()
    f1 = next(it)
    # Slept until 2 ms before frame 1's capture with 3 buffers free, wrote it, then slept
    # until its capture time with 2 free: the write is done by the timestamp.
    assert seen_free == [(100.038, 3), (100.04, 2)] and f1.sequence == 1 and f1.timestamp == 100 + 1 / 25
    it.close()                        # the consumer stops: the buffer filled for frame 2 is free again
    f1.release()
    assert src.ring.free == 3


def test_paced_source_memory_errors():
    with pytest.raises(TegraAIError, match="memory must be one of"):
        sources.PacedSource([], fps=30, memory="pinned")
    src = sources.PacedSource([np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8)], fps=1000,
                              memory="pageable")
    with pytest.raises(TegraAIError, match="does not change format"):
        for f in src:
            f.release()
    with pytest.raises(TegraAIError, match="at least 1 buffer"):
        sources.CaptureRing(0, (2, 2))


def test_page_aligned_buffers():
    for n in (1, 4095, 4097, 6220800):
        a = sources.page_aligned(n)
        assert a.ctypes.data % sources.PAGE == 0 and a.nbytes % sources.PAGE == 0 and a.nbytes >= n
    ring = sources.CaptureRing(3, (1080, 1920, 3))
    assert all(b.ctypes.data % sources.PAGE == 0 for b in ring.buffers)
    assert not any(np.shares_memory(ring.buffers[0], b) for b in ring.buffers[1:])
