"""Timing helpers shared by the benchmarks: CUDA-event timing with warm-up and the
median of many repeats; graph replay to take host launch overhead out."""

from __future__ import annotations

import statistics
import time


def gpu_median_ms(fn, torch, warmup=10, repeat=100):
    """Median per-call time of ``fn`` (eager, host launch overhead included)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def graph_median_ms(fn, torch, calls_per_graph=20, repeat=30):
    """Median per-call device time of ``fn`` captured ``calls_per_graph`` times in a
    CUDA graph (no launch gaps). ``fn`` must be capturable (no host sync, no uploads)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        with torch.cuda.graph(g, stream=s):
            for _ in range(calls_per_graph):
                fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / calls_per_graph)
    return statistics.median(times)


def wall_median_ms(fn, warmup=3, repeat=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)
