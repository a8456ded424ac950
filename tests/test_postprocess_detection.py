"""Detector post-processing description and its NumPy reference (CPU)."""

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels.api import BoxMapping
from tegra_ai.postprocess.detection import DetectionSpec, capacity, mapping_row, reference, resolve_head


def v8_head(rows, classes):
    """rows: (cx, cy, w, h, class scores...) per anchor -> [1, 4+C, A]."""
    a = np.array(rows, np.float32)
    assert a.shape[1] == 4 + classes
    return a.T[None].copy()


HEAD = v8_head([
    (50, 50, 20, 20, 0.9, 0.1),    # 0: class 0, best
    (52, 50, 20, 20, 0.8, 0.1),    # 1: overlaps 0 (same class) -> suppressed
    (52, 50, 20, 20, 0.1, 0.85),   # 2: overlaps but class 1 -> kept
    (200, 200, 10, 10, 0.3, 0.2),  # 3: alone, class 0
    (300, 300, 10, 10, 0.1, 0.2),  # 4: under 0.25
    (0, 0, 1, 1, 0, 0), (0, 0, 1, 1, 0, 0), (0, 0, 1, 1, 0, 0),  # more anchors than channels: layout auto
], 2)


def test_reference_yolov8_class_aware():
    d = reference(DetectionSpec(score_threshold=0.25, iou_threshold=0.5), [HEAD])[0]
    assert d.anchors.tolist() == [0, 2, 3]
    assert d.classes.tolist() == [0, 1, 0]
    assert d.scores.tolist() == pytest.approx([0.9, 0.85, 0.3])
    assert d.boxes[0].tolist() == [40, 40, 60, 60]


def test_reference_agnostic_topk_and_layouts():
    spec = DetectionSpec(score_threshold=0.25, iou_threshold=0.5, class_agnostic=True)
    assert reference(spec, [HEAD])[0].anchors.tolist() == [0, 3]
    anchors_first = np.ascontiguousarray(HEAD.transpose(0, 2, 1))
    assert reference(spec, [anchors_first])[0].anchors.tolist() == [0, 3]
    assert reference(DetectionSpec(max_det=2, iou_threshold=0.5), [HEAD])[0].anchors.tolist() == [0, 2]
    assert reference(DetectionSpec(per_class_top_k=1, iou_threshold=0.9), [HEAD])[0].anchors.tolist() == [0, 2]
    assert reference(DetectionSpec(pre_nms_top_k=1), [HEAD])[0].anchors.tolist() == [0]


def test_reference_multi_label_ids_and_ties():
    head = v8_head([(10, 10, 4, 4, 0.5, 0.5), (100, 100, 4, 4, 0.5, 0.5)], 2)
    d = reference(DetectionSpec(multi_label=True, iou_threshold=0.5, num_classes=2), [head])[0]
    # Equal scores: candidate id order (anchor * C + class).
    assert list(zip(d.anchors.tolist(), d.classes.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    best = reference(DetectionSpec(iou_threshold=0.5, num_classes=2), [head])[0]
    assert best.classes.tolist() == [0, 0]  # first maximum on ties


def test_reference_yolov5_objectness_and_nan():
    head = np.array([[[10, 10, 4, 4, 0.5, 0.9, 0.2], [100, 100, 4, 4, 0.9, np.nan, 0.4]]], np.float32)
    d = reference(DetectionSpec(head="yolov5", layout="anchors_first"), [head])[0]
    assert d.anchors.tolist() == [0, 1]
    assert d.classes.tolist() == [0, 1]  # anchor 1: NaN class 0 never wins
    assert d.scores.tolist() == pytest.approx([0.45, 0.36])


def test_reference_boxes_scores_and_mapping():
    boxes = np.array([[[100, 200, 300, 400]]], np.float32)
    scores = np.array([[[0.1, 0.7]]], np.float32)
    m = BoxMapping(0.5, 0.5, 10, 20)
    d = reference(DetectionSpec(head="boxes_scores"), [boxes, scores], mappings=[m], image_sizes=[(500, 560)])[0]
    assert d.boxes.tolist() == [[180, 360, 560, 500]]  # clipped to 560 x 500
    assert mapping_row(m, (500, 560)).tolist() == [0.5, 0.5, 10, 20, 560, 500]
    assert mapping_row(None, None).tolist() == [1, 1, 0, 0, 0, 0]


def test_resolve_head_geometry():
    g = resolve_head(DetectionSpec(), [(2, 84, 8400)])
    assert (g.anchors, g.classes, g.batch, g.score_offset, g.box_strides) == (8400, 80, 2, 4 * 8400, (84 * 8400, 1, 8400))
    g = resolve_head(DetectionSpec(head="yolov5"), [(1, 25200, 85)])
    assert (g.anchors, g.classes, g.obj_offset, g.score_offset) == (25200, 80, 4, 5)
    assert capacity(DetectionSpec(), g) == 25200
    assert capacity(DetectionSpec(multi_label=True), g) == 16384


@pytest.mark.parametrize("kw, message", [
    (dict(head="yolov9"), "head='yolov9'"), (dict(max_det=0), "max_det"), (dict(iou_threshold="x"), "iou_threshold"),
    (dict(num_classes=0), "num_classes"), (dict(multi_label=1), "multi_label"), (dict(layout="nhwc"), "layout"),
    (dict(box_format="xywh"), "box_format"), (dict(per_class_top_k=-1), "per_class_top_k"),
])
def test_spec_validation(kw, message):
    with pytest.raises(TegraAIError, match=message):
        DetectionSpec(**kw)


def test_spec_from_dict_and_shape_errors():
    with pytest.raises(TegraAIError, match="unknown field"):
        DetectionSpec.from_dict({"threshold": 0.3})
    assert DetectionSpec.from_dict(DetectionSpec(max_det=7).to_dict()) == DetectionSpec(max_det=7)
    with pytest.raises(TegraAIError, match="no dimension of 84"):
        resolve_head(DetectionSpec(num_classes=80), [(1, 85, 8400)])
    with pytest.raises(TegraAIError, match="two outputs"):
        resolve_head(DetectionSpec(head="boxes_scores"), [(1, 100, 4)])
    with pytest.raises(TegraAIError, match="one output"):
        resolve_head(DetectionSpec(), [(1, 84)])
