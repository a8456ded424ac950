"""Fixtures for the layer's tests: the repository root, BitBake's ``bb`` (from the
bitbake-setup wheel) set up to parse our conf/layer.conf, classes and test recipes."""

import os
import shutil
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs")
LIB = os.path.join(ROOT, "lib")

if LIB not in sys.path:
    sys.path.insert(0, LIB)


def metadata_files():
    """Every .bb, .bbappend and .bbclass of the layer (not of a virtualenv or build dir)."""
    skip = {".git", ".venv", "build", "tmp", "node_modules", "__pycache__"}
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [n for n in dirnames if n not in skip and not n.startswith(".")]
        for f in filenames:
            if f.endswith((".bb", ".bbappend", ".bbclass")):
                found.append(os.path.join(dirpath, f))
    return sorted(found)


@pytest.fixture(scope="session")
def root():
    return ROOT


def _import_bb():
    if STUBS not in sys.path:
        sys.path.insert(0, STUBS)
    try:
        import bb  # noqa: F401
        import bb.data
        import bb.parse
        import bb.siggen
        import bb.utils
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    return bb


@pytest.fixture(scope="session")
def bb_layer_data():
    """A BitBake data store after parsing conf/layer.conf (as the cooker does: LAYERDIR set, addpylib run)."""
    bb = _import_bb()
    d = bb.data.init()
    d.setVar("__bbclasstype", "recipe")
    d.setVar("BBPATH", ROOT)
    d.setVar("LAYERDIR", ROOT)
    bb.parse.handle(os.path.join(ROOT, "conf", "layer.conf"), d, True, baseconfig=True)
    d.delVar("LAYERDIR")
    bb.parse.siggen = bb.siggen.init(d)
    # What openembedded-core and meta-tegra would set for an Orin with TensorRT 10.3.
    d.setVar("WORKDIR", "/build/work/model")
    d.setVar("B", "/build/work/model/build")
    d.setVar("D", "/build/work/model/image")
    d.setVar("PN", "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[0] or 'defaultpkgname'}")
    d.setVar("datadir", "/usr/share")
    d.setVar("localstatedir", "/var")
    d.setVar("BUILD_ARCH", "x86_64")
    d.setVar("MACHINE_ARCH", "jetson_orin_nano_devkit")
    d.setVar("TEGRA_PKGARCH", "armv8a_tegra")
    d.setVar("TEGRA_CUDA_ARCHITECTURE", "87")
    d.setVar("PREFERRED_VERSION_tensorrt-core", "10.3.0.30-1")
    return d


@pytest.fixture
def parse_recipe(bb_layer_data, tmp_path):
    """parse_recipe(text, name='model-test_1.0.bb') -> the recipe's data store (real bb.parse)."""
    import bb
    import bb.data
    import bb.parse

    def parse(text, name="model-test_1.0.bb"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        d = bb.data.createCopy(bb_layer_data)
        return bb.parse.handle(str(path), d)[""]

    return parse


def which_or_skip(tool, why):
    path = shutil.which(tool)
    if not path:
        venv_bin = os.path.join(os.path.dirname(sys.executable), tool)
        path = venv_bin if os.path.exists(venv_bin) else None
    if not path:
        pytest.skip("%s not found: %s" % (tool, why))
    return path
