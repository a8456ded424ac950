"""Quantization and reduced precision on the host (no GPU): Q/DQ INT8 ONNX for
TensorRT's explicit quantization (:mod:`.qdq`), FP16 ONNX for strongly typed builders
(:mod:`.fp16`), the accuracy comparison and gate (:mod:`.compare`), the mixed-precision
fallback (:mod:`.fallback`) and quantization-aware training (:mod:`.qat`)."""
