"""tensorrt-optimize export: a Triton model repository (checked against Triton's own
ModelConfig schema, tritonclient's model_config_pb2) and Gst-nvinfer configs (keys and
semantics of DeepStream's documented property list, see export/deepstream.py)."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os

import numpy as np
import pytest

from badinput import invoke, tree_state
from tegra_ai import platform
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cli.optimize import main
from tegra_ai.onnx_files import model_digest
from tegra_ai.preprocess.spec import PreprocessSpec
from tegra_ai.spec import BuildOptions, Sidecar, parse_profile, profiles_to_json
from tegra_ai.trt import compat
from tegra_ai.trt.builder import BuildResult, engine_key

from onnx_models import make_model

ORIN = platform.DeviceFacts("8.7", "Orin", "p3701-0005", "36.4.3", 16, "12.6")
FEATS = compat.features_for("10.3.0.30")
DET_PROFILE = "input:1x3x16x16:4x3x16x16:8x3x16x16"
LETTERBOX = {"height": 16, "width": 16, "resize": "letterbox", "channel_order": "rgb", "scale": 1 / 255,
             "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
CROP = {"height": 16, "width": 16, "resize": "center_crop", "resize_short": 18}
PER_CHANNEL = {"height": 16, "width": 16, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def model_config_pb2():
    """Triton's generated ModelConfig module, loaded from the tritonclient wheel without
    importing tritonclient.grpc (which needs grpcio)."""
    pytest.importorskip("google.protobuf", reason="protobuf is not installed (.ci/pip-packages.txt)")
    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip("tritonclient is not installed (.ci/pip-packages.txt): Triton's ModelConfig schema is needed")
    path = os.path.join(os.path.dirname(spec.origin), "grpc", "model_config_pb2.py")
    mspec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def parse_pbtxt(path):
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    with open(path) as f:
        return text_format.Parse(f.read(), pb2.ModelConfig()), pb2


class Builder:
    """Writes bytes and a real Sidecar with the IO a TensorRT build records (trt/builder.py)."""

    IO = {"det": ([{"name": "input", "dims": [None, 3, 16, 16], "dtype": "float32"}],
                  [{"name": "output0", "dims": [None, 84, 8400], "dtype": "float32"}]),
          # sidecar of an engine built before outputs were recorded: the exporter reads the ONNX model
          "cls": ([{"name": "input", "dims": [1, 3, 16, 16], "dtype": "float32"}], [])}

    def __call__(self, entry):
        _key, material = engine_key(entry.sha256, entry.options, FEATS, ORIN)
        inputs, outputs = self.IO.get(entry.name, self.IO["det"])
        return BuildResult(engine=f"engine-of-{entry.name}".encode(),
                           sidecar=Sidecar.new(material, build_seconds=0.0, inputs=inputs, outputs=outputs,
                                               builder_flags=["FP16"],
                                               profiles=profiles_to_json(entry.options.profile_objects())))


def make_cache(tmp_path, det_pre=LETTERBOX, cls_pre=None, build=("det", "cls")):
    bundle, cache = str(tmp_path / "bundle"), str(tmp_path / "cache")
    det = make_model(str(tmp_path / "det.onnx"), input_dims=("N", 3, 16, 16))
    cls = make_model(str(tmp_path / "cls.onnx"), input_dims=(1, 3, 16, 16))
    for name, path, opts, pre in (("det", det, BuildOptions(precision="fp16", profiles=[parse_profile(DET_PROFILE)]),
                                   det_pre),
                                  ("cls", cls, BuildOptions(precision="fp16"), cls_pre)):
        sha, files = model_digest(path)
        add_to_bundle(bundle, name, files, sha, opts, PreprocessSpec.from_dict(pre).to_dict() if pre else None)
    if build:
        # ensure (the first-boot service) fills the cache; the models not in `build` stay unbuilt
        from tegra_ai.cache.manifest import load_manifest

        names = set(build)
        man = os.path.join(bundle, "manifest.json")
        if names != {"det", "cls"}:
            data = json.load(open(man))
            full = data["models"]
            data["models"] = [m for m in full if m["name"] in names]
            json.dump(data, open(man, "w"))
        summary = ensure([bundle], cache, builder=Builder(), loader=None, runtime=(FEATS, lambda o: ORIN),
                         show_progress=False, log=lambda m: None)
        assert summary["exit_code"] == 0, summary
        if names != {"det", "cls"}:
            data["models"] = full
            json.dump(data, open(man, "w"))
        assert load_manifest(man)
    return bundle, cache


def test_triton_repository_parses_as_triton_model_config(tmp_path):
    bundle, cache = make_cache(tmp_path)
    repo = str(tmp_path / "repo")
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--triton", repo, "--instances", "2",
                        "--json"], str(tmp_path))
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["models"] == ["cls", "det"] and summary["skipped"] == []

    det, pb2 = parse_pbtxt(os.path.join(repo, "det", "config.pbtxt"))
    assert det.name == "det" and det.platform == "tensorrt_plan" and det.default_model_filename == "model.plan"
    # dynamic batch: max_batch_size = profile 0's max batch, dims without the batch dimension
    assert det.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in det.input] == [("input", pb2.TYPE_FP32, [3, 16, 16])]
    assert [(o.name, o.data_type, list(o.dims)) for o in det.output] == [("output0", pb2.TYPE_FP32, [84, 8400])]
    assert det.HasField("dynamic_batching")
    assert [(g.count, g.kind, list(g.profile)) for g in det.instance_group] == \
        [(2, pb2.ModelInstanceGroup.KIND_GPU, ["0"])]
    plan = os.path.join(repo, "det", "1", "model.plan")
    assert os.readlink(plan) == os.path.join(cache, "det.engine")        # the stable link ensure updates
    assert open(plan, "rb").read() == b"engine-of-det"

    cls, _ = parse_pbtxt(os.path.join(repo, "cls", "config.pbtxt"))
    # static batch 1: no batching dimension, full dims, no dynamic batcher; outputs from the ONNX model
    assert cls.max_batch_size == 0 and not cls.HasField("dynamic_batching")
    assert [list(i.dims) for i in cls.input] == [[1, 3, 16, 16]]
    assert [(o.name, list(o.dims)) for o in cls.output] == [("output", [1, 4, 16, 16])]

    # exporting again replaces only its own files
    assert invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--triton", repo], str(tmp_path)).code == 0


def test_triton_copy_and_foreign_files_refused(tmp_path):
    bundle, cache = make_cache(tmp_path)
    repo = tmp_path / "repo"
    (repo / "det").mkdir(parents=True)
    (repo / "det" / "config.pbtxt").write_text('name: "det"\nplatform: "onnxruntime_onnx"\n')   # the user's
    before = tree_state(str(tmp_path))
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--triton", str(repo), "--copy"],
                 str(tmp_path))
    assert res.code == 2 and len(res.lines) == 1 and "not written by export" in res.lines[0]
    assert tree_state(str(tmp_path)) == before
    (repo / "det" / "config.pbtxt").unlink()
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--triton", str(repo), "--copy"],
                 str(tmp_path))
    assert res.code == 0, res.stderr
    plan = repo / "det" / "1" / "model.plan"
    assert not plan.is_symlink() and plan.read_bytes() == b"engine-of-det"
    assert Sidecar.load(str(plan) + ".json").engine_size == len(b"engine-of-det")


def nvinfer(path):
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    return cp


def test_deepstream_config(tmp_path):
    bundle, cache = make_cache(tmp_path)
    spec = tmp_path / "det.json"
    spec.write_text(json.dumps({"head": "yolov8", "score_threshold": 0.3, "iou_threshold": 0.5, "max_det": 100}))
    out = str(tmp_path / "ds")
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--name", "det", "--deepstream", out,
                        "--detection", f"det={spec}", "--bbox-parser", "NvDsInferParseYolo:/opt/lib/libyolo.so"],
                 str(tmp_path))
    assert res.code == 0, res.stderr
    assert "nvinfer pads the letterbox with black" in res.stdout       # pad_value 114 noted, not hidden
    cfg = nvinfer(os.path.join(out, "det_nvinfer.txt"))
    p = cfg["property"]
    assert p["model-engine-file"] == os.path.join(cache, "det.engine")
    assert (p["batch-size"], p["network-mode"], p["infer-dims"]) == ("8", "2", "3;16;16")
    assert (p["model-color-format"], p["maintain-aspect-ratio"], p["symmetric-padding"]) == ("0", "1", "1")
    assert (p["network-type"], p["num-detected-classes"], p["cluster-mode"]) == ("0", "80", "2")
    assert (p["parse-bbox-func-name"], p["custom-lib-path"]) == ("NvDsInferParseYolo", "/opt/lib/libyolo.so")
    c = cfg["class-attrs-all"]
    assert (float(c["pre-cluster-threshold"]), float(c["nms-iou-threshold"]), c["topk"]) == (0.3, 0.5, "100")
    # nvinfer: y = net-scale-factor * (x - offsets[c]) must equal our (x * scale - mean) / std
    pre = PreprocessSpec.from_dict(LETTERBOX)
    x = np.arange(0, 256, 17, dtype=np.float64)
    nsf, offsets = float(p["net-scale-factor"]), [float(v) for v in p["offsets"].split(";")]
    for ch in range(3):
        np.testing.assert_allclose(nsf * (x - offsets[ch]), (x * pre.scale - pre.mean[ch]) / pre.std[ch], rtol=1e-12)


@pytest.mark.parametrize("pre,line", [
    (CROP, "center_crop"),
    (PER_CHANNEL, "per-channel std"),
])
def test_deepstream_refuses_what_nvinfer_cannot_express(tmp_path, pre, line):
    bundle, cache = make_cache(tmp_path, det_pre=pre)
    before = tree_state(str(tmp_path))
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--name", "det",
                        "--triton", str(tmp_path / "repo"), "--deepstream", str(tmp_path / "ds")], str(tmp_path))
    assert res.code == 2 and len(res.lines) == 1, res.stderr
    assert line in res.lines[0] and "Gst-nvinfer cannot express it" in res.lines[0]
    assert tree_state(str(tmp_path)) == before          # neither target wrote anything


def test_deepstream_needs_a_preprocessing_spec(tmp_path):
    bundle, cache = make_cache(tmp_path)
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--deepstream", str(tmp_path / "ds")],
                 str(tmp_path))
    assert res.code == 2 and "model cls: no preprocessing spec" in res.lines[0]
    assert not (tmp_path / "ds").exists()


def test_detector_needs_a_bbox_parser(tmp_path):
    bundle, cache = make_cache(tmp_path)
    spec = tmp_path / "det.json"
    spec.write_text('{"head": "yolov8"}')
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--name", "det", "--deepstream",
                        str(tmp_path / "ds"), "--detection", f"det={spec}"], str(tmp_path))
    assert res.code == 2 and "no built-in parser for yolov8" in res.lines[0]
    assert not (tmp_path / "ds").exists()


def test_unbuilt_model_skipped_exit_1(tmp_path):
    bundle, cache = make_cache(tmp_path, build=("det",))
    repo = str(tmp_path / "repo")
    res = invoke(main, ["export", "--manifest", bundle, "--cache", cache, "--triton", repo, "--json"], str(tmp_path))
    assert res.code == 1
    summary = json.loads(res.stdout)
    assert summary["models"] == ["det"] and summary["skipped"][0]["name"] == "cls"
    assert os.path.isfile(os.path.join(repo, "det", "config.pbtxt")) and not os.path.exists(os.path.join(repo, "cls"))
