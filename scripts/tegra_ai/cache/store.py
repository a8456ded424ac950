"""The engine cache directory (layout in docs/ARCHITECTURE.md).

An engine counts only when its sidecar exists, names the same key, and the engine's
size and sha256 match the sidecar. The sidecar is written after the engine, so a
power cut mid-write leaves at worst an engine without a sidecar, which is ignored and
pruned."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re

from tegra_ai.cache.key import short_key
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.atomic import atomic_write_bytes, atomic_write_json
from tegra_ai.util.hashing import HashMemo

SIDECAR_FORMAT = "tegra-ai-engine"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_model_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise TegraAIError(f"model name {name!r}: use letters, digits, '.', '_', '+', '-' (it names files)",
                           exit_code=EXIT_USAGE)
    return name


def write_engine_files(engine_path: str, sidecar_path: str, engine: bytes, sidecar: dict) -> dict:
    """Write an engine, then its sidecar (the commit point), both atomically."""
    sidecar = dict(sidecar, format=SIDECAR_FORMAT, engine_file=os.path.basename(engine_path),
                   engine_size=len(engine), engine_sha256=hashlib.sha256(engine).hexdigest())
    atomic_write_bytes(engine_path, engine)
    atomic_write_json(sidecar_path, sidecar)
    return sidecar


class EngineCache:
    def __init__(self, root: str, create: bool = True):
        self.root = os.path.abspath(root)
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise TegraAIError(f"cannot create engine cache {self.root}: {exc.strerror or exc}",
                                   hint="choose a writable --cache directory", exit_code=EXIT_USAGE) from None
            if not os.access(self.root, os.W_OK):
                raise TegraAIError(f"engine cache {self.root} is not writable",
                                   hint="choose a writable --cache directory", exit_code=EXIT_USAGE)
        self.memo = HashMemo(os.path.join(self.root, ".hashmemo.json") if create else None)

    def model_dir(self, name: str) -> str:
        return os.path.join(self.root, check_model_name(name))

    def paths(self, name: str, key: str):
        stem = os.path.join(self.model_dir(name), f"{name}-{short_key(key)}")
        return stem + ".engine", stem + ".json"

    @contextlib.contextmanager
    def lock(self, name: str):
        """Exclusive per-model lock; a second ``ensure`` waits, then finds the engine built."""
        import fcntl

        directory = self.model_dir(name)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_stale_temp_files(directory)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _remove_stale_temp_files(directory: str) -> None:
        # Under the lock no writer is active, so any temp file is a crashed build's.
        for tmp in glob.glob(os.path.join(directory, ".*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def read_sidecar(self, path: str) -> dict | None:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None

    def lookup(self, name: str, key: str):
        """(engine path, sidecar dict) of a valid engine for ``key``, else None."""
        engine_path, sidecar_path = self.paths(name, key)
        sidecar = self.read_sidecar(sidecar_path)
        if sidecar is None or sidecar.get("cache_key") != key:
            return None
        try:
            if os.path.getsize(engine_path) != sidecar.get("engine_size"):
                return None
        except OSError:
            return None
        if self.memo.sha256(engine_path) != sidecar.get("engine_sha256"):
            return None
        return engine_path, sidecar

    def store(self, name: str, key: str, engine: bytes, sidecar: dict):
        engine_path, sidecar_path = self.paths(name, key)
        sidecar = write_engine_files(engine_path, sidecar_path, engine, dict(sidecar, cache_key=key))
        self.memo.record(engine_path, sidecar["engine_sha256"])
        return engine_path, sidecar

    def entries(self, name: str | None = None) -> list:
        """Every sidecar in the cache: (name, sidecar path, sidecar dict or None)."""
        names = [name] if name else sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))
        out = []
        for n in names:
            for path in sorted(glob.glob(os.path.join(self.root, n, "*.json"))):
                out.append((n, path, self.read_sidecar(path)))
        return out

    def prune(self, name: str, keep_keys: set) -> list:
        """Delete engines and sidecars of ``name`` whose key is not kept, and engines
        without a sidecar. Returns the removed paths."""
        removed = []
        directory = self.model_dir(name)
        keep_stems = {f"{name}-{short_key(k)}" for k in keep_keys}
        for path in sorted(glob.glob(os.path.join(directory, f"{name}-*"))):
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem not in keep_stems:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
        return removed

    def write_index(self, models: dict) -> None:
        """index.json: name -> engine and sidecar, what applications read to find engines."""
        index_path = os.path.join(self.root, "index.json")
        index = {"format": "tegra-ai-engine-index", "models": {}}
        with contextlib.suppress(OSError, ValueError):
            with open(index_path) as f:
                old = json.load(f)
            if isinstance(old.get("models"), dict):
                index["models"].update(old["models"])
        index["models"].update(models)
        atomic_write_json(index_path, index)
