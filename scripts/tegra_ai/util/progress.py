"""A build/calibration progress display with elapsed time.

On a terminal it redraws one line; elsewhere (journald, CI logs) it prints a line when
the phase changes and at most every ``log_interval`` seconds, so a first-boot build
logs progress without flooding the journal."""

from __future__ import annotations

import sys
import threading
import time

from tegra_ai.util import sdnotify


def format_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, label: str, stream=None, enabled: bool = True, log_interval: float = 15.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self.detail = ""
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._last_log = 0.0
        self._last_detail = None
        self._lock = threading.Lock()

    def __enter__(self):
        if self.enabled:
            self.start = time.monotonic()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.enabled:
            status = "done" if exc_type is None else "failed"
            self._emit(f"{self.label}: {status} in {format_elapsed(self.elapsed)}", final=True)
        return False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, detail: str) -> None:
        with self._lock:
            self.detail = detail

    def on_trt_phases(self, phases: dict) -> None:
        """Callback for TensorRT's progress monitor: {phase: [step, steps, parent]}."""
        parts = [f"{name} {step}/{steps}" for name, (step, steps, _parent) in phases.items() if steps]
        self.update(" > ".join(parts))

    def _line(self) -> str:
        detail = f"  {self.detail}" if self.detail else ""
        return f"{self.label}: {format_elapsed(self.elapsed)}{detail}"

    def _emit(self, text: str, final: bool = False) -> None:
        sdnotify.status(text)  # systemctl status shows it under a unit with NotifyAccess
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(0.5 if self.tty else 1.0):
            now = time.monotonic()
            with self._lock:
                detail = self.detail
            if self.tty:
                self._emit(self._line())
            elif detail != self._last_detail and now - self._last_log >= 2 or now - self._last_log >= self.log_interval:
                self._last_log, self._last_detail = now, detail
                self._emit(self._line())
