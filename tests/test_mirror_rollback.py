"""Rollback protection for engine mirrors (issue #19, part 7): publish signs index.json with
a sequence number that grows with every publish (and an optional expiry); a device refuses
an index older than the newest it has seen from that mirror, an expired one, one that does
not verify, and any engine the index does not list, so an attacker who serves an old copy
of the mirror cannot bring back an old engine set."""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import time
from unittest import mock

import pytest

from test_mirror import _no_proxy, bundle, keys, mirror, models, run, sources, SizedBuilder  # noqa: F401
from tegra_ai.cache.mirror import MIRROR_INDEX, MIRROR_STATE, load_mirror_state
from tegra_ai.cache.publish import publish
from tegra_ai.cache import signing

pytest.importorskip("cryptography", reason="signed mirrors need cryptography (pip install '.[mirror]')")


def index(mirror_dir):
    return json.load(open(os.path.join(mirror_dir, MIRROR_INDEX)))


def resign(mirror_dir, keys, change):
    """Sign a changed index with the publisher's key (what a publisher, not an attacker, can do)."""
    doc = index(mirror_dir)
    change(doc["signed"])
    key = signing.load_private_key(keys["private_key"])
    doc["signature"] = base64.b64encode(key.sign(signing.canonical_json(doc["signed"]))).decode()
    with open(os.path.join(mirror_dir, MIRROR_INDEX), "w") as f:
        json.dump(doc, f)


def forget_engines(cache):
    """The device loses its engines (a new model version, an OTA update) but keeps its state."""
    for n in os.listdir(cache):
        if n != MIRROR_STATE:
            p = os.path.join(cache, n)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)


def test_publish_signs_a_growing_sequence(tmp_path, mirror, keys):
    first = index(mirror)
    pub = signing.load_public_keys([keys["public_key"]])[0]
    assert pub.verify(signing.canonical_json(first["signed"]), base64.b64decode(first["signature"]))
    assert first["key_id"] == keys["key_id"] and first["signed"]["expires"] is None
    again = publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"], index_expiry_days=30)
    second = index(mirror)["signed"]
    assert again["sequence"] == second["sequence"] > first["signed"]["sequence"]
    expires = datetime.datetime.fromisoformat(second["expires"]) - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=29) < expires <= datetime.timedelta(days=30)
    assert second["engines"] == first["signed"]["engines"]     # nothing new: the same set, signed again


def test_replayed_old_mirror_is_refused(tmp_path, bundle, mirror, keys):
    old = str(tmp_path / "old-copy")
    shutil.copytree(mirror, old)                               # what an attacker recorded
    publish(str(tmp_path / "reference-cache"), mirror, keys["private_key"])
    new_seq = index(mirror)["signed"]["sequence"]
    device = str(tmp_path / "device")
    s, _ = run(bundle, device, sources("file://" + mirror, keys))
    assert s["fetched"] == 2 and s["models"][0]["attempts"][0]["index_sequence"] == new_seq
    assert load_mirror_state(device)["file://" + mirror]["sequence"] == new_seq

    forget_engines(device)
    os.rename(mirror, str(tmp_path / "moved"))
    os.rename(old, mirror)                                     # the old copy, served at the same URL
    s, b = run(bundle, device, sources("file://" + mirror, keys))
    first = s["models"][0]["attempts"][0]
    assert first["result"] == "rejected" and "older than" in first["reason"] and "rollback" in first["reason"]
    assert s["models"][1]["attempts"][0]["result"] == "skipped"    # refused as a whole
    assert s["fetched"] == 0 and sorted(b.calls) == ["det", "net"]
    assert load_mirror_state(device)["file://" + mirror]["sequence"] == new_seq
    # control: a device that never saw the newer index takes the old copy
    s, _ = run(bundle, str(tmp_path / "fresh-device"), sources("file://" + mirror, keys))
    assert s["fetched"] == 2


def test_expired_index_is_refused(tmp_path, bundle, mirror, keys):
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).isoformat()
    resign(mirror, keys, lambda signed: signed.update(expires=past))
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys))
    a = s["models"][0]["attempts"][0]
    assert a["result"] == "rejected" and "expired at" in a["reason"] and s["fetched"] == 0
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).isoformat()
    resign(mirror, keys, lambda signed: signed.update(expires=future))
    s, _ = run(bundle, str(tmp_path / "device2"), sources("file://" + mirror, keys))
    assert s["fetched"] == 2


def test_edited_index_is_refused(tmp_path, bundle, mirror, keys):
    doc = index(mirror)
    doc["signed"]["sequence"] += 10 ** 9        # e.g. to lock devices out of the real mirror
    with open(os.path.join(mirror, MIRROR_INDEX), "w") as f:
        json.dump(doc, f)
    device = str(tmp_path / "device")
    s, _ = run(bundle, device, sources("file://" + mirror, keys))
    a = s["models"][0]["attempts"][0]
    assert a["result"] == "rejected" and "does not verify" in a["reason"] and s["fetched"] == 0
    assert not os.path.exists(os.path.join(device, MIRROR_STATE))   # nothing learnt from an unverified index


def test_only_listed_engines_are_fetched(tmp_path, bundle, mirror, keys):
    """An engine withdrawn from the index (its files still there) is a miss; one whose
    listed sha256 differs from its (validly signed) sidecar is refused."""
    rel_net = next(r for r in index(mirror)["signed"]["engines"] if r.startswith("net/"))
    resign(mirror, keys, lambda signed: signed["engines"].pop(rel_net))
    s, b = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, keys))
    assert models(s)["net"]["attempts"][0]["result"] == "miss" and models(s)["det"]["status"] == "fetched"
    assert b.calls == ["net"]

    rel_det = next(r for r in index(mirror)["signed"]["engines"] if r.startswith("det/"))
    resign(mirror, keys, lambda signed: signed["engines"][rel_det].update(sha256="0" * 64))
    s, b = run(bundle, str(tmp_path / "device2"), sources("file://" + mirror, keys))
    a = models(s)["det"]["attempts"][0]
    assert a["result"] == "rejected" and "signed index lists" in a["reason"] and "det" in b.calls


def test_unreadable_state_is_a_warning(tmp_path, bundle, mirror, keys, caplog):
    device = str(tmp_path / "device")
    os.makedirs(device)
    with open(os.path.join(device, MIRROR_STATE), "w") as f:
        f.write("{not json")
    s, _ = run(bundle, device, sources("file://" + mirror, keys))
    assert s["fetched"] == 2 and "unreadable" in caplog.text
    assert load_mirror_state(device)["file://" + mirror]["sequence"] == index(mirror)["signed"]["sequence"]


def test_unsigned_mirror_has_no_index_check(tmp_path, bundle, mirror, keys):
    """--mirror-unsigned trusts the transport alone: no index is read, no rollback protection."""
    os.unlink(os.path.join(mirror, MIRROR_INDEX))
    s, _ = run(bundle, str(tmp_path / "device"), sources("file://" + mirror, None, unsigned=True))
    assert s["fetched"] == 2


def test_two_ensures_saving_the_state_of_two_mirrors_at_once_lose_neither(tmp_path, monkeypatch):
    # Each save reads the whole state, adds its mirror and writes it back. Two saves that read
    # before either wrote (paused here between the read and the write) would each write back
    # what they read, and one mirror's newest sequence would be lost: that mirror could then be
    # rolled back once. The save's lock makes the second wait for the first.
    import threading

    from tegra_ai.cache import mirror as m

    read = m.load_mirror_state
    arrived = threading.Semaphore(0)

    def slow_read(root):
        state = read(root)
        arrived.release()
        time.sleep(0.3)        # long enough for the other thread to read too, if nothing stops it
        return state

    monkeypatch.setattr(m, "load_mirror_state", slow_read)
    threads = [threading.Thread(target=m._save_mirror_state, args=(str(tmp_path), url, seq))
               for url, seq in (("https://a.example/engines", 7), ("https://b.example/engines", 9))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert read(str(tmp_path)) == {
        "https://a.example/engines": {"sequence": 7, "seen": mock.ANY},
        "https://b.example/engines": {"sequence": 9, "seen": mock.ANY},
    }
