"""Every CUDA source of the package compiles with nvcc for Orin (sm_87) and Thor
(sm_110), and for Xavier (sm_72) where the installed nvcc still supports it (CUDA 13
dropped it; JetPack 5 builds with CUDA 11.4)."""

import shutil
import subprocess
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "scripts" / "tegra_ai"
SOURCES = sorted(PKG.glob("kernels/*.cu")) + sorted(PKG.glob("plugin/*.cu"))

pytestmark = pytest.mark.nvcc


def supported(arch):
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return False
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    return f"compute_{arch}" in out.split()


def test_sources_found():
    names = {p.name for p in SOURCES}
    assert {"preprocess.cu", "nms.cu"} <= names


@pytest.mark.parametrize("arch", ["87", "110", "72"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_compiles(tmp_path, source, arch):
    if not supported(arch):
        pytest.skip(f"this nvcc cannot target sm_{arch}")
    cmd = ["nvcc", f"-arch=sm_{arch}", "-Werror", "all-warnings", "-Xptxas", "-warn-spills",
           "-o", str(tmp_path / "out.o")]
    cmd += ["-cubin"] if source.parent.name == "kernels" else ["-c", "-I", str(PKG / "plugin")]
    r = subprocess.run(cmd + [str(source)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
