"""Quantization-aware training (QAT) in PyTorch, exported as a Q/DQ ONNX ready for
``tensorrt-optimize build``.

Two backends, the same result (TensorRT's explicit-quantization form: symmetric INT8,
per-channel weights, per-tensor activations, Q/DQ on the inputs of Conv/Linear only):

- ``modelopt``: NVIDIA Model Optimizer's ``modelopt.torch.quantization``
  (``mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop)``), when installed
  (``pip install 'meta-tegra-ai[qat]'``);
- ``torch``: a small torch-native fake-quant of our own (``torch.fake_quantize_per_*``,
  straight-through gradients), used when Model Optimizer is not installed.

Steps: :func:`insert_quantizers` (calibrates activation ranges with ``calib_batches``),
fine-tune with the user's loop (or :func:`fine_tune`, a plain Adam + cross-entropy loop),
:func:`export_qdq_onnx`. :func:`qat_digits` runs it all on the embedded digits model
(trained by ``tegra_ai/models/make_digits.py`` on scikit-learn's 8x8 digits).

Torch is heavy: it is imported here only, lazily, and named in a one-line error when
missing (extra ``qat``)."""

from __future__ import annotations

import logging
import os

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.lazy import is_available, require

log = logging.getLogger("tegra_ai.quant.qat")

BACKENDS = ("auto", "modelopt", "torch")


def _torch():
    return require("torch", extra="qat", purpose="quantization-aware training")


def resolve_backend(backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise TegraAIError(f"unknown QAT backend {backend!r}: expected {', '.join(BACKENDS)}", exit_code=EXIT_USAGE)
    if backend == "auto":
        return "modelopt" if is_available("modelopt.torch.quantization") else "torch"
    if backend == "modelopt":
        require("modelopt.torch.quantization", extra="qat", purpose="QAT with NVIDIA Model Optimizer")
    return backend


# --------------------------------------------------------------------------- torch-native fake quant

def _quant_modules():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class FakeQuant(nn.Module):
        """INT8 fake quantization of a Conv/Linear's input (per tensor, amax calibrated by
        max) and weight (per output channel, max); symmetric, straight-through gradients."""

        def __init__(self, layer):
            super().__init__()
            self.layer = layer
            self.register_buffer("input_amax", torch.zeros((), device=layer.weight.device))
            self.calibrating = True

        def scales(self):
            """(input scale, weight scales, weight axis): frozen buffers for export, else live."""
            if getattr(self, "frozen", False):
                return self.input_scale, self.weight_scale, self.axis
            w = self.layer.weight
            axis = 1 if isinstance(self.layer, nn.ConvTranspose2d) else 0
            dims = tuple(d for d in range(w.ndim) if d != axis)
            return ((self.input_amax / 127.0).clamp(min=1e-12).float(),
                    (w.detach().abs().amax(dim=dims) / 127.0).clamp(min=1e-12).float(), axis)

        def freeze(self):
            """Scales become constant buffers: an exported graph has constant Q/DQ scales, as TensorRT requires."""
            s_in, s_w, axis = self.scales()
            self.register_buffer("input_scale", s_in.detach().clone())
            self.register_buffer("weight_scale", s_w.detach().clone())
            self.register_buffer("input_zp", torch.zeros((), dtype=torch.int32, device=s_in.device))
            self.register_buffer("weight_zp", torch.zeros_like(s_w, dtype=torch.int32))
            self.axis, self.frozen = axis, True

        def forward(self, x):
            if self.calibrating:
                self.input_amax = torch.maximum(self.input_amax, x.detach().abs().max())
                return self.layer(x)
            scale, w_scale, axis = self.scales()
            zp = self.input_zp if getattr(self, "frozen", False) else torch.zeros((), dtype=torch.int32, device=x.device)
            w_zp = self.weight_zp if getattr(self, "frozen", False) else torch.zeros_like(w_scale, dtype=torch.int32)
            xq = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)
            w = self.layer.weight
            wq = torch.fake_quantize_per_channel_affine(w, w_scale, w_zp, axis, -128, 127)
            layer = self.layer
            if isinstance(layer, nn.Linear):
                return F.linear(xq, wq, layer.bias)
            if isinstance(layer, nn.ConvTranspose2d):
                return F.conv_transpose2d(xq, wq, layer.bias, layer.stride, layer.padding, layer.output_padding,
                                          layer.groups, layer.dilation)
            return layer._conv_forward(xq, wq, layer.bias)

    return FakeQuant, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def _wrap(model, FakeQuant, kinds, exclude=()):
    wrapped = []
    for name, child in list(model.named_children()):
        if isinstance(child, kinds) and name not in exclude:
            setattr(model, name, FakeQuant(child))
            wrapped.append(name)
        else:
            wrapped += [f"{name}.{w}" for w in _wrap(child, FakeQuant, kinds, exclude)]
    return wrapped


def insert_quantizers(model, calib_batches, backend: str = "auto", exclude=()) -> tuple:
    """Insert INT8 fake quantization and calibrate the activation ranges on ``calib_batches``
    (an iterable of input tensors on the model's device). Returns (model, backend used,
    quantized layer names)."""
    torch = _torch()
    backend = resolve_backend(backend)
    model.eval()
    if backend == "modelopt":
        import modelopt.torch.quantization as mtq

        def forward_loop(m):
            with torch.no_grad():
                for x in calib_batches:
                    m(x)

        model = mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop)
        if exclude:
            mtq.disable_quantizer(model, lambda n: any(n.startswith(e) for e in exclude))
        names = sorted({n.rsplit(".", 1)[0] for n, _ in model.named_modules() if n.endswith("input_quantizer")})
        return model, backend, names
    FakeQuant, kinds = _quant_modules()
    names = _wrap(model, FakeQuant, kinds, exclude)
    if not names:
        raise TegraAIError("the model has no Conv/Linear layer to quantize", exit_code=EXIT_USAGE)
    with torch.no_grad():
        for x in calib_batches:
            model(x)
    for m in model.modules():
        if isinstance(m, FakeQuant):
            if float(m.input_amax) == 0.0:
                raise TegraAIError("calibration saw only zeros at a quantized layer's input; give real samples")
            m.calibrating = False
    return model, backend, names


def fine_tune(model, batches, epochs: int = 3, lr: float = 1e-4, loss_fn=None) -> list:
    """A plain QAT loop: Adam at a small learning rate, cross-entropy; ``batches`` is a
    re-iterable of (inputs, integer labels). Returns the mean loss of each epoch."""
    torch = _torch()
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
        history.append(total / max(n, 1))
    model.eval()
    return history


def export_qdq_onnx(model, example_input, path: str, input_name: str = "input", output_name: str = "output",
                    opset: int = 17, dynamic_batch: bool = True) -> str:
    """Export the fake-quantized model as ONNX with QuantizeLinear/DequantizeLinear (TorchScript
    exporter: its symbolics turn fake quantization into Q/DQ pairs). Opset 17 is read by
    TensorRT 8.5 to 11. Written atomically."""
    torch = _torch()
    from tegra_ai.util.atomic import atomic_write_bytes

    import io

    model.eval()
    for m in model.modules():
        if hasattr(m, "freeze") and hasattr(m, "input_amax"):
            m.freeze()
    axes = {input_name: {0: "N"}, output_name: {0: "N"}} if dynamic_batch else None
    buf = io.BytesIO()
    kwargs = dict(opset_version=opset, input_names=[input_name], output_names=[output_name], dynamic_axes=axes,
                  do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(model, (example_input,), buf, dynamo=False, **kwargs)
        except TypeError:  # torch < 2.5 has no dynamo argument
            torch.onnx.export(model, (example_input,), buf, **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------- the embedded digits model

def digits_module(onnx_path: str | None = None):
    """The embedded digits CNN as a torch module with the ONNX model's FP32 weights."""
    torch = _torch()
    onnx = require("onnx", extra="onnx")
    from onnx import numpy_helper

    from tegra_ai import models

    m = onnx.load(onnx_path or models.DEFAULT_MODEL)
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    nn = torch.nn

    class Digits(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, w["conv.weight"].shape[0], 3, padding=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc = nn.Linear(w["fc.weight"].shape[1], w["fc.weight"].shape[0])

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))

    net = Digits()
    with torch.no_grad():
        net.conv.weight.copy_(w["conv.weight"])
        net.conv.bias.copy_(w["conv.bias"])
        net.fc.weight.copy_(w["fc.weight"])
        net.fc.bias.copy_(w["fc.bias"])
    return net


def qat_digits(output: str, *, epochs: int = 3, lr: float = 1e-4, backend: str = "auto", device: str | None = None,
               seed: int = 0) -> dict:
    """QAT round trip on the embedded model: FP32 weights from digits.onnx, fake quant
    calibrated on the 'calib' split, fine-tuned on the training split (scikit-learn digits,
    as make_digits.py splits it), exported to ``output`` as Q/DQ ONNX and measured against
    the FP32 ONNX on the held-out split with ONNX Runtime. Returns the report."""
    torch = _torch()
    from tegra_ai import models
    from tegra_ai.models import make_digits
    from tegra_ai.quant import compare as cmp
    from tegra_ai.quant.qdq import check_for_target

    torch.manual_seed(seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = make_digits.load_digits_uint8()
    (tr_x, tr_y), _ = make_digits.split(images, labels)
    calib_x, _ = models.load_samples("calib")
    val_x, val_y = models.load_samples("val")
    to_t = lambda a: torch.from_numpy((a.astype(np.float32) / 255.0)[:, None]).to(device)  # noqa: E731
    net = digits_module().to(device)
    calib = [to_t(calib_x[i:i + 64]) for i in range(0, len(calib_x), 64)]
    net, used, layers = insert_quantizers(net, calib, backend)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(tr_y), generator=g).numpy()
    xt, yt = to_t(tr_x[order]), torch.from_numpy(tr_y[order]).to(device)
    batches = [(xt[i:i + 64], yt[i:i + 64]) for i in range(0, len(yt), 64)]
    losses = fine_tune(net, batches, epochs=epochs, lr=lr)
    export_qdq_onnx(net.to("cpu"), to_t(val_x[:2]).cpu(), output, input_name="input", output_name="logits")
    problems = check_for_target(output, "jetpack6")
    feed = {"input": (val_x.astype(np.float32) / 255.0)[:, None]}
    report = cmp.compare(models.DEFAULT_MODEL, output, feed, labels=val_y, gate=cmp.Gate(max_top1_drop=1.0))
    onnx = require("onnx", extra="onnx")
    q = onnx.load(output)
    return {"output": output, "backend": used, "device": device, "quantized_layers": layers, "epochs": epochs,
            "losses": [round(v, 5) for v in losses],
            "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q.graph.node),
            "preflight_errors": problems, "accuracy": report, "size_bytes": os.path.getsize(output)}
