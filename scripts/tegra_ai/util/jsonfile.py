"""One bounded reader for every JSON document the tools read (manifests, specs, memos,
indexes, sidecars, reports, bytes received from a mirror).

- ``read_json_file(path)``: regular files only: a FIFO or device given as a file is
  refused before a byte is read (it is opened with O_NONBLOCK: opening a FIFO for
  reading would otherwise block until a writer appears); at most ``max_bytes``.
- ``loads(data)``: the same checks on bytes or text already in memory (network
  downloads, members of an .npz, TensorRT's inspector output).

Both refuse JSON nested deeper than ``MAX_DEPTH`` *before* parsing: Python's json
module recurses once per level, and a document of 100000 ``[`` raises RecursionError
from deep inside the parser (or exhausts the C stack of a thread with a small one).
The check is a scan of the brackets outside strings, at C speed (``bytes.count``,
``re.sub``, ``bytes.translate``, ``itertools.accumulate``); documents with fewer
opening brackets than the bound, all the tools' own files, skip it after two counts.

Every failure is a :class:`JSONFileError` (a ValueError) whose str() is one line; each
caller decides what it means for its kind of file (a memo is rebuilt, a sidecar makes
its engine a miss, a manifest is bad input)."""

from __future__ import annotations

import errno as _errno
import itertools
import json
import os
import re
import stat

MAX_DEPTH = 200           # none of the tools' documents is nested more than about 10 deep
MAX_BYTES = 64 << 20      # manifests, indexes and reports are kilobytes; sidecars callers cap lower

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JSONFileError(ValueError):
    """The document is not a readable regular file holding valid JSON; str() is one line.
    ``errno`` is set where the file could not be opened or read (``missing``: ENOENT)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    @property
    def missing(self) -> bool:
        return self.errno == _errno.ENOENT


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` outside JSON strings (of valid JSON: its depth)."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(0, max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0))


def check_depth(data: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return                                   # cannot be deeper than it has brackets
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JSONFileError(f"not valid JSON for this tool (nested too deep: {depth} levels, at most {max_depth})")


def loads(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH, max_bytes: int | None = None):
    """``json.loads`` with the depth bound (and a size bound when ``max_bytes`` is given)."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise JSONFileError(f"larger than {max_bytes} bytes")
    check_depth(data, max_depth)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise JSONFileError("not a text (JSON) file: not UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:     # only where a caller's own stack is already deep: still one line
        raise JSONFileError("not valid JSON for this tool (nested too deep)") from None
    except ValueError as exc:
        raise JSONFileError(f"not valid JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None


def read_bytes(path: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise JSONFileError(exc.strerror or str(exc), exc.errno) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JSONFileError("not a regular file")
        if st.st_size > max_bytes:
            raise JSONFileError(f"larger than {max_bytes} bytes")
        # Sized by the file (read(n) allocates n bytes up front: read(64 MiB) for a 2 KiB
        # sidecar would cost 64 MiB per read); a file that grows meanwhile is read on in
        # chunks, at most one byte past the cap.
        want = min(st.st_size, max_bytes) + 1
        parts, n = [], 0
        with os.fdopen(fd, "rb", closefd=False) as f:
            while n <= max_bytes:
                chunk = f.read(min(max(want - n, 1 << 16), max_bytes + 1 - n))
                if not chunk:
                    break
                parts.append(chunk)
                n += len(chunk)
        raw = b"".join(parts)
    except OSError as exc:
        raise JSONFileError(exc.strerror or str(exc), exc.errno) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise JSONFileError(f"larger than {max_bytes} bytes")
    return raw


def read_json_file(path: str, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH):
    """The JSON document in the regular file ``path``; :class:`JSONFileError` otherwise.
    A missing file is a JSONFileError too (its ``missing`` is true)."""
    return loads(read_bytes(path, max_bytes), max_depth)
