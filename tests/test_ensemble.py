"""Ensemble descriptions, combine rules, and both ensemble kinds end to end on the
embedded digits model with ONNX Runtime (CPU)."""

import json
import os

import numpy as np
import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.models import HERE as MODELS
from tegra_ai.runtime.ensemble import Cascade, Parallel, combine, load, parse

EXAMPLE = os.path.join(MODELS, "digits-ensemble.json")


def test_example_description_parses():
    d = load(EXAMPLE)
    assert isinstance(d.ensembles["pair"], Parallel) and d.ensembles["pair"].models == ("digits", "digits_b")
    c = d.ensembles["cascade"]
    assert isinstance(c, Cascade) and c.detection.num_classes == 1 and c.max_crops == 4
    assert d.models["digits"].path == os.path.join(MODELS, "digits.onnx")  # relative to the file
    assert d.models["digits_b"].workers == 2
    assert d.models_used(["cascade"]) == ["locator", "digits"]


def test_yaml_equals_json(tmp_path):
    yaml = pytest.importorskip("yaml")
    data = json.load(open(EXAMPLE))
    for m in data["models"].values():
        for k in ("onnx", "preprocess"):
            m[k] = os.path.join(MODELS, m[k])
    p = tmp_path / "e.yaml"
    p.write_text(yaml.safe_dump(data))
    assert load(str(p)).ensembles == load(EXAMPLE).ensembles


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "format 'other'"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(extra=1), "unknown field(s) extra"),
    (lambda d: d.update(models={}), "'models' must be a non-empty object"),
    (lambda d: d["models"]["digits"].pop("onnx"), "needs exactly one of onnx, engine, cached"),
    (lambda d: d["models"]["digits"].update(engine="x.engine"), "needs exactly one of"),
    (lambda d: d["models"]["digits"].update(workers=0), "workers must be a positive integer"),
    (lambda d: d["models"]["digits"].update(preprocess={"height": 8}), "preprocessing spec"),
    (lambda d: d["models"]["digits"].update(preprocess="nope.json"), "preprocess file"),
    (lambda d: d["models"]["digits"].update(preprocess={"height": 8, "width": 8, "resize": "center_crop"}),
     "needs resize_short >= 8"),
    (lambda d: d["ensembles"]["pair"].update(combine="max"), "combine 'max'"),
    (lambda d: d["ensembles"]["pair"].update(parallel=["digits"]), "at least two"),
    (lambda d: d["ensembles"]["pair"].update(parallel=["digits", "ghost"]), "unknown model 'ghost'"),
    (lambda d: d["ensembles"]["cascade"].update(classifier="ghost"), "classifier 'ghost'"),
    (lambda d: d["ensembles"]["cascade"]["detection"].update(head="yolo"), "detection spec: head='yolo'"),
    (lambda d: d["ensembles"]["cascade"].update(max_crops=0), "max_crops"),
    (lambda d: d["ensembles"].update(bad={"models": []}), "needs 'parallel'"),
    (lambda d: d["models"].update({"a b": {"onnx": "x.onnx"}}), "name 'a b'"),
])
def test_validation_errors(tmp_path, mutate, message):
    data = json.load(open(EXAMPLE))
    mutate(data)
    with pytest.raises(TegraAIError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse(data, EXAMPLE)
    assert e.value.exit_code == 2


def test_combine_rules():
    a, b, c = np.array([[0.1, 0.7, 0.2]]), np.array([[0.5, 0.4, 0.1]]), np.array([[0.6, 0.3, 0.1]])
    assert combine("mean", {"a": a, "b": b}) == {"class": 1, "score": 0.55, "members": {"a": 1, "b": 0}}
    assert combine("vote", {"a": a, "b": b, "c": c})["class"] == 0
    assert combine("vote", {"a": a, "b": b})["class"] == 0  # 1:1 tie -> lowest class
    assert combine("concat", {"a": a, "b": b})["shape"] == [1, 6]
    with pytest.raises(TegraAIError, match="differ in shape"):
        combine("mean", {"a": a, "b": np.zeros((1, 4))})


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


def test_parallel_ensemble_digits_accuracy(ort):
    from tegra_ai.models import load_samples
    from tegra_ai.runtime.ensemble import EnsembleRunner

    images, labels = load_samples("val")
    with EnsembleRunner(load(EXAMPLE), ["pair"]) as r:
        got = [r.run(im)["pair"] for im in images[:100]]
        stats = r.runtime.stats()
    assert np.mean([g["class"] for g in got] == labels[:100]) > 0.95
    assert all(g["members"]["digits"] == g["members"]["digits_b"] for g in got)  # same model twice
    assert stats["digits"]["requests"] == stats["digits_b"]["requests"] == 100


def test_cascade_finds_and_classifies_the_digits(ort):
    from tegra_ai.runtime.ensemble import EnsembleRunner

    with np.load(os.path.join(MODELS, "digits_grid_samples.npz")) as d:
        images, truth = d["images"], d["labels"]
    right = total = false_pos = 0
    with EnsembleRunner(load(EXAMPLE), ["cascade"]) as r:
        for im, t in zip(images, truth):
            found = {}
            for det in r.run(im)["cascade"]["detections"]:
                x1, y1, x2, y2 = det["box"]
                found[int((y1 + y2) / 2 // 16) * 2 + int((x1 + x2) / 2 // 16)] = det["label"]
            for cell in range(4):
                if t[cell] >= 0:
                    total += 1
                    right += found.get(cell) == t[cell]
                else:
                    false_pos += cell in found
    assert right / total > 0.9 and false_pos == 0


def test_cascade_with_a_fixed_batch_classifier(ort, tmp_path):
    """An engine built for batch 1 (common on Jetson) gets one request per crop."""
    import onnx
    from tegra_ai.runtime.ensemble import EnsembleRunner

    m = onnx.load(os.path.join(MODELS, "digits.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(m, str(tmp_path / "digits1.onnx"))
    data = json.load(open(EXAMPLE))
    for entry in data["models"].values():
        for k in ("onnx", "preprocess"):
            entry[k] = os.path.join(MODELS, entry[k])
    data["models"]["digits"]["onnx"] = str(tmp_path / "digits1.onnx")
    (tmp_path / "e.json").write_text(json.dumps(data))
    with np.load(os.path.join(MODELS, "digits_grid_samples.npz")) as d:
        images = d["images"][:8]
    with EnsembleRunner(load(EXAMPLE), ["cascade"]) as ref, EnsembleRunner(load(str(tmp_path / "e.json")),
                                                                           ["cascade"]) as one:
        assert one.runtime.input_metadata("digits")[0].shape[0] == 1
        for im in images:
            a, b = ref.run(im)["cascade"]["detections"], one.run(im)["cascade"]["detections"]
            assert [d["label"] for d in a] == [d["label"] for d in b] and len(a) >= 1


def test_cli_runs_both_ensembles_json(ort, capsys):
    from tegra_ai.cli.ensemble import main

    npz = os.path.join(MODELS, "digits_grid_samples.npz")
    # Each grid image: the parallel pair classifies it whole (stretched to 8x8), the cascade per cell.
    code = main([EXAMPLE, "--npz", npz, "--max-samples", "6", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["summary"]["images"] == 6 and set(out["results"]) == {"pair", "cascade"}
    assert all("detections" in r for r in out["results"]["cascade"])
    assert out["summary"]["models"]["locator"]["requests"] == 6


def test_cli_accuracy_and_check(ort, capsys):
    from tegra_ai.cli.ensemble import main

    samples = os.path.join(MODELS, "digits_samples.npz")
    assert main([EXAMPLE, "--ensemble", "pair", "--npz", samples, "--npz-key", "val_images",
                 "--labels", "val_labels", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["accuracy"]["pair"] > 0.95
    assert main([EXAMPLE, "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def reshape_model(path, cols=7):
    """Input x float [?, ?, ?] reshaped to [-1, cols]: fails at run time unless the size divides."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("ReduceSum", ["r"], ["y"], keepdims=1)],
        "reshape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", "b", "c"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([-1, cols], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def test_cli_reports_a_failing_model_with_exit_1(ort, tmp_path, capsys):
    from tegra_ai.cli.ensemble import main

    reshape_model(str(tmp_path / "r.onnx"))
    desc = {"models": {"a": {"onnx": "r.onnx"}, "b": {"onnx": "r.onnx"}},
            "ensembles": {"p": {"parallel": ["a", "b"], "combine": "concat"}}}
    (tmp_path / "e.json").write_text(json.dumps(desc))
    # 16x16x3 = 768 values: not a multiple of 7, every request fails inside ONNX Runtime.
    code = main([str(tmp_path / "e.json"), "--synthetic", "2x16x16", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["summary"]["failures"] == 2 and "error" in out["results"]["p"][0]
    assert main([str(tmp_path / "e.json"), "--synthetic", "2x14x16", "--json", "--no-progress"]) == 0  # 672 = 96 * 7
    assert json.loads(capsys.readouterr().out)["results"]["p"][0]["shape"] == [1, 2]


def _described(tmp_path, mutate):
    data = json.load(open(EXAMPLE))
    for entry in data["models"].values():
        for k in ("onnx", "preprocess"):
            if isinstance(entry.get(k), str):
                entry[k] = os.path.join(MODELS, entry[k])
    mutate(data)
    path = tmp_path / "e.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("mutate,message", [
    # the classifier's crops are preprocessed to 10x10, the model takes 8x8
    (lambda d: d["models"]["digits"].update(preprocess={"height": 10, "width": 10, "channel_order": "gray",
                                                       "input_format": "gray8", "mean": [0], "std": [1]}),
     "model digits: its preprocessing makes [1, 10, 10] per image, its input input takes [?, 1, 8, 8]"),
    # RGB crops into a one-channel classifier
    (lambda d: d["models"]["digits"].update(preprocess={"height": 8, "width": 8}),
     "its preprocessing makes [3, 8, 8] per image"),
    # the locator's head [N, 5, 4] is 4 + 1 class, not 4 + 3
    (lambda d: d["ensembles"]["cascade"]["detection"].update(num_classes=3),
     "detector locator's output [?, 5, 4] does not fit its detection spec"),
    # 10 logits and a 5x4 head cannot be averaged
    (lambda d: d["ensembles"]["pair"].update(parallel=["digits", "locator"]),
     "combine mean needs equal output shapes; digits gives [?, 10], locator [?, 5, 4]"),
])
def test_check_catches_shape_mismatches_between_chained_models(tmp_path, capsys, mutate, message):
    pytest.importorskip("onnx")
    from tegra_ai.cli.ensemble import main

    path = _described(tmp_path, mutate)
    code = main([path, "--check", "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert main([_described(tmp_path, lambda d: None), "--check"]) == 0      # the example itself fits


def test_device_gpu_without_cuda_python_fails_once_at_start(tmp_path, capsys, monkeypatch):
    from tegra_ai.cli.ensemble import main
    from tegra_ai.cuda import driver
    from tegra_ai.errors import MissingDependencyError

    calls = []

    def missing(ordinal=0):
        calls.append(ordinal)
        raise MissingDependencyError("cuda-python", extra="cuda", purpose="running CUDA kernels")

    monkeypatch.setattr(driver, "ensure_context", missing)
    code = main([EXAMPLE, "--synthetic", "5x32x32", "--device", "gpu", "--no-progress", "--json"])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 69 and len(calls) == 1 and len(lines) == 1 and "cuda-python" in lines[0]
    assert json.loads(out)["exit_code"] == 69
