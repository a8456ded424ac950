"""NumPy model of what ``nms.cu`` computes, for CPU tests of its logic: a stable
descending sort by score (torch.sort's tie order on CUDA), torchvision's IoU in float32,
greedy suppression, class-aware variant, score threshold and top-k.

It does not model the GPU's fused multiply-adds, so at an IoU exactly on the
threshold it may disagree with the GPU; the GPU tests compare with torchvision itself.
"""

from __future__ import annotations

import numpy as np


def sort_order_desc(scores: np.ndarray) -> np.ndarray:
    """Stable descending order (torch.sort on CUDA as torchvision uses it; -0.0 == +0.0)."""
    s = np.asarray(scores, dtype=np.float32)
    s = np.where(s == 0, np.float32(0), s)
    return np.argsort(-s.astype(np.float64), kind="stable")


def iou_above(a, b, threshold: float) -> bool:
    f = np.float32
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        left, right = max(f(a[0]), f(b[0])), min(f(a[2]), f(b[2]))
        top, bottom = max(f(a[1]), f(b[1])), min(f(a[3]), f(b[3]))
        width, height = max(f(right - left), f(0)), max(f(bottom - top), f(0))
        inter = f(width * height)
        sa = f(f(a[2] - a[0]) * f(a[3] - a[1]))
        sb = f(f(b[2] - b[0]) * f(b[3] - b[1]))
        return bool(f(inter / f(f(sa + sb) - inter)) > f(threshold))


def nms_reference(boxes, scores, iou_threshold: float, classes=None, score_threshold=None, top_k=None):
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    candidates = np.arange(len(scores))
    if score_threshold is not None:
        candidates = candidates[scores > np.float32(score_threshold)]
    order = candidates[sort_order_desc(scores[candidates])]
    kept = []
    removed = np.zeros(len(order), dtype=bool)
    for r, i in enumerate(order):
        if removed[r]:
            continue
        kept.append(int(i))
        if top_k and len(kept) >= top_k:
            break
        for q in range(r + 1, len(order)):
            j = order[q]
            if removed[q] or (classes is not None and classes[i] != classes[j]):
                continue
            if iou_above(boxes[i], boxes[j], iou_threshold):
                removed[q] = True
    return np.array(kept, dtype=np.int64)
