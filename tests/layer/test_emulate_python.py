"""tegra-ai-tools (tensorrt-model-optimizer until 0.1.0): the PEP 517 build as openembedded-core's
python_setuptools_build_meta class runs it (`pyproject-build --no-isolation`), with
only the native Python packages that class provides on each release line."""

import importlib.metadata
import os
import re
import shutil
import sys
import zipfile

import pytest

import emulate

pytestmark = pytest.mark.yocto

RECIPE = "recipes-devtools/tegra-ai-tools/tegra-ai-tools_0.1.0.bb"

# native recipe -> the distribution it installs into the native sysroot
NATIVE_DISTS = {
    "python3-setuptools-native": "setuptools",
    "python3-wheel-native": "wheel",
    "python3-build-native": "build",
    "python3-installer-native": "installer",
    "python3-pyproject-hooks-native": "pyproject_hooks",
    "python3-packaging-native": "packaging",
}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def build_requires():
    text = open(os.path.join(emulate.ROOT, "pyproject.toml")).read()
    try:
        import tomllib
        reqs = tomllib.loads(text)["build-system"]["requires"]
    except ImportError:  # Python < 3.11
        reqs = re.findall(r'"([^"]+)"', re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1))
    return [re.split(r"[<>=!~;\[ ]", r, 1)[0] for r in reqs]


def provided(series):
    return {_norm(NATIVE_DISTS[n]) for n in emulate.FACTS[series]["pep517"]["native_depends"] if n in NATIVE_DISTS}


@pytest.mark.parametrize("series", emulate.SERIES)
def test_build_requires_are_provided_by_the_class(series):
    """`python -m build --no-isolation` stops with "Unmet dependencies" for anything else."""
    missing = [r for r in build_requires() if _norm(r) not in provided(series)]
    assert not missing, ("pyproject.toml [build-system] requires %s, which python_setuptools_build_meta does not "
                         "provide on %s (it provides %s)" % (missing, series, sorted(provided(series))))


INSTALLER_SHIM = """
import argparse, sys, sysconfig
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

p = argparse.ArgumentParser()
p.add_argument("wheel")
p.add_argument("--destdir")
p.add_argument("--prefix", default="/usr")
p.add_argument("--interpreter", default=sys.executable)
p.add_argument("--compile-bytecode", type=int, default=0)
a = p.parse_args()
paths = sysconfig.get_paths(scheme="posix_prefix", vars={"base": a.prefix, "platbase": a.prefix})
dest = SchemeDictionaryDestination({"purelib": paths["purelib"], "platlib": paths["platlib"], "headers": paths["include"],
                                    "scripts": paths["scripts"], "data": paths["data"]},
                                   interpreter=a.interpreter, script_kind="posix", destdir=a.destdir,
                                   bytecode_optimization_levels=[a.compile_bytecode] if a.compile_bytecode else [])
with WheelFile.open(a.wheel) as source:
    install(source, dest, {"INSTALLER": b"oe-emulation"})
"""


def _native_sysroot(tmp_path, dists):
    """A 'recipe-sysroot-native' with only ``dists`` importable, and nativepython3/pyproject-build."""
    site = tmp_path / "sysroot-native" / "site"
    bindir = tmp_path / "sysroot-native" / "bin"
    site.mkdir(parents=True)
    bindir.mkdir()
    for name in dists:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("%s is not installed here (pip install build installer 'setuptools>=70.1')" % name)
        for f in dist.files or ():
            src = dist.locate_file(f)
            if not os.path.isfile(src) or "__pycache__" in str(f) or str(f).startswith(".."):
                continue
            dest = site / str(f)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(src), str(dest))
    # openembedded-core patches installer with --interpreter (the shebang of scripts);
    # PyPI's installer has the same API without that option: the shim adds it.
    (site / "oe_installer.py").write_text(INSTALLER_SHIM)
    py = bindir / "nativepython3"
    py.write_text("#!/bin/sh\nif [ \"$1 $2\" = \"-m installer\" ]; then shift 2; set -- -m oe_installer \"$@\"; fi\n"
                  "PYTHONPATH=%s exec %s -S \"$@\"\n" % (site, sys.executable))
    build = bindir / "pyproject-build"
    build.write_text("#!/bin/sh\nexec nativepython3 -m build \"$@\"\n")
    for f in (py, build):
        f.chmod(0o755)
    return str(bindir)


def _checkout_with_bytecode(tmp_path):
    """The files the recipe takes from the repository, plus the __pycache__ a test run leaves there."""
    top = tmp_path / "checkout"
    for rel in ("pyproject.toml", "README.md", "LICENSE"):
        top.mkdir(exist_ok=True)
        shutil.copy2(os.path.join(emulate.ROOT, rel), str(top / rel))
    shutil.copytree(os.path.join(emulate.ROOT, "scripts", "tegra_ai"), str(top / "scripts" / "tegra_ai"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for sub in ("", "plugin", "cli"):
        cache = top / "scripts" / "tegra_ai" / sub / "__pycache__"
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "stale.cpython-311.pyc").write_bytes(b"\x00build host bytecode")
    return str(top)


@pytest.mark.parametrize("series", ["master", "scarthgap"])
def test_pep517_build_install_and_package_split(tmp_path, series):
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools is not installed")
    if series == "master" and tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip("setuptools %s cannot build a wheel without the wheel package (master's has 70.1+: "
                    "pip install 'setuptools>=70.1')" % setuptools.__version__)
    dists = sorted({NATIVE_DISTS[n] for n in emulate.FACTS[series]["pep517"]["native_depends"]
                    if n in NATIVE_DISTS})
    if "wheel" in dists:
        try:
            importlib.metadata.distribution("wheel")
        except importlib.metadata.PackageNotFoundError:
            dists.remove("wheel")  # setuptools 70.1+ builds wheels itself
    bindir = _native_sysroot(tmp_path, dists)
    checkout = _checkout_with_bytecode(tmp_path)
    try:
        d = emulate.parse(RECIPE, tmp_path / "work", series, {"TEGRA_AI_LAYERDIR": checkout})
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    env = {"PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    emulate.unpack(d)
    for task in ("do_configure", "do_compile", "do_install"):
        emulate.run(d, task, env=env)

    wheels = [f for f in os.listdir(d.getVar("PEP517_WHEEL_PATH")) if f.endswith(".whl")]
    assert len(wheels) == 1
    names = zipfile.ZipFile(os.path.join(d.getVar("PEP517_WHEEL_PATH"), wheels[0])).namelist()
    assert "tegra_ai/models/digits.onnx" in names and "tegra_ai/kernels/preprocess.cu" in names
    bytecode = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not bytecode, "build-host bytecode in the wheel: %s" % bytecode[:5]

    files = emulate.installed_files(d)
    split = emulate.package_split(d, files)
    assert None not in split, "installed but in no package: %s" % split.get(None)[:10]
    pn = d.getVar("PN")
    assert "/usr/bin/tensorrt-optimize" in split[pn]
    assert split[pn + "-benchmark"] == ["/usr/bin/model-benchmark"]
    assert split[pn + "-calibration"] == ["/usr/bin/calibration-dataset"]
    assert any(f.endswith("/tegra_ai/cache/ensure.py") for f in split[pn])
    # the target's python3, not the build host's (installer may wrap it in a /bin/sh trampoline)
    head = open(d.getVar("D") + "/usr/bin/tensorrt-optimize").read(300)
    assert "/usr/bin/env python3" in head and sys.executable not in head, head


def test_unpack_drops_bytecode_of_the_checkout(tmp_path):
    checkout = _checkout_with_bytecode(tmp_path)
    try:
        d = emulate.parse(RECIPE, tmp_path / "work", "scarthgap", {"TEGRA_AI_LAYERDIR": checkout})
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    emulate.unpack(d)
    left = [os.path.join(p, f) for p, _dirs, fs in os.walk(d.getVar("S")) for f in fs
            if "__pycache__" in p or f.endswith(".pyc")]
    assert not left
    assert os.path.exists(os.path.join(d.getVar("S"), "LICENSE"))


def test_documented_setting_ignores_bytecode_in_task_checksums(bb_layer_data, tmp_path):
    """Running the tests leaves __pycache__ in scripts/tegra_ai; with the setting docs/yocto.md
    gives (and the kas files use) BitBake does not hash it. The layer itself leaves BitBake's
    list alone (it would change hashing for every layer).

    BitBake's own checksum of a file:// folder (what goes into do_fetch's signature), with
    that exclusion list, before and after a __pycache__ appears.
    """
    import re
    import bb.fetch2
    assert bb_layer_data.getVar("BB_SIGNATURE_LOCAL_DIRS_EXCLUDE") is None
    kas = open(os.path.join(emulate.ROOT, "kas", "include", "common.yml")).read()
    doc = open(os.path.join(emulate.ROOT, "docs", "yocto.md")).read()
    line = re.search(r'BB_SIGNATURE_LOCAL_DIRS_EXCLUDE = "([^"]*)"', kas)
    assert line and line.group(0) in doc
    exclude = line.group(1).split()
    assert {"__pycache__", ".git"} <= set(exclude)
    src = tmp_path / "tegra_ai"
    src.mkdir()
    (src / "x.py").write_text("x = 1\n")

    def checksums():
        return sorted(c for _path, c in bb.fetch2.get_file_checksums("%s:True" % src, "tegra-ai-tools",
                                                                     exclude))
    before = checksums()
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert checksums() == before
    (src / "y.py").write_text("y = 2\n")  # a real change still counts
    assert checksums() != before


def test_variants_for_the_build_host_and_the_sdk(tmp_path):
    """-native (bundling at image-build time) and nativesdk- (an SDK's tensorrt-optimize) need no
    TensorRT; the target package does, and is limited to Jetson machines."""
    try:
        target = emulate.parse(RECIPE, tmp_path / "t", "scarthgap")
        sdk = emulate.parse(RECIPE, tmp_path / "s", "scarthgap", variant="nativesdk")
        native = emulate.parse(RECIPE, tmp_path / "n", "scarthgap", variant="native")
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    pn = target.getVar("PN")
    assert "python3-tensorrt" in target.getVar("RDEPENDS:" + pn).split()
    assert target.getVar("COMPATIBLE_MACHINE") == "(tegra)"
    for d in (sdk, native):
        rdeps = (d.getVar("RDEPENDS:" + d.getVar("PN")) or "").split()
        assert not [r for r in rdeps if "tensorrt" in r], rdeps
        assert not d.getVar("COMPATIBLE_MACHINE")
    assert "nativesdk-python3-numpy" in sdk.getVar("RDEPENDS:" + sdk.getVar("PN")).split()


def test_renamed_from_tensorrt_model_optimizer(tmp_path):
    """The tools recipe was tensorrt-model-optimizer (NVIDIA's product name) until 0.1.0: every
    old package name is provided, replaced and conflicted by its new package, so an image that
    had the old packages upgrades to these (opkg/dpkg/rpm) instead of installing both."""
    try:
        d = emulate.parse(RECIPE, tmp_path / "t", "scarthgap")
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    assert d.getVar("PN") == "tegra-ai-tools"
    for new, old in (("tegra-ai-tools", "tensorrt-model-optimizer"),
                     ("tegra-ai-tools-benchmark", "tensorrt-model-optimizer-benchmark"),
                     ("tegra-ai-tools-calibration", "tensorrt-model-optimizer-calibration")):
        assert new in d.getVar("PACKAGES").split()
        for var in ("RPROVIDES", "RREPLACES", "RCONFLICTS"):
            assert old in (d.getVar("%s:%s" % (var, new)) or "").split(), (var, new)
