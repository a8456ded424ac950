"""Hashes of models, including ONNX external data, with a stat-based memo so that an
unchanged multi-gigabyte model is not re-read on every boot."""

from __future__ import annotations

import hashlib
import os

from tegra_ai.errors import TegraAIError
from tegra_ai.util.atomic import atomic_write_json
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

CHUNK = 1 << 20


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
    except OSError as exc:
        raise TegraAIError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id(path: str = BOOT_ID_PATH) -> str:
    """This boot's random id (proc(5), /proc/sys/kernel/random/boot_id); "" where absent."""
    try:
        with open(path) as f:
            return f.read(64).strip()
    except OSError:
        return ""


def _stamp(st) -> list:
    # st_dev and st_ctime_ns as well as (size, mtime, inode): after an A/B switch to an
    # image with reproducible mtimes, a changed model on the other slot's filesystem can
    # have the same size, mtime and inode number; its device (and its ctime, which no
    # user-space call can set) differ.
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns]


class HashMemo:
    """path -> sha256, trusted while (size, mtime_ns, inode, device, ctime_ns) are unchanged.

    ``sha256(path, per_boot=True)`` (engines: the bytes a GPU will run) trusts an entry
    only within the boot that hashed it, so on-disk corruption that leaves the stat
    unchanged is found at the next boot.

    Stored as JSON; an unreadable or corrupt memo is simply ignored (it is a cache)."""

    def __init__(self, memo_path: str | None):
        self.memo_path = memo_path
        self.dirty = False
        self.changed: set = set()       # paths this process hashed or recorded (what save merges in)
        self.entries: dict = self._read()
        self.hits = 0
        self.misses = 0
        self.boot = boot_id()

    def _read(self) -> dict:
        if not self.memo_path or not os.path.exists(self.memo_path):
            return {}
        try:
            data = read_json_file(self.memo_path)
        except JSONFileError:   # FIFO, huge, nested thousands deep, not JSON: a cache, rebuilt
            return {}
        return data["files"] if isinstance(data, dict) and isinstance(data.get("files"), dict) else {}

    def sha256(self, path: str, per_boot: bool = False) -> str:
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise TegraAIError(f"cannot read {path}: {exc.strerror or exc}") from None
        stamp = _stamp(st)
        entry = self.entries.get(path)
        if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str) \
                and (not per_boot or (self.boot and entry.get("boot") == self.boot)):
            self.hits += 1
            return entry["sha256"]
        self.misses += 1
        digest = sha256_file(path)
        self.entries[path] = {"stat": stamp, "sha256": digest, "boot": self.boot}
        self.changed.add(path)
        self.dirty = True
        return digest

    def record(self, path: str, digest: str) -> None:
        """Remember the digest of a file we just wrote (no need to read it back)."""
        path = os.path.abspath(path)
        st = os.stat(path)
        self.entries[path] = {"stat": _stamp(st), "sha256": digest, "boot": self.boot}
        self.changed.add(path)
        self.dirty = True

    def save(self) -> None:
        """Write the memo: what is on disk now (another run may have saved since this one
        read it) with this run's new entries over it, atomically. Callers that share the
        file with other processes hold a lock around it (the engine cache's lock:
        ``EngineCache.save_memo``), or a concurrent save can still lose entries."""
        if self.memo_path and self.dirty:
            entries = dict(self._read())
            entries.update({p: self.entries[p] for p in self.changed if p in self.entries})
            # Files that are gone (pruned engines, replaced models) leave: the memo would
            # otherwise only grow, one entry per engine ever built on the device.
            entries = {p: e for p, e in entries.items() if os.path.lexists(p)}
            try:
                atomic_write_json(self.memo_path, {"files": entries})
                self.entries = entries
            except TegraAIError:
                pass  # read-only cache: hashing still works, just slower next time
            self.dirty = False
            self.changed = set()


def combined_sha256(file_digests: list) -> str:
    """One digest over (relative name, digest) pairs: renaming an external-data file
    the model refers to changes the model."""
    h = hashlib.sha256()
    for name, digest in sorted(file_digests):
        h.update(name.encode())
        h.update(b"\0")
        h.update(digest.encode())
        h.update(b"\n")
    return h.hexdigest()
