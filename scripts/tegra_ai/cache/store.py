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
import math
import os
import re
import time

from tegra_ai.errors import (EXIT_CANTCREAT, EXIT_TEMPFAIL, EXIT_USAGE, WRITE_ERRNOS, TegraAIError, not_writable,
                             write_error)
from tegra_ai.spec import Sidecar, check_model_name, short_key, sidecar_path, write_engine_files
from tegra_ai.util.atomic import DIR_MODE, FILE_MODE, atomic_write_json, create_exclusive, make_dirs
from tegra_ai.util.hashing import HashMemo
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

MODEL_MARKER = ".tegra-ai-model"
INDEX_NAME = "index.json"
INDEX_FORMAT = "tegra-ai-engine-index"
_ENGINE_FILE = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{24})\.engine$")
CACHE_LOCK = ".cache.lock"       # cache-wide: index.json, the hash memo, pruning unlisted models
DEFAULT_LOCK_TIMEOUT = 3600.0    # seconds a lock is waited for (ensure: at least --model-timeout + 5 min)
_PRUNED_DIR = re.compile(r"^\.(?P<name>.+)\.pruned-[0-9]+\.tmp$")   # a model directory being removed
_NEW_DIR = re.compile(r"^\.(?P<name>.+)\.new-(?P<pid>[0-9]+)-\w+\.tmp$")  # one being made by process PID
# util.atomic's temp names, "." + the file's name + ".PID.XXXXXXXX.tmp" (mkstemp's 8 characters)
_ATOMIC_TEMP = re.compile(r"^\.(?P<file>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{8}\.tmp$")
TIMING_CACHE = "timing.cache"    # one per cache: every build of every model reads and updates it


class LockTimeout(TegraAIError):
    """A lock was held by another process for longer than the caller would wait."""

    def __init__(self, message: str, hint: str | None = None, holder: int | None = None):
        super().__init__(message, hint=hint, exit_code=EXIT_TEMPFAIL)
        self.holder = holder


def check_lock_timeout(seconds, flag: str = "--lock-timeout"):
    """A lock wait bound: a number of seconds >= 0 (0: do not wait), or None for the default."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        raise TegraAIError(f"{flag} {seconds!r}: expected a number of seconds >= 0", exit_code=EXIT_USAGE)
    return float(seconds)


def lock_holder(path: str):
    """(PID, command name) a holder wrote into the lock file ``path``; (None, None) when
    none is written (the holder has not written it yet, or an older version holds it)."""
    try:
        with open(path, "rb") as f:
            pid = int(f.read(32).split()[0])
    except (OSError, ValueError, IndexError):
        return None, None
    try:
        with open(f"/proc/{pid}/comm") as f:
            return pid, f.read().strip() or None
    except OSError:
        return pid, None


@contextlib.contextmanager
def file_lock(path: str, *, timeout: float, what: str, hint: str | None = None, prepare=None, on_wait=None):
    """Exclusive ``flock`` on ``path`` (created), waited for at most ``timeout`` seconds.

    flock, not fcntl/lockf: the kernel releases it when the holder dies, even by SIGKILL,
    so a killed run never leaves a lock behind (flock(2)). It is polled with LOCK_NB (no
    SIGALRM: a library must not take the process's signals); a holder that is alive and
    hangs makes the wait end with :class:`LockTimeout` naming ``what`` and the holder's PID,
    which each holder writes into the file (and clears on release). ``prepare()`` runs
    before each open (it makes the directory); ``on_wait(pid, comm)`` once when the lock is
    busy. When the file was removed or replaced while we waited (a pruned model directory),
    the lock is taken again on the file now at ``path``."""
    import fcntl

    deadline = time.monotonic() + timeout
    told = False
    while True:
        if prepare is not None:
            prepare()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except FileNotFoundError:
            if prepare is None or time.monotonic() > deadline:
                raise
            continue        # its directory was removed just after prepare() made it: make it again
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:       # a read-only or full cache or mirror: 73, named
                raise write_error(path, exc) from None
            raise TegraAIError(f"{what}: cannot open the lock file {path}: {exc.strerror or exc}",
                               exit_code=EXIT_USAGE) from None
        try:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    pid, comm = lock_holder(path)
                    who = f"PID {pid}" + (f" ({comm})" if comm else "") if pid else "another process"
                    raise LockTimeout(f"{what}: {path} is held by {who} for more than {timeout:g} s; not waiting longer "
                                      "(--lock-timeout)", hint=hint, holder=pid)
                if not told and on_wait is not None:
                    told = True
                    on_wait(*lock_holder(path))
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.25)
            try:
                st = os.stat(path)
                same = (st.st_ino, st.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)    # locked a removed file: its directory was pruned while we waited
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def engine_relpath(name: str, key: str) -> str:
    """``<name>/<name>-<key24>.engine``: where a cache (and a mirror, which has the same
    layout) keeps the engine of ``key``; the sidecar is this path + ``.json``."""
    name = check_model_name(name)
    return f"{name}/{name}-{short_key(key)}.engine"


class EngineCache:
    """``create``: make the directory (a cache ``ensure`` and the benchmark suite write
    into). An existing directory this process may not write (a read-only filesystem,
    EROFS, or another user's files, EACCES) opens as a read-only cache (``read_only``:
    that errno; None when writable): valid engines are served from it, nothing is
    locked, built, linked, pruned or indexed there."""

    def __init__(self, root: str, create: bool = True):
        self.root = os.path.abspath(root)
        self.writable = create
        self.read_only = None
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
                # read-only (EROFS) or not ours (EACCES): its engines are still served
                self.read_only = not_writable(self.root).errno
                self.writable = False
        # a read-only cache's memo is read (model digests), never saved
        self.memo = HashMemo(os.path.join(self.root, ".hashmemo.json") if create else None)

    def read_only_reason(self) -> str:
        """Why the cache is read-only, in words: "on a read-only filesystem (EROFS)"."""
        import errno as _errno

        code = self.read_only if self.read_only is not None else _errno.EROFS
        return "on a read-only filesystem (EROFS)" if code == _errno.EROFS else \
            f"not writable by this user ({_errno.errorcode.get(code, code)})"

    def read_only_error(self, name: str, key: str, what: str = "no engine") -> TegraAIError:
        """One line (exit 73) for a model a read-only cache cannot serve: it names the
        directory, why it is read-only, what is there for the model and what to do."""
        import errno as _errno

        code = self.read_only if self.read_only is not None else _errno.EROFS
        err = TegraAIError(f"{name}: {what} for key {key[:12]} in the engine cache {self.root}, which is "
                           f"{self.read_only_reason()}: it can serve the engines it holds but cannot build or "
                           "store one",
                           hint="point --cache at a writable directory (persistent storage, e.g. "
                                "/data/tegra-ai/engines), or build the engine at image time "
                                "(tensorrt_engine.bbclass, TEGRA_AI_ENGINE_SEED)", exit_code=EXIT_CANTCREAT)
        err.errno = code
        return err

    def describe_miss(self, name: str, key: str) -> str:
        """What a cache holds for ``name`` when ``lookup`` found no valid engine for ``key``."""
        engine, side = self.paths(name, key)
        if os.path.exists(side) or os.path.exists(engine):
            return "an engine that does not match its sidecar (corrupt or incomplete)"
        if any(sc is not None for _n, _p, sc in self.entries(name)):
            return "only engines of other keys (stale: the model, its options, TensorRT or the device changed)"
        return "no engine"

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
        text = "engines of this model are managed by tensorrt-optimize ensure\n"
        if not os.path.isdir(directory):
            # Made with its marker under a temp name, then renamed into place: a kill leaves
            # no model directory without its marker (one no run could prove is its own).
            import tempfile

            tmp = tempfile.mkdtemp(prefix=f".{name}.new-{os.getpid()}-", suffix=".tmp", dir=self.root)
            os.chmod(tmp, DIR_MODE)
            create_exclusive(os.path.join(tmp, MODEL_MARKER), text)
            try:
                os.rename(tmp, directory)       # over nothing, or an empty directory
            except OSError:
                _remove_tree(tmp)               # a concurrent run made it first
                if not os.path.isdir(directory):
                    raise
        marker = os.path.join(directory, MODEL_MARKER)
        if not os.path.exists(marker):
            # Its existence is the mark (no temp file: a concurrent ensure holding the lock
            # removes stale temp files).
            create_exclusive(marker, text)
        return directory

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float | None = None, create: bool = True, on_wait=None):
        """Exclusive per-model lock; a second ``ensure`` waits, then finds the engine built.
        It waits at most ``timeout`` seconds (default :data:`DEFAULT_LOCK_TIMEOUT`), then
        raises :class:`LockTimeout` naming the model and the holder's PID. With ``create``
        False a model directory that does not exist (or is not ours) is not made: the wait
        ends with FileNotFoundError (pruning a model another run just removed).

        A read-only cache (``read_only``) is not locked: the lock file cannot be created
        or opened for writing there (open(2): EROFS, EACCES), and nothing needs one: on a
        read-only filesystem no process can write, so there is nothing to race with; a
        cache of another user's is written by its owner with renames only (a sidecar last,
        rename(2) is atomic), and every hit is verified (sidecar, size and sha256) before
        it is served, so a reader never takes a half-written engine. (flock(2) would lock
        a read-only descriptor too, but it would only make readers wait for each other.)"""
        if self.read_only is not None:
            yield
            return
        directory = self.model_dir(name)

        def prepare():
            if create:
                self._make_model_dir(name)
            elif not self.is_model_dir(name):
                raise FileNotFoundError(directory)

        with file_lock(os.path.join(directory, ".lock"), what=name,
                       timeout=DEFAULT_LOCK_TIMEOUT if timeout is None else timeout, prepare=prepare,
                       on_wait=on_wait, hint="another tensorrt-optimize (ensure) is using this model; it goes on "
                                             "when that one ends: retry later, or stop that process if it hangs"):
            self._remove_stale_temp_files(directory)
            # the stable link's temp names (update_link) are written under this lock too
            for pattern in (f".{glob.escape(name)}.engine.[0-9]*.tmp", f".{glob.escape(name)}.engine.json.[0-9]*.tmp"):
                self._remove_stale_temp_files(self.root, pattern)
            yield

    @contextlib.contextmanager
    def cache_lock(self, timeout: float | None = None, on_wait=None):
        """The cache-wide lock: index.json, the hash memo and pruning of unlisted models.
        Lock order: it is taken with no model lock held, and model locks are only tried
        (never waited for) under it, so two runs cannot deadlock."""
        with file_lock(os.path.join(self.root, CACHE_LOCK), what=f"engine cache {self.root}",
                       timeout=DEFAULT_LOCK_TIMEOUT if timeout is None else timeout, on_wait=on_wait,
                       hint="another tensorrt-optimize ensure is finishing on this cache; retry later"):
            # Under it no other run writes index.json or the memo, or removes a directory:
            # temp files of those are a killed run's.
            # util.atomic's temp names: "." + the file's name + ".PID.XXXXXXXX.tmp"
            for pattern in (f".{INDEX_NAME}.*.tmp", f".{glob.escape(os.path.basename(self.memo.memo_path or 'x'))}.*.tmp"):
                self._remove_stale_temp_files(self.root, pattern)
            # Files that are written without this lock (the timing cache: build children of
            # several models, each under its own model lock; the mirror state): only a dead
            # writer's temps.
            remove_dead_writers_temps(self.root)
            for n in os.listdir(self.root):
                new = _NEW_DIR.match(n)
                if (_PRUNED_DIR.match(n) or (new and not _alive(int(new.group("pid"))))) and \
                        os.path.isfile(os.path.join(self.root, n, MODEL_MARKER)):
                    _remove_tree(os.path.join(self.root, n))
            yield

    def save_memo(self, timeout: float | None = None) -> None:
        """Save the hash memo under the cache lock (merged with what other runs saved):
        two runs saving at once lose no entry and never tear the file. Nothing on a
        read-only cache."""
        if self.read_only is not None or not self.memo.dirty:
            return
        with self.cache_lock(timeout=timeout):
            self.memo.save()

    @staticmethod
    def _remove_stale_temp_files(directory: str, pattern: str = ".*.tmp") -> None:
        # Under the lock no writer is active, so any temp file of ours is a crashed build's.
        for tmp in glob.glob(os.path.join(glob.escape(directory), pattern)):
            if os.path.islink(tmp) or os.path.isfile(tmp):
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
        The caller holds the model's lock.

        Never removed: the engine the stable link points at. A sidecar goes before its engine: a kill in between leaves an engine without a
        sidecar (not an engine; pruned next time), never a sidecar naming a missing engine.

        A/B updates: with ``l4t_release`` (this device's), an engine whose sidecar names
        another L4T release belongs to the other rootfs slot and is kept (the newest one
        per other release), so falling back to the other slot does not rebuild."""
        if not self.is_model_dir(name):
            return []
        keep = {short_key(k) for k in keep_keys}
        link = self.link_path(name)
        if self._link_is_ours(link, name):
            linked = _ENGINE_FILE.match(os.path.basename(os.readlink(link)))
            if linked and linked.group("name") == name:
                keep.add(linked.group("key"))
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
            for full in sorted(paths, key=lambda p: not p.endswith(".json")):   # sidecar first
                with contextlib.suppress(OSError):
                    os.unlink(full)
                    removed.append(full)
        return sorted(removed)

    def prune_unlisted(self, listed: set, protect: set = frozenset(), l4t_release: str | None = None,
                       since: float | None = None) -> list:
        """Remove model directories of ours whose model is not listed; returns their names.
        With ``l4t_release``, a directory still holding an engine of another L4T release (the
        other A/B slot lists the model) keeps that engine and is not removed.

        Safe against concurrent runs with other manifests: the caller holds the cache lock;
        each model's lock is only tried (a model another run is ensuring now is skipped),
        and a model whose stable link or files were written after ``since`` (the
        caller's start, ``time.time()``) is kept. The link goes first, then the directory
        is renamed away in one step (a kill leaves no dangling link and no half-removed
        model directory; the renamed one is removed under the next run's cache lock)."""
        removed = []
        for name in sorted(os.listdir(self.root)):
            if name in listed or name in protect or not self.is_model_dir(name):
                continue
            directory = os.path.join(self.root, name)
            try:
                with self.lock(name, timeout=0, create=False):
                    if since is not None and self._written_since(name, since):
                        continue
                    self.remove_link(name)
                    if l4t_release:
                        self.prune(name, set(), l4t_release)
                        kept = (_ENGINE_FILE.match(n) for n in os.listdir(directory))
                        if any(m and m.group("name") == name for m in kept):
                            continue
                    trash = os.path.join(self.root, f".{name}.pruned-{os.getpid()}.tmp")
                    os.rename(directory, trash)
            except (LockTimeout, FileNotFoundError):
                continue            # another run holds it (it lists it) or removed it just now
            _remove_tree(trash)
            removed.append(name)
        return removed

    def _written_since(self, name: str, since: float) -> bool:
        paths = [self.link_path(name), sidecar_path(self.link_path(name))]
        with contextlib.suppress(OSError):
            paths += [os.path.join(self.model_dir(name), n) for n in os.listdir(self.model_dir(name))
                      if n != ".lock"]
        return any(_mtime(p) > since for p in paths)

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

    def link_to(self, name: str, engine_path: str) -> str | None:
        """``CACHE/NAME.engine`` when it (and its ``.json``) is a link of ours pointing at
        ``engine_path`` already, else None (what a read-only cache offers in place of
        :meth:`update_link`)."""
        link = self.link_path(name)
        for path, target in ((link, engine_path), (sidecar_path(link), sidecar_path(engine_path))):
            if not self._link_is_ours(path, name) or os.path.realpath(path) != os.path.realpath(target):
                return None
        return link

    def linked_since(self, name: str, since: float) -> bool:
        """Whether the stable link of ``name`` was written after ``since`` (``time.time()``)."""
        link = self.link_path(name)
        return self._link_is_ours(link, name) and _mtime(link) > since

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
        longer exists are dropped. The caller holds the cache lock. An entry of ``models``
        whose stable link now points at another engine (a concurrent run with another
        manifest linked it later) does not replace what is there."""
        index = {n: e for n, e in self.read_index().items() if n not in drop}
        for n, e in models.items():
            link = self.link_path(n)
            if e.get("link") and self._link_is_ours(link, n) and \
                    os.path.realpath(link) != os.path.realpath(e.get("engine") or ""):
                continue
            index[n] = e
        index = {n: e for n, e in index.items()
                 if isinstance(e, dict) and isinstance(e.get("engine"), str) and os.path.exists(e["engine"])}
        atomic_write_json(os.path.join(self.root, INDEX_NAME), {"format": INDEX_FORMAT, "models": index})


def _mtime(path: str) -> float:
    """lstat mtime. Compared with a ``time.time()`` taken before: a file written before it
    is never newer; one written within a clock tick (Linux stamps files from a coarse
    clock, a few ms) after it may look older."""
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return float("-inf")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still write (model directories and timing caches are made
    without the cache lock: only a dead writer's are removed). A process of another user
    counts as alive (EPERM); a zombie (killed, not yet reaped by its parent or init) does
    not: it runs no code (proc(5), /proc/PID/stat state Z)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def remove_dead_writers_temps(directory: str) -> list:
    """Remove util.atomic temp files in ``directory`` whose writer (the PID in the name)
    is dead: a SIGKILLed build child's ``.timing.cache.PID.XXXXXXXX.tmp``. A live
    writer's temp is never touched. (A PID is only this PID namespace's: processes of
    other containers must not share a cache directory.) Returns the removed paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for n in names:
        m = _ATOMIC_TEMP.match(n)
        if not m or _alive(int(m.group("pid"))):
            continue
        path = os.path.join(directory, n)
        if os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
    return removed


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


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
