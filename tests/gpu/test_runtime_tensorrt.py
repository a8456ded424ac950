"""On a Jetson (full TensorRT): the engine as a device runner in the pipeline and in
the multi-model runtime, against ONNX Runtime on the same frames."""

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.fixture(scope="module")
def digits_engine(tmp_path_factory, default_model):
    pytest.importorskip("tensorrt", reason="full TensorRT is not installed")
    from tegra_ai.spec import BuildOptions, parse_profile
    from tegra_ai.trt.builder import build_engine, write_engine

    path = tmp_path_factory.mktemp("engine") / "d.engine"
    r = build_engine(default_model, BuildOptions(profiles=[parse_profile("input:1x1x8x8:1x1x8x8:8x1x8x8")], contexts=3),
                     show_progress=False)
    write_engine(r, str(path))
    return str(path)


def test_pipeline_with_engine_matches_onnxruntime(digits_engine, default_model):
    from tegra_ai import models
    from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.preprocess.reference import preprocess_batch_reference
    from tegra_ai.runtime.pipeline import Pipeline

    spec = models.load_preprocess_spec()
    images, _ = models.load_samples("val")
    trt = TensorRTRunner(digits_engine, shapes={"input": (1, 1, 8, 8)})
    pipe = Pipeline(spec, trt, streams=3)
    got = [r.outputs["logits"][0] for r in pipe.run(list(images[:50]))]
    with OnnxRuntimeRunner(default_model) as ref:
        want = ref.infer({"input": preprocess_batch_reference(spec, list(images[:50])).astype(np.float32)})["logits"]
    assert np.abs(np.array(got) - want).max() < 0.05 * np.abs(want).max()


def test_runtime_with_engine_workers(digits_engine):
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.runtime import ModelRuntime

    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    with ModelRuntime({"d": lambda: TensorRTRunner(digits_engine)}, workers=2) as rt:
        outs = [f.result()["logits"] for f in [rt.submit("d", {"input": x}) for _ in range(8)]]
    assert all(np.array_equal(o, outs[0]) for o in outs)
