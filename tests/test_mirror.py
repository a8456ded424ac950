"""Engine mirrors: publish on a reference device, ensure --mirror on the fleet.

Every network test talks to a server this test starts on 127.0.0.1 (tests/mirror_server.py),
or to a closed port there; nothing else is reached. The builder is the stand-in of
test_cache_ensure (it writes bytes and a real Sidecar; it claims nothing about TensorRT)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time

import pytest

from mirror_server import MirrorServer, self_signed_cert
from test_cache_ensure import FakeBuilder, runtime
from tegra_ai import platform
from tegra_ai.cache import signing
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cache.mirror import MirrorPolicy, mirror_sources, parse_mirror_url
from tegra_ai.cache.publish import MIRROR_INDEX, publish
from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions, Sidecar

pytest.importorskip("cryptography", reason="signed mirrors need cryptography (pip install '.[mirror]')")

NANO = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson Orin Nano Developer Kit", "36.4.3")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must not see the test's loopback traffic.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


class SizedBuilder(FakeBuilder):
    """FakeBuilder with an engine of ``size`` bytes (deterministic per model)."""

    def __init__(self, size=64 * 1024, **kw):
        super().__init__(**kw)
        self.size = size

    def __call__(self, entry):
        result = super().__call__(entry)
        seed = hashlib.sha256(result.engine).digest()
        result.engine = (seed * (self.size // len(seed) + 1))[: self.size]
        return result


@pytest.fixture
def keys(tmp_path):
    return signing.generate_keypair(str(tmp_path / "keys"))


@pytest.fixture
def bundle(tmp_path, model_factory):
    out = str(tmp_path / "bundle")
    for name, op in (("net", "Relu"), ("det", "Sigmoid")):
        sha, files = model_digest(model_factory(f"{name}.onnx", input_dims=(1, 3, 8, 8), op=op))
        add_to_bundle(out, name, files, sha, BuildOptions(precision="fp16"))
    return out


def run(bundle, cache, sources=(), builder=None):
    b = builder or SizedBuilder()
    s = ensure([bundle], cache, builder=b, loader=None, runtime=b.rt, sources=tuple(sources), show_progress=False,
               log=lambda m: None)
    return s, b


@pytest.fixture
def mirror(tmp_path, bundle, keys):
    """A mirror published from a reference device (an AGX Orin with the fleet's image)."""
    ref = str(tmp_path / "reference-cache")
    s, _ = run(bundle, ref)
    assert s["built"] == 2
    out = str(tmp_path / "mirror")
    result = publish(ref, out, keys["private_key"])
    assert result["published"] == 2 and result["exit_code"] == 0
    return out


def sources(url, keys, **kw):
    srcs = mirror_sources([url], [keys["public_key"]] if keys else [], **kw)
    for s in srcs:
        s.policy.backoff = 0.05
    return srcs


def models(summary):
    return {m["name"]: m for m in summary["models"]}


def engine_files(mirror_dir, name="net"):
    d = os.path.join(mirror_dir, name)
    engine = next(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".engine"))
    return engine, engine + ".json", engine + ".sig"


# --------------------------------------------------------------------------- hits

def test_file_mirror_hit_then_cache_hit(tmp_path, bundle, mirror, keys):
    cache = str(tmp_path / "device")
    s, b = run(bundle, cache, sources("file://" + mirror, keys))
    assert b.calls == [] and s["fetched"] == 2 and s["built"] == 0 and s["exit_code"] == 0
    m = models(s)["net"]
    assert m["status"] == "fetched" and m["source"] == f"mirror file://{mirror}"
    assert m["attempts"] == [dict(m["attempts"][0], mirror="file://" + mirror, result="hit", key_id=keys["key_id"])]
    assert m["attempts"][0]["bytes"] > 64 * 1024
    engine, _side, _sig = engine_files(mirror)
    assert open(m["engine"], "rb").read() == open(engine, "rb").read()
    local = Sidecar.load(m["engine"] + ".json")
    assert any(n.startswith(f"fetched from file://{mirror}") for n in local.notes)
    # committed to the cache: the next boot is a cache hit, mirror or not
    s2, b2 = run(bundle, cache)
    assert s2["hits"] == 2 and b2.calls == []


def test_http_mirror_hit(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror) as srv:
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True))
    assert b.calls == [] and s["fetched"] == 2
    assert models(s)["det"]["source"] == f"mirror {srv.url}"
    # the signed index once (rollback protection), then keyed paths only
    assert srv.requests[0] == "/index.json" and srv.requests.count("/index.json") == 1
    assert all(p.startswith(("/net/", "/det/")) for p in srv.requests[1:])


def test_https_mirror_with_private_ca(tmp_path, bundle, mirror, keys):
    cert, key = self_signed_cert(str(tmp_path))
    with MirrorServer(mirror, tls=(cert, key)) as srv:
        untrusted, b1 = run(bundle, str(tmp_path / "d1"), sources(srv.url, keys))
        trusted, b2 = run(bundle, str(tmp_path / "d2"), sources(srv.url, keys, ca_file=cert))
    a = untrusted["models"][0]["attempts"][0]
    assert a["result"] == "error" and "certificate" in a["reason"] and sorted(b1.calls) == ["det", "net"]
    assert trusted["fetched"] == 2 and b2.calls == []


def test_miss_then_local_build(tmp_path, bundle, mirror, keys):
    """A device the reference does not stand for (another L4T): the mirror has no engine for its key."""
    b = SizedBuilder(rt=runtime(facts=platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin", "36.5.0")))
    s, _ = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys), builder=b)
    assert s["built"] == 2 and sorted(b.calls) == ["det", "net"]
    assert models(s)["net"]["attempts"][0]["result"] == "miss"


def test_second_mirror_is_asked_after_a_miss(tmp_path, bundle, mirror, keys):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    s, b = run(bundle, str(tmp_path / "device"),
               mirror_sources(["file://" + str(empty), "file://" + mirror], [keys["public_key"]]))
    assert s["fetched"] == 2 and b.calls == []
    assert [a["result"] for a in models(s)["net"]["attempts"]] == ["miss", "hit"]


# --------------------------------------------------------------------------- trust

def test_tampered_engine_rejected(tmp_path, bundle, mirror, keys):
    engine, _side, _sig = engine_files(mirror)
    data = bytearray(open(engine, "rb").read())
    data[100] ^= 0xFF                                  # same size, one bit pattern changed
    open(engine, "wb").write(bytes(data))
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys))
    a = models(s)["net"]["attempts"][0]
    assert a["result"] == "rejected" and "sha256" in a["reason"]
    assert b.calls == ["net"] and models(s)["net"]["status"] == "built" and models(s)["det"]["status"] == "fetched"
    assert open(models(s)["net"]["engine"], "rb").read() != bytes(data)


def test_edited_sidecar_breaks_signature(tmp_path, bundle, mirror, keys):
    """Changing the sidecar (e.g. to describe a swapped engine) invalidates the signature."""
    engine, side, _sig = engine_files(mirror)
    d = json.load(open(side))
    new_engine = b"evil" * 1000
    d.update(engine_size=len(new_engine), engine_sha256=hashlib.sha256(new_engine).hexdigest())
    open(side, "w").write(json.dumps(d))
    open(engine, "wb").write(new_engine)
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys))
    assert "does not verify" in models(s)["net"]["attempts"][0]["reason"] and "net" in b.calls


def test_wrong_key_rejected(tmp_path, bundle, mirror):
    other = signing.generate_keypair(str(tmp_path / "other-keys"))
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, other))
    a = s["models"][0]["attempts"][0]      # the signed index is refused: the mirror is not asked again
    assert a["result"] == "rejected" and other["key_id"] in a["reason"] and sorted(b.calls) == ["det", "net"]


@pytest.mark.parametrize("signed", [True, False])
def test_sidecar_for_another_key_rejected(tmp_path, bundle, keys, signed):
    """A validly signed engine for another device (another L4T), placed at this device's key's
    path; unsigned mirrors get the same key-material check."""
    other_rt = runtime(facts=platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin", "36.5.0"))
    run(bundle, str(tmp_path / "other-ref"), builder=SizedBuilder(rt=other_rt))
    run(bundle, str(tmp_path / "this-ref"))
    wrong, right = str(tmp_path / "wrong-mirror"), str(tmp_path / "right-mirror")
    publish(str(tmp_path / "other-ref"), wrong, keys["private_key"])
    publish(str(tmp_path / "this-ref"), right, keys["private_key"])
    for src, dst in zip(engine_files(wrong), engine_files(right)):
        shutil.copyfile(src, dst)
    srcs = sources("file://" + right, keys) if signed else sources("file://" + right, None, unsigned=True)
    s, b = run(bundle, str(tmp_path / "device"), srcs)
    a = models(s)["net"]["attempts"][0]
    assert a["result"] == "rejected" and "L4T release" in a["reason"] and "36.5.0" in a["reason"]
    assert "net" in b.calls


def test_unsigned_needs_opt_in(tmp_path, bundle, mirror, keys):
    for _e, _s, sig in (engine_files(mirror, "net"), engine_files(mirror, "det")):
        os.unlink(sig)
    s, b = run(bundle, str(tmp_path / "d1"), sources("file://" + mirror, keys))
    assert "not signed" in models(s)["net"]["attempts"][0]["reason"] and len(b.calls) == 2
    s2, b2 = run(bundle, str(tmp_path / "d2"), sources("file://" + mirror, None, unsigned=True))
    assert s2["fetched"] == 2 and b2.calls == []
    assert "unsigned" in Sidecar.load(models(s2)["net"]["engine"] + ".json").notes[-1]


@pytest.mark.parametrize("content, reason", [
    (b"<html>not found</html>", "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "nested too deep"),
    (json.dumps({"format": "tegra-ai-engine", "version": 2}).encode(), "incomplete sidecar"),
], ids=["html", "deeply-nested", "incomplete"])
def test_garbage_sidecars_never_stop_the_build(tmp_path, bundle, mirror, content, reason):
    _e, side, _s = engine_files(mirror)
    open(side, "wb").write(content)
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, None, unsigned=True))
    a = models(s)["net"]["attempts"][0]
    assert a["result"] == "rejected" and reason in a["reason"], a
    assert models(s)["net"]["status"] == "built" and models(s)["det"]["status"] == "fetched"


def test_fifo_in_a_file_mirror_does_not_block(tmp_path, bundle, mirror, keys):
    engine, _side, _sig = engine_files(mirror)
    os.unlink(engine)
    os.mkfifo(engine)
    t0 = time.monotonic()
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys))
    assert time.monotonic() - t0 < 5 and "not a regular file" in models(s)["net"]["attempts"][0]["reason"]
    assert b.calls == ["net"]


# --------------------------------------------------------------------------- network faults

def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_server_down_builds_locally_fast(tmp_path, bundle, keys):
    t0 = time.monotonic()
    s, b = run(bundle, str(tmp_path / "device"),
               sources(f"http://127.0.0.1:{_closed_port()}/engines", keys, allow_http=True))
    assert s["built"] == 2 and time.monotonic() - t0 < 5
    first, second = (s["models"][i]["attempts"][0] for i in (0, 1))
    assert first["result"] == "error" and "cannot reach" in first["reason"]
    assert second["result"] == "skipped" and "failed earlier in this run" in second["reason"]


def test_unanswered_name_lookup_bounded_by_budget(tmp_path, bundle, keys, monkeypatch):
    """A resolver that never answers (getaddrinfo ignores socket timeouts) costs the budget, once."""
    import tegra_ai.cache.mirror as mirror_mod

    release = mirror_mod.threading.Event()
    real = socket.getaddrinfo
    monkeypatch.setattr(mirror_mod.socket, "getaddrinfo",
                        lambda host, *a, **kw: release.wait(10) if host == "mirror.invalid" else real(host, *a, **kw))
    t0 = time.monotonic()
    try:
        s, b = run(bundle, str(tmp_path / "device"), sources("https://mirror.invalid/e", keys, timeout=1.0))
    finally:
        release.set()
    assert time.monotonic() - t0 < 3 and s["built"] == 2
    first, second = (m["attempts"][0] for m in s["models"])
    assert "cannot resolve mirror.invalid within" in first["reason"] and second["result"] == "skipped"


def test_stalled_download_bounded_by_budget(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror, stall_s=20) as srv:
        srv.behaviour = ("stall", None)
        t0 = time.monotonic()
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True, timeout=1.5,
                                                             io_timeout=0.5))
        elapsed = time.monotonic() - t0
    # the first model waits its 1.5 s budget (plus at most one read timeout), the second
    # does not ask a mirror that just failed
    assert elapsed < 1.5 + 0.5 + 1.5, elapsed
    assert s["built"] == 2
    first, second = (s["models"][i]["attempts"][0] for i in (0, 1))
    assert first["result"] == "error" and first["seconds"] <= 2.1 and second["result"] == "skipped"


def test_truncated_response(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror) as srv:
        srv.behaviour = ("truncate", None)
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True))
        engine_requests = [p for p in srv.requests if p.endswith(".engine")]
    a = s["models"][0]["attempts"][0]
    assert a["result"] == "error" and "truncated" in a["reason"] and s["built"] == 2
    assert len(engine_requests) == 3              # first try + 2 retries, then the mirror is skipped
    assert not any(n.endswith(".tmp") for _r, _d, fs in os.walk(tmp_path / "device") for n in fs)


@pytest.mark.parametrize("kind", ["oversize", "no-length"])
def test_oversize_response_cut_off(tmp_path, bundle, mirror, keys, kind):
    with MirrorServer(mirror) as srv:
        srv.behaviour = (kind, 10 << 20)
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True))
    a = models(s)["net"]["attempts"][0]
    assert a["result"] == "rejected" and s["built"] == 2
    assert ("more than" if kind == "oversize" else "cut off") in a["reason"]
    assert a["bytes"] < 200 * 1024                     # the 10 MB extra were never read


def test_redirect_to_other_host_refused_unless_allowed(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror) as real, MirrorServer(str(tmp_path / "nothing")) as front:
        front.behaviour = None
        os.makedirs(front.root, exist_ok=True)
        shutil.copytree(mirror, front.root, dirs_exist_ok=True)
        front.behaviour = ("redirect", real.url)
        s, b = run(bundle, str(tmp_path / "d1"), sources(front.url, keys, allow_http=True))
        assert not any(p.endswith(".engine") for p in real.requests)
        a = models(s)["net"]["attempts"][0]
        assert a["result"] == "rejected" and "another host" in a["reason"] and s["built"] == 2
        s2, b2 = run(bundle, str(tmp_path / "d2"), sources(front.url, keys, allow_http=True, allow_redirects=True))
        assert s2["fetched"] == 2 and b2.calls == []
        assert any(p.endswith(".engine") for p in real.requests)


def test_a_failed_mirror_is_skipped_the_next_one_asked(tmp_path, bundle, mirror, keys):
    srcs = sources(f"http://127.0.0.1:{_closed_port()}", keys, allow_http=True)
    srcs += mirror_sources(["file://" + mirror], [keys["public_key"]])
    s, b = run(bundle, str(tmp_path / "device"), srcs)
    assert s["fetched"] == 2 and b.calls == []
    assert [[a["result"] for a in m["attempts"]] for m in s["models"]] == [["error", "hit"], ["skipped", "hit"]]


def test_proxy_from_the_environment(tmp_path, bundle, mirror, keys, monkeypatch):
    """http_proxy is honoured (the test's server on 127.0.0.1 plays the proxy; the mirror's
    name is never resolved or contacted)."""
    with MirrorServer(mirror) as proxy:
        proxy.strip_prefix = "fleet/"
        monkeypatch.setenv("http_proxy", proxy.url)
        s, b = run(bundle, str(tmp_path / "device"), sources("http://mirror.invalid/fleet", keys, allow_http=True))
    assert s["fetched"] == 2 and b.calls == []
    assert proxy.requests and all(p.startswith("http://mirror.invalid/fleet/") for p in proxy.requests)


def test_transient_errors_retried(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror) as srv:
        srv.fail_first = 2
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True))
    assert s["fetched"] == 2 and b.calls == []


def test_http_403_is_an_error_not_a_miss(tmp_path, bundle, mirror, keys):
    with MirrorServer(mirror) as srv:
        srv.behaviour = ("status", 403)
        s, b = run(bundle, str(tmp_path / "device"), sources(srv.url, keys, allow_http=True))
    a = s["models"][0]["attempts"][0]
    assert a["result"] == "error" and "HTTP 403" in a["reason"] and s["built"] == 2


# --------------------------------------------------------------------------- publish

def test_publish_layout_index_and_idempotence(tmp_path, bundle, mirror, keys):
    index = json.load(open(os.path.join(mirror, MIRROR_INDEX)))
    assert index["format"] == "tegra-ai-mirror-index" and len(index["signed"]["engines"]) == 2
    for rel, e in index["signed"]["engines"].items():
        assert os.path.isfile(os.path.join(mirror, rel)) and e["key_id"] == keys["key_id"]
        side = os.path.join(mirror, rel + ".json")
        pub = signing.load_public_keys([keys["public_key"]])[0]
        assert pub.verify(open(side, "rb").read(), open(os.path.join(mirror, rel + ".sig"), "rb").read())
    again = publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"])
    assert again["present"] == 2 and again["published"] == 0 and again["exit_code"] == 0


def test_publish_never_overwrites_a_different_engine(tmp_path, bundle, mirror, keys):
    engine, side, sig = engine_files(mirror)
    before = {p: open(p, "rb").read() for p in (engine, side, sig)}
    # the reference rebuilt the same key into different bytes (nondeterministic tactics)
    run(bundle, str(tmp_path / "ref2"), builder=SizedBuilder(size=70000))
    result = publish(str(tmp_path / "ref2"), mirror, keys["private_key"])
    assert result["conflicts"] == 2 and result["exit_code"] == 1
    assert {p: open(p, "rb").read() for p in (engine, side, sig)} == before


def test_publish_from_an_installed_seed(tmp_path, bundle, keys):
    """Seeds in an image hold engines and sidecars only (no model markers): publishable too."""
    run(bundle, str(tmp_path / "ref"))
    seed = tmp_path / "usr-share-engines"
    for d in os.listdir(tmp_path / "ref"):
        if os.path.isdir(tmp_path / "ref" / d):
            (seed / d).mkdir(parents=True)
            for f in os.listdir(tmp_path / "ref" / d):
                if f.endswith((".engine", ".engine.json")):
                    shutil.copyfile(tmp_path / "ref" / d / f, seed / d / f)
    r = publish(str(seed), str(tmp_path / "m"), keys["private_key"])
    assert r["published"] == 2
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + str(tmp_path / "m"), keys))
    assert s["fetched"] == 2 and b.calls == []


def test_publish_skips_engines_without_valid_files(tmp_path, bundle, keys):
    run(bundle, str(tmp_path / "ref"))
    engine = engine_files(str(tmp_path / "ref"), "det")[0]
    with open(engine, "r+b") as f:
        f.truncate(10)
    r = publish(str(tmp_path / "ref"), str(tmp_path / "m"), keys["private_key"])
    assert r["published"] == 1 and [row["name"] for row in r["skipped"]] == ["det"]
    assert not os.path.exists(os.path.join(tmp_path, "m", "det"))


def test_concurrent_publishers_leave_consistent_sets(tmp_path, bundle, keys):
    """Two reference devices that built the same keys into different bytes publish at once:
    per engine one wins, the other is a conflict, and every published set verifies."""
    import threading

    run(bundle, str(tmp_path / "ref1"))
    run(bundle, str(tmp_path / "ref2"), builder=SizedBuilder(size=70000))
    out = str(tmp_path / "m")
    results = []
    threads = [threading.Thread(target=lambda r=r: results.append(publish(str(tmp_path / r), out,
                                                                          keys["private_key"])))
               for r in ("ref1", "ref2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["published"] for r in results) == 2 and sum(r["conflicts"] for r in results) == 2
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + out, keys))
    assert s["fetched"] == 2 and b.calls == []
    assert len(json.load(open(os.path.join(out, MIRROR_INDEX)))["signed"]["engines"]) == 2


def test_publish_signs_a_previously_unsigned_engine(tmp_path, bundle, mirror, keys):
    _e, _s, sig = engine_files(mirror)
    os.unlink(sig)
    r = publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"])
    assert sorted(row["status"] for row in r["engines"]) == ["present", "signed"] and os.path.isfile(sig)


def test_resigned_engine_gets_its_new_digests_in_the_index(tmp_path, bundle, mirror, keys):
    """Signed again with another key (the old signature lost): the index row names the new key
    and the new signature's digest, so an image build that fetches by checksum gets it."""
    _e, _s, sig = engine_files(mirror)
    os.unlink(sig)
    new_key = signing.generate_keypair(str(tmp_path / "key2"))
    publish(str(tmp_path / "reference-cache"), mirror, new_key["private_key"])
    rows = json.load(open(os.path.join(mirror, MIRROR_INDEX)))["signed"]["engines"]
    row = next(v for rel, v in rows.items() if os.path.join(mirror, *rel.split("/")) + ".sig" == sig)
    assert row["key_id"] == new_key["key_id"]
    assert row["signature_sha256"] == hashlib.sha256(open(sig, "rb").read()).hexdigest()


# --------------------------------------------------------------------------- signatures

@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_and_cryptography_agree(tmp_path):
    for make in ("cryptography", "openssl"):
        k = signing.generate_keypair(str(tmp_path / make), backend=make)
        for signer in ("cryptography", "openssl"):
            sig = signing.load_private_key(k["private_key"], backend=signer).sign(b"sidecar bytes")
            assert len(sig) == 64
            for verifier in ("cryptography", "openssl"):
                pub = signing.load_public_keys([k["public_key"]], backend=verifier)[0]
                assert pub.verify(b"sidecar bytes", sig) and not pub.verify(b"sidecar bytez", sig)
                assert pub.key_id == k["key_id"]


def test_openssl_genpkey_keys_are_accepted(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    import subprocess

    priv, pub = str(tmp_path / "k.pem"), str(tmp_path / "k.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", priv], check=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True)
    assert signing.load_private_key(priv).key_id == signing.load_public_keys([pub])[0].key_id


def test_public_key_id_needs_no_signing_library(tmp_path, monkeypatch):
    k = signing.generate_keypair(str(tmp_path / "k"))
    monkeypatch.setattr(signing, "_cryptography", lambda: None)
    monkeypatch.setattr(signing.shutil, "which", lambda name: None)
    assert signing.public_key_id(k["public_key"]) == k["key_id"]
    with pytest.raises(TegraAIError, match="is a private key"):
        signing.public_key_id(k["private_key"])


def test_key_directory(tmp_path):
    a = signing.generate_keypair(str(tmp_path / "k"), name="a")
    b = signing.generate_keypair(str(tmp_path / "k"), name="b")
    os.unlink(a["private_key"])
    os.unlink(b["private_key"])
    assert {k.key_id for k in signing.load_public_keys([str(tmp_path / "k")])} == {a["key_id"], b["key_id"]}
    assert oct(os.stat(signing.generate_keypair(str(tmp_path / "k"), name="c")["private_key"]).st_mode & 0o777) \
        == "0o600"


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("url, ok", [
    ("https://engines.example.com/fleet/", "https://engines.example.com/fleet"),
    ("file:///srv/engines", "file:///srv/engines"), ("file://localhost/srv/e", "file:///srv/e"),
    ("HTTPS://h:8443/x", "https://h:8443/x"),
])
def test_url_normalization(url, ok):
    assert parse_mirror_url(url) == ok


def test_policy_requires_keys_or_opt_in():
    with pytest.raises(TegraAIError, match="trusted public key"):
        MirrorPolicy()
    assert MirrorPolicy(unsigned=True).unsigned


def test_cli_publish_conflict_exits_1_with_json(tmp_path, bundle, mirror, keys):
    from badinput import invoke
    from tegra_ai.cli.optimize import main

    run(bundle, str(tmp_path / "ref2"), builder=SizedBuilder(size=70000))
    res = invoke(main, ["publish", "--cache", "ref2", "--to", "mirror", "--key", keys["private_key"], "--json"],
                 str(tmp_path))
    out = json.loads(res.stdout)
    assert res.code == 1 and out["conflicts"] == 2 and out["exit_code"] == 1
    gen = invoke(main, ["mirror-keygen", "--out", "k2", "--json"], str(tmp_path))
    assert gen.code == 0 and json.loads(gen.stdout)["key_id"] == signing.load_public_keys([str(tmp_path / "k2")])[0].key_id


def test_seed_first_then_mirror(tmp_path, bundle, mirror, keys):
    """Engines prebuilt into the image are used before any mirror is asked."""
    seed = str(tmp_path / "reference-cache")          # the mirror's own source doubles as the image's seed
    b = SizedBuilder()
    s = ensure([bundle], str(tmp_path / "device"), builder=b, loader=None, runtime=b.rt, seeds=(seed,),
               sources=tuple(sources("file://" + mirror, keys)), show_progress=False, log=lambda m: None)
    assert s["seeded"] == 2 and s["fetched"] == 0 and b.calls == []
    assert all("attempts" not in m for m in s["models"])


def test_killed_publish_leaves_no_temp_files_after_the_next(tmp_path, bundle, mirror, keys):
    """Issue #19: a publish killed mid-write leaves atomic_write's temp files; the next
    publish removes them under its lock (and nothing that is not named like one)."""
    engine, _sidecar, _sig = engine_files(mirror)
    d = os.path.dirname(engine)
    leftovers = [os.path.join(d, "." + os.path.basename(engine) + ".ab12_xYz.tmp"), os.path.join(mirror, ".index.json.Qw3rty9_.tmp")]
    for p in leftovers:
        open(p, "wb").write(b"half")
    foreign = os.path.join(d, "notes.tmp")
    open(foreign, "w").write("mine")
    result = publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"])
    assert result["exit_code"] == 0
    assert not any(os.path.exists(p) for p in leftovers)
    assert open(foreign).read() == "mine"


def test_publish_removes_a_killed_publishs_engine_whose_model_left_the_cache(tmp_path, bundle, mirror, keys):
    """A publish killed after the engine and signature (the sidecar comes last) of a model that
    ensure has pruned from the cache since: no later publish completes it, so the next one
    removes the orphan; a complete engine the index lists is kept."""
    engine, sidecar, sig = engine_files(mirror)
    orphan = os.path.join(mirror, "gone", "gone-" + "0" * 24 + ".engine")
    os.makedirs(os.path.dirname(orphan))
    with open(orphan, "wb") as f:
        f.write(b"half-published engine")
    with open(orphan + ".sig", "wb") as f:
        f.write(b"s" * 64)
    publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"])
    assert not os.path.exists(orphan) and not os.path.exists(orphan + ".sig")
    assert os.path.isfile(engine) and os.path.isfile(sidecar) and os.path.isfile(sig)


def test_publish_lists_a_killed_publishs_complete_engine_whose_model_left_the_cache(tmp_path, bundle, mirror, keys):
    """A publish killed after an engine's sidecar, before the index, of a model ensure has
    pruned from the cache since (found by the kill test): the next publish lists the set
    when it verifies (sidecar, engine sha256, signature by its key); a set that does not
    verify is left unlisted and untouched."""
    from tegra_ai.cache.publish import read_index

    ref = tmp_path / "reference-cache"
    index_path = os.path.join(mirror, "index.json")
    doc = json.load(open(index_path))
    det = next(rel for rel in doc["signed"]["engines"] if rel.startswith("det/"))
    del doc["signed"]["engines"][det]                     # killed before the index
    json.dump(doc, open(index_path, "w"))
    shutil.rmtree(ref / "det")                            # pruned from the cache since
    for link in ("det.engine", "det.engine.json"):
        (ref / link).unlink()
    engine, sidecar, sig = engine_files(mirror)           # a set whose signature does not verify
    bad = os.path.join(mirror, "net", "net-" + "1" * 24 + ".engine")
    side = json.load(open(sidecar))
    side["cache_key"] = "1" * 64
    for src, dst, data in ((engine, bad, None), (sidecar, bad + ".json", json.dumps(side)), (sig, bad + ".sig", None)):
        with open(dst, "w" if data else "wb") as f:
            f.write(data if data else open(src, "rb").read())
    before = {p: open(p, "rb").read() for p in (bad, bad + ".json", bad + ".sig")}
    result = publish(str(ref), mirror, keys["private_key"])
    assert result["exit_code"] == 0
    listed = read_index(mirror)
    assert det in listed
    assert listed[det]["sha256"] == json.load(open(os.path.join(mirror, det + ".json")))["engine_sha256"]
    assert "net/net-" + "1" * 24 + ".engine" not in listed
    assert {p: open(p, "rb").read() for p in before} == before
