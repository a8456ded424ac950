"""The bad-input catalogue of ``tensorrt-optimize``: every subcommand, every option that
takes a value, every file it reads (models, manifests, sidecars, calibration .npz/.npy
including pickled and 0-byte ones, timing caches, preprocess specs, plugin libraries).

Each case asserts (tests/badinput.py): the documented exit code, one error line that
says what is wrong, no traceback or "internal error", only JSON on stdout under
``--json``, and no file created, changed or removed in the scratch directory. None of
them needs TensorRT: every one is refused before TensorRT would be loaded."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from badinput import assert_bad_input, invoke, tree_state
from onnx_models import make_model, make_topk_model
from tegra_ai.cli.optimize import main

ENGINE_BYTES = b"\x00\x01not-json-not-onnx-engine-bytes" * 4


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One directory of inputs, good and bad, shared by the cases (none may change it)."""
    d = tmp_path_factory.mktemp("catalogue")
    make_model(str(d / "static.onnx"), input_dims=(1, 3, 16, 16))
    make_model(str(d / "dynamic.onnx"), input_dims=("N", 3, "H", "W"))
    (d / "empty.onnx").write_bytes(b"")
    (d / "garbage.onnx").write_bytes(b"\x08\x07garbage")
    (d / "adir").mkdir()
    (d / "notes.txt").write_text("not an engine, not ours\n")
    (d / "app.engine.json").write_text('{"somebody": "else"}\n')          # unrelated sidecar-named file
    (d / "garbage.engine").write_bytes(ENGINE_BYTES)
    (d / "nonobj.engine").write_bytes(ENGINE_BYTES)
    (d / "nonobj.engine.json").write_text("[1, 2, 3]\n")
    (d / "mismatch.engine").write_bytes(ENGINE_BYTES + b"x")
    (d / "empty.engine").write_bytes(b"")
    (d / "json.engine").write_text('{"a": 1}')
    (d / "onnx.engine").write_bytes((d / "static.onnx").read_bytes())
    # calibration data
    np.savez(d / "good.npz", other=np.zeros((4, 3, 16, 16), np.float32))
    make_topk_model(str(d / "topk.onnx"))      # k: a shape-tensor input (TopK's K)
    np.savez(d / "k-varies.npz", x=np.zeros((4, 8), np.float32), k=np.array([[1], [2], [1], [2]], np.int64))
    np.savez(d / "k-outside.npz", x=np.zeros((4, 8), np.float32), k=np.full((4, 1), 11, np.int64))
    np.savez(d / "x-only.npz", x=np.zeros((4, 8), np.float32))
    np.savez(d / "objects.npz", input=np.array([{"x": 1}], dtype=object))   # pickled member
    (d / "empty.npz").write_bytes(b"")
    (d / "pickle.npz").write_bytes(pickle.dumps({"input": [1, 2, 3]}))    # a plain pickle named .npz
    np.save(d / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (d / "calib_dir").mkdir()
    (d / "calib_dir" / "input.npy").write_bytes(b"")                      # 0-byte .npy
    # preprocess specs
    (d / "bad.preprocess.json").write_text("{not json")
    (d / "wrong.preprocess.json").write_text('{"height": -3, "width": "x"}')
    # manifests
    for name, content in {
        "notjson": "{",
        "other": '{"format": "something-else"}',
        "profiles": json.dumps({"format": "tegra-ai-manifest", "version": 1, "models": [
            {"name": "m", "onnx": "m.onnx", "files": ["m.onnx"], "sha256": "a" * 64,
             "options": {"profiles": "input:1x3x8x8"}}]}),
        "escape": json.dumps({"format": "tegra-ai-manifest", "version": 1, "models": [
            {"name": "m", "onnx": "../../etc/passwd", "files": ["../../etc/passwd"], "sha256": "a" * 64}]}),
        "plugin": json.dumps({"format": "tegra-ai-manifest", "version": 1, "models": [
            {"name": "m", "onnx": "m.onnx", "files": ["m.onnx"], "sha256": "a" * 64,
             "options": {"plugins": ["libp.so"]}, "plugins": ["build/libp.so"]}]}),
        "options": json.dumps({"format": "tegra-ai-manifest", "version": 1, "models": [
            {"name": "m", "onnx": "m.onnx", "files": ["m.onnx"], "sha256": "a" * 64,
             "options": {"precision": "int3"}}]}),
    }.items():
        (d / f"manifests/{name}").mkdir(parents=True)
        (d / f"manifests/{name}/manifest.json").write_text(content)
    # build requests (bundle --request; paths relative to the file's folder)
    for name, content in {
        "good": {"model": "../static.onnx", "options": {"precision": "fp16"}},
        "notjson": "{",
        "field": {"model": "../static.onnx", "optionz": {}},
        "option": {"model": "../static.onnx", "options": {"precision": "int3"}},
        "nomodel": {"model": "../nope.onnx"},
        "calib": {"model": "../static.onnx", "calibration_cache": "../notes.txt",
                  "options": {"precision": "int8", "calibration_sha256": "0" * 64}},
    }.items():
        (d / "requests").mkdir(exist_ok=True)
        (d / "requests" / f"{name}.json").write_text(content if isinstance(content, str) else json.dumps(content))
    (d / "foreign-bundle").mkdir()
    (d / "foreign-bundle" / "manifest.json").write_text('{"mine": true}')
    (d / "taken-bundle" / "static").mkdir(parents=True)
    (d / "taken-bundle" / "static" / "keep.txt").write_text("somebody's file")
    (d / "emptycache").mkdir()
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions as _BO

    sha, files = model_digest(str(d / "static.onnx"))
    add_to_bundle(str(d / "goodbundle"), "static", files, sha, _BO(precision="fp16"))
    # a sidecar of another engine next to mismatch.engine
    from tegra_ai.spec import BuildOptions, Sidecar, key_material

    material = key_material("a" * 64, BuildOptions(), {"flavor": "tensorrt", "version": "10.3.0"},
                            {"compute_capability": "8.7", "device_name": "Orin"})
    sc = Sidecar.new(material).with_engine(str(d / "mismatch.engine"), ENGINE_BYTES)
    (d / "mismatch.engine.json").write_text(json.dumps(sc.to_dict()))
    return str(d)


S, D = "static.onnx", "dynamic.onnx"
TOPK = "x:1x8:4x8:8x8,k=1:5:10"    # topk.onnx: x dynamic, k a shape tensor (values)

CASES = [
    # ---- build: outputs (nothing it did not create is ever overwritten)
    ("build-o-is-input", ["build", S, "-o", S], 2, "is an input of this command"),
    ("build-o-next-to-foreign-json", ["build", S, "-o", "app.engine"], 2, "not a sidecar this tool wrote"),
    ("build-o-foreign-file", ["build", S, "-o", "notes.txt"], 2, "not an engine this tool wrote"),
    ("build-o-directory", ["build", S, "-o", "adir"], 2, "is a directory"),
    ("build-o-missing-dir", ["build", S, "-o", "nowhere/x.engine"], 2, "does not exist"),
    # ---- build: the model
    ("build-missing-model", ["build", "nope.onnx", "-o", "x.engine"], 2, "does not exist"),
    ("build-empty-model", ["build", "empty.onnx", "-o", "x.engine"], 2, "is empty"),
    ("build-garbage-model", ["build", "garbage.onnx", "-o", "x.engine"], 2, "not a valid ONNX model"),
    ("build-model-is-dir", ["build", "adir", "-o", "x.engine"], 2, "is a directory"),
    # ---- build: every option that takes a value
    ("build-precision", ["build", S, "--precision", "int4"], 2, "invalid choice"),
    ("build-shapes-grammar", ["build", D, "--shapes", "input:axb"], 2, "--shapes"),
    ("build-shapes-order", ["build", D, "--shapes", "input:4x3x8x8:1x3x8x8:8x3x8x8"], 2, "min <= opt <= max"),
    ("build-shape-values-sets", ["build", D, "--shapes", "k=1:2"], 2, "2 sets of values"),
    ("build-shape-values-order", ["build", D, "--shapes", "k=3:2:1"], 2, "min <= opt <= max"),
    ("build-workspace", ["build", S, "--workspace", "lots"], 2, "size"),
    ("build-dla-core", ["build", S, "--dla-core", "-1"], 2, "dla"),
    ("build-dla-core-type", ["build", S, "--dla-core", "one"], 2, "invalid int value"),
    ("build-opt-level", ["build", S, "--opt-level", "9"], 2, "optimization level"),
    ("build-gpu-fallback", ["build", S, "--gpu-fallback"], 2, "only applies with a DLA core"),
    ("build-cc", ["build", S, "--compute-capability", "sm87"], 2, "compute capability"),
    ("build-contexts-zero", ["build", D, "--contexts", "0"], 2, "--contexts 0"),
    ("build-contexts-many", ["build", D, "--contexts", "65"], 2, "--contexts 65"),
    ("build-contexts-type", ["build", D, "--contexts", "two"], 2, "invalid int value"),
    ("bundle-contexts-zero", ["bundle", D, "--out", "b", "--contexts", "0"], 2, "--contexts 0"),
    ("build-calibration-missing", ["build", S, "--precision", "int8", "--calibration", "none.npz"], 2,
     "does not exist"),
    ("build-calibration-cache-missing", ["build", S, "--calibration-cache", "none.cache"], 2, "does not exist"),
    ("build-timeout-zero", ["build", S, "-o", "x.engine", "--timeout", "0"], 2, "--timeout 0"),
    ("build-timeout-type", ["build", S, "--timeout", "later"], 2, "invalid float value"),
    ("build-calibration-empty-dir", ["build", S, "--calibration", "adir"], 2, "holds no .npy files"),
    # ---- inspect: every kind of file that is not an engine
    ("inspect-missing", ["inspect", "nope.engine"], 2, "does not exist"),
    ("inspect-empty", ["inspect", "empty.engine"], 2, "is empty"),
    ("inspect-onnx", ["inspect", "onnx.engine"], 2, "an ONNX model"),
    ("inspect-json", ["inspect", "json.engine", "--json"], 2, "a JSON file"),
    ("inspect-directory", ["inspect", "adir"], 2, "is a directory"),
    ("inspect-mismatched-sidecar", ["inspect", "mismatch.engine"], 2, "does not belong to"),
    ("inspect-non-object-sidecar", ["inspect", "nonobj.engine"], 2, "expected a JSON object"),
    ("inspect-garbage-no-sidecar", ["inspect", "garbage.engine", "--json"], 69, "nothing to inspect"),
    # ---- check
    ("check-unknown-release", ["check", S, "--target", "trt-9.9", "--json"], 2, "no facts for TensorRT 9.9"),
    ("check-unknown-target", ["check", S, "--target", "jetson"], 2, "unknown target"),
    ("check-empty", ["check", "empty.onnx", "--json"], 2, "is empty"),
    ("check-garbage", ["check", "garbage.onnx"], 2, "not a valid ONNX model"),
    ("check-directory", ["check", "adir"], 2, "is a directory"),
    ("check-missing", ["check", "nope.onnx"], 2, "does not exist"),
    # ---- bundle: the host refuses what would fail at first boot
    ("bundle-dynamic-without-shapes", ["bundle", D, "--out", "b", "--target", "jetpack6"], 2, "need --shapes"),
    ("bundle-shapes-unknown-input", ["bundle", D, "--out", "b", "--target", "jetpack6",
                                     "--shapes", "images:1x3x8x8"], 2, "does not have"),
    ("bundle-shape-values-float-input", ["bundle", D, "--out", "b", "--target", "jetpack6", "--shapes",
                                         "input=1:2:3"], 2, "values are for shape-tensor inputs"),
    ("bundle-shapes-rank", ["bundle", D, "--out", "b", "--target", "jetpack6", "--shapes", "input:1x3x8"], 2,
     "rank"),
    ("bundle-shapes-fixed-dim", ["bundle", D, "--out", "b", "--target", "jetpack6", "--shapes", "input:1x4x8x8"],
     2, "fixed to 3"),
    ("bundle-int8-no-calibration", ["bundle", S, "--out", "b", "--target", "jetpack6", "--precision", "int8"], 2,
     "needs calibration data"),
    ("bundle-fp16-strongly-typed", ["bundle", S, "--out", "b", "--target", "trt-10.16", "--precision", "fp16",
                                  "--strongly-typed"], 2, "weakly typed"),
    ("bundle-calibration-wrong-input", ["bundle", S, "--out", "b", "--target", "jetpack6", "--precision", "int8",
                                        "--calibration", "good.npz"], 2, "no array for input"),
    ("bundle-calibration-shape-values-vary", ["bundle", "topk.onnx", "--out", "b", "--target", "jetpack6", "--precision",
                                              "int8", "--calibration", "k-varies.npz", "--shapes", TOPK], 2,
     "different values in different samples"),
    ("bundle-calibration-shape-values-outside", ["bundle", "topk.onnx", "--out", "b", "--target", "jetpack6",
                                                 "--precision", "int8", "--calibration", "k-outside.npz", "--shapes",
                                                 TOPK], 2, "outside --shapes k=1:5:10"),
    ("bundle-calibration-shape-tensor-missing", ["bundle", "topk.onnx", "--out", "b", "--target", "jetpack6",
                                                 "--precision", "int8", "--calibration", "x-only.npz", "--shapes",
                                                 "x:1x8:4x8:8x8"], 2, "no array for input 'k'"),
    ("bundle-calibration-pickled-member", ["bundle", S, "--out", "b", "--precision", "int8",
                                           "--calibration", "objects.npz"], 2, "pickled"),
    ("bundle-calibration-pickle-file", ["bundle", S, "--out", "b", "--precision", "int8",
                                        "--calibration", "pickle.npz"], 2, "pickled"),
    ("bundle-calibration-0-byte", ["bundle", S, "--out", "b", "--precision", "int8", "--calibration", "empty.npz"],
     2, "is empty"),
    ("bundle-calibration-npy", ["bundle", S, "--out", "b", "--precision", "int8", "--calibration", "objects.npy"],
     2, "one .npy file"),
    ("bundle-calibration-dir", ["bundle", S, "--out", "b", "--precision", "int8", "--calibration", "calib_dir"],
     2, "one .npz file"),
    ("bundle-timing-cache-missing", ["bundle", S, "--out", "b", "--timing-cache", "none.cache"], 2,
     "does not exist"),
    ("bundle-preprocess-not-json", ["bundle", S, "--out", "b", "--preprocess", "bad.preprocess.json"], 2, "preprocess"),
    ("bundle-preprocess-invalid", ["bundle", S, "--out", "b", "--preprocess", "wrong.preprocess.json"], 2,
     "must be positive"),
    ("bundle-preprocess-missing", ["bundle", S, "--out", "b", "--preprocess", "none.json"], 2, "cannot read"),
    ("bundle-plugin-relative", ["bundle", S, "--out", "b", "--plugin", "build/libtegra_ai_plugin.so"], 2,
     "relative path"),
    ("bundle-plugin-not-library", ["bundle", S, "--out", "b", "--plugin", "/usr/lib/plugin.txt"], 2,
     "not a shared library"),
    ("bundle-name", ["bundle", S, "--out", "b", "--name", "../up"], 2, "model name"),
    ("bundle-out-is-file", ["bundle", S, "--out", "notes.txt"], 2, "cannot write bundle"),
    ("bundle-out-foreign-manifest", ["bundle", S, "--out", "foreign-bundle"], 2, "not a tegra-ai-manifest"),
    ("bundle-out-foreign-model-dir", ["bundle", S, "--out", "taken-bundle"], 2, "not a model of this bundle"),
    ("bundle-unknown-target", ["bundle", S, "--out", "b", "--target", "trt-7.1"], 2, "no facts for TensorRT 7.1"),
    # ---- bundle --request FILE (the Yocto class's build request, whole)
    ("bundle-no-model", ["bundle", "--out", "b"], 2, "needs MODEL.onnx"),
    ("bundle-request-and-model", ["bundle", S, "--request", "requests/good.json", "--out", "b"], 2, "not both"),
    ("bundle-request-and-flags", ["bundle", "--request", "requests/good.json", "--out", "b", "--precision", "fp32",
                                  "--timing-cache", "notes.txt"], 2, "drop --precision, --timing-cache"),
    ("bundle-request-missing", ["bundle", "--request", "requests/none.json", "--out", "b"], 2, "No such file"),
    ("bundle-request-dir", ["bundle", "--request", "adir", "--out", "b"], 2, "not a regular file"),
    ("bundle-request-not-json", ["bundle", "--request", "requests/notjson.json", "--out", "b"], 2, "not valid JSON"),
    ("bundle-request-not-object", ["bundle", "--request", "nonobj.engine.json", "--out", "b"], 2, "expected an object"),
    ("bundle-request-unknown-field", ["bundle", "--request", "requests/field.json", "--out", "b"], 2,
     "unknown field(s) optionz"),
    ("bundle-request-bad-option", ["bundle", "--request", "requests/option.json", "--out", "b"], 2, "int3"),
    ("bundle-request-missing-model", ["bundle", "--request", "requests/nomodel.json", "--out", "b"], 2,
     "does not exist"),
    ("bundle-request-calibration-changed", ["bundle", "--request", "requests/calib.json", "--out", "b"], 2,
     "is not the sha256 of"),
    # ---- ensure: manifests and options
    ("ensure-missing-manifest", ["ensure", "--manifest", "none", "--cache", "c", "--json"], 2, "does not exist"),
    ("ensure-manifest-not-json", ["ensure", "--manifest", "manifests/notjson", "--cache", "c"], 2, "not valid JSON"),
    ("ensure-manifest-format", ["ensure", "--manifest", "manifests/other", "--cache", "c"], 2,
     "not a tegra-ai-manifest"),
    ("ensure-manifest-profiles-type", ["ensure", "--manifest", "manifests/profiles", "--cache", "c", "--json"], 2,
     "expected a list of profiles"),
    ("ensure-manifest-escapes", ["ensure", "--manifest", "manifests/escape", "--cache", "c"], 2,
     "leaves the bundle directory"),
    ("ensure-manifest-plugin", ["ensure", "--manifest", "manifests/plugin", "--cache", "c"], 2, "relative path"),
    ("ensure-manifest-options", ["ensure", "--manifest", "manifests/options", "--cache", "c"], 2, "int3"),
    ("ensure-no-manifest-in-dir", ["ensure", "--manifest", "adir", "--cache", "c"], 2, "no manifest.json"),
    ("ensure-cache-is-file", ["ensure", "--manifest", "goodbundle", "--cache", "notes.txt"], 2,
     "cannot create engine cache"),
    ("ensure-model-timeout-zero", ["ensure", "--manifest", "manifests/other", "--cache", "c",
                                   "--model-timeout", "0"], 2, "--model-timeout"),
    ("ensure-model-timeout-type", ["ensure", "--manifest", "m", "--cache", "c", "--model-timeout", "soon"], 2,
     "invalid float value"),
    ("ensure-prune", ["ensure", "--manifest", "m", "--cache", "c", "--prune", "all"], 2, "invalid choice"),
    ("ensure-lock-timeout-negative", ["ensure", "--manifest", "manifests/other", "--cache", "c",
                                      "--lock-timeout", "-1"], 2, "--lock-timeout -1.0: expected a number of seconds"),
    ("ensure-lock-timeout-nan", ["ensure", "--manifest", "manifests/other", "--cache", "c", "--lock-timeout", "nan"],
     2, "--lock-timeout nan: expected a number of seconds"),
    ("ensure-lock-timeout-type", ["ensure", "--manifest", "m", "--cache", "c", "--lock-timeout", "1h"], 2,
     "invalid float value"),
    # ---- export (Triton / DeepStream)
    ("export-no-target", ["export", "--manifest", "goodbundle", "--cache", "emptycache"], 2, "needs --triton"),
    ("export-missing-cache", ["export", "--manifest", "goodbundle", "--cache", "nocache", "--triton", "r"], 2,
     "does not exist"),
    ("export-bad-manifest", ["export", "--manifest", "manifests/notjson", "--cache", "emptycache", "--triton", "r"],
     2, "not valid JSON"),
    ("export-unknown-name", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--triton", "r",
                             "--name", "nosuch"], 2, "not in the manifests"),
    ("export-triton-is-file", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--triton",
                               "notes.txt"], 2, "not a directory"),
    ("export-instances", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--triton", "r",
                          "--instances", "0"], 2, "--instances 0"),
    ("export-copy-alone", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream", "d",
                           "--copy"], 2, "--copy needs --triton"),
    ("export-detection-grammar", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream",
                                  "d", "--detection", "static"], 2, "NAME=SPEC.json"),
    ("export-detection-missing", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream",
                                  "d", "--detection", "static=nope.json"], 2, "nope.json"),
    ("export-detection-bad", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream",
                              "d", "--detection", "static=bad.preprocess.json"], 2, "not valid JSON"),
    ("export-bbox-parser", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream", "d",
                            "--bbox-parser", "libyolo.so"], 2, "FUNCTION:LIBRARY"),
    ("export-bbox-parser-relative", ["export", "--manifest", "goodbundle", "--cache", "emptycache", "--deepstream",
                                     "d", "--bbox-parser", "Parse:lib/libyolo.so"], 2, "absolute path"),
    # ---- path
    ("path-bad-name", ["path", "../x", "--cache", "emptycache"], 2, "model name"),
    ("path-missing-cache", ["path", "net", "--cache", "nocache", "--json"], 2, "does not exist"),
    ("path-no-engine", ["path", "net", "--cache", "emptycache"], 1, "no engine for net"),
    # ---- verify-cache
    ("verify-missing-cache", ["verify-cache", "nocache"], 2, "does not exist"),
    ("verify-trt-version", ["verify-cache", "emptycache", "--trt-version", "ten"], 2, "version"),
    ("verify-library-version", ["verify-cache", "emptycache", "--library-version", "1..2"], 2, "not a version"),
    ("verify-l4t-release", ["verify-cache", "emptycache", "--l4t-release", "latest"], 2, "not a version"),
    ("verify-cc", ["verify-cache", "emptycache", "--compute-capability", "8"], 2, "--compute-capability"),
    ("verify-manifest", ["verify-cache", "emptycache", "--manifest", "manifests/notjson"], 2, "not valid JSON"),
    # ---- example
    ("example-target", ["example", "--out", "ex", "--target", "trt-9.9"], 2, "no facts for TensorRT 9.9"),
    ("example-out-is-file", ["example", "--out", "notes.txt"], 2, "notes.txt"),
    # ---- the parser itself
    ("no-command", [], 2, "the following arguments are required"),
    ("unknown-command", ["optimise"], 2, "invalid choice"),
]


@pytest.mark.parametrize("argv,code,line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(scratch, argv, code, line):
    assert_bad_input(main, argv, scratch, code, line)


def test_catalogue_size():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_json_error_object_on_stdout(scratch):
    """The one documented shape of an error under --json (README, Exit codes)."""
    res = invoke(main, ["check", "empty.onnx", "--json"], scratch)
    assert res.code == 2 and json.loads(res.stdout) == {"error": f"{scratch}/empty.onnx is empty, not an ONNX model",
                                                        "hint": None, "exit_code": 2}
    res = invoke(main, ["check", "empty.onnx"], scratch)
    assert res.stdout == ""


def test_verbose_after_the_subcommand(scratch):
    before = tree_state(scratch)
    for argv in (["-v", "check", "garbage.onnx"], ["check", "garbage.onnx", "-v"], ["check", "-v", "garbage.onnx"]):
        res = invoke(main, argv, scratch)
        assert res.code == 2 and "Traceback" in res.stderr, argv
    quiet = invoke(main, ["check", "garbage.onnx"], scratch)
    assert "Traceback" not in quiet.stderr
    assert tree_state(scratch) == before
