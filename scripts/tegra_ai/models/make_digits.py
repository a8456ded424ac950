"""Make the embedded default model: a small CNN trained on scikit-learn's 8x8 digits.

    python -m tegra_ai.models.make_digits        (needs numpy, scikit-learn, onnx)

Pure NumPy training (no framework needed), deterministic (fixed seed). Writes
digits.onnx (input "input" N x 1 x 8 x 8 float32 in [0, 1], output "logits" N x 10),
digits.preprocess.json (gray8 images -> the model input) and digits_samples.npz
(uint8 images + labels: 'calib' = the training split's first 256 images, for INT8
calibration; 'val' = the held-out 20%, never trained on)."""

from __future__ import annotations

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
CHANNELS = 16


def load_digits_uint8():
    from sklearn.datasets import load_digits

    d = load_digits()
    # Intensities 0..16 -> 0..255, as a camera's gray8 image would be.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64)


def split(images, labels):
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(labels))
    n_val = len(labels) // 5
    val, train = order[:n_val], order[n_val:]
    return (images[train], labels[train]), (images[val], labels[val])


def im2col(x):  # x: N,1,8,8 -> N,64,9 (3x3 patches, zero padding 1)
    p = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([p[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], axis=-1)
    return cols.reshape(x.shape[0], 64, 9)


def forward(params, x):
    w1, b1, w2, b2 = params
    cols = im2col(x)                                    # N,64,9
    conv = cols @ w1.reshape(CHANNELS, 9).T + b1        # N,64,C
    relu = np.maximum(conv, 0)
    r = relu.reshape(-1, 4, 2, 4, 2, CHANNELS)          # N, h/2, 2, w/2, 2, C
    pooled = r.max(axis=(2, 4))                         # N,4,4,C
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(x), -1)  # N, C*16 (NCHW flatten order)
    logits = flat @ w2.T + b2
    return logits, (cols, conv, relu, r, pooled, flat)


def train(images, labels, epochs=60, batch=64, lr=3e-3):
    rng = np.random.default_rng(SEED)
    x_all = (images.astype(np.float32) / 255.0)[:, None]
    params = [rng.normal(0, np.sqrt(2 / 9), (CHANNELS, 1, 3, 3)).astype(np.float32), np.zeros(CHANNELS, np.float32),
              rng.normal(0, np.sqrt(2 / (CHANNELS * 16)), (10, CHANNELS * 16)).astype(np.float32), np.zeros(10, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for _epoch in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x, y = x_all[idx], labels[idx]
            logits, (cols, conv, relu, r, pooled, flat) = forward(params, x)
            z = logits - logits.max(1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            g = prob
            g[np.arange(len(y)), y] -= 1
            g /= len(y)
            gw2 = g.T @ flat
            gb2 = g.sum(0)
            gflat = g @ params[2]
            gpool = gflat.reshape(len(x), CHANNELS, 4, 4).transpose(0, 2, 3, 1)
            mask = (r == pooled[:, :, None, :, None, :])
            grelu = (mask * gpool[:, :, None, :, None, :]).reshape(len(x), 64, CHANNELS)
            gconv = grelu * (conv > 0)
            gw1 = np.einsum("nkc,nkp->cp", gconv, cols).reshape(CHANNELS, 1, 3, 3)
            gb1 = gconv.sum((0, 1))
            step += 1
            for i, gp in enumerate((gw1, gb1, gw2, gb2)):  # Adam
                m[i] = 0.9 * m[i] + 0.1 * gp
                v[i] = 0.999 * v[i] + 0.001 * gp * gp
                params[i] -= lr * (m[i] / (1 - 0.9 ** step)) / (np.sqrt(v[i] / (1 - 0.999 ** step)) + 1e-8)
    return params


def accuracy(params, images, labels) -> float:
    logits, _ = forward(params, (images.astype(np.float32) / 255.0)[:, None])
    return float((logits.argmax(1) == labels).mean())


def export_onnx(params, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2 = params
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv"], name="conv", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("MaxPool", ["relu"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "conv.weight"), numpy_helper.from_array(b1, "conv.bias"),
         numpy_helper.from_array(w2, "fc.weight"), numpy_helper.from_array(b2, "fc.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="meta-tegra-ai",
                              doc_string="8x8 digits CNN trained by tegra_ai/models/make_digits.py")
    model.ir_version = 8  # readable by the onnx/onnxruntime versions of JetPack 5-era images
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    images, labels = load_digits_uint8()
    (tr_x, tr_y), (va_x, va_y) = split(images, labels)
    params = train(tr_x, tr_y)
    print(f"train accuracy {accuracy(params, tr_x, tr_y):.4f}, held-out accuracy {accuracy(params, va_x, va_y):.4f}")
    export_onnx(params, os.path.join(HERE, "digits.onnx"))
    np.savez_compressed(os.path.join(HERE, "digits_samples.npz"), calib_images=tr_x[:256], calib_labels=tr_y[:256],
                        val_images=va_x, val_labels=va_y)
    spec = {"height": 8, "width": 8, "input_format": "gray8", "channel_order": "gray", "resize": "stretch",
            "pad_value": 0.0, "scale": 1.0 / 255.0, "mean": [0.0], "std": [1.0], "layout": "nchw", "dtype": "float32"}
    with open(os.path.join(HERE, "digits.preprocess.json"), "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
