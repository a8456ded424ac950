"""Make the cascade example: a *locator* for the digits model, not a trained detector.

    python -m tegra_ai.models.make_digits_locator      (needs numpy and onnx)

``digits_locator.onnx`` takes a 32 x 32 gray image holding up to four 8 x 8 digits,
one centred in each 16 x 16 cell of a 2 x 2 grid (input "image" N x 1 x 32 x 32
float32 in [0, 1]), and outputs a YOLOv8-style head "head" N x 5 x 4 (one class,
four anchors = the cells): box cx, cy, w, h of the cell's centre 8 x 8 square and a
score from the cell's mean brightness (sigmoid(40 * (mean - 0.05)): an empty cell
scores about 0.12, one with a digit 0.5 to 1). It lets ``model-ensemble`` show a
detector -> crops -> classifier cascade with the embedded digits classifier on any
machine. ``digits_grid_samples.npz`` holds such images made from the held-out digits
('images' N x 32 x 32 uint8, 'labels' N x 4, -1 for an empty cell)."""

from __future__ import annotations

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CELL, DIGIT, GRID = 16, 8, 2


def build_model():
    from onnx import TensorProto, helper, numpy_helper

    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    boxes = np.array([[[CELL * c + CELL / 2 for r, c in cells], [CELL * r + CELL / 2 for r, c in cells],
                       [DIGIT] * 4, [DIGIT] * 4]], np.float32)                       # [1, 4, 4]
    inits = [numpy_helper.from_array(boxes, "boxes"), numpy_helper.from_array(np.array([40.0], np.float32), "gain"),
             numpy_helper.from_array(np.array([0.05], np.float32), "bias"),
             numpy_helper.from_array(np.array([0, 1, 4], np.int64), "score_shape"),
             numpy_helper.from_array(np.array([4, 4], np.int64), "box_tail"),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    nodes = [
        helper.make_node("AveragePool", ["image"], ["means"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Reshape", ["means", "score_shape"], ["means_flat"]),       # [N, 1, 4]
        helper.make_node("Sub", ["means_flat", "bias"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
        helper.make_node("Shape", ["image"], ["in_shape"]),
        helper.make_node("Gather", ["in_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "box_tail"], ["box_shape"], axis=0),
        helper.make_node("Expand", ["boxes", "box_shape"], ["boxes_n"]),              # [N, 4, 4]
        helper.make_node("Concat", ["boxes_n", "scores"], ["head"], axis=1),         # [N, 5, 4]
    ]
    graph = helper.make_graph(nodes, "digits_locator",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info("head", TensorProto.FLOAT, ["N", 5, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tegra-ai")
    model.ir_version = 8
    return model


def make_grid(images, labels, count, seed=0):
    """``count`` 32 x 32 images with a random subset of cells holding a digit."""
    rng = np.random.default_rng(seed)
    out = np.zeros((count, GRID * CELL, GRID * CELL), np.uint8)
    truth = np.full((count, GRID * GRID), -1, np.int64)
    off = (CELL - DIGIT) // 2
    for i in range(count):
        for k in range(GRID * GRID):
            if rng.random() < 0.75:
                j = rng.integers(len(images))
                r, c = divmod(k, GRID)
                out[i, CELL * r + off: CELL * r + off + DIGIT, CELL * c + off: CELL * c + off + DIGIT] = images[j]
                truth[i, k] = labels[j]
    return out, truth


def main():
    import onnx

    from tegra_ai.models import load_samples

    onnx.save(build_model(), os.path.join(HERE, "digits_locator.onnx"))
    images, labels = load_samples("val")
    grid, truth = make_grid(images, labels, 48)
    np.savez_compressed(os.path.join(HERE, "digits_grid_samples.npz"), images=grid, labels=truth)
    spec = {"height": 32, "width": 32, "input_format": "gray8", "channel_order": "gray", "resize": "stretch",
            "pad_value": 0.0, "scale": 1 / 255, "mean": [0.0], "std": [1.0], "layout": "nchw", "dtype": "float32"}
    with open(os.path.join(HERE, "digits_locator.preprocess.json"), "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
