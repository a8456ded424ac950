"""NMS benchmark against torchvision.ops.nms at 1k, 10k and 50k random boxes (IoU 0.5).
Both timed per call on the host clock, each returning kept indices on the GPU with
their count known on the host (torchvision synchronises inside; ours reads the count).
Also: our device time alone (CUDA events, no readback). Goal: at most half
torchvision's time."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import gpu_median_ms, wall_median_ms  # noqa: E402


def main():
    import torch
    import torchvision

    from tegra_ai.cuda.driver import copy_dtoh
    from tegra_ai.kernels import Nms

    print(f"device: {torch.cuda.get_device_name(0)}; torchvision {torchvision.__version__}")
    nms = Nms()
    rows = []
    rng = np.random.default_rng(0)
    for n in (1000, 10000, 50000):
        xy = rng.uniform(0, 1000, (n, 2)).astype(np.float32)
        wh = rng.uniform(8, 128, (n, 2)).astype(np.float32)
        boxes = torch.from_numpy(np.concatenate([xy, xy + wh], 1)).cuda()
        scores = torch.from_numpy(rng.random(n).astype(np.float32)).cuda()
        keep = torch.empty(n, dtype=torch.int32, device="cuda")
        count = torch.zeros(1, dtype=torch.int32, device="cuda")
        host_count = np.zeros(1, np.int32)

        def ours_device():
            nms.run_device(boxes.data_ptr(), scores.data_ptr(), n, 0.5, keep.data_ptr(), count.data_ptr(),
                           stream=torch.cuda.current_stream().cuda_stream)

        def ours():
            ours_device()
            copy_dtoh(host_count, count.data_ptr(), torch.cuda.current_stream().cuda_stream)
            return keep[: int(host_count[0])]

        def tv():
            return torchvision.ops.nms(boxes, scores, 0.5)

        got, want = ours().long(), tv()
        equal = torch.equal(got, want)
        t_ours = wall_median_ms(ours, warmup=5, repeat=30)
        t_tv = wall_median_ms(tv, warmup=5, repeat=30)
        t_dev = gpu_median_ms(ours_device, torch, warmup=5, repeat=30)
        rows.append((n, len(want), equal, t_ours, t_dev, t_tv))
    print()
    print("nms, IoU 0.5, random boxes (median ms per call)")
    print(f"{'boxes':>7}{'kept':>7}{'equal':>7}{'ours ms':>10}{'ours dev ms':>13}{'torchvision ms':>16}{'ours/tv':>9}")
    for n, kept, equal, t_ours, t_dev, t_tv in rows:
        print(f"{n:>7}{kept:>7}{str(equal):>7}{t_ours:>10.3f}{t_dev:>13.3f}{t_tv:>16.3f}{t_ours / t_tv:>9.2f}")
    print("goal: ours/tv <= 0.5")


if __name__ == "__main__":
    main()
