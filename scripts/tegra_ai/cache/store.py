"""The engine cache directory (layout in docs/ARCHITECTURE.md).

An engine counts only when its sidecar (:class:`tegra_ai.spec.Sidecar`) exists, names the
same key, and the engine's size and sha256 match it. The sidecar is written after the
engine, so a power cut mid-write leaves at worst an engine without a sidecar, which is
ignored and pruned. The cache touches only files it can prove are its own: engines and
sidecars of the ``<name>-<key24>.engine[.json]`` form inside a model directory marked
with ``.tegra-ai-model``."""

from __future__ import annotations

import contextlib
import glob
import os
import re

from tegra_ai.errors import EXIT_USAGE, WRITE_ERRNOS, TegraAIError, not_writable, write_error
from tegra_ai.spec import Sidecar, check_model_name, short_key, sidecar_path, write_engine_files
from tegra_ai.util.atomic import FILE_MODE, atomic_write_json, create_exclusive, make_dirs
from tegra_ai.util.hashing import HashMemo
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

MODEL_MARKER = ".tegra-ai-model"
INDEX_NAME = "index.json"
INDEX_FORMAT = "tegra-ai-engine-index"
_ENGINE_FILE = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{24})\.engine$")


def engine_relpath(name: str, key: str) -> str:
    """``<name>/<name>-<key24>.engine``: where a cache (and a mirror, which has the same
    layout) keeps the engine of ``key``; the sidecar is this path + ``.json``."""
    name = check_model_name(name)
    return f"{name}/{name}-{short_key(key)}.engine"


class EngineCache:
    def __init__(self, root: str, create: bool = True):
        self.root = os.path.abspath(root)
        self.writable = create
        if create:
            try:
                make_dirs(self.root)
            except OSError as exc:
                if exc.errno in WRITE_ERRNOS:      # read-only, full, not ours to write: 73, named
                    raise write_error(self.root, exc) from None
                raise TegraAIError(f"cannot create engine cache {self.root}: {exc.strerror or exc}",
                                   hint="choose a writable --cache directory", exit_code=EXIT_USAGE) from None
            if not os.path.isdir(self.root):
                raise TegraAIError(f"engine cache {self.root} is not a directory", exit_code=EXIT_USAGE)
            if not os.access(self.root, os.W_OK):
                raise not_writable(self.root)    # read-only (EROFS) or not ours (EACCES): 73
        self.memo = HashMemo(os.path.join(self.root, ".hashmemo.json") if create else None)

    # -- layout ---------------------------------------------------------------------
    def model_dir(self, name: str) -> str:
        return os.path.join(self.root, check_model_name(name))

    def paths(self, name: str, key: str):
        engine = os.path.join(self.root, *engine_relpath(name, key).split("/"))
        return engine, sidecar_path(engine)

    def is_model_dir(self, name: str) -> bool:
        """A directory this tool made (it holds the marker); others are never touched."""
        return os.path.isfile(os.path.join(self.root, name, MODEL_MARKER))

    def _make_model_dir(self, name: str) -> str:
        directory = self.model_dir(name)
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise TegraAIError(f"{directory} exists and is not a directory", exit_code=EXIT_USAGE)
        # A concurrent ensure may be creating the marker right now: only other files count.
        if os.path.isdir(directory) and not self.is_model_dir(name) and \
                [n for n in os.listdir(directory)
                 if n not in (MODEL_MARKER, ".lock") and not (n.startswith(".") and n.endswith(".tmp"))]:
            raise TegraAIError(f"{directory} exists and was not made by tegra-ai (no {MODEL_MARKER}); "
                               "refusing to use it", hint="choose another --cache directory or remove it",
                               exit_code=EXIT_USAGE)
        make_dirs(directory)
        marker = os.path.join(directory, MODEL_MARKER)
        if not os.path.exists(marker):
            # Its existence is the mark (no temp file: a concurrent ensure holding the lock
            # removes stale temp files).
            create_exclusive(marker, "engines of this model are managed by tensorrt-optimize ensure\n")
        return directory

    @contextlib.contextmanager
    def lock(self, name: str):
        """Exclusive per-model lock; a second ``ensure`` waits, then finds the engine built."""
        import fcntl

        directory = self._make_model_dir(name)
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_stale_temp_files(directory)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _remove_stale_temp_files(directory: str) -> None:
        # Under the lock no writer is active, so any temp file of ours is a crashed build's.
        for tmp in glob.glob(os.path.join(directory, ".*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    # -- reading --------------------------------------------------------------------
    def lookup(self, name: str, key: str):
        """(engine path, Sidecar) of a valid engine for ``key``, else None."""
        engine_path, side = self.paths(name, key)
        sidecar = Sidecar.read_if_ours(side)
        if sidecar is None or sidecar.cache_key != key:
            return None
        try:
            if os.path.getsize(engine_path) != sidecar.engine_size:
                return None
        except OSError:
            return None
        # The engine's bytes are re-read once per boot (the memo is trusted for them only
        # within the boot that hashed them): a flipped byte is never reported as a hit.
        if self.memo.sha256(engine_path, per_boot=True) != sidecar.engine_sha256:
            return None
        return engine_path, sidecar

    def entries(self, name: str | None = None) -> list:
        """Every sidecar-looking file in model directories of ours: (name, path, Sidecar or None)."""
        if name:
            names = [name]
        else:
            try:
                names = sorted(d for d in os.listdir(self.root) if self.is_model_dir(d))
            except OSError:
                names = []
        out = []
        for n in names:
            for path in sorted(glob.glob(os.path.join(self.root, n, "*.engine.json"))):
                out.append((n, path, Sidecar.read_if_ours(path)))
        return out

    # -- writing --------------------------------------------------------------------
    def store(self, name: str, key: str, engine: bytes, sidecar: Sidecar, sha256: str | None = None):
        """Commit an engine for ``key``; ``sha256`` when the caller verified it just now (a mirror)."""
        if sidecar.cache_key != key:
            raise TegraAIError(f"internal: sidecar key {sidecar.cache_key[:12]} is not the cache key {key[:12]}")
        self._make_model_dir(name)
        engine_path, _side = self.paths(name, key)
        write_engine_files(engine_path, engine, sidecar, sha256)
        self.memo.record(engine_path, sidecar.engine_sha256)
        return engine_path, sidecar

    def prune(self, name: str, keep_keys: set, l4t_release: str | None = None) -> list:
        """Delete engines and sidecars of ``name`` whose key is not kept, and engines without
        a sidecar, in a model directory of ours; never any other file. Returns removed paths.

        A/B updates: with ``l4t_release`` (this device's), an engine whose sidecar names
        another L4T release belongs to the other rootfs slot and is kept (the newest one
        per other release), so falling back to the other slot does not rebuild."""
        if not self.is_model_dir(name):
            return []
        keep = {short_key(k) for k in keep_keys}
        directory = self.model_dir(name)
        candidates = {}          # short key -> [paths]
        for path in sorted(os.listdir(directory)):
            full = os.path.join(directory, path)
            base = path[:-len(".json")] if path.endswith(".engine.json") else path
            m = _ENGINE_FILE.match(base)
            if not m or m.group("name") != name or m.group("key") in keep or not os.path.isfile(full):
                continue
            candidates.setdefault(m.group("key"), []).append(full)
        if l4t_release:
            newest = {}          # other release -> (created, short key)
            for k, paths in candidates.items():
                side = next((p for p in paths if p.endswith(".engine.json")), None)
                sc = Sidecar.read_if_ours(side) if side else None
                if sc is None or sc.cache_key[:len(k)] != k:
                    continue
                release = sc.device.get("l4t_release")
                engine = side[:-len(".json")]
                if release and release != l4t_release and os.path.isfile(engine):
                    stamp = (sc.created or "", os.path.getmtime(side))
                    if release not in newest or stamp > newest[release][0]:
                        newest[release] = (stamp, k)
            for _stamp, k in newest.values():
                candidates.pop(k, None)
        removed = []
        for paths in candidates.values():
            for full in paths:
                with contextlib.suppress(OSError):
                    os.unlink(full)
                    removed.append(full)
        return sorted(removed)

    def prune_unlisted(self, listed: set, protect: set = frozenset(), l4t_release: str | None = None) -> list:
        """Remove model directories of ours whose model is not listed; returns their names.
        With ``l4t_release``, a directory still holding an engine of another L4T release (the
        other A/B slot lists the model) keeps that engine and is not removed."""
        import shutil

        removed = []
        for name in sorted(os.listdir(self.root)):
            if name in listed or name in protect or not self.is_model_dir(name):
                continue
            if l4t_release:
                self.prune(name, set(), l4t_release)
                kept = (_ENGINE_FILE.match(n) for n in os.listdir(os.path.join(self.root, name)))
                if any(m and m.group("name") == name for m in kept):
                    continue
            self.remove_link(name)
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
            removed.append(name)
        return removed

    # -- stable paths for applications (DeepStream's model-engine-file) ---------------
    def link_path(self, name: str) -> str:
        """``CACHE/NAME.engine``: a symbolic link to the current engine of ``name``."""
        return os.path.join(self.root, check_model_name(name) + ".engine")

    def _link_is_ours(self, link: str, name: str) -> bool:
        if not os.path.islink(link):
            return False
        target = os.path.basename(os.readlink(link))
        if target.endswith(".engine.json"):
            target = target[:-len(".json")]
        m = _ENGINE_FILE.match(target)
        return bool(m and m.group("name") == name)

    def update_link(self, name: str, engine_path: str) -> str | None:
        """Point ``CACHE/NAME.engine`` (and ``NAME.engine.json``) at ``engine_path``,
        atomically (a new link under a temp name renamed over the old one): a reader sees the
        old engine or the new one, never none. A file there that is not a link of ours is
        left alone (returns None)."""
        link = self.link_path(name)
        pairs = ((link, engine_path), (sidecar_path(link), sidecar_path(engine_path)))
        for path, _target in pairs:
            if os.path.lexists(path) and not self._link_is_ours(path, name):
                import logging

                logging.getLogger("tegra_ai.cache").warning(
                    "%s exists and is not a link this tool made; not updating it", path)
                return None
        for path, target in pairs:
            rel = os.path.relpath(target, self.root)
            target = rel if not rel.startswith("..") else target
            if os.path.islink(path) and os.readlink(path) == target:
                continue
            tmp = os.path.join(self.root, f".{os.path.basename(path)}.{os.getpid()}.tmp")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, path)
        return link

    def remove_link(self, name: str) -> None:
        link = self.link_path(name)
        for path in (sidecar_path(link), link):
            if self._link_is_ours(path, name):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def filesystem_type(self) -> str | None:
        """The type of the filesystem holding the cache (``/proc/self/mountinfo``)."""
        return filesystem_type(self.root)

    def read_index(self) -> dict:
        try:
            old = read_json_file(os.path.join(self.root, INDEX_NAME))
        except JSONFileError:   # missing, FIFO, huge, too deep, not JSON: rebuilt by write_index
            return {}
        models = old.get("models") if isinstance(old, dict) and old.get("format") == INDEX_FORMAT else None
        return models if isinstance(models, dict) else {}

    def write_index(self, models: dict, drop: set = frozenset()) -> None:
        """index.json: name -> engine and sidecar, what applications read to find engines.
        Entries are replaced by ``models``; ``drop`` removes names; entries whose engine no
        longer exists are dropped."""
        index = {n: e for n, e in self.read_index().items() if n not in drop}
        index.update(models)
        index = {n: e for n, e in index.items()
                 if isinstance(e, dict) and isinstance(e.get("engine"), str) and os.path.exists(e["engine"])}
        atomic_write_json(os.path.join(self.root, INDEX_NAME), {"format": INDEX_FORMAT, "models": index})


def filesystem_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Filesystem type of the mount holding ``path`` (longest mount point prefix), or None."""
    real = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        parts = left.split()
        if not sep or len(parts) < 5 or not right.split():
            continue
        mount = parts[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype


VOLATILE_FILESYSTEMS = ("tmpfs", "ramfs")
