"""CUDA graphs through the driver API: capture a sequence of launches and copies once,
replay it with one host call (the per-launch cost of cuda-python is several
microseconds; a replay is one)."""

from __future__ import annotations

from tegra_ai.cuda import compat
from tegra_ai.cuda.driver import Stream, check, ensure_context, stream_handle


class GraphExec:
    def __init__(self, graph, exe):
        self.graph, self.exe = graph, exe

    def launch(self, stream=0):
        check(compat.driver().cuGraphLaunch(self.exe, stream_handle(stream)), "cuGraphLaunch")

    def __del__(self):
        try:
            drv = compat.driver()
            drv.cuGraphExecDestroy(self.exe)
            drv.cuGraphDestroy(self.graph)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def capture(body) -> GraphExec:
    """Run ``body(stream)`` under stream capture (thread-local mode, a private stream)
    and return the instantiated graph."""
    drv = compat.driver()
    ensure_context()
    s = Stream()
    mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    check(drv.cuStreamBeginCapture(s.handle, mode), "cuStreamBeginCapture")
    try:
        body(int(s))
    except BaseException:
        drv.cuStreamEndCapture(s.handle)
        s.destroy()
        raise
    graph = check(drv.cuStreamEndCapture(s.handle), "cuStreamEndCapture")
    s.destroy()
    return GraphExec(graph, compat.graph_instantiate(graph))
