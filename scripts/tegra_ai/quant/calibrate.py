"""TensorRT's INT8 entropy calibration for the host quantizer.

The method is NVIDIA's (Szymon Migacz, "8-bit Inference with TensorRT", GTC 2017, and
pytorch-quantization's ``HistogramCalibrator._compute_amax_entropy``): a histogram of
``|x|`` with 2048 bins per activation, then, for every candidate threshold from bin 128
to the last, the reference distribution P (the bins below the threshold, the outliers
added to the last one) and its quantization Q onto 128 levels (INT8's positive half,
spread back over P's nonzero bins); the threshold is the one with the smallest
KL(P || Q).

ONNX Runtime's ``CalibrationMethod.Entropy`` as ``quantize_static`` calls it uses 128
histogram bins and 128 quantized bins, so its KL search has a single candidate and gives
min-max scales; ``quantize_static``'s extra_options cannot change that. Here ONNX
Runtime's calibrator collects the ``|x|`` histograms (its percentile collector, 2048
bins, symmetric), this module picks the thresholds, and ``quantize_static`` reads them
through its calibration cache (``calibration_cache_path``, ONNX Runtime >= 1.27; 1.26 has none)."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128


def entropy_threshold(hist, edges, num_quantized_bins: int = NUM_QUANTIZED_BINS, start_bin: int | None = None) -> float:
    """The ``|x|`` threshold with the smallest KL divergence for a histogram of ``|x|``
    (``hist``: counts, ``edges``: len(hist) + 1 bin edges starting at 0)."""
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    n = hist.size
    total = hist.sum()
    if total == 0 or n <= num_quantized_bins:
        return float(edges[-1])
    start = num_quantized_bins if start_bin is None else start_bin
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    best_i, best_kl = n, np.inf
    for i in range(start, n + 1):
        ref = hist[:i].copy()
        ref[-1] += tail[i]
        # i bins onto num_quantized_bins levels, each level spread evenly over its nonzero bins
        level = (np.arange(i) * num_quantized_bins) // i
        nonzero = hist[:i] != 0
        counts = np.bincount(level, weights=hist[:i], minlength=num_quantized_bins)
        used = np.bincount(level, weights=nonzero.astype(np.float64), minlength=num_quantized_bins)
        density = np.divide(counts, used, out=np.zeros_like(counts), where=used > 0)
        q = np.where(nonzero, density[level], 0.0)
        p = ref / ref.sum()
        qs = q.sum()
        if qs == 0:
            continue
        q = q / qs
        mask = p > 0
        if np.any(q[mask] == 0):
            kl = np.inf
        else:
            kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl <= best_kl:  # ties: the larger threshold, as pytorch-quantization's last argmin
            best_i, best_kl = i, kl
    return float(edges[best_i])


def entropy_ranges(model_path: str, batch_list, op_types, workdir: str):
    """ONNX Runtime ``TensorsData`` (method Entropy) with TensorRT's entropy thresholds for
    every tensor ONNX Runtime's calibrator would calibrate in ``model_path``."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    from tegra_ai.quant.qdq import _reader

    cal = create_calibrator(model_path, list(op_types), augmented_model_path=os.path.join(workdir, "augmented.onnx"),
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"symmetric": True, "num_bins": NUM_BINS, "percentile": 100.0})
    with contextlib.redirect_stdout(io.StringIO()):  # the collector prints progress
        for batch in batch_list:  # one batch at a time: the collector stacks a call's outputs (a smaller last batch)
            cal.collect_data(_reader([batch]))
    data = {}
    for name, (hist, edges, _lo, _hi) in cal.collector.histogram_dict.items():
        t = np.float32(entropy_threshold(hist, edges))
        data[name] = TensorData(lowest=np.array(-t, dtype=np.float32), highest=np.array(t, dtype=np.float32),
                                hist=np.asarray(hist), hist_edges=np.asarray(edges, dtype=np.float32))
    del cal
    return TensorsData(CalibrationMethod.Entropy, data)
