"""Atomic file writes: a reader (or a power cut) never sees a half-written file.

Everything is written to a temporary file in the destination's directory, flushed
to disk, then renamed over the destination; the directory is fsynced so the rename
itself survives a power cut (what a first-boot engine build on a Jetson needs)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from tegra_ai.errors import WRITE_ERRNOS, write_error

# What every file and folder the tools write gets, whatever the umask (even 000): the
# engine service writes as its own user and applications read as theirs, so engines,
# sidecars, bundles and mirrors are world-readable and writable by their owner only.
FILE_MODE = 0o644
DIR_MODE = 0o755


@contextlib.contextmanager
def write_errors_named(path: str | os.PathLike):
    """Working files written next to an output (a temp directory in its folder): a full
    disk, read-only filesystem or permission error in the block becomes one line naming
    ``path`` and the reason (exit 73) instead of a bare OSError from a library's write."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(os.fspath(path), exc) from None


def make_dirs(path: str | os.PathLike) -> None:
    """``os.makedirs(path, exist_ok=True)``, every folder it creates DIR_MODE (intermediate
    ones too: os.makedirs gives those 0777 minus the umask)."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    os.makedirs(path, exist_ok=True)
    for d in reversed(missing):
        with contextlib.suppress(OSError):
            os.chmod(d, DIR_MODE)


def create_exclusive(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` into a new file ``path`` (FILE_MODE); False when it exists already."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, FILE_MODE)
            f.write(text)
    except OSError as exc:     # a full disk: no empty or partial file of ours is left behind
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise write_error(path, exc) from None
    return True


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", permissions: int = FILE_MODE):
    """Context manager yielding a file object; on success the file replaces ``path``
    (with ``permissions``, whatever the umask: 0600 for a private key)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        make_dirs(directory)
        # "." + name + ".PID.XXXXXXXX.tmp": the writer's process id in the name lets a
        # cleanup that holds no lock the writer holds (the engine cache's timing.cache,
        # written by build children of several models at once) remove only the temps of
        # writers that are dead (tegra_ai.cache.store.remove_dead_writers_temps)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, permissions)   # mkstemp makes 0600 files
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_bytes(path, data: bytes, permissions: int = FILE_MODE) -> None:
    with atomic_writer(path, "wb", permissions) as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
