"""What every tool shares: one-line errors, exit codes, JSON output."""

from __future__ import annotations

import json
import os
import sys
import traceback

from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, WRITE_ERRNOS, TegraAIError, not_writable, write_error


def setup_logging(verbose: bool) -> None:
    """The library logs to the ``tegra_ai`` logger; the CLI shows it on stderr (stdout
    stays for results and ``--json``)."""
    import logging

    log = logging.getLogger("tegra_ai")
    if not any(getattr(h, "_tegra_ai", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._tegra_ai = True
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    for h in log.handlers:
        if getattr(h, "_tegra_ai", False):
            h.stream = sys.stderr   # follow redirections (tests, callers capturing stderr)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd stopping the unit, ``kill``): unwinds like Ctrl-C, so every
    ``finally`` runs (build children are killed, temp files removed), then exit 143.
    A ``KeyboardInterrupt`` so that no ``except Exception`` can swallow it."""


EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _raise_terminated(signum, frame):
    raise Terminated()


def verbose_parent():
    """A parent parser giving every subcommand ``-v/--verbose`` (after the subcommand
    too); it never overrides a ``-v`` given before the subcommand."""
    import argparse

    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="TensorRT log and tracebacks")
    return parent


def add_renamed_option(parser, old: str, new: str, **kwargs):
    """Keep the old spelling ``old`` of an option renamed to ``new`` for a release: hidden
    from --help, same destination, and a one-line notice on stderr when it is used.
    ``kwargs``: what ``new`` was added with (type, action), without help/default."""
    import argparse

    dest = new.lstrip("-").replace("-", "_")

    class _Renamed(argparse._StoreAction):
        def __call__(self, p, namespace, values, option_string=None):
            print(f"{p.prog}: note: {old} is now {new} (the old name goes in a later release)", file=sys.stderr)
            super().__call__(p, namespace, values, option_string)

    parser.add_argument(old, dest=dest, action=_Renamed, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _json_error(args, message: str, code: int, hint: str | None = None) -> None:
    """Under ``--json`` an error is also a JSON object on stdout (the one documented
    shape: ``{"error", "hint", "exit_code"}``), so a caller parsing stdout always gets JSON.
    Usage errors found by argparse itself (exit 2 before the command runs) print nothing
    on stdout."""
    if getattr(args, "json", False):
        with _suppress_broken_pipe():
            print_json({"error": message, "hint": hint, "exit_code": code})


def _suppress_broken_pipe():
    import contextlib

    return contextlib.suppress(BrokenPipeError, ValueError)


def run_main(prog: str, parser, argv=None) -> int:
    """Parse, run ``args.func(args)`` and map every outcome to the documented exit codes
    (README, "Exit codes"): the command's own code; a :class:`TegraAIError`'s code with one
    ``PROG: error: ...`` line; 130 on Ctrl-C and 143 on SIGTERM, after the command's
    cleanup ran; 1 with one line for an unexpected exception (the traceback with ``-v``)."""
    import signal
    import threading

    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    setup_logging(verbose)
    if not hasattr(args, "func"):
        parser.error("the following arguments are required: COMMAND")   # usage + one error line, exit 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args.func(args) or 0)
    except TegraAIError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        _json_error(args, exc.message, exc.exit_code, exc.hint)
        return exc.exit_code
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        _json_error(args, "terminated (SIGTERM)", EXIT_SIGTERM)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        _json_error(args, "interrupted (SIGINT)", EXIT_SIGINT)
        return EXIT_SIGINT
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            return _internal_error(prog, args, exc, verbose)
        # a full disk, read-only filesystem or missing permission the command did not
        # turn into its own message: still one line naming the path and the reason, 73
        err = write_error(exc.filename or "the output", exc)
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        _json_error(args, err.message, err.exit_code, err.hint)
        return err.exit_code
    except Exception as exc:  # an unexpected failure still gets one line, unless --verbose
        return _internal_error(prog, args, exc, verbose)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _internal_error(prog, args, exc, verbose) -> int:
    if verbose:
        traceback.print_exc()
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"{prog}: internal error: {type(exc).__name__}: {first} (run with --verbose for details)",
          file=sys.stderr)
    _json_error(args, f"internal error: {type(exc).__name__}: {first}", EXIT_FAILURE)
    return EXIT_FAILURE


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def check_writable_output(path: str) -> None:
    """Fail before a long build, not after it, when the output cannot be written."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise TegraAIError(f"output directory {directory} does not exist", hint="create it or choose another -o",
                           exit_code=EXIT_USAGE)
    if not os.access(directory, os.W_OK):
        raise not_writable(directory)   # read-only filesystem (EROFS) or permission (EACCES): 73
