"""Model files (external data), hashing with the stat memo, and atomic writes."""

from __future__ import annotations

import os
import stat

import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.onnx_files import external_data_locations, has_qdq, model_digest, model_files
from tegra_ai.util.atomic import atomic_write_bytes, atomic_writer
from tegra_ai.util.hashing import HashMemo


def test_external_data_found_without_onnx(model_factory):
    path = model_factory("ext.onnx", external=True)
    assert external_data_locations(path) == ["ext.onnx.data"]
    files = model_files(path)
    assert [os.path.basename(f) for f in files] == ["ext.onnx", "ext.onnx.data"]


def test_external_data_changes_the_digest(model_factory):
    path = model_factory("ext.onnx", external=True)
    before, _ = model_digest(path)
    with open(path + ".data", "r+b") as f:
        f.seek(10)
        f.write(b"\x01\x02\x03\x04")
    after, _ = model_digest(path)
    assert before != after


def test_missing_external_data(model_factory):
    path = model_factory("ext.onnx", external=True)
    os.unlink(path + ".data")
    with pytest.raises(TegraAIError, match="missing external data file.*ext.onnx.data"):
        model_files(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_models(static_model, damage):
    data = open(static_model, "rb").read()
    with open(static_model, "wb") as f:
        f.write({"truncate": data[: len(data) // 2], "garbage": b"\xff" * 64, "empty": b""}[damage])
    with pytest.raises(TegraAIError, match="not a valid ONNX model|empty"):
        model_digest(static_model)


def test_memo_skips_unchanged_files(static_model, tmp_path):
    memo_path = str(tmp_path / "memo.json")
    memo = HashMemo(memo_path)
    first, _ = model_digest(static_model, memo)
    memo.save()
    memo2 = HashMemo(memo_path)
    second, _ = model_digest(static_model, memo2)
    assert first == second and memo2.hits == 1 and memo2.misses == 0
    os.utime(static_model, ns=(1, 1))  # a changed stamp must re-hash
    model_digest(static_model, memo2)
    assert memo2.misses == 1


def test_memo_rehashes_a_rewrite_with_restored_mtime(tmp_path):
    # Same size, mtime and inode (rewritten in place, mtime put back as a reproducible
    # image build does): only the kernel-set ctime tells the memo the content changed.
    path = tmp_path / "m.bin"
    path.write_bytes(b"a" * 64)
    st = os.stat(path)
    memo = HashMemo(str(tmp_path / "memo.json"))
    old = memo.sha256(str(path))
    with open(path, "r+b") as f:
        f.write(b"b" * 64)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert memo.sha256(str(path)) != old and memo.misses == 2


def test_memo_rehashes_after_an_ab_switch(tmp_path, monkeypatch):
    # A/B switch: the model path now lives on the other slot's filesystem, where the
    # file has the same size, mtime, ctime and inode number but other content.
    path = tmp_path / "m.bin"
    path.write_bytes(b"a" * 64)
    memo_path = str(tmp_path / "memo.json")
    memo = HashMemo(memo_path)
    old = memo.sha256(str(path))
    memo.save()
    real = os.stat(path)
    path.write_bytes(b"b" * 64)
    fields = list(real)
    fields[stat.ST_DEV] = real.st_dev + 1
    other_slot = os.stat_result(fields, {"st_mtime_ns": real.st_mtime_ns, "st_ctime_ns": real.st_ctime_ns,
                                         "st_atime_ns": real.st_atime_ns})
    import tegra_ai.util.hashing as hashing

    real_stat = os.stat
    monkeypatch.setattr(hashing.os, "stat", lambda p, *a, **k: other_slot if p == str(path) else real_stat(p, *a, **k))
    memo2 = HashMemo(memo_path)
    assert memo2.sha256(str(path)) != old and memo2.misses == 1 and memo2.hits == 0


def test_corrupt_memo_is_ignored(static_model, tmp_path):
    memo_path = tmp_path / "memo.json"
    memo_path.write_text("{not json")
    assert model_digest(static_model, HashMemo(str(memo_path)))[0] == model_digest(static_model)[0]


def test_has_qdq(model_factory):
    from onnx import helper

    plain = model_factory("plain.onnx")
    q = model_factory("q.onnx", extra_nodes=[helper.make_node("Identity", ["output"], ["o2"], name="QuantizeLinear_like")])
    assert not has_qdq(plain)
    assert not has_qdq(q)  # a node *named* like Q/DQ is not quantization


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "engine.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(str(target)) as f:
            f.write(b"partial")
            raise RuntimeError("power cut")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["engine.bin"]


def test_atomic_write_mode_and_unwritable(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(str(target), b"data")
    assert stat.S_IMODE(os.stat(target).st_mode) & 0o044  # readable by others (umask permitting), not 0600
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TegraAIError, match="cannot write"):
        atomic_write_bytes(str(blocker / "sub" / "x.bin"), b"data")


def test_memo_per_boot_entries_are_rehashed_next_boot(tmp_path, monkeypatch):
    import tegra_ai.util.hashing as hashing

    path = tmp_path / "e.engine"
    path.write_bytes(b"E" * 64)
    memo_path = str(tmp_path / "memo.json")
    monkeypatch.setattr(hashing, "boot_id", lambda: "boot-1")
    memo = HashMemo(memo_path)
    memo.sha256(str(path), per_boot=True)
    memo.save()
    same_boot = HashMemo(memo_path)
    same_boot.sha256(str(path), per_boot=True)
    same_boot.sha256(str(path))
    assert (same_boot.hits, same_boot.misses) == (2, 0)
    monkeypatch.setattr(hashing, "boot_id", lambda: "boot-2")
    next_boot = HashMemo(memo_path)
    next_boot.sha256(str(path))               # models: the stat is enough
    next_boot.sha256(str(path), per_boot=True)  # engines: re-read once this boot
    assert (next_boot.hits, next_boot.misses) == (1, 1)
