"""One bounded reader for the JSON files the tools read (manifests, memos, sidecars).

Regular files only: a FIFO or device given as a file is refused before it is opened for
reading (opening a FIFO for reading blocks until a writer appears). JSON nested deeper
than the parser's recursion limit is reported as bad input instead of letting
RecursionError abort the whole run."""

from __future__ import annotations

import json
import os
import stat


class JSONFileError(ValueError):
    """The file is not a readable regular file holding valid JSON; str() is one line."""


def read_json_file(path: str, max_bytes: int = 64 << 20):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise JSONFileError(exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JSONFileError("not a regular file")
        if st.st_size > max_bytes:
            raise JSONFileError(f"larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise JSONFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise JSONFileError(f"larger than {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise JSONFileError("not valid JSON (nested too deep)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JSONFileError(f"not valid JSON ({exc})") from None
