"""Multi-model runtime and pipeline on the GPU, against what a user would otherwise
write, measured in one run. Inference is a CUDA workload that busy-waits a stated time
(CudaWorkloadRunner; TensorRT is not on the benchmark machine): scheduling, overlap and
overhead are real, the model is not. Pre- and post-processing run the real kernels.

1. Runtime overhead per request: ``ModelRuntime.infer`` vs calling ``runner.infer`` in a loop.
2. Aggregate throughput of 2 and 4 models through the runtime vs the same models one
   after another in one thread.
3. Pipeline: 1080p BGR (and NV12) frames -> letterbox 640x640 fp16 -> a 2 ms "engine" ->
   YOLOv8 post-processing (8400 x 80 head); FPS with 1..4 streams vs 1 / slowest stage,
   and vs a sequential loop (same kernels, one stream, synchronous). Unpaced: frames as
   fast as the pipeline takes them (a file).
4. The same pipeline fed by a paced live source (``--source-fps``, a camera replayed by
   ``sources.PacedSource``): latency p50/p99 from capture to result beside the sum of
   the frame's stage times, at 1, 2 and 4 streams, for a camera ring registered once
   with CUDA and for arbitrary NumPy frames (their host staging copy is a stage).

    python benchmarks/bench_runtime.py                         # all sections, paced at 30 fps
    python benchmarks/bench_runtime.py --sections pipeline,paced --source-fps 60

Section 3 uses only the Pipeline API that older versions have, so the same script
measures an older checkout's library for comparison (``PYTHONPATH=old/scripts``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def bare_loop(runner, feed, n):
    t = time.perf_counter()
    for _ in range(n):
        runner.infer(feed)
    return (time.perf_counter() - t) / n * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="runtime,pipeline,paced",
                    help="comma-separated: runtime (1, 2), pipeline (3), paced (4)")
    ap.add_argument("--source-fps", type=float, default=30.0, help="paced source rate for section 4")
    ap.add_argument("--paced-frames", type=int, default=300, help="frames per paced run (section 4)")
    ap.add_argument("--repeats", type=int, default=3, help="unpaced runs per row; the median fps is shown")
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))
    unknown = sections - {"runtime", "pipeline", "paced"}
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}")

    from tegra_ai.cuda.driver import device_attribute

    import torch
    print(f"device: {torch.cuda.get_device_name(0)}; SMs {device_attribute('CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT')}")
    if "runtime" in sections:
        bench_runtime()
    if "pipeline" in sections:
        bench_pipeline(args.repeats)
    if "paced" in sections:
        bench_paced(args.source_fps, args.paced_frames)
    return 0


def bench_runtime():
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.runtime import ModelRuntime

    io = dict(inputs={"x": ((1, 3, 224, 224), "float16")}, outputs={"y": ((1, 1000), "float32")})
    feed = {"x": np.zeros((1, 3, 224, 224), np.float16)}

    print("\n1. runtime overhead per request (5 interleaved rounds of 200 requests; median ms per request)")
    print(f"{'engine us':>10}{'bare loop':>11}{'runtime':>10}{'overhead us':>13}{'spread us':>11}")
    for us in (100, 1000):
        r = CudaWorkloadRunner(us, **io)
        r.activate()
        bare, rtm = [], []
        with ModelRuntime({"m": lambda us=us: CudaWorkloadRunner(us, **io)}) as rt:
            rt.infer("m", feed)
            bare_loop(r, feed, 20)
            for _ in range(5):
                bare.append(bare_loop(r, feed, 200))
                t = time.perf_counter()
                for _ in range(200):
                    rt.infer("m", feed)
                rtm.append((time.perf_counter() - t) / 200 * 1e3)
        r.deactivate()
        b, m = statistics.median(bare), statistics.median(rtm)
        spread = (max(bare) - min(bare)) * 1e3
        print(f"{us:>10}{b:>11.4f}{m:>10.4f}{(m - b) * 1e3:>13.1f}{spread:>11.1f}")

    print("\n2. aggregate throughput, models of 2 ms each (requests/s)")
    print(f"{'models':>7}{'sequential':>12}{'runtime':>10}{'ratio':>8}")
    for k in (2, 4):
        names = [f"m{i}" for i in range(k)]
        runners = [CudaWorkloadRunner(2000, **io) for _ in names]
        for r in runners:
            r.activate()
        n = 50
        t = time.perf_counter()
        for _ in range(n):
            for r in runners:
                r.infer(feed)
        seq = n * k / (time.perf_counter() - t)
        for r in runners:
            r.deactivate()
        with ModelRuntime({m: (lambda: CudaWorkloadRunner(2000, **io)) for m in names}, queue_size=8) as rt:
            for m in names:
                rt.infer(m, feed)
            t = time.perf_counter()
            futs = [rt.submit(m, feed) for _ in range(n) for m in names]
            for f in futs:
                f.result()
            par = n * k / (time.perf_counter() - t)
        print(f"{k:>7}{seq:>12.1f}{par:>10.1f}{par / seq:>8.2f}")


def bench_pipeline(repeats):
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.postprocess.detection import DetectionSpec
    from tegra_ai.preprocess.spec import PreprocessSpec
    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import Pipeline

    print("\n3. pipeline: 1080p -> letterbox 640x640 fp16 -> 2 ms engine -> YOLOv8 post (8400x80)")
    engine_us = 2000
    det = DetectionSpec(head="yolov8", score_threshold=0.25)
    rows = []
    for fmt in ("bgr8", "nv12"):
        spec = PreprocessSpec(640, 640, input_format=fmt, resize="letterbox", dtype="float16")
        shape_io = dict(inputs={"images": ((1, 3, 640, 640), "float16")}, outputs={"out": ((1, 84, 8400), "float32")})
        base = CudaWorkloadRunner(engine_us, **shape_io, blocks=8)
        base.activate()
        d_infer = base.calibrate() / 1e3
        for streams in (1, 2, 3, 4):
            pipe = Pipeline(spec, base, detection=det, streams=streams, source_queue=8)
            frames = 300
            for _ in pipe.run(sources.synthetic(20, 1080, 1920, fmt)):
                pass  # warm-up: kernels loaded, graphs made, buffers allocated
            runs = []
            for _ in range(repeats):
                pipe.reset_stats()
                for _ in pipe.run(sources.synthetic(frames, 1080, 1920, fmt)):
                    pass
                runs.append(pipe.stats())
            s = sorted(runs, key=lambda x: x["fps"])[len(runs) // 2]   # the median run
            st = s["stage_ms"]
            slowest = max(d_infer, st["preprocess"], st["postprocess"], st["upload"], s["host_enqueue_ms"])
            rows.append((fmt, streams, s["fps"], 1e3 / slowest, s["fps"] / (1e3 / slowest), st, s["host_enqueue_ms"],
                         s["latency_ms"]["p50"]))
        # Sequential baseline: same kernels, one stream, wait for each frame.
        pipe = Pipeline(spec, base, detection=det, streams=1)
        for _ in pipe.run_sequential(sources.synthetic(10, 1080, 1920, fmt)):
            pass
        t = time.perf_counter()
        n = sum(1 for _ in pipe.run_sequential(sources.synthetic(100, 1080, 1920, fmt)))
        seq_fps = n / (time.perf_counter() - t)
        rows.append((fmt, "seq", seq_fps, None, None, None, None, None))
    print(f"{'fmt':>5}{'streams':>8}{'fps':>8}{'bound':>8}{'%bound':>8}{'upload':>8}{'pre':>7}{'infer*':>8}"
          f"{'post':>7}{'host':>7}{'lat p50':>9}")
    for fmt, streams, fps, bound, frac, st, host, lat in rows:
        if st is None:
            print(f"{fmt:>5}{streams:>8}{fps:>8.1f}   (sequential loop, same kernels)")
            continue
        print(f"{fmt:>5}{streams:>8}{fps:>8.1f}{bound:>8.1f}{frac * 100:>7.1f}%{st['upload']:>8.3f}{st['preprocess']:>7.3f}"
              f"{st['infer']:>8.3f}{st['postprocess']:>7.3f}{host:>7.3f}{lat:>9.2f}")
    print(f"median of {repeats} runs of 300 frames. bound = 1 / slowest stage (engine calibrated, device stage "
          "medians, host enqueue); infer* includes waiting for the previous frame's inference (serialized engine). "
          "Goal: >= 90% of bound.")
    print("pipeline fps: " + " ".join(f"{fmt}/{streams}={fps:.1f}" for fmt, streams, fps, *_ in rows))


def bench_paced(fps, frames):
    """Latency at a camera's pace: each frame's capture -> its result on the host, beside
    the frame's own stage times (host staging copy + device time of upload, preprocess,
    infer and post). Two kinds of frames: a camera ring registered once with CUDA
    (``PacedSource(memory="registered")``: the capture path writes into buffers the
    application allocated once; uploaded in place) and arbitrary NumPy frames (copied into
    the lane's pinned buffer first: the ``stage_in`` stage, part of the stage sum)."""
    from tegra_ai.backend.workload import CudaWorkloadRunner
    from tegra_ai.postprocess.detection import DetectionSpec
    from tegra_ai.preprocess.spec import PreprocessSpec
    from tegra_ai.runtime import sources
    from tegra_ai.runtime.pipeline import STAGES, Pipeline

    print(f"\n4. paced source: {fps:g} fps camera (PacedSource, ring of 4 buffers), 1080p bgr8 -> letterbox 640 -> "
          f"2 ms engine -> YOLOv8 post; {frames} frames per row")
    det = DetectionSpec(head="yolov8", score_threshold=0.25)
    spec = PreprocessSpec(640, 640, input_format="bgr8", resize="letterbox", dtype="float16")
    shape_io = dict(inputs={"images": ((1, 3, 640, 640), "float16")}, outputs={"out": ((1, 84, 8400), "float32")})
    base = CudaWorkloadRunner(2000, **shape_io, blocks=8)
    base.activate()
    print(f"{'streams':>8}{'frames':>11}{'wait':>6}{'copy':>5}{'lat p50':>9}{'lat p99':>9}{'stages':>8}"
          f"{'stage_in':>9}{'host':>7}{'p50-st':>8}{'p99-st':>8}{'max':>7}{'dropped':>8}{'goal':>6}")
    rows = [(1, None, False, 1), (2, None, False, 1), (4, None, False, 1), (2, None, False, 4),
            (1, "registered", False, 1), (2, "registered", False, 1), (4, "registered", False, 1),
            (2, "registered", True, 1)]
    met, register_ms = {}, []
    label = {None: "numpy", "registered": "registered"}
    for streams, memory, spin, copy_threads in rows:
        pipe = Pipeline(spec, base, detection=det, streams=streams, spin_wait=spin, copy_threads=copy_threads)
        for _ in pipe.run(sources.synthetic(20, 1080, 1920, "bgr8")):
            pass  # warm-up
        pipe.reset_stats()
        cam = sources.PacedSource(sources.synthetic(frames, 1080, 1920, "bgr8"), fps=fps, memory=memory)
        n = sum(1 for _ in pipe.run(cam))
        if cam.ring is not None:
            register_ms.append(cam.ring.register_s * 1e3)
            cam.close()
        stats = pipe._stats
        per_frame = [sum(v) for v in zip(*(stats.stages_ms[k] for k in STAGES))]
        stage_sum = statistics.median(per_frame)
        s = pipe.stats()
        p50, p99 = s["latency_ms"]["p50"], s["latency_ms"]["p99"]
        dropped = s["dropped"]["queue"] + s["dropped"]["source"]
        ok = p50 <= stage_sum + 1 and p99 <= stage_sum + 3 and n == frames
        met.setdefault(label[memory], []).append(ok)
        print(f"{streams:>8}{label[memory]:>11}{'spin' if spin else 'block':>6}{copy_threads:>5}"
              f"{p50:>9.2f}{p99:>9.2f}{stage_sum:>8.2f}{s['stage_ms']['stage_in']:>9.2f}{s['host_enqueue_ms']:>7.2f}"
              f"{p50 - stage_sum:>8.2f}{p99 - stage_sum:>8.2f}{max(stats.latency_ms):>7.2f}{dropped:>8}{'yes' if ok else 'NO':>6}")
        pipe.close()
    print("latency = capture timestamp -> result on the host; stages = median per-frame sum of stage_in (host copy "
          "of a pageable frame into pinned memory, 0 for a registered ring) and device time (upload, preprocess, "
          "infer, post); stage_in = its median; host = host enqueue (the copy included); wait = how the completion "
          "thread waits for the GPU; copy = copy threads; max = the slowest frame's latency. numpy = arbitrary NumPy frames; registered = the camera "
          "ring (4 x 6.2 MB) registered once with cuMemHostRegister, frames uploaded in place.")
    if register_ms:
        print(f"ring registration (once per source, before streaming): {min(register_ms):.2f}-{max(register_ms):.2f} ms")
    print("goal p50 <= stages + 1 ms and p99 <= stages + 3 ms: " +
          ", ".join(f"{k} frames {'met' if all(v) else 'NOT met'} ({sum(v)}/{len(v)} rows)" for k, v in met.items()))


if __name__ == "__main__":
    sys.exit(main())
