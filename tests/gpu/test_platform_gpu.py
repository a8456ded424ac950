"""The engine cache keys on the GPU's compute capability and name: read through
cuda-python's driver API off a Jetson (and first on a Jetson too)."""

import pytest

pytestmark = pytest.mark.gpu


def test_detect_reads_the_gpu_through_cuda(tmp_path):
    from tegra_ai import platform
    from tegra_ai.cuda.driver import compute_capability

    facts = platform.detect(str(tmp_path / "no-device-tree"), str(tmp_path / "no-release"))
    major, minor = compute_capability(0)
    assert facts is not None and facts.compute_capability == f"{major}.{minor}"
    assert facts.device_name and "\x00" not in facts.device_name and facts.device_name not in ("Orin", "Xavier", "Thor")
    assert facts.module is None and facts.l4t_release is None  # not a Jetson
    print(facts)
