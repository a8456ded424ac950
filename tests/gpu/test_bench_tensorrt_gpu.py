"""On a Jetson (full TensorRT + GPU): model-benchmark's TensorRT path. The device API
(pinned buffers, one execution context per stream) gives ONNX Runtime's logits, and a
benchmark with streams and CUDA graphs reports the split and the device state."""

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tegra_ai import models
    from tegra_ai.spec import BuildOptions
    from tegra_ai.trt.builder import build_engine, write_engine

    path = str(tmp_path_factory.mktemp("e") / "digits.engine")
    # two streams below (fork, --streams 2): one optimization profile per execution context
    r = build_engine(models.DEFAULT_MODEL, BuildOptions.from_request(precision="fp16", contexts=2,
                     shapes=["input:1x1x8x8:8x1x8x8:64x1x8x8"]), show_progress=False)
    write_engine(r, path)
    return path


def test_device_api_matches_onnxruntime(engine):
    from tegra_ai import models
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.cuda.driver import Stream

    x, _ = models.load_samples("val")
    feed = {"input": (x[:8].astype(np.float32) / 255.0)[:, None]}
    with OnnxRuntimeRunner(models.DEFAULT_MODEL) as ref, TensorRTRunner(engine, shapes={"input": (8, 1, 8, 8)}) as trt:
        want = ref.infer(feed)["logits"]
        trt.host_buffers["input"][...] = feed["input"]
        other = trt.fork()
        for runner in (trt, other):
            s = Stream()
            runner.run_async(s)
            s.synchronize()
            got = runner.host_buffers["logits"]
            assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
        other.deactivate()


@pytest.mark.parametrize("graph", [False, True])
def test_benchmark_engine(engine, graph):
    from tegra_ai.bench.harness import BenchConfig
    from tegra_ai.bench.run import benchmark_model

    rep = benchmark_model(engine, shapes={"input": (8, 1, 8, 8)},
                          config=BenchConfig(warmup_ms=50, duration_s=0.5, streams=2, cuda_graph=graph))
    r = rep["results"]
    assert rep["backend"] == "tensorrt" and rep["precision"] == "fp16" and rep["batch"] == 8
    assert r["queries"] >= 10 and r["compute_ms"]["median"] > 0 and r["h2d_ms"] is not None
    assert r["throughput_samples_per_s"] == pytest.approx(8 * r["throughput_qps"])
    assert rep["device"]["jetson"] and rep["device"]["module"]
