"""What every tool shares: one-line errors, exit codes, JSON output."""

from __future__ import annotations

import json
import os
import sys
import traceback

from tegra_ai.errors import EXIT_FAILURE, TegraAIError


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


def run_main(prog: str, parser, argv=None) -> int:
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    setup_logging(verbose)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TegraAIError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure still gets one line, unless --verbose
        if verbose:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{prog}: internal error: {type(exc).__name__}: {first} (run with --verbose for details)",
              file=sys.stderr)
        return EXIT_FAILURE


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def check_writable_output(path: str) -> None:
    """Fail before a long build, not after it, when the output cannot be written."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise TegraAIError(f"output directory {directory} does not exist", hint="create it or choose another -o")
    if not os.access(directory, os.W_OK):
        raise TegraAIError(f"output directory {directory} is not writable", hint="choose another -o")
