"""Hostile inputs to the engine service (issue #19 part 6): a FIFO given as a manifest,
JSON nested thousands deep, model names with a trailing newline or control characters."""

from __future__ import annotations

import os
import signal

import pytest

from tegra_ai.cache.manifest import load_manifest
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import check_model_name


@pytest.mark.parametrize("name", ["resnet\n", "res\nnet", "res\x1bnet", "resnet\t", "\x00"])
def test_names_with_control_characters_are_refused(name):
    with pytest.raises(TegraAIError):
        check_model_name(name)


def test_manifest_nested_thousands_deep(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(TegraAIError, match="nested too deep"):
        load_manifest(str(path))


def test_fifo_manifest_is_refused_without_hanging(tmp_path):
    path = tmp_path / "manifest.json"
    os.mkfifo(path)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading a FIFO manifest hung"))
    signal.alarm(5)
    try:
        with pytest.raises(TegraAIError, match="not a regular file"):
            load_manifest(str(path))
    finally:
        signal.alarm(0)


def test_external_data_symlink_out_of_the_model_folder(model_factory, tmp_path_factory):
    from tegra_ai.onnx_files import model_files

    path = model_factory("ext.onnx", external=True)
    outside = tmp_path_factory.mktemp("elsewhere")
    secret = outside / "secret"
    os.replace(path + ".data", secret)
    os.symlink(secret, path + ".data")
    with pytest.raises(TegraAIError, match="symbolic link out of the model's directory"):
        model_files(path)


# --------------------------------------------------------------------------- every JSON reader (util/jsonfile)

DEEP = b"[" * 100000 + b"]" * 100000


def _hostile(path, kind):
    """Put a hostile file at ``path``: JSON nested 100000 deep, or a FIFO (no writer)."""
    path = str(path)
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "deep":
        with open(path, "wb") as f:
            f.write(DEEP)
    else:
        os.mkfifo(path)


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) when a reader blocks on a FIFO."""
    def _alarm(*_):
        raise AssertionError("a reader blocked on a FIFO")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_bounded_reader_checks_depth_before_parsing():
    from tegra_ai.util import jsonfile

    # brackets inside strings (escaped quotes too) do not count; real nesting does
    assert jsonfile.loads(b'{"a": "[[[[\\"[[[[", "b": [[1]]}') == {"a": '[[[["[[[[', "b": [[1]]}
    assert jsonfile.nesting_depth(b'[{"x": [1, "]]]"]}]') == 3
    deep_ok = b"[" * 200 + b"]" * 200
    assert jsonfile.loads(deep_ok) is not None
    for doc in (b"[" * 201 + b"]" * 201, DEEP, b'{"a":' * 100000 + b"1" + b"}" * 100000, DEEP.decode()):
        with pytest.raises(jsonfile.JSONFileError, match="nested too deep"):
            jsonfile.loads(doc)
    import json
    import sys

    # the check runs before json: a tiny recursion limit would make json itself fail on 150 levels
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(100, limit // 10))
    try:
        with pytest.raises(jsonfile.JSONFileError, match="nested too deep"):
            jsonfile.loads(b"[" * 5000 + b"]" * 5000)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(jsonfile.JSONFileError, match="not UTF-8"):
        jsonfile.loads(b"\xff\xfe{}")
    with pytest.raises(jsonfile.JSONFileError, match="larger than 8 bytes"):
        jsonfile.loads(b"[1, 2, 3, 4]", max_bytes=8)
    json.dumps(jsonfile.loads(b"[]"))


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_hash_memo_is_rebuilt(tmp_path, kind, no_hang):
    from tegra_ai.util.hashing import HashMemo

    memo_path = tmp_path / ".hashmemo.json"
    _hostile(memo_path, kind)
    data = tmp_path / "model.onnx"
    data.write_bytes(b"weights")
    memo = HashMemo(str(memo_path))
    assert memo.entries == {}
    memo.sha256(str(data))
    memo.save()
    assert HashMemo(str(memo_path)).entries       # rewritten as a valid memo


@pytest.mark.parametrize("what", ["index.json", ".hashmemo.json", ".mirror-state.json", "sidecar"])
@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_ensure_rebuilds_hostile_cache_files(tmp_path, bundle_two, what, kind, no_hang):
    """A corrupt index, memo or mirror state is rebuilt; a hostile sidecar makes its engine
    a miss (rebuilt); the other model is untouched."""
    from test_cache_ensure import FakeBuilder, run
    from tegra_ai.spec import Sidecar

    cache = tmp_path / "cache"
    first = run(bundle_two, str(cache), FakeBuilder())
    assert first["built"] == 2
    engines = {m["name"]: m["engine"] for m in first["models"]}
    target = os.path.realpath(engines["net"]) + ".json" if what == "sidecar" else cache / what
    _hostile(target, kind)
    b = FakeBuilder()
    s = run(bundle_two, str(cache), b)
    assert s["exit_code"] == 0, s
    assert b.calls == (["net"] if what == "sidecar" else [])
    status = {m["name"]: m["status"] for m in s["models"]}
    assert status["other"] == "hit"
    if what == "index.json":
        from tegra_ai.util.jsonfile import read_json_file

        assert set(read_json_file(str(cache / "index.json"))["models"]) == {"net", "other"}
    if what == "sidecar":
        assert Sidecar.load(engines["net"] + ".json").engine_size > 0


@pytest.fixture
def bundle_two(tmp_path, model_factory):
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions

    out = str(tmp_path / "bundle")
    for name, op in (("net", "Relu"), ("other", "Sigmoid")):
        sha, files = model_digest(model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op=op))
        add_to_bundle(out, name, files, sha, BuildOptions(precision="fp16"))
    return out


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_sidecar_load_refuses(tmp_path, kind, no_hang):
    from tegra_ai.spec import Sidecar, is_ours

    path = tmp_path / "x.engine.json"
    _hostile(path, kind)
    with pytest.raises(TegraAIError, match="nested too deep" if kind == "deep" else "not a regular file"):
        Sidecar.load(str(path))
    assert Sidecar.read_if_ours(str(path)) is None and not is_ours(str(path))


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_spec_files_are_bad_input_naming_the_file(tmp_path, kind, no_hang):
    from tegra_ai.bench.report import load_report
    from tegra_ai.cli.optimize import _request_from_file     # bundle --request (the Yocto class's file)
    from tegra_ai.postprocess.detection import DetectionSpec
    from tegra_ai.preprocess.spec import PreprocessSpec
    from tegra_ai.runtime.ensemble import load as load_ensemble

    path = tmp_path / "spec.json"
    _hostile(path, kind)
    why = "nested too deep" if kind == "deep" else "not a regular file"
    for read in (PreprocessSpec.load, DetectionSpec.load, load_report, load_ensemble, _request_from_file):
        with pytest.raises(TegraAIError, match=why) as err:
            read(str(path))
        assert str(path) in str(err.value) and err.value.exit_code == 2, read


def test_deep_bytes_in_memory_are_refused():
    """Readers of documents already in memory: spec text, a .npz's _manifest, TensorRT's
    inspector output."""
    import numpy as np

    from tegra_ai.dataset.calibration import MANIFEST_KEY
    from tegra_ai.postprocess.detection import DetectionSpec
    from tegra_ai.preprocess.spec import PreprocessSpec
    from tegra_ai.trt import compat
    from tegra_ai.trt.calibrator import _model_inputs, dataset_preprocess

    for parse in (PreprocessSpec.from_json, DetectionSpec.from_json):
        with pytest.raises(TegraAIError, match="nested too deep"):
            parse(DEEP)
    manifest = np.frombuffer(DEEP, dtype=np.uint8)
    with pytest.raises(TegraAIError, match="nested too deep"):
        _model_inputs("calib.npz", {"input": np.zeros((1, 3), np.float32)}, manifest)
    assert MANIFEST_KEY == "_manifest"

    class Inspector:
        def get_engine_information(self, fmt):
            return DEEP.decode()

    class Engine:
        def create_engine_inspector(self):
            return Inspector()

    class Trt:
        class LayerInformationFormat:
            JSON = 1

    feats = type("F", (), {"engine_inspector": True})()
    assert compat.inspector_json(Trt, feats, Engine()) == {}
    assert dataset_preprocess(None) is None


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_calibration_provenance_and_npz_manifest(tmp_path, kind, no_hang):
    import numpy as np

    from tegra_ai.dataset.calibration import _array_members
    from tegra_ai.trt.calibrator import check_cache, dataset_preprocess, provenance_path

    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8500-EntropyCalibration2\n")
    _hostile(provenance_path(str(cache)), kind)
    usable, reason = check_cache(str(cache), {"model_sha256": "a" * 64, "tensorrt": "10.3"})
    assert not usable and "unreadable" in reason
    npz = tmp_path / "data.npz"
    np.savez(npz, input=np.zeros((2, 3), np.float32), _manifest=np.frombuffer(DEEP, dtype=np.uint8))
    with pytest.raises(TegraAIError, match="nested too deep"):
        _array_members(str(npz))
    assert dataset_preprocess(str(npz)) is None


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_suite_cell_is_run_again(tmp_path, kind, no_hang):
    from tegra_ai.bench.suite import _load_cell

    path = tmp_path / "cell.json"
    _hostile(path, kind)
    assert _load_cell(str(path), {}) is None


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_target_tables(tmp_path, monkeypatch, kind, no_hang):
    from tegra_ai.onnx_tools import targets

    _hostile(tmp_path / "jetpack_targets.json", kind)
    monkeypatch.setattr(targets, "DATA_DIR", str(tmp_path))
    assert targets._jetpack_targets() == {}


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_publish_rebuilds_a_hostile_index(tmp_path, kind, no_hang):
    from tegra_ai.cache.publish import read_index

    _hostile(tmp_path / "index.json", kind)
    assert read_index(str(tmp_path)) == {}


def test_yaml_ensemble_nested_deep(tmp_path):
    pytest.importorskip("yaml")
    from tegra_ai.runtime.ensemble import load as load_ensemble

    path = tmp_path / "e.yaml"
    path.write_bytes(DEEP)
    with pytest.raises(TegraAIError, match="nested too deep"):
        load_ensemble(str(path))


def test_build_child_result_nested_deep(tmp_path, no_hang):
    """The parent reads the child's result file through the bounded reader: a deep or FIFO
    result is 'no result', one line, not a RecursionError."""
    from tegra_ai.util.jsonfile import JSONFileError, read_json_file

    for kind in ("deep", "fifo"):
        _hostile(tmp_path / "result.json", kind)
        with pytest.raises(JSONFileError):
            read_json_file(str(tmp_path / "result.json"))


def test_one_bounded_reader():
    """No JSON document is parsed outside util/jsonfile (a new json.load would bring back
    RecursionError on deep nesting and hangs on FIFOs)."""
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    allowed = {
        os.path.join("scripts", "tegra_ai", "util", "jsonfile.py"),   # the reader itself
        # the layer's shell-side helper reads the summary ensure just wrote into a private
        # work directory on the builder, with python3 -c (no tegra_ai import there)
        os.path.join("lib", "tegra_ai_layer", "engines.py"),
        # oeqa test case: parses the tool's own --json output on the target
        os.path.join("lib", "oeqa", "runtime", "cases", "tegra_ai.py"),
    }
    offenders = []
    for base in ("scripts", "lib"):
        for dirpath, _dirs, files in os.walk(os.path.join(root, base)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if rel in allowed:
                    continue
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                for m in re.finditer(r"\b(json|_json)\.loads?\(|yaml\.(safe_)?load\(", text):
                    if m.group(0).startswith("yaml") and rel.endswith("ensemble.py"):
                        continue    # after check_depth, with RecursionError reported as one line
                    offenders.append(f"{rel}:{text[:m.start()].count(chr(10)) + 1}")
    assert not offenders, offenders


# --------------------------------------------------------------------------- an unsigned mirror's size claims

def _claim(side, size):
    import json

    data = json.load(open(side))
    data["engine_size"] = size
    with open(side, "w") as f:
        json.dump(data, f)


def test_unsigned_mirror_sidecar_claiming_2_62_bytes(tmp_path):
    pytest.importorskip("cryptography", reason="the mirror fixtures sign with cryptography")
    from test_mirror import engine_files, models
    from test_mirror import run as mirror_run
    from test_mirror import sources

    mirror, bundle = _published_mirror(tmp_path)
    _engine, side, _sig = engine_files(mirror)
    _claim(side, 2 ** 62)
    s, b = mirror_run(bundle, str(tmp_path / "device"), sources("file://" + mirror, None, unsigned=True))
    a = models(s)["net"]["attempts"][0]
    assert a["result"] == "rejected" and f"claims a {2 ** 62}-byte engine" in a["reason"], a
    assert "\n" not in a["reason"]
    assert models(s)["net"]["status"] == "built" and models(s)["det"]["status"] == "fetched" and b.calls == ["net"]


@pytest.mark.parametrize("transport", ["file", "http"])
def test_size_claim_is_never_allocated(tmp_path, transport):
    """A sidecar claiming 256 MiB for a 64 KiB engine: the download buffer follows the
    bytes received (peak well under the claim), the engine is refused as truncated, the
    other model is fetched. Before: bytearray(claim) up front."""
    pytest.importorskip("cryptography", reason="the mirror fixtures sign with cryptography")
    import tracemalloc

    from mirror_server import MirrorServer
    from test_mirror import engine_files, models
    from test_mirror import run as mirror_run
    from test_mirror import sources

    mirror, bundle = _published_mirror(tmp_path)
    _engine, side, _sig = engine_files(mirror)
    claim = 256 << 20
    _claim(side, claim)
    tracemalloc.start()
    try:
        if transport == "file":
            s, _b = mirror_run(bundle, str(tmp_path / "device"), sources("file://" + mirror, None, unsigned=True))
        else:
            with MirrorServer(mirror) as srv:
                s, _b = mirror_run(bundle, str(tmp_path / "device"),
                                   sources(srv.url, None, unsigned=True, allow_http=True, retries=0))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    a = models(s)["net"]["attempts"][0]
    assert a["result"] in ("error", "rejected") and "truncated" in a["reason"], a
    assert models(s)["det"]["status"] == "fetched"
    assert peak < claim // 8, f"peak {peak} bytes for a {claim}-byte claim"


def _published_mirror(tmp_path):
    from tegra_ai.cache import signing
    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.cache.publish import publish
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions
    from onnx_models import make_model
    from test_mirror import run as mirror_run

    bundle = str(tmp_path / "bundle")
    for name, op in (("net", "Relu"), ("det", "Sigmoid")):
        sha, files = model_digest(make_model(str(tmp_path / f"{name}.onnx"), input_dims=(1, 3, 8, 8), op=op))
        add_to_bundle(bundle, name, files, sha, BuildOptions(precision="fp16"))
    ref = str(tmp_path / "reference-cache")
    mirror_run(bundle, ref)
    keys = signing.generate_keypair(str(tmp_path / "keys"))
    mirror = str(tmp_path / "mirror")
    assert publish(ref, mirror, keys["private_key"])["published"] == 2
    return mirror, bundle


def test_reading_a_small_file_costs_its_size(tmp_path):
    """read(64 MiB) allocates 64 MiB up front: the reader sizes its read by the file."""
    import tracemalloc

    from tegra_ai.util.jsonfile import read_json_file

    path = tmp_path / "small.json"
    path.write_text('{"a": 1}')
    tracemalloc.start()
    try:
        assert read_json_file(str(path)) == {"a": 1}
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_model_metadata_nested_deep():
    """A Q/DQ model's gate metadata (onnx_fp16.gate_keep_fp32) is read through the bounded reader."""
    onnx = pytest.importorskip("onnx")
    from tegra_ai.onnx_fp16 import KEEP_FP32_METADATA, gate_keep_fp32

    model = onnx.ModelProto()
    entry = model.metadata_props.add()
    entry.key, entry.value = KEEP_FP32_METADATA, DEEP.decode()
    with pytest.raises(TegraAIError, match="not a JSON list of node names"):
        gate_keep_fp32(model)
