"""Atomic file writes: a reader (or a power cut) never sees a half-written file.

Everything is written to a temporary file in the destination's directory, flushed
to disk, then renamed over the destination; the directory is fsynced so the rename
itself survives a power cut (what a first-boot engine build on a Jetson needs)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from tegra_ai.errors import TegraAIError


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
def atomic_writer(path: str | os.PathLike, mode: str = "wb"):
    """Context manager yielding a file object; on success the file replaces ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise TegraAIError(f"cannot write {path}: {exc.strerror or exc}",
                           hint="choose a writable output location") from None
    try:
        # mkstemp makes 0600 files; give the final file the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
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
            raise TegraAIError(f"cannot write {path}: {exc.strerror or exc}",
                               hint="check free space and permissions") from None
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
