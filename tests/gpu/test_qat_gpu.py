"""QAT round trip on the GPU: the embedded digits model, fake-quantized (NVIDIA Model
Optimizer where installed, else the torch-native path), fine-tuned on CUDA, exported as a
Q/DQ ONNX that passes the TensorRT preflight, and measured against the FP32 ONNX on the
held-out digits with ONNX Runtime."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'meta-tegra-ai[qat]')")
pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch sees no CUDA GPU")]

from tegra_ai.util.lazy import is_available  # noqa: E402


@pytest.mark.parametrize("backend", ["torch", "modelopt"])
def test_qat_round_trip(tmp_path, backend):
    if backend == "modelopt" and not is_available("modelopt.torch.quantization"):
        pytest.skip("NVIDIA Model Optimizer is not installed (pip install nvidia-modelopt); the torch path ran")
    import onnx

    from tegra_ai.quant.qat import qat_digits

    r = qat_digits(str(tmp_path / "digits.qat.onnx"), epochs=3, backend=backend, device="cuda")
    assert r["backend"] == backend and r["device"] == "cuda"
    assert r["preflight_errors"] == [] and r["qdq_nodes"] >= 4
    assert r["losses"][-1] < 0.2  # it trained (FP32 start, cross-entropy on the training split)
    c = r["accuracy"]["outputs"]["logits"]["classifier"]
    assert c["candidate_top1_accuracy"] >= c["reference_top1_accuracy"] - 0.01 and r["accuracy"]["passed"]
    m = onnx.load(r["output"])
    dq_out = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    fed = {n.op_type for n in m.graph.node if set(n.input) & dq_out}
    # Q/DQ on the inputs of Conv/Gemm (Model Optimizer's INT8 recipe also quantizes pooling inputs)
    assert fed <= {"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool"} and {"Conv", "Gemm"} <= fed
