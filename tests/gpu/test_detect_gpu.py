"""Detector post-processing kernel on a real GPU against the NumPy model of its
semantics with torchvision's NMS (per class, so no coordinate-offset rounding): kept
detections identical (boxes, scores, classes, anchors) on random and adversarial
heads: ties, everything under the threshold, more candidates than every top-k, NaN,
float16, batches with different letterbox mappings, a capacity overflow, and a CUDA
graph replay."""

import numpy as np
import pytest

from tegra_ai.postprocess.detection import DetectionSpec, reference

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tv():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    return torch, torchvision


def tv_nms_fn(tv):
    torch, torchvision = tv

    def fn(boxes, scores, iou, classes):
        if classes is None:
            classes = np.zeros(len(scores), np.int32)
        kept = []
        for c in np.unique(classes):
            pos = np.nonzero(classes == c)[0]
            k = torchvision.ops.nms(torch.from_numpy(boxes[pos]).cuda(), torch.from_numpy(scores[pos]).cuda(), iou)
            kept.append(pos[k.cpu().numpy()])
        return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)
    return fn


def yolo_head(rng, batch, anchors, classes, extra=4, objects=30, ties=False, channels_first=True):
    """Realistic-looking head: clusters of overlapping boxes with high scores."""
    k = extra + classes
    h = np.zeros((batch, anchors, k), np.float32)
    h[..., 0:2] = rng.uniform(0, 640, (batch, anchors, 2))
    h[..., 2:4] = rng.uniform(4, 200, (batch, anchors, 2))
    h[..., extra:] = rng.uniform(0, 0.2, (batch, anchors, classes))
    if extra == 5:
        h[..., 4] = rng.uniform(0.5, 1, (batch, anchors))
    for b in range(batch):
        for _ in range(objects):
            centre, size, cls = rng.uniform(50, 590, 2), rng.uniform(20, 200, 2), rng.integers(classes)
            idx = rng.choice(anchors, size=min(anchors, 25), replace=False)
            h[b, idx, 0:2] = centre + rng.normal(0, 6, (len(idx), 2))
            h[b, idx, 2:4] = size * rng.uniform(0.8, 1.2, (len(idx), 2))
            h[b, idx, extra + cls] = rng.uniform(0.2, 0.98, len(idx))
    if ties:
        h[..., extra:] = np.round(h[..., extra:] * 8) / 8
        h[..., 0:4] = np.round(h[..., 0:4] / 4) * 4
    return np.ascontiguousarray(h.transpose(0, 2, 1)) if channels_first else h


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w), f"{len(g)} detections vs reference {len(w)}"
        assert np.array_equal(g.anchors, w.anchors)
        assert np.array_equal(g.classes, w.classes)
        assert np.array_equal(g.scores, w.scores)
        assert np.array_equal(g.boxes, w.boxes), np.abs(g.boxes - w.boxes).max()
        assert g.overflow == 0


def run(spec, arrays, **kw):
    from tegra_ai.postprocess.gpu import DetectionPostprocessor

    post = DetectionPostprocessor(spec, [a.shape for a in arrays],
                                  dtype="float16" if arrays[0].dtype == np.float16 else "float32")
    return post(arrays, **kw)


@pytest.mark.parametrize("channels_first", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("multi_label", [False, True])
def test_yolov8_equals_reference(tv, rng, channels_first, ties, multi_label):
    head = yolo_head(rng, 1, 8400, 80, ties=ties, channels_first=channels_first)
    spec = DetectionSpec(head="yolov8", score_threshold=0.25, iou_threshold=0.45, multi_label=multi_label)
    assert_same(run(spec, [head]), reference(spec, [head], nms_fn=tv_nms_fn(tv)))


@pytest.mark.parametrize("spec_kw", [
    dict(max_det=5), dict(per_class_top_k=3), dict(pre_nms_top_k=40), dict(per_class_top_k=2, pre_nms_top_k=50, max_det=17),
    dict(class_agnostic=True), dict(score_threshold=0.001, iou_threshold=0.7), dict(iou_threshold=0.0),
])
def test_top_k_and_thresholds(tv, rng, spec_kw):
    head = yolo_head(rng, 1, 2000, 7, ties=True)
    spec = DetectionSpec(head="yolov8", **spec_kw)
    assert_same(run(spec, [head]), reference(spec, [head], nms_fn=tv_nms_fn(tv)))


def test_all_below_threshold(rng):
    head = rng.uniform(0, 0.2, (2, 84, 8400)).astype(np.float32)
    got = run(DetectionSpec(score_threshold=0.5), [head])
    assert [len(d) for d in got] == [0, 0]


def test_nan_scores_never_win(tv, rng):
    head = yolo_head(rng, 1, 1000, 5)
    head[0, 4 + 2, ::3] = np.nan
    spec = DetectionSpec(head="yolov8")
    assert_same(run(spec, [head]), reference(spec, [head], nms_fn=tv_nms_fn(tv)))


def test_yolov5_objectness_anchors_first(tv, rng):
    head = yolo_head(rng, 2, 25200 // 4, 80, extra=5, channels_first=False)
    spec = DetectionSpec(head="yolov5")
    assert_same(run(spec, [head]), reference(spec, [head], nms_fn=tv_nms_fn(tv)))


def test_boxes_scores_float16_batch_with_mappings(tv, rng):
    from tegra_ai.kernels.api import BoxMapping

    b, a, c = 3, 3000, 20
    xy = rng.uniform(0, 600, (b, a, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 120, (b, a, 2))], -1).astype(np.float16)
    scores = rng.uniform(0, 1, (b, a, c)).astype(np.float16)
    spec = DetectionSpec(head="boxes_scores", score_threshold=0.9, multi_label=True)
    maps = [BoxMapping(0.5, 0.5, 0, 80), BoxMapping(1 / 3, 1 / 3, 100, 0), None]
    sizes = [(960, 1280), (1080, 1920), None]
    want = reference(spec, [boxes, scores], mappings=maps, image_sizes=sizes, nms_fn=tv_nms_fn(tv))
    assert_same(run(spec, [boxes, scores], mappings=maps, image_sizes=sizes), want)


def test_overflow_is_reported(rng):
    head = yolo_head(rng, 1, 1000, 3)
    head[0, 4:] = 0.9
    got = run(DetectionSpec(capacity=64), [head])[0]
    assert got.overflow == 1000 - 64


def test_graph_replay_matches_eager(tv, rng):
    torch, _ = tv
    from tegra_ai.postprocess.gpu import DetectionPostprocessor

    spec = DetectionSpec()
    heads = [torch.from_numpy(yolo_head(rng, 1, 8400, 80)).cuda() for _ in range(2)]
    post = DetectionPostprocessor(spec, [tuple(heads[0].shape)])
    stream = torch.cuda.Stream()
    src = torch.empty_like(heads[0])
    with torch.cuda.stream(stream):
        src.copy_(heads[0])
        post.run_device([src.data_ptr()], stream.cuda_stream)
        eager0 = post.download(stream.cuda_stream)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            post.run_device([src.data_ptr()], stream.cuda_stream)
        for h in heads:
            src.copy_(h)
            g.replay()
            got = post.download(stream.cuda_stream)
            post.run_device([src.data_ptr()], stream.cuda_stream)
            assert_same(got, post.download(stream.cuda_stream))
    assert_same(eager0, post(heads[0].cpu().numpy()))
    # The one-graph path (kernels + download in a graph made by the post-processor).
    for h in heads:
        src.copy_(h)
        torch.cuda.synchronize()
        post.launch([src.data_ptr()], stream.cuda_stream)
        stream.synchronize()
        assert_same(post.results(), post(h.cpu().numpy()))
