"""What the engine cache keys on besides the model: the GPU's compute capability and
name, the Jetson module (device-tree model) and the L4T release.

Works without cuda-python on a Jetson (the SoC's device-tree ``compatible`` gives the
compute capability); cuda-python, when present, is asked first."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

# Jetson SoCs by device-tree compatible string.
TEGRA_SOCS = {
    "nvidia,tegra194": ("7.2", "Xavier"),
    "nvidia,tegra234": ("8.7", "Orin"),
    "nvidia,tegra264": ("11.0", "Thor"),
}

DT_ROOT = "/proc/device-tree"
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"


@dataclass(frozen=True)
class DeviceFacts:
    compute_capability: str
    device_name: str
    module: str | None = None
    l4t_release: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def l4t_release(path: str = NV_TEGRA_RELEASE) -> str | None:
    """'35.4.1' from '# R35 (release), REVISION: 4.1, GCID: ...'."""
    text = _read(path)
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetson_module(dt_root: str = DT_ROOT) -> str | None:
    text = _read(os.path.join(dt_root, "model"))
    return text.strip("\x00 \n") if text else None


def tegra_soc(dt_root: str = DT_ROOT):
    """(compute capability, SoC name) from the device tree, or None off a Jetson."""
    text = _read(os.path.join(dt_root, "compatible"))
    if not text:
        return None
    for entry in text.split("\x00"):
        if entry in TEGRA_SOCS:
            return TEGRA_SOCS[entry]
    return None


def _cuda_device():
    """{"name", "compute_capability"} of GPU 0 through cuda-python, or None."""
    try:
        from tegra_ai.cuda import compat as cuda_compat, driver
    except ImportError:
        return None
    try:
        if not cuda_compat.available():
            return None
        major, minor = driver.compute_capability(0)
        drv = cuda_compat.driver()
        device = driver.ensure_context(0)
        name = driver.check(drv.cuDeviceGetName(256, device), "cuDeviceGetName")
        name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)
        return {"name": name, "compute_capability": f"{major}.{minor}"}
    except Exception:  # no driver, no GPU: fall back to the device tree
        return None


def detect(dt_root: str = DT_ROOT, release_file: str = NV_TEGRA_RELEASE, use_cuda: bool = True) -> DeviceFacts | None:
    """Facts of this machine's GPU, or None when there is no GPU to build for."""
    soc = tegra_soc(dt_root)
    props = _cuda_device() if use_cuda else None
    if props is not None:
        cc, name = props["compute_capability"], props["name"]
    elif soc is not None:
        cc, name = soc
    else:
        return None
    return DeviceFacts(compute_capability=cc, device_name=name, module=jetson_module(dt_root) if soc else None,
                       l4t_release=l4t_release(release_file) if soc else None)
