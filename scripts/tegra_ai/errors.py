"""Expected failures. The CLI prints them as one line and exits non-zero; only
``--verbose`` shows a traceback."""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a required library (TensorRT) is missing
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


class MissingDependencyError(TegraAIError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str | None = None, purpose: str | None = None,
                 exit_code: int = EXIT_UNAVAILABLE):
        what = f"{purpose} needs" if purpose else "this needs"
        install = f"pip install 'meta-tegra-ai[{extra}]'" if extra else f"pip install {module}"
        super().__init__(f"{what} the Python module '{module}', which is not installed",
                         hint=f"{install}, or add its package to the image", exit_code=exit_code)
        self.module = module
