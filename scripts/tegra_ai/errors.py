"""Expected failures. The CLI prints them as one line and exits non-zero; only
``--verbose`` shows a traceback."""

from __future__ import annotations

import errno as _errno

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a required library (TensorRT) is missing
EXIT_CANTCREAT = 73    # sysexits EX_CANTCREAT: an output cannot be written (full disk, read-only, permissions)

# What "cannot write here" looks like: a full disk or quota, a read-only filesystem, no permission.
WRITE_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG, _errno.EROFS, _errno.EACCES, _errno.EPERM})
_WRITE_HINTS = {
    _errno.ENOSPC: "free space on that filesystem; nothing was left half-written",
    _errno.EDQUOT: "raise the quota or free space; nothing was left half-written",
    _errno.EFBIG: "that filesystem cannot hold a file this large",
    _errno.EROFS: "that filesystem is mounted read-only; choose a writable directory",
    _errno.EACCES: "run as a user who may write there, or choose another directory",
    _errno.EPERM: "run as a user who may write there, or choose another directory",
}
EXIT_TEMPFAIL = 75     # sysexits EX_TEMPFAIL: another process held a lock past --lock-timeout; retry later


class TegraAIError(Exception):
    """An error with a message a user can act on."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def write_error(path: str, exc: OSError) -> TegraAIError:
    """One line for an OSError while writing ``path``, naming the reason in words and its
    errno name: ``cannot write /var/x: no space left on device (ENOSPC)``. Exit code
    EXIT_CANTCREAT for a full disk, a read-only filesystem or a permission error."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    name = _errno.errorcode.get(exc.errno) if exc.errno else None
    err = TegraAIError(f"cannot write {path}: {reason}" + (f" ({name})" if name else ""),
                       hint=_WRITE_HINTS.get(exc.errno, "check free space and permissions"),
                       exit_code=EXIT_CANTCREAT if exc.errno in WRITE_ERRNOS else EXIT_FAILURE)
    err.errno = exc.errno
    return err


def not_writable(path: str) -> TegraAIError:
    """:func:`write_error` for a directory found not writable before writing (``os.access``):
    EROFS where its filesystem is mounted read-only, else EACCES."""
    import os

    code = _errno.EACCES
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            code = _errno.EROFS
    except OSError:
        pass
    return write_error(path, OSError(code, os.strerror(code)))


class MissingDependencyError(TegraAIError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str | None = None, purpose: str | None = None,
                 exit_code: int = EXIT_UNAVAILABLE):
        what = f"{purpose} needs" if purpose else "this needs"
        install = f"pip install 'meta-tegra-ai[{extra}]'" if extra else f"pip install {module}"
        super().__init__(f"{what} the Python module '{module}', which is not installed",
                         hint=f"{install}, or add its package to the image", exit_code=exit_code)
        self.module = module
