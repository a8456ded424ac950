"""tegra-ai-kernels (and tegra-ai-plugin where TensorRT's headers are here): configure,
compile and install as `inherit cmake cuda` runs them with meta-tegra's cuda class.

The class gives nvcc its host compiler by *name* only (CUDAHOSTCXX) and every flag,
the target sysroot included, as -Xcompiler words in CUDAFLAGS (CMake's
CMAKE_CUDA_FLAGS). meta-tegra's gcc-for-nvcc-cross is configured
--with-sysroot=/not/exist. Here the host's g++ plays it: a wrapper that puts
--sysroot=/not/exist first, and CUDAFLAGS carries -Xcompiler=--sysroot=/ as the real
class carries the recipe sysroot. An nvcc call that drops CUDAFLAGS then fails as
the real build does ("features.h: No such file or directory").
"""

import os
import shutil
import subprocess
import sys

import pytest

import emulate

# Not marked "nvcc": tests/conftest.py skips that marker when nvcc is not on PATH, and CI has
# nvcc from the nvidia-cuda-nvcc wheel (.ci/pip-packages.txt), found by find_nvcc() below.
pytestmark = [pytest.mark.yocto]

KERNELS = "recipes-ai/tegra-ai-kernels/tegra-ai-kernels_0.1.0.bb"
PLUGIN = "recipes-ai/tegra-ai-plugin/tegra-ai-plugin_0.1.0.bb"


def find_nvcc():
    """nvcc on PATH, in CUDA_HOME or /usr/local/cuda, or from PyPI's nvidia-cuda-nvcc wheel (what CI installs)."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    for entry in sys.path:
        for sub in ("nvidia/cu13/bin/nvcc", "nvidia/cuda_nvcc/bin/nvcc"):
            path = os.path.join(entry, sub)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return None


def nvcc_or_skip():
    nvcc = find_nvcc()
    if not nvcc:
        pytest.skip("nvcc not found: install the CUDA toolkit (or set CUDA_HOME), or pip install nvidia-cuda-nvcc, "
                    "to emulate the cuda class")
    for tool in ("cmake", "g++", "make"):
        if not shutil.which(tool):
            pytest.skip("%s not found (Debian packages cmake, g++, make)" % tool)
    return nvcc


def supported_arch(nvcc, arch):
    out = subprocess.run([nvcc, "--list-gpu-arch"], stdout=subprocess.PIPE, universal_newlines=True).stdout
    return "compute_%s" % arch in out.split()


def cuda_env(tmp_path, series, nvcc):
    """CXX_FOR_CUDA and CUDA_NVCC_FLAGS as meta-tegra sets them (oe-facts.json), on this host."""
    facts = emulate.FACTS[series]["cuda"]
    bindir = tmp_path / "cross-bin"
    bindir.mkdir()
    name = facts["host_compiler"]  # e.g. aarch64-oe-linux-g++-13.2.0
    wrapper = bindir / name
    wrapper.write_text("#!/bin/sh\n# gcc-for-nvcc-cross: configured --with-sysroot=/not/exist\n"
                       "exec g++ --sysroot=/not/exist \"$@\"\n")
    wrapper.chmod(0o755)
    nvcc_dir = os.path.dirname(nvcc)
    conf = {
        # the target's -m flags mean nothing to this host's g++; the sysroot flag is what matters
        "CXX_FOR_CUDA": "%s --sysroot=/" % name,
        "CUDA_XCOMPILER_PREFIX": facts["xcompiler_prefix"],
        "CUDA_NVCC_FLAGS": facts["nvcc_flags"].replace("${TEGRA_CUDA_ARCHITECTURE}",
                                                       emulate.FACTS[series]["machine"]["TEGRA_CUDA_ARCHITECTURE"]),
    }
    env = {"PATH": os.pathsep.join([str(bindir), nvcc_dir, os.environ.get("PATH", "")])}
    return conf, env


@pytest.mark.parametrize("series", emulate.SERIES)
def test_kernels_build_with_the_cuda_class_environment(tmp_path, series):
    nvcc = nvcc_or_skip()
    arch = emulate.FACTS[series]["machine"]["TEGRA_CUDA_ARCHITECTURE"]
    if not supported_arch(nvcc, arch):
        pytest.skip("this nvcc cannot target sm_%s (meta-tegra's %s builds with its own CUDA)" % (arch, series))
    conf, env = cuda_env(tmp_path, series, nvcc)
    try:
        d = emulate.parse(KERNELS, tmp_path / "work", series, conf)
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    assert d.getVar("CUDAHOSTCXX") == emulate.FACTS[series]["cuda"]["host_compiler"]
    assert emulate.FACTS[series]["cuda"]["xcompiler_prefix"] + "--sysroot=/" in d.getVar("CUDAFLAGS")
    emulate.unpack(d)
    for task in ("do_configure", "do_compile", "do_install"):
        emulate.run(d, task, env=env)
    files = emulate.installed_files(d)
    assert files == ["/usr/share/tegra-ai/kernels/%s.sm_%s.cubin" % (m, arch) for m in ("nms", "preprocess")]
    split = emulate.package_split(d, files)
    assert list(split) == [d.getVar("PN")]


def test_the_emulated_cross_compiler_needs_cudaflags(tmp_path):
    """The wrapper really has no usable sysroot of its own: this is what nvcc hits without CUDAFLAGS."""
    nvcc = nvcc_or_skip()
    _conf, env = cuda_env(tmp_path, "scarthgap", nvcc)
    src = tmp_path / "t.cpp"
    src.write_text("#include <stdio.h>\nint main(void) { return 0; }\n")
    name = emulate.FACTS["scarthgap"]["cuda"]["host_compiler"]
    bad = subprocess.run([name, "-c", str(src), "-o", str(tmp_path / "t.o")], env=dict(os.environ, **env),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert bad.returncode != 0 and "No such file" in bad.stdout
    good = subprocess.run([name, "--sysroot=/", "-c", str(src), "-o", str(tmp_path / "t.o")],
                          env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert good.returncode == 0, good.stdout


def tensorrt_include_or_skip():
    for path in filter(None, [os.environ.get("TENSORRT_INCLUDE_DIR"), "/usr/include/aarch64-linux-gnu",
                              "/usr/include/x86_64-linux-gnu", "/usr/include", "/usr/local/tensorrt/include"]):
        if os.path.exists(os.path.join(path, "NvInfer.h")):
            return path
    pytest.skip("TensorRT's headers (NvInfer.h) are not here: set TENSORRT_INCLUDE_DIR to emulate tegra-ai-plugin")


def test_plugin_builds_with_the_cuda_class_environment(tmp_path):
    nvcc = nvcc_or_skip()
    include = tensorrt_include_or_skip()
    conf, env = cuda_env(tmp_path, "scarthgap", nvcc)
    conf["EXTRA_OECMAKE"] = "-DTENSORRT_INCLUDE_DIR=%s" % include
    d = emulate.parse(PLUGIN, tmp_path / "work", "scarthgap", conf)
    emulate.unpack(d)
    for task in ("do_configure", "do_compile", "do_install"):
        emulate.run(d, task, env=env)
    files = emulate.installed_files(d)
    assert "/usr/lib/tegra-ai/libtegra_ai_plugin.so" in files
    assert None not in emulate.package_split(d, files)
