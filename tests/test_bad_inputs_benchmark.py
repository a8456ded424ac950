"""Bad-input catalogue of model-benchmark and model-benchmark suite: each case exits
with its documented code and one error line, writes nothing and prints no traceback."""

import json
import os
import shutil

import pytest

from badinput import assert_bad_input
from tegra_ai.cli.benchmark import main
from tegra_ai.models import __file__ as models_init

DIGITS = os.path.join(os.path.dirname(models_init), "digits.onnx")
FAST = ["--duration", "0.01", "--warmup", "0", "--no-progress", "--power", "none"]


@pytest.fixture
def work(tmp_path):
    shutil.copy(DIGITS, tmp_path / "digits.onnx")
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    (tmp_path / "old.json").write_text(json.dumps({"format": "tegra-ai-benchmark", "version": 99, "results": {}}))
    (tmp_path / "exists.json").write_text("[]")
    (tmp_path / "adir").mkdir()
    return tmp_path


CASES = [
    # (argv, exit code, text in the error line)
    (["missing.onnx"] + FAST, 2, "missing.onnx does not exist"),
    (["adir"] + FAST, 2, "is a directory"),
    (["notes.txt"] + FAST, 2, "cannot tell what notes.txt is"),
    (["digits.onnx", "--backend", "tensorrt"] + FAST, 2, "runs a built engine"),
    (["model.engine", "--backend", "onnxruntime"] + FAST, 2, "is a TensorRT engine"),
    (["digits.onnx"] + FAST, 2, "dynamic dimensions"),
    (["digits.onnx", "--shapes", "input:1x1x9x8"] + FAST, 2, "does not fit the model's input"),
    (["digits.onnx", "--shapes", "nosuch:1x1x8x8"] + FAST, 2, "unknown input(s) nosuch"),
    (["digits.onnx", "--shapes", "input:1xAx8"] + FAST, 2, "in --shapes 'input:1xAx8'"),
    (["digits.onnx", "--shapes", "k=1:2:3"] + FAST, 2, "shape-tensor values are a build option"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--shapes", "input:2x1x8x8"] + FAST, 2, "gives input 'input' twice"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--streams", "2"] + FAST, 2, "runs on the host"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--cuda-graph"] + FAST, 2, "runs on the host"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--streams", "0"] + FAST, 2, "--streams must be between 1 and 64"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--iterations", "0"] + FAST, 2, "--iterations must be >= 1"),
    (["digits.onnx", "--duration", "-1"], 2, "argument --duration"),
    (["digits.onnx", "--percentile", "90,101"] + FAST, 2, "percentiles must be in [0, 100]"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--json", "--csv"] + FAST, 2, "--json and --csv are exclusive"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--compare", "nope.json"] + FAST, 2, "nope.json does not exist"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--compare", "bad.json", "--json"] + FAST, 2, "is not JSON"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--compare", "other.json"] + FAST, 2, "not a model-benchmark report"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--compare", "old.json"] + FAST, 2, "version 99 report"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--threshold", "3"] + FAST, 2, "--threshold applies with --compare"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--export-times", "exists.json"] + FAST, 2, "already exists"),
    (["digits.onnx", "--shapes", "input:1x1x8x8", "--export-times", "nodir/t.json"] + FAST, 2, "does not exist"),
    (["workload:fast"] + FAST, 2, "bad workload"),
    (["workload:100us", "--backend", "onnxruntime"] + FAST, 2, "runs only with --backend cuda-workload"),
    (["digits.onnx", "--backend", "cuda-workload"] + FAST, 2, "takes MODEL as workload:MICROSECONDS"),
    (["digits.onnx", "--backend", "nosuch"] + FAST, 2, "invalid choice"),
    # diff
    (["diff", "nope.json", "bad.json"], 2, "report nope.json does not exist"),
    (["diff", "bad.json", "other.json"], 2, "is not JSON"),
    (["diff", "other.json", "bad.json", "--json"], 2, "not a model-benchmark report"),
    (["diff", "old.json", "old.json"], 2, "version 99 report"),
    (["diff", "old.json"], 2, "the following arguments are required"),
    (["diff", "a.json", "b.json", "--json", "--markdown"], 2, "--json and --markdown on stdout are exclusive"),
    (["diff", "a.json", "b.json", "--markdown", "exists.json"], 2, "already exists"),
    (["diff", "a.json", "b.json", "--threshold", "0"], 2, "--threshold must be a percentage"),
    # suite
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes", "input:1x1x8x8", "--out", "o"]
     + FAST, 2, "expected MODEL=NAME:DIMS"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes", "other.onnx=input:1x1x8x8",
      "--out", "o"] + FAST, 2, "other.onnx is not one of --models"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes", "digits.onnx=input:1x1x8",
      "--out", "o"] + FAST, 2, "does not fit the input"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes", "digits.onnx=nosuch:1x1x8x8",
      "--out", "o"] + FAST, 2, "unknown input(s) nosuch"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes",
      "digits.onnx=input:1x1x8x8:1x1x8x8:1x1x16x16", "--out", "o"] + FAST, 2, "one shape per input"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--shapes", "digits.onnx=k=1:2:3",
      "--out", "o"] + FAST, 2, "shape-tensor values (NAME=...) are a build option"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--precision", "fp16", "--out", "o"] + FAST,
     2, "runs the model's graph in its own types"),
    (["suite", "--models", "digits.onnx", "--precision", "int8", "--out", "o"] + FAST, 2, "int8 needs calibration data"),
    (["suite", "--models", "missing.onnx", "--backend", "onnxruntime", "--out", "o"] + FAST, 2, "does not exist"),
    (["suite", "--models", "model.engine", "--backend", "onnxruntime", "--out", "o"] + FAST, 2, "suite models are ONNX"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--batch", "0", "--out", "o"] + FAST,
     2, "batch 0 must be >= 1"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--batch", "1", "1", "--out", "o"] + FAST,
     2, "must not repeat"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime", "--out", "notes.txt"] + FAST,
     2, "exists and is not a directory"),
    (["suite", "--models", "digits.onnx", "--precision", "int8", "--calibration-cache", "nope.cache", "--out", "o"]
     + FAST, 2, "calibration cache nope.cache does not exist"),
    (["suite", "--models", "digits.onnx", "--backend", "onnxruntime"] + FAST, 2, "--out"),
]


@pytest.mark.parametrize("argv, code, line", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_input(work, argv, code, line):
    assert_bad_input(main, argv, str(work), code, line)


def test_catalogue_size():
    assert len(CASES) >= 30


def _gpu_present():
    try:
        from tegra_ai.cuda.driver import ensure_context

        ensure_context(0)
        return True
    except Exception:  # noqa: BLE001
        return False


def _full_tensorrt():
    try:
        from tegra_ai.trt import compat

        return not compat.load()[1].is_rtx
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(_gpu_present(), reason="this machine has an NVIDIA GPU")
def test_workload_without_a_gpu_is_unavailable(work):
    from tegra_ai.cuda import compat

    line = "no NVIDIA driver" if compat.available() else "the Python module 'cuda-python'"
    assert_bad_input(main, ["workload:100us", "--shapes", "x:1x3x8x8"] + FAST, str(work), 69, line)


@pytest.mark.skipif(_full_tensorrt(), reason="full TensorRT is installed")
def test_engine_without_full_tensorrt_is_unavailable(work):
    assert_bad_input(main, ["model.engine"] + FAST, str(work), 69, "")
