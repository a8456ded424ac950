"""Small float ONNX graphs with the structures TensorRT's Q/DQ placement rules are about,
made with onnx.helper (no binary blobs). Used by tests/test_quant_placement.py and by
benchmarks/compare_qdq_placement.py (placement against NVIDIA Model Optimizer)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.k = 0

    def name(self, stem):
        self.k += 1
        return f"{stem}{self.k}"

    def const(self, arr, stem="w"):
        n = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32) if np.asarray(arr).dtype.kind == "f"
                                                  else np.asarray(arr), n))
        return n

    def node(self, op, inputs, stem=None, n_out=1, **attrs):
        name = self.name(stem or op.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]

    def conv(self, x, cin, cout, k=3, gain=1.0, bias=True):
        w = self.const(self.rng.standard_normal((cout, cin, k, k)) * gain * np.sqrt(2.0 / (cin * k * k)))
        ins = [x, w] + ([self.const(self.rng.standard_normal(cout) * 0.1, "b")] if bias else [])
        return self.node("Conv", ins, "conv", pads=[k // 2] * 4)

    def silu(self, x):
        return self.node("Mul", [x, self.node("Sigmoid", [x], "sigmoid")], "silu")

    def conv_silu(self, x, cin, cout, k=3, gain=1.0):
        return self.silu(self.conv(x, cin, cout, k, gain))

    def model(self, inputs, outputs, opset=17):
        g = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                for n, s in inputs], [], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
        m.graph.output.extend(inferred[o] for o in outputs)
        return m


def concat_pool_model(c=16):
    """Two convolution branches with ranges 10x apart, each also read by its own Conv; the
    second through a MaxPool (also read by a Conv); a Concat of the first branch and the
    pooled one, read by a Conv. TensorRT ties a, b, p and the Concat output to one scale."""
    b = _Builder(1)
    a = b.node("Relu", [b.conv("x", 3, c, gain=0.5)], "relu_a")
    br = b.node("Relu", [b.conv("x", 3, c, gain=5.0)], "relu_b")
    p = b.node("MaxPool", [br], "maxpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    cat = b.node("Concat", [a, p], "concat", axis=1)
    outs = [b.conv(a, c, c), b.conv(br, c, c), b.conv(p, c, c), b.conv(cat, 2 * c, c)]
    return b.model([("x", ["N", 3, 16, 16])], outs)


def c2f(b, x, c, n=2):
    """YOLOv8's C2f: cv1 -> Split -> n bottlenecks (Conv-SiLU x2 + shortcut Add) -> Concat of
    every part -> cv2."""
    y = b.conv_silu(x, c, c, k=1)
    parts = list(b.node("Split", [y, b.const(np.array([c // 2, c // 2], np.int64), "split")], "split",
                        n_out=2, axis=1))
    for _ in range(n):
        h = b.conv_silu(b.conv_silu(parts[-1], c // 2, c // 2), c // 2, c // 2)
        parts.append(b.node("Add", [parts[-1], h], "bottleneck_add"))
    return b.conv_silu(b.node("Concat", parts, "c2f_concat", axis=1), (2 + n) * c // 2, c, k=1)


def sppf(b, x, c):
    """YOLOv8's SPPF: cv1 -> MaxPool(5) x3 in series -> Concat of the four -> cv2."""
    y = b.conv_silu(x, c, c // 2, k=1)
    pools = [y]
    for _ in range(3):
        pools.append(b.node("MaxPool", [pools[-1]], "sppf_maxpool", kernel_shape=[5, 5], pads=[2] * 4, strides=[1, 1]))
    return b.conv_silu(b.node("Concat", pools, "sppf_concat", axis=1), 2 * c, c, k=1)


def yolo_block_model(c=32):
    """A YOLOv8n-style backbone tail: stem Conv -> C2f (2 bottlenecks) -> stride-2 Conv -> C2f
    -> SPPF -> 1x1 head Conv."""
    b = _Builder(2)
    x = b.conv_silu("x", 3, c)
    x = c2f(b, x, c)
    x = b.conv_silu(x, c, c)
    x = c2f(b, x, c)
    x = sppf(b, x, c)
    return b.model([("x", ["N", 3, 32, 32])], [b.conv(x, c, 8, k=1)])


def fusion_model(c=16):
    """Conv -> BatchNorm -> Relu (the BatchNorm output also read by a second Conv), Conv ->
    SiLU, and Flatten -> MatMul -> bias Add -> Relu -> MatMul -> bias Add: each weighted layer
    with the epilogue TensorRT fuses into it."""
    b = _Builder(3)
    cv = b.conv("x", 3, c, bias=False)
    bn = b.node("BatchNormalization", [cv, b.const(np.ones(c) * 1.5), b.const(np.zeros(c) + 0.1),
                                       b.const(np.zeros(c)), b.const(np.ones(c))], "bn")
    r = b.node("Relu", [bn], "relu")
    side = b.conv(bn, c, c)  # the BN output fans out to a Conv: that Conv's Q must not feed the Relu
    s = b.conv_silu(r, c, c)
    s = b.node("Add", [s, side], "merge")
    f = b.node("Flatten", [s], "flatten", axis=1)
    d = c * 8 * 8
    m = b.node("Add", [b.node("MatMul", [f, b.const(b.rng.standard_normal((d, 32)) / np.sqrt(d))], "matmul"),
                       b.const(b.rng.standard_normal(32) * 0.1, "bias")], "bias_add")
    m = b.node("Relu", [m], "relu")
    m = b.node("Add", [b.node("MatMul", [m, b.const(b.rng.standard_normal((32, 10)) / 6)], "matmul"),
                       b.const(b.rng.standard_normal(10) * 0.1, "bias")], "bias_add")
    return b.model([("x", ["N", 3, 8, 8])], [m])
