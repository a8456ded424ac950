"""What the engine cache keys on besides the model: the GPU's compute capability and
number of SMs, the CUDA driver version, the Jetson module (its part number from the
device tree's ``compatible``, never the carrier board's ``model`` string) and the L4T
release.

Works without cuda-python on a Jetson (the SoC's device-tree ``compatible`` gives the
compute capability, the CUDA driver library is asked through ctypes for the SM count);
cuda-python, when present, is asked first."""

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

# NVIDIA's Jetson *module* part numbers (P-numbers of the system-on-module, as the
# device-tree compatible names them: "nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005";
# meta-tegra's KERNEL_DEVICETREE names carry the same numbers, e.g.
# tegra234-p3768-0000+p3767-0005-nv.dtb). Carrier boards (p3768, p3737, p3509, p2822,
# e3900, vendors' own) are not modules and never enter the key.
JETSON_MODULES = {
    "p2888": "Jetson AGX Xavier",
    "p3668": "Jetson Xavier NX",
    "p3701": "Jetson AGX Orin",
    "p3767": "Jetson Orin NX / Orin Nano",
    "p3834": "Jetson AGX Thor",
}
_PART = re.compile(r"^nvidia,(p\d{4})-(\d{4})$")

DT_ROOT = "/proc/device-tree"
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"


@dataclass(frozen=True)
class DeviceFacts:
    compute_capability: str
    device_name: str
    module: str | None = None          # module part number ("p3767-0005"), None where the DT names none
    l4t_release: str | None = None
    sm_count: int | None = None        # streaming multiprocessors (tells SKUs of one module family apart)
    cuda_version: str | None = None    # the CUDA driver's version ("12.6")
    board: str | None = None           # /proc/device-tree/model: shown, never keyed (the carrier's name)

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
    """The device tree's ``model`` string: the carrier board's name as its vendor wrote it
    ("NVIDIA Jetson AGX Orin Developer Kit", or a product's own). For display only."""
    text = _read(os.path.join(dt_root, "model"))
    return text.strip("\x00 \n") if text else None


def module_id(dt_root: str = DT_ROOT) -> str | None:
    """The Jetson module's part number from the device tree ``compatible`` ("p3767-0005"),
    or None where it names no NVIDIA module (a product DT that lists only its own board).

    ``compatible`` lists the board ("nvidia,p3768-0000+p3767-0005": carrier+module), the
    module ("nvidia,p3767-0005") and the SoC; only entries that are NVIDIA module part
    numbers count, so two carriers with the same module give the same answer."""
    text = _read(os.path.join(dt_root, "compatible"))
    if not text:
        return None
    for entry in text.split("\x00"):
        vendor, _, parts = entry.partition(",")
        for part in parts.split("+") if vendor == "nvidia" else ():
            m = _PART.match("nvidia," + part)
            if m and m.group(1) in JETSON_MODULES:
                return f"{m.group(1)}-{m.group(2)}"
    return None


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
    """{"name", "compute_capability", "sm_count", "cuda_version"} of GPU 0 through
    cuda-python, else through the CUDA driver library itself (ctypes), or None."""
    try:
        from tegra_ai.cuda import compat as cuda_compat, driver
    except ImportError:
        cuda_compat = None
    if cuda_compat is not None:
        try:
            if cuda_compat.available():
                major, minor = driver.compute_capability(0)
                drv = cuda_compat.driver()
                device = driver.ensure_context(0)
                name = driver.check(drv.cuDeviceGetName(256, device), "cuDeviceGetName")
                name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)
                sms = driver.device_attribute("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT", 0)
                version = int(driver.check(drv.cuDriverGetVersion(), "cuDriverGetVersion"))
                return {"name": name, "compute_capability": f"{major}.{minor}", "sm_count": sms,
                        "cuda_version": f"{version // 1000}.{version % 1000 // 10}"}
        except Exception:  # no driver, no GPU: try the driver library, then the device tree
            pass
    return _libcuda_device()


def _libcuda_device(library: str = "libcuda.so.1"):
    """The same facts from the CUDA driver API through ctypes (no cuda-python needed; the
    r35 line has none): cuInit, cuDeviceGet, cuDeviceGetAttribute, cuDriverGetVersion."""
    import ctypes

    try:
        cuda = ctypes.CDLL(library)
        dev, value = ctypes.c_int(), ctypes.c_int()
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), 0) != 0:
            return None

        def attribute(number):   # CUdevice_attribute values of cuda.h
            if cuda.cuDeviceGetAttribute(ctypes.byref(value), number, dev) != 0:
                raise OSError(number)
            return value.value
        major, minor, sms = attribute(75), attribute(76), attribute(16)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        cuda.cuDriverGetVersion(ctypes.byref(value))
        return {"name": name.value.decode(errors="replace"), "compute_capability": f"{major}.{minor}",
                "sm_count": sms, "cuda_version": f"{value.value // 1000}.{value.value % 1000 // 10}"}
    except (OSError, AttributeError):
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
    props = props or {}
    return DeviceFacts(compute_capability=cc, device_name=name, module=module_id(dt_root) if soc else None,
                       l4t_release=l4t_release(release_file) if soc else None, sm_count=props.get("sm_count"),
                       cuda_version=props.get("cuda_version"), board=jetson_module(dt_root) if soc else None)
