"""NMS kernel on a real GPU: kept indices equal torchvision.ops.nms / batched_nms
(CUDA) exactly, on random sets of 10 to 50,000 boxes with heavy ties, all-equal
scores, duplicates and degenerate boxes."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

SIZES = [10, 31, 32, 33, 100, 128, 129, 1000, 4096, 4097, 10000, 50000]


@pytest.fixture(scope="module")
def tv():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    return torch, torchvision


def random_boxes(rng, n, kind):
    xy = rng.uniform(0, 1000, (n, 2)).astype(np.float32)
    wh = rng.uniform(1, 120, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if kind == "degenerate":
        k = n // 4
        boxes[:k, 2] = boxes[:k, 0]                      # zero width
        boxes[k:2 * k, 3] = boxes[k:2 * k, 1] - 5        # negative height
        boxes[2 * k:2 * k + 3] = 0                       # empty boxes, 0/0 IoU
    if kind == "duplicates":
        boxes[n // 2:] = boxes[: n - n // 2]             # IoU exactly 1
    if kind == "integer":
        boxes = np.round(boxes)
    return boxes


def random_scores(rng, n, kind):
    if kind == "all_equal":
        return np.full(n, 0.5, np.float32)
    if kind == "ties":
        return rng.integers(0, 5, n).astype(np.float32) / 4
    return rng.random(n).astype(np.float32)


def torchvision_nms(tv, boxes, scores, thr):
    torch, torchvision = tv
    return torchvision.ops.nms(torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda(), thr).cpu().numpy()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("score_kind", ["random", "ties", "all_equal"])
@pytest.mark.parametrize("box_kind", ["random", "degenerate", "duplicates"])
def test_equals_torchvision(tv, rng, n, score_kind, box_kind):
    from tegra_ai.kernels import nms

    boxes, scores = random_boxes(rng, n, box_kind), random_scores(rng, n, score_kind)
    for thr in (0.5, 0.0, 0.7):
        want = torchvision_nms(tv, boxes, scores, thr)
        got = nms(boxes, scores, thr)
        assert np.array_equal(got, want), f"thr={thr}: {len(got)} kept vs torchvision {len(want)}; " \
                                          f"first difference at {np.argmax(got[:len(want)] != want[:len(got)])}"


def test_negative_threshold_and_iou_on_the_threshold(tv, rng):
    from tegra_ai.kernels import nms

    # Integer boxes on a small grid: many IoUs land exactly on simple fractions.
    for n in (50, 2000):
        xy = rng.integers(0, 20, (n, 2))
        wh = rng.integers(0, 6, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = random_scores(rng, n, "ties")
        for thr in (-0.5, 0.25, 0.5, 1 / 3, 0.6):
            assert np.array_equal(nms(boxes, scores, thr), torchvision_nms(tv, boxes, scores, thr)), thr


def test_deterministic(rng):
    from tegra_ai.kernels import nms

    boxes, scores = random_boxes(rng, 20000, "random"), random_scores(rng, 20000, "ties")
    first = nms(boxes, scores, 0.5)
    for _ in range(5):
        assert np.array_equal(nms(boxes, scores, 0.5), first)


@pytest.mark.parametrize("n", [40, 3000, 8000])
def test_batched_equals_torchvision(tv, rng, n):
    torch, torchvision = tv
    from tegra_ai.kernels import nms

    # Integer coordinates: torchvision's coordinate-offset trick (n <= 5000 boxes on
    # CUDA) is then exact. Distinct scores: its per-class path (n > 5000) re-sorts the
    # result with an unstable sort.
    boxes = random_boxes(rng, n, "integer")
    scores = rng.permutation(n).astype(np.float32) / n
    classes = rng.integers(0, 7, n).astype(np.int32)
    want = torchvision.ops.batched_nms(torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda(),
                                       torch.from_numpy(classes).cuda().long(), 0.5).cpu().numpy()
    assert np.array_equal(nms(boxes, scores, 0.5, classes=classes), want)


def test_batched_with_ties_equals_offset_trick(tv, rng):
    torch, torchvision = tv
    from tegra_ai.kernels import nms

    n = 2000
    boxes, scores = random_boxes(rng, n, "integer"), random_scores(rng, n, "ties")
    classes = rng.integers(0, 3, n).astype(np.int32)
    offset = (boxes.max() + 1) * classes[:, None].astype(np.float32)
    want = torchvision_nms(tv, boxes + offset, scores, 0.5)
    assert np.array_equal(nms(boxes, scores, 0.5, classes=classes), want)


@pytest.mark.parametrize("n", [20, 5000])
def test_score_threshold_and_top_k(tv, rng, n):
    from tegra_ai.kernels import nms

    boxes, scores = random_boxes(rng, n, "random"), random_scores(rng, n, "ties")
    for thr_score in (0.3, 0.74, 2.0):
        idx = np.nonzero(scores > np.float32(thr_score))[0]
        want = idx[torchvision_nms(tv, boxes[idx], scores[idx], 0.5)] if len(idx) else np.zeros(0, np.int64)
        assert np.array_equal(nms(boxes, scores, 0.5, score_threshold=thr_score), want)
        for k in (1, 7, 100000):
            assert np.array_equal(nms(boxes, scores, 0.5, score_threshold=thr_score, top_k=k), want[:k])


def test_cpu_model_matches_torchvision_on_small_sets(tv, rng):
    """The NumPy model used by CPU tests describes torchvision's behaviour (ties included)."""
    from tegra_ai.kernels.nms_reference import nms_reference

    for n in (5, 17, 32, 33, 300):
        for kind in ("random", "ties", "all_equal"):
            boxes, scores = random_boxes(rng, n, "random"), random_scores(rng, n, kind)
            assert np.array_equal(nms_reference(boxes, scores, 0.5), torchvision_nms(tv, boxes, scores, 0.5))
