"""NumPy model of what ``nms.cu`` computes, for CPU tests of its logic: torch.sort's
tie order (bitonic network for 32 or fewer, stable otherwise), torchvision's IoU in
float32, greedy suppression, class-aware variant, score threshold and top-k.

It does not model the GPU's fused multiply-adds, so at an IoU exactly on the
threshold it may disagree with the GPU; the GPU tests compare with torchvision itself.
"""

from __future__ import annotations

import numpy as np


def _gt(a: float, b: float) -> bool:
    return (np.isnan(a) and not np.isnan(b)) or a > b


def bitonic_order_desc(keys: np.ndarray) -> np.ndarray:
    """Permutation torch.sort(descending=True) returns on CUDA for 2..32 elements
    (ATen SmallBitonicSort, replayed pair by pair)."""
    m = len(keys)
    assert m <= 32
    key = [float(k) for k in keys] + [0.0] * (32 - m)
    idx = list(range(m)) + [-1] * (32 - m)
    ok = [True] * m + [False] * (32 - m)
    size = 2
    while size <= 32:
        stride = size // 2
        while stride > 0:
            for t in range(16):
                direction = ((t & (size // 2)) != 0) if size < 32 else False
                pa = 2 * t - (t & (stride - 1))
                pb = pa + stride
                swap = (_gt(key[pa], key[pb]) and ok[pa]) or not ok[pb]
                if swap == direction:
                    key[pa], key[pb] = key[pb], key[pa]
                    idx[pa], idx[pb] = idx[pb], idx[pa]
                    ok[pa], ok[pb] = ok[pb], ok[pa]
            stride //= 2
        size *= 2
    return np.array(idx[:m], dtype=np.int64)


def sort_order_desc(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float32)
    if len(scores) <= 1:
        return np.arange(len(scores))
    if len(scores) <= 32:
        return bitonic_order_desc(scores)
    s = np.where(scores == 0, np.float32(0), scores)  # -0.0 ties with +0.0
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
