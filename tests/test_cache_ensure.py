"""Engine cache and ensure: our own control flow, with a stand-in builder (it writes
bytes, it claims nothing about TensorRT). Real builds are in test_rtx.py."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tegra_ai import platform
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.key import cache_key, key_material
from tegra_ai.cache.manifest import add_to_bundle, load_manifest
from tegra_ai.cache.options import BuildOptions
from tegra_ai.cache.store import EngineCache
from tegra_ai.cache.verify import verify_cache
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_tools.model_files import model_digest
from tegra_ai.trt import compat
from tegra_ai.trt.builder import BuildResult

ORIN = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")


def runtime(version="10.3.0.30", facts=ORIN):
    feats = compat.features_for(version)
    return feats, (lambda options: facts)


class FakeBuilder:
    def __init__(self, delay=0.0, fail=False):
        self.calls = []
        self.delay = delay
        self.fail = fail

    def __call__(self, entry):
        self.calls.append(entry.name)
        time.sleep(self.delay)
        if self.fail:
            raise TegraAIError("out of GPU memory while building the engine")
        return BuildResult(engine=f"engine-of-{entry.name}-{entry.sha256[:8]}".encode(),
                           sidecar={"tensorrt": {"flavor": "tensorrt", "version": "10.3.0.30"},
                                    "device": ORIN.to_dict(), "build_seconds": 0.0})


@pytest.fixture
def bundle(tmp_path, static_model):
    out = str(tmp_path / "bundle")
    sha, files = model_digest(static_model)
    add_to_bundle(out, "net", files, sha, BuildOptions(precision="fp16"))
    return out


def run(bundle, cache, builder, **kw):
    return ensure([bundle], cache, builder=builder, loader=None, runtime=kw.pop("rt", runtime()),
                  show_progress=False, log=lambda m: None, **kw)


def test_key_changes_with_every_component():
    base = dict(model_sha256="a" * 64, options={"precision": "fp16"}, trt_flavor="tensorrt", trt_version="10.3.0.30",
                device=ORIN.to_dict())
    k0 = cache_key(key_material(**base))
    assert k0 == cache_key(key_material(**base))
    variants = [dict(model_sha256="b" * 64), dict(options={"precision": "fp32"}), dict(trt_version="10.3.0.31"),
                dict(trt_flavor="tensorrt-rtx"), dict(device=dict(ORIN.to_dict(), compute_capability="7.2")),
                dict(device=dict(ORIN.to_dict(), l4t_release="36.4.4")),
                dict(device=dict(ORIN.to_dict(), module="NVIDIA Jetson Orin Nano"))]
    keys = {cache_key(key_material(**dict(base, **v))) for v in variants}
    assert k0 not in keys and len(keys) == len(variants)


def test_first_run_builds_second_hits(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    b = FakeBuilder()
    s1 = run(bundle, cache, b)
    assert (s1["built"], s1["hits"], s1["exit_code"]) == (1, 0, 0)
    s2 = run(bundle, cache, b)
    assert (s2["built"], s2["hits"], s2["exit_code"]) == (1 - 1, 1, 0)
    assert b.calls == ["net"]
    index = json.load(open(os.path.join(cache, "index.json")))
    assert index["models"]["net"]["engine"] == s1["models"][0]["engine"]
    json.dumps(s2)  # a systemd unit logs this


def test_second_run_does_not_rehash_unchanged_model(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    from tegra_ai.util.hashing import HashMemo

    memo = HashMemo(os.path.join(cache, ".hashmemo.json"))
    assert any(p.endswith("net.onnx") or "/net/" in p for p in memo.entries)
    import tegra_ai.util.hashing as hashing

    calls = []
    real = hashing.sha256_file
    hashing.sha256_file = lambda p: calls.append(p) or real(p)
    try:
        run(bundle, cache, FakeBuilder())
    finally:
        hashing.sha256_file = real
    assert calls == []


@pytest.mark.parametrize("change", ["tensorrt", "options", "device"])
def test_ota_changes_rebuild_and_prune(bundle, tmp_path, change):
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    old_engine = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    rt = runtime()
    if change == "tensorrt":
        rt = runtime("10.3.0.31")
    elif change == "device":
        rt = runtime(facts=platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin", "36.5.0"))
    else:
        m = json.load(open(os.path.join(bundle, "manifest.json")))
        m["models"][0]["options"]["precision"] = "fp32"
        json.dump(m, open(os.path.join(bundle, "manifest.json"), "w"))
    b = FakeBuilder()
    s = run(bundle, cache, b, rt=rt)
    assert b.calls == ["net"] and s["built"] == 1
    assert s["models"][0]["engine"] != old_engine
    assert not os.path.exists(old_engine) and old_engine in s["models"][0]["pruned"]


def test_prune_none_keeps_old_engines(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    old = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    run(bundle, cache, FakeBuilder(), rt=runtime("10.3.0.31"), prune="none")
    assert os.path.exists(old)


def test_prune_unlisted_models(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    os.makedirs(os.path.join(cache, "retired"))
    s = run(bundle, cache, FakeBuilder(), prune="unlisted")
    assert s["pruned_models"] == ["retired"] and not os.path.exists(os.path.join(cache, "retired"))


@pytest.mark.parametrize("damage", ["no-sidecar", "truncated", "bad-sidecar"])
def test_power_cut_leftovers_are_not_engines(bundle, tmp_path, damage):
    cache = str(tmp_path / "cache")
    engine = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    sidecar = os.path.splitext(engine)[0] + ".json"
    if damage == "no-sidecar":
        os.unlink(sidecar)
    elif damage == "truncated":
        with open(engine, "r+b") as f:
            f.truncate(3)
    else:
        open(sidecar, "w").write("{")
    open(os.path.join(os.path.dirname(engine), ".net-x.engine.abc.tmp"), "w").write("half")
    b = FakeBuilder()
    s = run(bundle, cache, b)
    assert b.calls == ["net"] and s["models"][0]["status"] == "built"
    assert not any(n.endswith(".tmp") for n in os.listdir(os.path.dirname(engine)))


def test_concurrent_runs_build_once(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    b = FakeBuilder(delay=0.5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(run(bundle, cache, b))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.calls == ["net"]
    assert sorted(r["models"][0]["status"] for r in results) == ["built", "hit"]


def test_failed_build_reports_and_exits_nonzero(bundle, tmp_path):
    s = run(bundle, str(tmp_path / "cache"), FakeBuilder(fail=True))
    assert s["exit_code"] == 1 and s["failed"] == 1
    assert "out of GPU memory" in s["models"][0]["error"]
    assert not any(f.endswith(".engine") for _r, _d, fs in os.walk(tmp_path / "cache") for f in fs)


def test_tampered_model_is_refused(bundle, tmp_path):
    from onnx_models import make_model

    onnx_path = load_manifest(os.path.join(bundle, "manifest.json"))[0].onnx
    make_model(onnx_path, input_dims=(1, 3, 16, 16), op="Sigmoid")  # a valid model, but not the bundled one
    s = run(bundle, str(tmp_path / "cache"), FakeBuilder())
    assert s["exit_code"] == 1 and "does not match its manifest" in s["models"][0]["error"]


def test_no_tensorrt_exit_69(bundle, tmp_path, monkeypatch):
    def missing():
        raise TegraAIError("TensorRT is not available on this machine", exit_code=69)

    monkeypatch.setattr(compat, "load", missing)
    s = ensure([bundle], str(tmp_path / "cache"), show_progress=False, log=lambda m: None)
    assert s["exit_code"] == 69 and "not available" in s["error"]


def test_unwritable_cache(bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TegraAIError, match="cannot create engine cache") as exc:
        run(bundle, str(blocker / "cache"), FakeBuilder())
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("content,match", [
    ("{", "not valid JSON"),
    ('{"format": "other"}', "not a tegra-ai-manifest"),
    ('{"format": "tegra-ai-manifest", "version": 9}', "version 9"),
    ('{"format": "tegra-ai-manifest", "version": 1, "models": [{"name": "a"}]}', "lacks"),
    ('{"format": "tegra-ai-manifest", "version": 1, "models": [{"name": "../x", "onnx": "a", "files": [], "sha256": ""}]}',
     "model name"),
])
def test_bad_manifests(tmp_path, content, match):
    p = tmp_path / "manifest.json"
    p.write_text(content)
    with pytest.raises(TegraAIError, match=match):
        load_manifest(str(p))


def test_duplicate_model_across_manifests(tmp_path, static_model):
    sha, files = model_digest(static_model)
    for d in ("a", "b"):
        add_to_bundle(str(tmp_path / "models" / d), "net", files, sha, BuildOptions())
    with pytest.raises(TegraAIError, match="is in both"):
        run(str(tmp_path / "models"), str(tmp_path / "cache"), FakeBuilder())


def test_verify_cache(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    assert verify_cache(cache, "10.3", "8.7")["problems"] == []
    problems = verify_cache(cache, "8.5.2", "7.2")["problems"]
    assert len(problems) == 2 and "10.3.0.30" in problems[0] and "8.7" in problems[1]
    engine = EngineCache(cache).entries("net")[0][1].replace(".json", ".engine")
    with open(engine, "ab") as f:
        f.write(b"x")
    assert "not matching its sidecar" in verify_cache(cache)["problems"][0]


def test_seed_cache_from_the_image(bundle, tmp_path):
    """Engines prebuilt into the rootfs (read-only) are copied into the persistent cache."""
    seed = str(tmp_path / "rootfs-engines")
    run(bundle, seed, FakeBuilder())
    os.chmod(os.path.join(seed, "net"), 0o555)
    b = FakeBuilder()
    s = run(bundle, str(tmp_path / "cache"), b, seeds=(seed,))
    assert b.calls == [] and s["models"][0]["status"] == "seeded" and s["seeded"] == 1
    s2 = run(bundle, str(tmp_path / "cache"), b, seeds=(seed,))
    assert s2["models"][0]["status"] == "hit"
    # a seed for another TensorRT release is not used
    b3 = FakeBuilder()
    s3 = run(bundle, str(tmp_path / "cache3"), b3, seeds=(seed,), rt=runtime("10.3.0.31"))
    assert b3.calls == ["net"] and s3["models"][0]["status"] == "built"
