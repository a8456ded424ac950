"""Shared machinery of the bad-input catalogue (tests/test_bad_inputs*.py).

Every case runs a command's ``main(argv)`` in-process in a scratch directory and
asserts the brief's contract for bad input: a documented non-zero exit code, one
clear line on stderr (no traceback, no "internal error"), clean stdout under
``--json`` (JSON or nothing), and no file created, changed or removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass, field


def tree_state(root: str) -> dict:
    """relative path -> sha256 (files), 'dir' (directories), 'link:target' (symlinks) or
    'special:MODE' (FIFOs and devices)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            state[os.path.relpath(p, root)] = "link:" + os.readlink(p) if os.path.islink(p) else "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                state[rel] = "link:" + os.readlink(p)
                continue
            if not stat.S_ISREG(os.lstat(p).st_mode):     # a FIFO case: never opened (it would block)
                state[rel] = f"special:{stat.S_IFMT(os.lstat(p).st_mode):o}"
                continue
            with open(p, "rb") as fh:
                state[rel] = hashlib.sha256(fh.read()).hexdigest()
    return state


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    lines: list = field(default_factory=list)


def invoke(main, argv: list, cwd: str) -> Result:
    """Run ``main(argv)`` in ``cwd``, capturing stdout/stderr; argparse's SystemExit is the exit code."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(old)
    stderr = err.getvalue()
    return Result(int(code or 0), out.getvalue(), stderr, [ln for ln in stderr.splitlines() if ln.strip()])


def assert_bad_input(main, argv: list, cwd: str, exit_code: int, first_line: str, *, watch: str | None = None,
                     allow_usage_block: bool = True) -> Result:
    """The catalogue's one assertion. ``first_line`` must occur in the error line.

    argparse prints its usage block before the error line; ``allow_usage_block`` accepts
    that (the error is then the last line, starting with '<prog>: error:')."""
    root = watch or cwd
    before = tree_state(root)
    res = invoke(main, argv, cwd)
    after = tree_state(root)
    assert res.code == exit_code, f"{argv}: exit {res.code}, expected {exit_code}\nstderr:\n{res.stderr}"
    assert "Traceback" not in res.stderr, f"{argv}: traceback on stderr:\n{res.stderr}"
    assert "internal error" not in res.stderr, f"{argv}: internal error:\n{res.stderr}"
    error_lines = [ln for ln in res.lines if ": error:" in ln]
    assert error_lines, f"{argv}: no error line on stderr:\n{res.stderr}"
    if not allow_usage_block:
        assert len(res.lines) == 1, f"{argv}: more than one line on stderr:\n{res.stderr}"
    assert first_line.lower() in error_lines[0].lower(), (
        f"{argv}: error line {error_lines[0]!r} lacks {first_line!r}")
    if "--json" in argv and res.stdout.strip():
        json.loads(res.stdout)  # stdout holds only JSON under --json
    assert after == before, f"{argv}: files changed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    return res
