"""Native libraries (TensorRT, CUDA, protobuf) may print to the process's stdout with C
stdio; ``--json`` promises stdout holds only JSON. :func:`native_stdout_to_stderr` points
file descriptor 1 at stderr while such code runs."""

from __future__ import annotations

import contextlib
import os
import sys


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def native_stdout_to_stderr():
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
