"""Multi-model runtime: each model runs on its own worker thread(s), each worker owns
its :class:`~tegra_ai.backend.base.Runner` (made and activated on that thread, so a
TensorRT runner gets its own execution context, CUDA stream and device buffers, made
once), requests come through bounded queues and return futures.

    with ModelRuntime({"det": TensorRTRunner("det.engine"), "cls": make_cls_runner}) as rt:
        fut = rt.submit("det", {"images": x})       # blocks while det's queue is full
        out = fut.result()                           # dict of outputs, or the request's error

* Backpressure: ``submit`` blocks while the model's queue holds ``queue_size`` requests
  (``timeout`` -> :class:`TegraAIError`); nothing is dropped.
* Errors are per request: a failing request sets its future's exception; the worker
  and the other requests go on.
* ``close()`` stops accepting, lets every accepted request finish (or cancels the
  queued ones with ``cancel_pending=True``), deactivates the runners and joins.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from tegra_ai.backend.base import Runner
from tegra_ai.errors import EXIT_USAGE, TegraAIError

log = logging.getLogger("tegra_ai.runtime")

_STOP = object()


@dataclass
class _Request:
    feed: dict
    future: Future
    submitted: float


@dataclass
class ModelStats:
    requests: int = 0
    failures: int = 0
    latency_ms: list = field(default_factory=list)   # submit -> result
    service_ms: list = field(default_factory=list)   # time in infer()

    def summary(self) -> dict:
        def pct(v, q):
            return round(statistics.quantiles(v, n=100)[q - 1], 4) if len(v) >= 2 else (round(v[0], 4) if v else None)
        return {"requests": self.requests, "failures": self.failures,
                "latency_ms": {"p50": pct(self.latency_ms, 50), "p99": pct(self.latency_ms, 99)},
                "service_ms": {"mean": round(statistics.fmean(self.service_ms), 4) if self.service_ms else None}}


class _Model:
    def __init__(self, name, factory, workers, queue_size):
        self.name = name
        self.queue = queue.Queue(maxsize=queue_size)
        self.stats = ModelStats()
        self.lock = threading.Lock()
        self.accept = threading.Lock()
        self.ready = threading.Barrier(workers + 1)
        self.errors = []
        self.inputs = []
        self.threads = [threading.Thread(target=self._work, args=(factory,), name=f"tegra-ai-{name}-{i}",
                                         daemon=True) for i in range(workers)]

    def _work(self, factory):
        runner = None
        try:
            runner = factory() if not isinstance(factory, Runner) else factory
            runner.activate()
            self.inputs = runner.input_metadata()
        except BaseException as exc:  # noqa: BLE001 - reported by ModelRuntime.__init__
            self.errors.append(exc)
            runner = None
        finally:
            self.ready.wait()
        try:
            while True:
                req = self.queue.get()
                if req is _STOP:
                    self.queue.task_done()
                    return
                self._serve(runner, req)
                self.queue.task_done()
        finally:
            if runner is not None:
                try:
                    runner.deactivate()
                except Exception:  # noqa: BLE001
                    log.exception("deactivating %s", self.name)

    def _serve(self, runner, req):
        if not req.future.set_running_or_notify_cancel():
            return
        t0 = time.perf_counter()
        try:
            if runner is None:
                raise TegraAIError(f"model {self.name} is not available")
            out = runner.infer(req.feed)
        except BaseException as exc:  # noqa: BLE001 - the request's error, not the worker's
            with self.lock:
                self.stats.requests += 1
                self.stats.failures += 1
            req.future.set_exception(exc)
            return
        t1 = time.perf_counter()
        with self.lock:
            self.stats.requests += 1
            self.stats.service_ms.append((t1 - t0) * 1e3)
            self.stats.latency_ms.append((t1 - req.submitted) * 1e3)
        req.future.set_result(out)


class ModelRuntime:
    """``models``: name -> Runner (one worker) or a zero-argument factory returning a new
    Runner (``workers`` of them, each with its own context and stream)."""

    def __init__(self, models: dict, queue_size: int = 8, workers: int | dict = 1):
        if not models:
            raise TegraAIError("the runtime needs at least one model", exit_code=EXIT_USAGE)
        if queue_size < 1:
            raise TegraAIError(f"queue_size must be at least 1, got {queue_size}", exit_code=EXIT_USAGE)
        self._models = {}
        self._closed = False
        self._accept = threading.Lock()
        for name, factory in models.items():
            n = workers.get(name, 1) if isinstance(workers, dict) else int(workers)
            if isinstance(factory, Runner) and n != 1:
                raise TegraAIError(f"model {name}: {n} workers need a factory (a Runner serves one thread)",
                                   exit_code=EXIT_USAGE)
            if not isinstance(factory, Runner) and not callable(factory):
                raise TegraAIError(f"model {name}: expected a Runner or a factory, got {type(factory).__name__}",
                                   exit_code=EXIT_USAGE)
            self._models[name] = _Model(name, factory, n, queue_size)
        for m in self._models.values():
            for t in m.threads:
                t.start()
        failed = []
        for m in self._models.values():
            m.ready.wait()
            failed += [(m.name, e) for e in m.errors]
        if failed:
            self.close()
            name, exc = failed[0]
            if isinstance(exc, TegraAIError):
                raise TegraAIError(f"model {name}: {exc.message}", hint=exc.hint, exit_code=exc.exit_code) from None
            raise TegraAIError(f"model {name} failed to start: {exc}") from exc

    @property
    def models(self) -> list:
        return list(self._models)

    def submit(self, name: str, feed: dict, timeout: float | None = None) -> Future:
        model = self._models.get(name)
        if model is None:
            raise TegraAIError(f"unknown model {name!r}; the runtime has {', '.join(self._models)}",
                               exit_code=EXIT_USAGE)
        fut = Future()
        req = _Request(feed, fut, time.perf_counter())
        # Held across the put: close() cannot slip its stop marker in front of an
        # accepted request (the workers never take this lock, so a full queue drains).
        with model.accept:
            if self._closed:
                raise TegraAIError("the runtime is closed")
            try:
                model.queue.put(req, timeout=timeout)
            except queue.Full:
                raise TegraAIError(f"model {name}: queue full for {timeout} s") from None
        return fut

    def input_metadata(self, name: str) -> list:
        """The model's inputs (:class:`~tegra_ai.backend.base.TensorMeta`), as its runner reported them."""
        if name not in self._models:
            raise TegraAIError(f"unknown model {name!r}; the runtime has {', '.join(self._models)}",
                               exit_code=EXIT_USAGE)
        return list(self._models[name].inputs)

    def infer(self, name: str, feed: dict) -> dict:
        return self.submit(name, feed).result()

    def stats(self) -> dict:
        out = {}
        for name, m in self._models.items():
            with m.lock:
                out[name] = m.stats.summary()
        return out

    def close(self, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Stop accepting; finish (or cancel) what was accepted; release the runners."""
        with self._accept:
            if self._closed:
                return
            self._closed = True
        for m in self._models.values():
            with m.accept:  # waits for submits already past the closed check
                pass
        for m in self._models.values():
            if cancel_pending:
                while True:
                    try:
                        req = m.queue.get_nowait()
                    except queue.Empty:
                        break
                    if req is not _STOP:
                        req.future.cancel()
                    m.queue.task_done()
            for _ in m.threads:
                m.queue.put(_STOP)
        for m in self._models.values():
            for t in m.threads:
                t.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
