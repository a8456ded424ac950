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
from tegra_ai.cache.manifest import add_to_bundle, load_manifest
from tegra_ai.cache.store import EngineCache, short_key
from tegra_ai.cache.verify import verify_cache
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.trt import compat
from tegra_ai.spec import BuildOptions, Sidecar, cache_key, key_material
from tegra_ai.trt.builder import BuildResult, engine_key

ORIN = platform.DeviceFacts("8.7", "Orin", "p3701-0005", "36.4.3", 16, "12.6")


def runtime(version="10.3.0.30", facts=ORIN):
    feats = compat.features_for(version)
    return feats, (lambda options: facts)


class FakeBuilder:
    """Writes bytes and a real Sidecar for the key the runtime gives (claims nothing about TensorRT)."""

    def __init__(self, delay=0.0, fail=False, rt=None):
        self.calls = []
        self.delay = delay
        self.fail = fail
        self.rt = rt or runtime()

    def __call__(self, entry):
        self.calls.append(entry.name)
        time.sleep(self.delay)
        if self.fail:
            raise TegraAIError("out of GPU memory while building the engine")
        feats, facts_for = self.rt
        _key, material = engine_key(entry.sha256, entry.options, feats, facts_for(entry.options))
        return BuildResult(engine=f"engine-of-{entry.name}-{entry.sha256[:8]}".encode(),
                           sidecar=Sidecar.new(material, build_seconds=0.0))


@pytest.fixture
def bundle(tmp_path, static_model):
    out = str(tmp_path / "bundle")
    sha, files = model_digest(static_model)
    add_to_bundle(out, "net", files, sha, BuildOptions(precision="fp16"))
    return out


def run(bundle, cache, builder, **kw):
    rt = kw.pop("rt", None)
    if rt is not None:
        builder.rt = rt
    return ensure([bundle], cache, builder=builder, loader=None, runtime=builder.rt,
                  show_progress=False, log=lambda m: None, **kw)


def test_key_changes_with_every_component():
    trt = {"flavor": "tensorrt", "version": "10.3.0.30", "library_version": "10.3.0.30"}
    base = dict(model_sha256="a" * 64, options=BuildOptions(precision="fp16"), tensorrt=trt, device=ORIN.to_dict())
    k0 = cache_key(key_material(**base))
    assert k0 == cache_key(key_material(**base))
    variants = [dict(model_sha256="b" * 64), dict(options=BuildOptions(precision="fp32")),
                dict(tensorrt=dict(trt, version="10.3.0.31")), dict(tensorrt=dict(trt, flavor="tensorrt-rtx")),
                dict(tensorrt=dict(trt, library_version="10.16.2")),
                dict(device=dict(ORIN.to_dict(), compute_capability="7.2")),
                dict(device=dict(ORIN.to_dict(), l4t_release="36.4.4")),
                dict(device=dict(ORIN.to_dict(), module="p3767-0005")),
                dict(device=dict(ORIN.to_dict(), sm_count=8)),
                dict(device=dict(ORIN.to_dict(), cuda_version="12.8")),
                dict(plugins={"libtegra_ai_plugin.so": "c" * 64})]
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
        rt = runtime(facts=platform.DeviceFacts("8.7", "Orin", "p3701-0004", "36.4.3", 14, "12.6"))
    else:
        m = json.load(open(os.path.join(bundle, "manifest.json")))
        m["models"][0]["request"]["options"]["precision"] = "fp32"
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


def test_prune_unlisted_models_only_removes_its_own(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    other = dict(rt=runtime())
    run(bundle, cache, FakeBuilder(), **other)
    os.rename(os.path.join(cache, "net"), os.path.join(cache, "retired"))   # a model of ours, no longer listed
    os.makedirs(os.path.join(cache, "photos"))                                # somebody else's directory
    open(os.path.join(cache, "photos", "a.jpg"), "w").write("x")
    open(os.path.join(cache, "notes.txt"), "w").write("x")
    s = run(bundle, cache, FakeBuilder(), prune="unlisted")
    assert s["pruned_models"] == ["retired"] and not os.path.exists(os.path.join(cache, "retired"))
    assert os.path.exists(os.path.join(cache, "photos", "a.jpg")) and os.path.exists(os.path.join(cache, "notes.txt"))
    index = json.load(open(os.path.join(cache, "index.json")))["models"]
    assert sorted(index) == ["net"]


def test_model_dir_not_ours_is_refused(bundle, tmp_path):
    cache = tmp_path / "cache"
    (cache / "net").mkdir(parents=True)
    (cache / "net" / "precious.txt").write_text("x")
    s = run(bundle, str(cache), FakeBuilder())
    assert s["failed"] == 1 and "not made by tegra-ai" in s["models"][0]["error"]
    assert (cache / "net" / "precious.txt").read_text() == "x" and os.listdir(cache / "net") == ["precious.txt"]


def test_prune_stale_keeps_foreign_files(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    engine = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    d = os.path.dirname(engine)
    for name in ("README", "net-notakey.engine", "other-0123456789abcdef01234567.engine"):
        open(os.path.join(d, name), "w").write("x")
    s = run(bundle, cache, FakeBuilder(), rt=runtime("10.3.0.31"))
    assert sorted(os.path.basename(p) for p in s["models"][0]["pruned"]) == sorted(
        [os.path.basename(engine), os.path.basename(engine) + ".json"])
    for name in ("README", "net-notakey.engine", "other-0123456789abcdef01234567.engine"):
        assert os.path.exists(os.path.join(d, name))


def test_failed_rebuild_drops_model_from_index(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    s = run(bundle, cache, FakeBuilder(fail=True), rt=runtime("10.3.0.31"))
    assert s["failed"] == 1
    assert json.load(open(os.path.join(cache, "index.json")))["models"] == {}


@pytest.mark.parametrize("damage", ["no-sidecar", "truncated", "bad-sidecar"])
def test_power_cut_leftovers_are_not_engines(bundle, tmp_path, damage):
    cache = str(tmp_path / "cache")
    engine = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    sidecar = engine + ".json"
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


def test_cached_engine_with_one_flipped_byte_is_not_a_hit(bundle, tmp_path):
    """Issue #19: the memo must not vouch for engine bytes that changed. The flip keeps the
    size, the mtime and the inode; only the bytes (and the ctime the kernel sets) differ."""
    cache = str(tmp_path / "cache")
    b = FakeBuilder()
    engine = run(bundle, cache, b)["models"][0]["engine"]
    st = os.stat(engine)
    with open(engine, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0x01]))
    os.utime(engine, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(engine)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    s = run(bundle, cache, b)
    assert s["models"][0]["status"] == "built" and b.calls == ["net", "net"]
    with open(s["models"][0]["engine"], "rb") as f:
        assert f.read().startswith(b"engine-of-net")


def test_link_moves_before_prune(bundle, tmp_path, monkeypatch):
    """A kill after prune and before the link update left the stable link dangling (2 of 34
    kills, issue #19): the link must already point at the new engine when prune runs."""
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    seen = []
    real_prune = EngineCache.prune

    def spy(self, name, keep_keys, l4t_release=None):
        link = self.link_path(name)
        seen.append(os.path.exists(link) and os.path.basename(os.path.realpath(link))
                    in {f"{name}-{short_key(k)}.engine" for k in keep_keys})
        return real_prune(self, name, keep_keys, l4t_release=l4t_release)

    monkeypatch.setattr(EngineCache, "prune", spy)
    other = runtime(facts=platform.DeviceFacts("8.7", "Orin", "p3701-0005", "36.4.4", 16, "12.6"))
    s = run(bundle, cache, FakeBuilder(rt=other))
    assert s["models"][0]["status"] == "built"
    assert seen == [True]


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


def test_tampered_calibration_is_refused_before_a_build(tmp_path, static_model):
    """The bundle's calibration cache changed on the device: building with it would store an
    engine under a key that names other data. Refused; the intact bundle builds."""
    from tegra_ai.spec import BuildRequest

    (tmp_path / "c.cache").write_bytes(b"TRT-8500-EntropyCalibration2\n")
    request = BuildRequest.from_request(static_model, calibration_cache=str(tmp_path / "c.cache"), precision="int8")
    out = str(tmp_path / "bundle")
    sha, files = model_digest(static_model)
    (entry,) = load_manifest(add_to_bundle(out, "net", files, sha, request))
    with open(entry.calibration_cache, "ab") as f:
        f.write(b"input: 3c010a14\n")
    b = FakeBuilder()
    s = run(out, str(tmp_path / "cache"), b)
    assert s["exit_code"] == 1 and b.calls == []
    assert "calibration.cache does not match its manifest" in s["models"][0]["error"]


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


def test_verify_cache_names_the_differing_input(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    run(bundle, cache, FakeBuilder())
    ok = dict(trt_version="10.3", compute_capability="8.7", library_version="10.3.0", module=ORIN.module,
              l4t_release="36.4")
    assert verify_cache(cache, **ok)["problems"] == []
    for field, value, word in [("trt_version", "8.5.2", "TensorRT version"),
                               ("library_version", "10.16", "library version"),
                               ("compute_capability", "7.2", "compute capability"),
                               ("module", "NVIDIA Jetson Orin Nano Developer Kit", "Jetson module"),
                               ("l4t_release", "36.5", "L4T release")]:
        problems = verify_cache(cache, **dict(ok, **{field: value}))["problems"]
        assert len(problems) == 1 and word in problems[0] and value in problems[0], (field, problems)
    # against the manifest: options and model
    assert verify_cache(cache, manifests=(bundle,))["problems"] == []
    m = json.load(open(os.path.join(bundle, "manifest.json")))
    m["models"][0]["request"]["options"]["precision"] = "fp32"
    json.dump(m, open(os.path.join(bundle, "manifest.json"), "w"))
    problems = verify_cache(cache, manifests=(bundle,))["problems"]
    assert len(problems) == 1 and "build option precision" in problems[0]
    engine = EngineCache(cache).entries("net")[0][1][:-len(".json")]
    with open(engine, "ab") as f:
        f.write(b"x")
    assert "not matching its sidecar" in verify_cache(cache)["problems"][0]


def test_verify_cache_refuses_edited_key_material(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    engine = run(bundle, cache, FakeBuilder())["models"][0]["engine"]
    sc = json.load(open(engine + ".json"))
    sc["key_material"]["device"]["compute_capability"] = "7.2"   # claims another GPU, key unchanged
    json.dump(sc, open(engine + ".json", "w"))
    assert "not a valid sidecar" in verify_cache(cache)["problems"][0]


def test_seed_cache_from_the_image(bundle, tmp_path):
    """Engines prebuilt into the rootfs (read-only) are used in place, never copied."""
    seed = str(tmp_path / "rootfs-engines")
    run(bundle, seed, FakeBuilder())
    os.chmod(os.path.join(seed, "net"), 0o555)
    b = FakeBuilder()
    s = run(bundle, str(tmp_path / "cache"), b, seeds=(seed,))
    assert b.calls == [] and s["models"][0]["status"] == "seeded" and s["seeded"] == 1
    assert s["models"][0]["engine"].startswith(seed)
    assert not any(f.endswith(".engine") and not os.path.islink(os.path.join(r, f))
                   for r, _d, fs in os.walk(tmp_path / "cache") for f in fs)
    assert os.path.realpath(tmp_path / "cache" / "net.engine") == os.path.realpath(s["models"][0]["engine"])
    s2 = run(bundle, str(tmp_path / "cache"), b, seeds=(seed,))
    assert s2["models"][0]["status"] == "seeded"
    index = json.load(open(tmp_path / "cache" / "index.json"))["models"]["net"]
    assert index["engine"] == s["models"][0]["engine"]
    # a seed for another TensorRT release is not used
    b3 = FakeBuilder()
    s3 = run(bundle, str(tmp_path / "cache3"), b3, seeds=(seed,), rt=runtime("10.3.0.31"))
    assert b3.calls == ["net"] and s3["models"][0]["status"] == "built"


# --------------------------------------------------------------------------- what the layer asks of ensure

def test_stable_link_follows_the_current_engine(bundle, tmp_path):
    from tegra_ai.cache.ensure import engine_path_for

    cache = str(tmp_path / "cache")
    first = run(bundle, cache, FakeBuilder())["models"][0]
    link = os.path.join(cache, "net.engine")
    assert first["link"] == link and os.path.islink(link) and not os.path.isabs(os.readlink(link))
    assert os.path.realpath(link) == os.path.realpath(first["engine"])
    assert os.path.realpath(link + ".json") == os.path.realpath(first["engine"] + ".json")
    second = run(bundle, cache, FakeBuilder(), rt=runtime("10.3.0.31"))["models"][0]
    assert os.path.realpath(link) == os.path.realpath(second["engine"]) != os.path.realpath(first["engine"])
    assert engine_path_for(cache, "net")["engine"] == link
    assert json.load(open(os.path.join(cache, "index.json")))["models"]["net"]["link"] == link
    assert not [n for n in os.listdir(cache) if n.endswith(".tmp")]
    # a failed rebuild removes the link: applications must not load a stale engine
    run(bundle, cache, FakeBuilder(fail=True), rt=runtime("10.3.0.32"))
    assert not os.path.lexists(link)
    with pytest.raises(TegraAIError, match="no engine for net") as exc:
        engine_path_for(cache, "net")
    assert exc.value.exit_code == 1


def test_link_never_replaces_a_file_it_did_not_make(bundle, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "net.engine").write_text("the user's own engine")
    s = run(bundle, str(cache), FakeBuilder())
    assert s["exit_code"] == 0 and "link" not in s["models"][0]
    assert (cache / "net.engine").read_text() == "the user's own engine"


def test_other_l4t_release_engines_are_kept_for_the_other_slot(bundle, tmp_path):
    """A/B: slot A (36.4.3) and slot B (36.5.0) share the cache; each keeps the other's
    newest engine, and only one per other release."""
    cache = str(tmp_path / "cache")
    slot_a = runtime(facts=ORIN)
    slot_b = runtime(facts=platform.DeviceFacts("8.7", "Orin", ORIN.module, "36.5.0"))
    a1 = run(bundle, cache, FakeBuilder(), rt=slot_a)["models"][0]["engine"]
    b1 = run(bundle, cache, FakeBuilder(), rt=slot_b)["models"][0]
    assert os.path.exists(a1) and b1["pruned"] == []
    back_to_a = run(bundle, cache, FakeBuilder(), rt=slot_a)["models"][0]
    assert back_to_a["status"] == "hit" and os.path.exists(b1["engine"])
    # slot A updates TensorRT: its old engine goes, slot B's stays
    a2 = run(bundle, cache, FakeBuilder(), rt=runtime("10.3.0.31", facts=ORIN))["models"][0]
    assert a1 in a2["pruned"] and os.path.exists(b1["engine"])
    # two engines of the same other release: only the newest is kept
    b2 = run(bundle, cache, FakeBuilder(), rt=(compat.features_for("10.3.0.31"), slot_b[1]))["models"][0]
    assert b1["engine"] in b2["pruned"]
    time.sleep(0.01)
    a3 = run(bundle, cache, FakeBuilder(), rt=runtime("10.3.0.32", facts=ORIN))["models"][0]
    assert os.path.exists(b2["engine"]) and a2["engine"] in a3["pruned"]
    engines = sorted(n for n in os.listdir(os.path.join(cache, "net")) if n.endswith(".engine"))
    assert len(engines) == 2


def test_unlisted_model_of_the_other_slot_is_kept(bundle, tmp_path, static_model):
    cache = str(tmp_path / "cache")
    slot_b = runtime(facts=platform.DeviceFacts("8.7", "Orin", ORIN.module, "36.5.0"))
    other = str(tmp_path / "bundle-b")
    sha, files = model_digest(static_model)
    add_to_bundle(other, "only-in-b", files, sha, BuildOptions(precision="fp32"))
    run(other, cache, FakeBuilder(), rt=slot_b)
    s = run(bundle, cache, FakeBuilder(), prune="unlisted")       # slot A does not list it
    assert s["pruned_models"] == [] and os.path.isdir(os.path.join(cache, "only-in-b"))


def test_tmpfs_cache_warns(bundle, tmp_path, monkeypatch, caplog):
    from tegra_ai.cache import store

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
                         f"40 22 0:35 / {tmp_path} rw,nosuid shared:20 - tmpfs tmpfs rw\n")
    assert store.filesystem_type(str(tmp_path / "cache"), str(mountinfo)) == "tmpfs"
    assert store.filesystem_type("/usr", str(mountinfo)) == "ext4"
    real = store.filesystem_type
    monkeypatch.setattr(store, "filesystem_type", lambda p, m=str(mountinfo): real(p, m))
    s = run(bundle, str(tmp_path / "cache"), FakeBuilder())
    assert s["exit_code"] == 0 and "tmpfs" in s["warnings"][0] and "every boot" in s["warnings"][0]


def test_at_most_one_engine_per_other_release(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    slot_b = lambda v: (compat.features_for(v), lambda o: platform.DeviceFacts("8.7", "Orin", ORIN.module, "36.5.0"))  # noqa: E731
    older = run(bundle, cache, FakeBuilder(), rt=slot_b("10.3.0.30"), prune="none")["models"][0]["engine"]
    time.sleep(1.1)   # sidecars record the creation time to the second
    newer = run(bundle, cache, FakeBuilder(), rt=slot_b("10.3.0.31"), prune="none")["models"][0]["engine"]
    s = run(bundle, cache, FakeBuilder(), rt=runtime(facts=ORIN))["models"][0]
    assert older in s["pruned"] and os.path.exists(newer) and os.path.exists(s["engine"])


def _as_key_format_2(cache, s, library_version=None):
    """Turn the engine ensure just made into what a key-format-2 ensure wrote: the GPU name
    and /proc/device-tree/model keyed, no SM count, CUDA driver or module part number."""
    from tegra_ai.cache.store import EngineCache
    from tegra_ai.spec import sidecar_path
    engine = s["models"][0]["engine"]
    side = json.load(open(sidecar_path(engine)))
    material = dict(side["key_material"], format=2,
                    device={"compute_capability": "8.7", "device_name": "Orin",
                            "module": "NVIDIA Jetson AGX Orin Developer Kit", "l4t_release": "36.4.3"})
    if library_version:
        material["tensorrt"] = dict(material["tensorrt"], library_version=library_version)
    old_key = cache_key(material)
    old_engine, old_side = EngineCache(cache).paths("net", old_key)
    os.rename(engine, old_engine)
    os.unlink(sidecar_path(engine))
    side.update(cache_key=old_key, key_material=material, engine_file=os.path.basename(old_engine))
    json.dump(side, open(old_side, "w"))
    return old_engine, old_side


def test_key_format_2_engines_are_rekeyed_once_not_rebuilt(bundle, tmp_path):
    """The documented migration: an engine of the old key format in the device's cache that
    matches on model, options, TensorRT, compute capability and L4T release is moved under its
    new key (same bytes), its old files removed; the next run is a plain cache hit."""
    cache = str(tmp_path / "cache")
    first = run(bundle, cache, FakeBuilder())
    data = open(first["models"][0]["engine"], "rb").read()
    old_engine, old_side = _as_key_format_2(cache, first)
    b = FakeBuilder()
    s = run(bundle, cache, b)
    assert b.calls == [] and (s["rekeyed"], s["built"], s["exit_code"]) == (1, 0, 0)
    m = s["models"][0]
    assert m["status"] == "rekeyed" and m["key"] == first["models"][0]["key"]
    assert open(m["engine"], "rb").read() == data
    assert not os.path.exists(old_engine) and not os.path.exists(old_side)
    sc = Sidecar.load(m["engine"] + ".json")
    assert sc.cache_key == m["key"] and sc.key_material["format"] == 3
    assert any("re-keyed from key format 2" in n for n in sc.notes)
    again = run(bundle, cache, FakeBuilder())
    assert (again["hits"], again["rekeyed"], again["built"]) == (1, 0, 0)


def test_key_format_2_engine_of_another_tensorrt_is_rebuilt(bundle, tmp_path):
    cache = str(tmp_path / "cache")
    _as_key_format_2(cache, run(bundle, cache, FakeBuilder()), library_version="10.3.0.26")
    b = FakeBuilder()
    s = run(bundle, cache, b)
    assert b.calls == ["net"] and (s["rekeyed"], s["built"]) == (0, 1)


def test_flipped_engine_byte_invisible_to_stat_is_not_a_hit_next_boot(bundle, tmp_path, monkeypatch):
    """Bit rot leaves size, mtime and ctime alone: the memo would call the engine valid.
    The engine's bytes are re-verified against its sidecar once per boot."""
    import tegra_ai.util.hashing as hashing

    cache = str(tmp_path / "cache")
    monkeypatch.setattr(hashing, "boot_id", lambda: "boot-1")
    s1 = run(bundle, cache, FakeBuilder())
    engine = s1["models"][0]["engine"]
    data = bytearray(open(engine, "rb").read())
    data[3] ^= 0x01
    with open(engine, "r+b") as f:
        f.write(data)
    memo_path = os.path.join(cache, ".hashmemo.json")
    memo = json.load(open(memo_path))
    st = os.stat(engine)      # pretend the stat did not change (corruption below the filesystem)
    memo["files"][engine]["stat"] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns]
    json.dump(memo, open(memo_path, "w"))
    monkeypatch.setattr(hashing, "boot_id", lambda: "boot-2")
    b = FakeBuilder()
    s2 = run(bundle, cache, b)
    assert s2["hits"] == 0 and s2["built"] == 1 and b.calls == ["net"]
    assert bytes(data) != open(engine, "rb").read()


def test_manifest_version_1_gives_the_same_request(tmp_path, static_model):
    """A bundle written before the request was recorded whole (version 1: its parts as loose
    fields) is read as the same BuildRequest, so its engines keep their keys."""
    from tegra_ai.spec import BuildRequest

    (tmp_path / "t.cache").write_bytes(b"timings")
    (tmp_path / "c.cache").write_bytes(b"TRT-8500-EntropyCalibration2\n")
    request = BuildRequest.from_request(static_model, timing_cache=str(tmp_path / "t.cache"),
                                        calibration_cache=str(tmp_path / "c.cache"), precision="int8",
                                        plugins=["libnvinfer_plugin.so.10"])
    out = str(tmp_path / "bundle")
    sha, files = model_digest(static_model)
    path = add_to_bundle(out, "net", files, sha, request)
    (v2,) = load_manifest(path)
    data = json.load(open(path))
    m = data["models"][0]
    r = m.pop("request")
    m.update(onnx=r["model"], options=r["options"], calibration_data=r["calibration_data"],
             calibration_cache=r["calibration_cache"], timing_cache=r["timing_cache"], plugins=r["plugins"])
    data["version"] = 1
    json.dump(data, open(path, "w"))
    (v1,) = load_manifest(path)
    assert v1.request == v2.request and v1.request.options == request.options
    assert v1.calibration_cache.endswith("net/calibration.cache") and v1.plugins == ("libnvinfer_plugin.so.10",)
