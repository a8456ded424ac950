"""Preprocessing benchmark: 1080p BGR uint8 -> 640x640 RGB fp16 NCHW, /255, batch 1
and 16, letterbox and stretch; and the classifier path, 1080p -> shorter side 256 ->
centre crop 224x224 with PIL/torchvision antialiasing (``center_crop``). Prints achieved
GB/s (source bytes + output bytes, over time) next to a device-to-device copy of the
same number of bytes, PyTorch on the GPU (interpolate bilinear [antialias] + crop/pad +
normalise + half) and the CPU path a user would take (OpenCV resize + border + cvtColor +
normalise + transpose + half; for center_crop PIL resize + crop, torchvision's CPU path).
For center_crop also "%fp copy": against a copy of only the bytes the crop's filters read
(its footprint, 950x950 of each 1080p frame) plus the output, rotated over buffers larger
than the L2 (stricter: the full-frame copy moves 2.2x those bytes).

Goals: issue #3 >= 60% of copy bandwidth at batch 16, >= 3x PyTorch, >= 50x OpenCV;
issue #18 part 6: center_crop at batch 16 >= 70% of copy bandwidth.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import gpu_median_ms, graph_median_ms, wall_median_ms  # noqa: E402

SRC_H, SRC_W, OUT = 1080, 1920, 640
SHORT, CROP = 256, 224


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--opencv-repeat", type=int, default=5)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from tegra_ai.kernels import Preprocessor, SourceImage
    from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry, letterbox_geometry

    try:
        import cv2
    except ImportError:
        cv2 = None

    dev = torch.cuda.get_device_name(0)
    print(f"device: {dev}; torch {torch.__version__}; opencv {cv2.__version__ if cv2 else 'absent'}")
    rows = []
    for mode in ("letterbox", "stretch", "center_crop"):
        crop = mode == "center_crop"
        DST = CROP if crop else OUT
        spec = PreprocessSpec(height=DST, width=DST, input_format="bgr8", channel_order="rgb", resize=mode,
                              dtype="float16", layout="nchw", scale=1 / 255.0,
                              **(dict(resize_short=SHORT, antialias=True) if crop else {}))
        pre = Preprocessor(spec)
        if crop:
            new_h, new_w, top, left = center_crop_geometry(SRC_H, SRC_W, SHORT, DST, DST)
        else:
            _, new_h, new_w, top, left = letterbox_geometry(SRC_H, SRC_W, DST, DST) if mode == "letterbox" \
                else (1.0, DST, DST, 0, 0)
        for batch in [int(b) for b in args.batches.split(",")]:
            g = torch.Generator(device="cuda").manual_seed(batch)
            src = torch.randint(0, 256, (batch, SRC_H, SRC_W, 3), dtype=torch.uint8, device="cuda", generator=g)
            out = torch.empty((batch, 3, DST, DST), dtype=torch.float16, device="cuda")
            in_bytes, out_bytes = src.numel(), out.numel() * 2
            total = in_bytes + out_bytes
            images = [SourceImage(src[i].data_ptr(), SRC_H, SRC_W) for i in range(batch)]
            stream = torch.cuda.current_stream()

            def ours():
                pre.run_device(images, out.data_ptr(), stream=torch.cuda.current_stream().cuda_stream)

            # copy of the same bytes: reads total/2, writes total/2
            cbuf = torch.empty(total // 2, dtype=torch.uint8, device="cuda")
            cdst = torch.empty_like(cbuf)

            def copy():
                cdst.copy_(cbuf)

            t_fcopy = None
            if crop:
                # The bytes the crop's filters must read (each image's footprint: PIL's bilinear
                # support is the scale on each side) and write; copies rotate over buffers that
                # together exceed twice the L2, so that HBM serves them, as it serves the kernel.
                def span(first, last, sc, size):  # source pixels under outputs first..last
                    return min(int((last + 0.5) * sc + sc + 0.5), size) - max(int((first + 0.5) * sc - sc + 0.5), 0)

                fp_rows = span(top, top + DST - 1, SRC_H / new_h, SRC_H)
                fp_cols = span(left, left + DST - 1, SRC_W / new_w, SRC_W)
                fp_total = batch * fp_rows * fp_cols * 3 + out_bytes
                l2 = torch.cuda.get_device_properties(0).L2_cache_size
                pairs = max(1, -(-2 * l2 // fp_total))
                fbufs = [(torch.empty(fp_total // 2, dtype=torch.uint8, device="cuda"),
                          torch.empty(fp_total // 2, dtype=torch.uint8, device="cuda")) for _ in range(pairs)]
                turn = [0]

                def footprint_copy():
                    a, b = fbufs[turn[0] % pairs]
                    turn[0] += 1
                    b.copy_(a)

                t_fcopy = graph_median_ms(footprint_copy, torch, calls_per_graph=20 * pairs)

            def torch_pipeline():
                x = src.permute(0, 3, 1, 2).flip(1).float()
                x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=crop)
                if crop:
                    x = x[:, :, top:top + DST, left:left + DST]
                x = x * (1 / 255.0)
                if mode == "letterbox":
                    x = F.pad(x, (left, DST - new_w - left, top, DST - new_h - top), value=114 / 255.0)
                return x.half()

            ours()
            stream.synchronize()
            ref = torch_pipeline()
            max_diff = (out.float() - ref.float()).abs().max().item()

            t_ours = graph_median_ms(ours, torch)
            t_ours_eager = gpu_median_ms(ours, torch)
            t_copy = graph_median_ms(copy, torch)
            t_torch = graph_median_ms(torch_pipeline, torch, calls_per_graph=5, repeat=10)
            t_cv = None
            if cv2 is not None:
                host = src.cpu().numpy()

                def pil():
                    from PIL import Image

                    return [np.asarray(Image.fromarray(host[i][..., ::-1]).resize((new_w, new_h), Image.BILINEAR))
                            [top:top + DST, left:left + DST].astype(np.float32).transpose(2, 0, 1) * (1 / 255.0)
                            for i in range(batch)]

                def opencv():
                    res = []
                    for i in range(batch):
                        small = cv2.resize(host[i], (new_w, new_h), interpolation=cv2.INTER_LINEAR)
                        if mode == "letterbox":
                            small = cv2.copyMakeBorder(small, top, DST - new_h - top, left, DST - new_w - left,
                                                       cv2.BORDER_CONSTANT, value=(114, 114, 114))
                        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                        res.append((rgb.astype(np.float32) * (1 / 255.0)).transpose(2, 0, 1).astype(np.float16))
                    return res

                t_cv = wall_median_ms(pil if crop else opencv, warmup=1, repeat=args.opencv_repeat)
            rows.append(dict(mode=mode, batch=batch, ours=t_ours, ours_eager=t_ours_eager, copy=t_copy,
                             torch=t_torch, cv=t_cv, total=total, diff=max_diff, fcopy=t_fcopy))

    print()
    print("preprocess 1080p bgr8 -> 640x640 rgb fp16 nchw, center_crop: -> short side 256 antialiased -> 224x224 "
          "(times: median ms; GB/s = (in+out bytes)/time; cpu: OpenCV, PIL for center_crop)")
    hdr = f"{'mode':<12}{'batch':>6}{'ours ms':>10}{'eager ms':>10}{'GB/s':>9}{'copy GB/s':>11}{'%copy':>7}" \
          f"{'torch ms':>10}{'x torch':>9}{'cpu ms':>11}{'x cpu':>10}{'|d| torch':>11}{'%fp copy':>10}"
    print(hdr)
    for r in rows:
        gbs = r["total"] / r["ours"] / 1e6
        cgbs = r["total"] / r["copy"] / 1e6
        cv = f"{r['cv']:>11.2f}{r['cv'] / r['ours']:>10.0f}" if r["cv"] else f"{'-':>11}{'-':>10}"
        print(f"{r['mode']:<12}{r['batch']:>6}{r['ours']:>10.4f}{r['ours_eager']:>10.4f}{gbs:>9.0f}{cgbs:>11.0f}"
              f"{100 * gbs / cgbs:>6.0f}%{r['torch']:>10.4f}{r['torch'] / r['ours']:>9.1f}{cv}{r['diff']:>11.4f}"
              + (f"{100 * r['fcopy'] / r['ours']:>9.0f}%" if r["fcopy"] else f"{'-':>10}"))
    print("%fp copy: against a copy of only the bytes the crop's filters read and write (stricter)")
    print("goals: >=60% of copy at batch 16 (center_crop: >=70%); >=3x torch; >=50x opencv")


if __name__ == "__main__":
    main()
