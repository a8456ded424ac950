"""Fleet simulation on one machine: N devices (processes, each with its own engine cache)
ensure the same 10 models, (a) each building every engine, (b) against one engine mirror
(https-like static server on 127.0.0.1 with signed engines published by a reference device).

Everything but the TensorRT build itself is the real code, run and timed: model hashing,
key, lock, the simulated build's engine bytes written to the cache (fsync), and on the
mirror side fetch, Ed25519 verification, sha256 and the atomic store. The build itself
costs BUILD seconds per engine, added to each device's measured time rather than slept:
BUILD is a real TensorRT-RTX build of the embedded digits model measured at the start of
this run (CPU-only, ahead of time, a tiny model), and stated stand-ins (--build-seconds,
default 60 and 300 s) for Jetson builds of real models, which this machine cannot measure.

Prints device-minutes with and without the mirror for each BUILD, the bytes the mirror
served, and the cost of one mirror hit for a 50 MiB engine (goal: under 1 s on loopback,
verification and the fsynced store into the cache included).

    PYTHONPATH=scripts python benchmarks/bench_fleet.py [--devices 6] [--build-seconds 60 300]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

SIZES_MB = (50, 40, 30, 20, 10, 8, 6, 4, 2, 1)   # one engine per model


def _runtime():
    from tegra_ai import platform
    from tegra_ai.trt import compat

    facts = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")
    return compat.features_for("10.3.0.30"), (lambda options: facts)


class SimBuilder:
    """Returns engine bytes of the model's size and a real sidecar (the build's own time is
    added by the caller, per engine built)."""

    def __init__(self, sizes: dict):
        self.sizes, self.rt = sizes, _runtime()

    def __call__(self, entry):
        from tegra_ai.spec import Sidecar
        from tegra_ai.trt.builder import BuildResult, engine_key

        feats, facts_for = self.rt
        _key, material = engine_key(entry.sha256, entry.options, feats, facts_for(entry.options))
        engine = random.Random(entry.name).randbytes(self.sizes[entry.name])
        return BuildResult(engine=engine, sidecar=Sidecar.new(material, build_seconds=0.0))


def device(args, keep=False):
    """One simulated device: ensure all models into its own cache; returns what it did."""
    bundle, cache, sizes, mirror_url, pubkey = args
    from tegra_ai.cache.ensure import ensure
    from tegra_ai.cache.mirror import mirror_sources

    builder = SimBuilder(sizes)
    sources = mirror_sources([mirror_url], [pubkey], allow_http=True, timeout=60) if mirror_url else []
    t0 = time.monotonic()
    s = ensure([bundle], cache, builder=builder, loader=None, runtime=builder.rt, sources=tuple(sources),
               show_progress=False, log=lambda m: None)
    seconds = time.monotonic() - t0
    if not keep:
        shutil.rmtree(cache, ignore_errors=True)
    got = sum(a.get("bytes", 0) for m in s["models"] for a in m.get("attempts", []))
    return {"seconds": seconds, "built": s["built"], "fetched": s["fetched"], "failed": s["failed"], "bytes": got,
            "per_model": {m["name"]: m["seconds"] for m in s["models"]}}


def measure_rtx_build() -> float:
    os.environ.setdefault("TEGRA_AI_TENSORRT", "tensorrt_rtx")
    from tegra_ai import models
    from tegra_ai.spec import BuildOptions, parse_profile
    from tegra_ai.trt.builder import build_engine

    options = BuildOptions(profiles=[parse_profile("input:1x1x8x8:8x1x8x8:64x1x8x8")])
    t0 = time.monotonic()
    build_engine(models.DEFAULT_MODEL, options, show_progress=False)
    return time.monotonic() - t0


def make_bundle(directory: str, n: int) -> dict:
    import onnx
    from onnx import TensorProto, helper

    from tegra_ai.cache.manifest import add_to_bundle
    from tegra_ai.onnx_files import model_digest
    from tegra_ai.spec import BuildOptions

    sizes = {}
    for i in range(n):
        name = f"model{i}"
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8 + i, 8 + i])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8 + i, 8 + i])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], name, [x], [y])
        path = os.path.join(directory, "src", name + ".onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        sha, files = model_digest(path)
        add_to_bundle(os.path.join(directory, "bundle"), name, files, sha, BuildOptions(precision="fp16"))
        sizes[name] = SIZES_MB[i % len(SIZES_MB)] << 20
    return sizes


class CountingHandler(SimpleHTTPRequestHandler):
    served = 0
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def copyfile(self, source, outputfile):
        while True:
            buf = source.read(1 << 20)
            if not buf:
                break
            outputfile.write(buf)
            with CountingHandler.lock:
                CountingHandler.served += len(buf)


def run_fleet(pool, n, bundle, work, tag, sizes, url, pub):
    jobs = [(bundle, os.path.join(work, f"{tag}{i}"), sizes, url, pub) for i in range(n)]
    t0 = time.monotonic()
    results = list(pool.map(device, jobs))
    return results, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=6)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=os.cpu_count() or 1,
                    help="devices running at once (default: one per CPU core, so each has a core as a device would)")
    ap.add_argument("--build-seconds", type=float, nargs="*", default=[60.0, 300.0],
                    help="stand-in build times per engine, besides the measured RTX build (default 60 300)")
    ap.add_argument("--hit-repeats", type=int, default=7, help="single-device mirror hits to time (median)")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one under /tmp)")
    args = ap.parse_args()

    from tegra_ai.cache.publish import publish
    from tegra_ai.cache.signing import backend_name, generate_keypair

    measure_rtx_build()                      # warm-up: library loading
    rtx_s = statistics.median(measure_rtx_build() for _ in range(3))
    work = tempfile.mkdtemp(prefix="bench-fleet-", dir=args.workdir)
    try:
        sizes = make_bundle(work, args.models)
        bundle = os.path.join(work, "bundle")
        keys = generate_keypair(os.path.join(work, "keys"))
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.parallel, mp_context=ctx) as pool:
            ref = device((bundle, os.path.join(work, "reference"), sizes, None, None), keep=True)
            t0 = time.monotonic()
            published = publish(os.path.join(work, "reference"), os.path.join(work, "mirror"), keys["private_key"])
            publish_s = time.monotonic() - t0

            handler = lambda *a, **kw: CountingHandler(*a, directory=os.path.join(work, "mirror"), **kw)  # noqa: E731
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            url = f"http://127.0.0.1:{httpd.server_address[1]}"
            try:
                # one device alone, three times: the cost of a hit for the 50 MiB engine
                single = [device((bundle, os.path.join(work, f"single{i}"), sizes, url, keys["public_key"]))
                          for i in range(args.hit_repeats)]
                CountingHandler.served = 0
                with_mirror, wall_m = run_fleet(pool, args.devices, bundle, work, "m", sizes, url, keys["public_key"])
                served = CountingHandler.served
            finally:
                httpd.shutdown()
                httpd.server_close()
            without, wall_b = run_fleet(pool, args.devices, bundle, work, "b", sizes, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    big = max(sizes, key=sizes.get)
    hit_s = statistics.median(r["per_model"][big] for r in single)
    built_b = sum(r["built"] for r in without)
    io_b = sum(r["seconds"] for r in without)
    io_m = sum(r["seconds"] for r in with_mirror)
    print(f"signing backend: {backend_name()}; cores: {os.cpu_count()}; {args.devices} devices x {args.models} models "
          f"({args.parallel} at a time), engines {sum(sizes.values()) / 2**20:.0f} MiB per device")
    print(f"measured: each-builds run {built_b} built, {sum(r['failed'] for r in without)} failed, "
          f"{io_b:.1f} device-s besides building ({wall_b:.1f} s wall); mirror run "
          f"{sum(r['fetched'] for r in with_mirror)} fetched, {sum(r['built'] for r in with_mirror)} built, "
          f"{sum(r['failed'] for r in with_mirror)} failed, {io_m:.1f} device-s ({wall_m:.1f} s wall)")
    print(f"reference device: {ref['built']} engines, {ref['seconds']:.1f} s besides building; "
          f"publish of {published['published']} engines: {publish_s:.2f} s")
    print()
    print(f"{'build s per engine':34}{'each builds':>13}{'mirror':>9}{'saved':>9}{'fleet+ref':>11}{'ratio':>7}"
          "   (device-minutes)")
    for build_s, how in [(rtx_s, "measured RTX, digits"), *[(b, "stand-in") for b in args.build_seconds]]:
        dev_b = (io_b + built_b * build_s) / 60
        dev_m = io_m / 60
        fleet_m = dev_m + (ref["seconds"] + ref["built"] * build_s + publish_s) / 60
        print(f"{build_s:>8.2f} ({how}){'':{24 - len(how) - 3}}{dev_b:>13.2f}{dev_m:>9.2f}{dev_b - dev_m:>9.2f}"
              f"{fleet_m:>11.2f}{dev_b / fleet_m:>6.1f}x")
    print()
    print(f"mirror served {served / 2**20:.0f} MiB ({served / max(1, args.devices) / 2**20:.0f} MiB per device; "
          f"clients counted {sum(r['bytes'] for r in with_mirror) / 2**20:.0f} MiB)")
    print(f"one mirror hit, {sizes[big] / 2**20:.0f} MiB engine, alone on loopback (fetch + signature + sha256 + "
          f"fsynced store): median {hit_s:.3f} s, min {min(r['per_model'][big] for r in single):.3f} s over {len(single)}; goal < 1 s")


if __name__ == "__main__":
    main()
