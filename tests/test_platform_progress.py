from __future__ import annotations

import io

from tegra_ai import platform
from tegra_ai.util.progress import Progress, format_elapsed


def _fake_jetson(tmp_path, compatible, model="NVIDIA Jetson AGX Orin Developer Kit"):
    dt = tmp_path / "dt"
    dt.mkdir()
    (dt / "compatible").write_bytes(compatible.encode() + b"\x00nvidia,p3737-0000\x00")
    (dt / "model").write_bytes(model.encode() + b"\x00")
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    return str(dt), str(rel)


def test_jetson_facts_without_cuda(tmp_path):
    dt, rel = _fake_jetson(tmp_path, "nvidia,tegra234")
    facts = platform.detect(dt, rel, use_cuda=False)
    assert facts.compute_capability == "8.7" and facts.device_name == "Orin"
    assert facts.module == "NVIDIA Jetson AGX Orin Developer Kit" and facts.l4t_release == "36.4.3"


def test_thor_and_xavier(tmp_path):
    dt, rel = _fake_jetson(tmp_path, "nvidia,tegra264", "NVIDIA Jetson AGX Thor")
    assert platform.detect(dt, rel, use_cuda=False).compute_capability == "11.0"
    assert platform.TEGRA_SOCS["nvidia,tegra194"][0] == "7.2"


def test_no_gpu(tmp_path):
    assert platform.detect(str(tmp_path / "none"), str(tmp_path / "none"), use_cuda=False) is None


def test_progress_logs_without_tty():
    out = io.StringIO()
    with Progress("building x", stream=out, log_interval=0.1) as p:
        p.on_trt_phases({"Building": [3, 10, None]})
        import time

        time.sleep(1.3)
    text = out.getvalue()
    assert "building x:" in text and "Building 3/10" in text
    assert text.strip().splitlines()[-1].startswith("building x: done in")
    assert format_elapsed(3725) == "1:02:05"
