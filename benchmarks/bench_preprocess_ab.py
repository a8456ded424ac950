"""A/B timing of builds of the preprocessing kernel source on the classifier path of
bench_preprocess.py (1080p bgr8 x 16 -> shorter side 256, antialiased -> centre 224x224,
rgb fp16 NCHW), all in one process: the current ``preprocess.cu``, other versions of it
(``--build NAME=FILE``, e.g. ``git show f86e1e8:scripts/tegra_ai/kernels/preprocess.cu``)
and the current source with its ``TAI_AA_*`` knobs set (``--variant NAME=KNOB=V,...``).

Prints per build: median device time per call from graph replays, on one source batch and
rotated over four (so that the L2 cannot hold the crop's footprint between calls); % of a
device copy of the full-frame bytes (bench_preprocess.py's definition) and of a copy of the
footprint bytes only (rotated past the L2 too); x the PyTorch antialiased interpolate
pipeline; the largest difference from that pipeline's output.

Used for the kernel table in benchmarks/RESULTS.md; a development tool, not a goal check.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import graph_median_ms  # noqa: E402

B, H, W, SHORT, CROP = 16, 1080, 1920, 256, 224
ROTATE = 4


def geometry(source: bytes):
    """(rows per thread, block rows) of an _aa launch for ``source`` (1 and 8 before they were knobs)."""
    def knob(name, default):
        m = re.search(rb"#define TAI_AA_%s (\d+)" % name.encode(), source)
        return int(m.group(1)) if m else default

    return knob("ROWS_PER_THREAD", 1), knob("BLOCK_Y", 8)


def with_knobs(source: bytes, knobs: str) -> bytes:
    pairs = [kv.split("=", 1) for kv in knobs.split(",") if kv]
    return "".join(f"#define TAI_AA_{k} {v}\n" for k, v in pairs).encode() + source


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KNOB=V,...")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from tegra_ai.kernels import Preprocessor, SourceImage, layout, loader
    from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry

    current = loader.read_source("preprocess")
    builds = [("current", current)]
    for b in args.build:
        name, path = b.split("=", 1)
        builds.append((name, open(path, "rb").read()))
    for v in args.variant:
        name, knobs = v.split("=", 1)
        builds.append((name, with_knobs(current, knobs)))

    spec = PreprocessSpec(height=CROP, width=CROP, input_format="bgr8", channel_order="rgb", resize="center_crop",
                          dtype="float16", layout="nchw", scale=1 / 255.0, resize_short=SHORT, antialias=True)
    nh, nw, top, left = center_crop_geometry(H, W, SHORT, CROP, CROP)
    out_bytes = B * 3 * CROP * CROP * 2
    total = B * H * W * 3 + out_bytes
    srcs = [torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, device="cuda") for _ in range(ROTATE)]
    out = torch.empty((B, 3, CROP, CROP), dtype=torch.float16, device="cuda")

    def span(first, last, sc, size):
        return min(int((last + 0.5) * sc + sc + 0.5), size) - max(int((first + 0.5) * sc - sc + 0.5), 0)

    fp = B * span(top, top + CROP - 1, H / nh, H) * span(left, left + CROP - 1, W / nw, W) * 3 + out_bytes
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    print(f"device {torch.cuda.get_device_name(0)}, L2 {l2 / 2**20:.0f} MiB; full-frame bytes {total / 1e6:.1f} MB, "
          f"footprint bytes {fp / 1e6:.1f} MB")

    def rotating(fns):
        turn = [0]

        def call():
            fns[turn[0] % len(fns)]()
            turn[0] += 1
        return call

    def torch_pipeline():
        x = srcs[0].permute(0, 3, 1, 2).flip(1).float()
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        return (x[:, :, top:top + CROP, left:left + CROP] * (1 / 255.0)).half()

    ref = torch_pipeline()
    cbuf = torch.empty(total // 2, dtype=torch.uint8, device="cuda")
    cdst = torch.empty_like(cbuf)
    t_copy = graph_median_ms(lambda: cdst.copy_(cbuf), torch)
    pairs = max(1, -(-2 * l2 // fp))
    fbufs = [(torch.empty(fp // 2, dtype=torch.uint8, device="cuda"),
              torch.empty(fp // 2, dtype=torch.uint8, device="cuda")) for _ in range(pairs)]
    t_fcopy = graph_median_ms(rotating([lambda a=a, b=b: b.copy_(a) for a, b in fbufs]), torch,
                              calls_per_graph=20 * pairs)
    t_torch = graph_median_ms(torch_pipeline, torch, calls_per_graph=5, repeat=10)
    print(f"copy full frame {t_copy:.4f} ms, copy footprint {t_fcopy:.4f} ms, PyTorch {t_torch:.4f} ms")

    read_source, geometry0 = loader.read_source, (layout.AA_ROWS_PER_THREAD, layout.AA_BLOCK)
    try:
        for name, source in builds:
            loader.read_source = lambda module, s=source: s if module == "preprocess" else read_source(module)
            loader._modules.clear()
            layout.AA_ROWS_PER_THREAD, rows = geometry(source)
            layout.AA_BLOCK = (32, rows, 1)
            pres = [Preprocessor(spec) for _ in range(ROTATE)]  # one per source batch: descriptors stay put
            imgs = [[SourceImage(s[i].data_ptr(), H, W) for i in range(B)] for s in srcs]
            # the stream current at call time: graph_median_ms captures on a stream of its own
            fns = [lambda k=k: pres[k].run_device(imgs[k], out.data_ptr(),
                                                  stream=torch.cuda.current_stream().cuda_stream)
                   for k in range(ROTATE)]
            for fn in fns:  # each instance uploads its descriptors on its first call: not inside a capture
                fn()
            torch.cuda.synchronize()
            diff = (out.float() - ref.float()).abs().max().item()
            t_same = graph_median_ms(fns[0], torch)
            t_rot = graph_median_ms(rotating(fns), torch, calls_per_graph=20)
            print(f"{name:<28} one batch {t_same:.4f} ms, rotated {t_rot:.4f} ms: {100 * t_copy / t_rot:.0f}% of copy, "
                  f"{100 * t_fcopy / t_rot:.0f}% of footprint copy, {t_torch / t_rot:.1f}x PyTorch, "
                  f"max |d| {diff:.4f}")
    finally:
        loader.read_source = read_source
        layout.AA_ROWS_PER_THREAD, layout.AA_BLOCK = geometry0
        loader._modules.clear()


if __name__ == "__main__":
    main()
