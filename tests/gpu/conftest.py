"""GPU tests: need an NVIDIA GPU and cuda-python; they skip with the reason otherwise.
References: the NumPy reference (always), OpenCV and torchvision when installed."""

import functools

import pytest


@functools.lru_cache(maxsize=None)
def gpu_unavailable_reason():
    try:
        from tegra_ai.cuda import compat

        compat.driver()
    except Exception as exc:  # noqa: BLE001
        return f"cuda-python not usable: {exc}"
    try:
        from tegra_ai.cuda.driver import compute_capability

        compute_capability(0)
    except Exception as exc:  # noqa: BLE001
        return f"no usable CUDA GPU: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            reason = reason or gpu_unavailable_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng(request):
    import numpy as np

    # Fresh data per test and per run, but reproducible from the printed seed.
    seed = int.from_bytes(__import__("os").urandom(4), "little")
    print(f"seed={seed}")
    return np.random.default_rng(seed)
