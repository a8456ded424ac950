"""tensorrt-trtexec-path and tensorrt-tarball: do_install as BitBake runs it, the installed
tree against FILES (which package each file lands in)."""

import os

import pytest

import emulate

pytestmark = pytest.mark.yocto

TRTEXEC_PATH = "recipes-devtools/tensorrt/tensorrt-trtexec-path_1.0.bb"
TARBALL = "recipes-devtools/tensorrt/tensorrt-tarball_1.0.bb"


def parse(relpath, tmp_path, conf=None):
    try:
        return emulate.parse(relpath, tmp_path / "work", "scarthgap", conf)
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)


def test_trtexec_on_path(tmp_path):
    d = parse(TRTEXEC_PATH, tmp_path)
    emulate.run(d, "do_install")
    link = d.getVar("D") + "/usr/bin/trtexec"
    assert os.readlink(link) == "../src/tensorrt/bin/trtexec"
    assert emulate.package_split(d, emulate.installed_files(d)) == {d.getVar("PN"): ["/usr/bin/trtexec"]}


def fake_tensorrt(s, version="10.3.0"):
    """The layout of NVIDIA's TensorRT tar archive (after striplevel=1)."""
    for sub in ("lib/stubs", "include", "bin"):
        os.makedirs(os.path.join(s, sub))
    for lib in ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser"):
        real = "%s.so.%s" % (lib, version)
        open(os.path.join(s, "lib", real), "wb").write(b"\x7fELF")
        os.symlink(real, os.path.join(s, "lib", "%s.so.%s" % (lib, version.split(".")[0])))
        os.symlink(real, os.path.join(s, "lib", lib + ".so"))
        open(os.path.join(s, "lib", "stubs", lib + ".so"), "wb").write(b"stub")
    open(os.path.join(s, "lib", "libnvinfer_static.a"), "wb").write(b"!<arch>")
    for h in ("NvInfer.h", "NvInferPlugin.h", "NvOnnxParser.h"):
        open(os.path.join(s, "include", h), "w").write("/* %s */\n" % h)
    open(os.path.join(s, "bin", "trtexec"), "wb").write(b"\x7fELF")


def test_tarball_install_and_split(tmp_path):
    d = parse(TARBALL, tmp_path, {"TENSORRT_TARBALL": "file:///opt/TensorRT-10.3.0.26.l4t.aarch64-gnu.cuda-12.6.tar.gz",
                                  "TENSORRT_TARBALL_VERSION": "10.3.0.26"})
    assert d.getVar("PV") == "10.3.0.26"
    fake_tensorrt(d.getVar("S"))
    emulate.run(d, "do_install")
    files = emulate.installed_files(d)
    assert not any("/stubs/" in f for f in files), "link-time stubs must stay out of the image"
    split = emulate.package_split(d, files)
    assert None not in split, split.get(None)
    pn = d.getVar("PN")
    assert "/usr/lib/libnvinfer.so.10.3.0" in split[pn]
    assert "/usr/lib/libnvinfer_plugin.so.10" in split[pn + "-plugins"]
    assert "/usr/lib/libnvonnxparser.so.10.3.0" in split[pn + "-plugins"]
    assert "/usr/lib/libnvinfer.so" in split[pn + "-dev"] and "/usr/include/NvInfer.h" in split[pn + "-dev"]
    assert "/usr/include/NvOnnxParser.h" in split[pn + "-plugins-dev"]
    assert split[pn + "-trtexec"] == ["/usr/src/tensorrt/bin/trtexec"]
    assert split[pn + "-staticdev"] == ["/usr/lib/libnvinfer_static.a"]
    # the version symlinks survive as symlinks
    assert os.readlink(d.getVar("D") + "/usr/lib/libnvinfer.so.10") == "libnvinfer.so.10.3.0"


def test_tarball_skipped_without_configuration(tmp_path):
    d = parse(TARBALL, tmp_path)
    # BitBake lists it as skipped, with the reason (bitbake -p: "skipped"; bitbake RECIPE prints it)
    assert "set TENSORRT_TARBALL" in (d.getVar("__SKIPPED") or "")


# meta-tegra's DEPENDS of the three recipes the tarball stands in for (recipes-devtools/gie/
# tensorrt-core_*.bb, tensorrt-plugins-prebuilt_*.bb, tensorrt-trtexec-prebuilt_*.bb at the
# kas-pinned commits: scarthgap 37530d28, scarthgap-l4t-r35.x 0c507bfe, master d5d93dc6),
# less what the tarball itself provides; and the recipes that exist on that line.
META_TEGRA_DEPENDS = {
    "scarthgap": ("tegra-libraries-multimedia libcudla tegra-libraries-dla-compiler cuda-cudart cudnn libcublas",
                  ("libcudla_12.6.68-1.bb", "tegra-libraries-dla-compiler_36.5.0.bb")),
    "scarthgap-l4t-r35.x": ("tegra-libraries-multimedia libcudla cuda-cudart cudnn libcublas",
                            ("libcudla_11.4.298-1.bb",)),
    "master": ("tegra-libraries-multimedia cuda-cudart cudnn libcublas", ()),
}


@pytest.mark.parametrize("series", emulate.SERIES)
def test_tarball_depends_like_meta_tegra(tmp_path, series):
    want, recipes = META_TEGRA_DEPENDS[series]
    layer = tmp_path / "meta-tegra" / "recipes-devtools" / "gie"
    layer.mkdir(parents=True)
    for r in recipes:
        (layer / r).write_text("")
    try:
        d = emulate.parse(TARBALL, tmp_path / "work", series,
                          {"TENSORRT_TARBALL": "file:///opt/TensorRT.tar.gz", "TENSORRT_TARBALL_VERSION": "10.3.0.26",
                           "BBFILES": str(tmp_path / "meta-tegra" / "recipes-*" / "*" / "*.bb")})
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    depends = set(d.getVar("DEPENDS").split())
    assert set(want.split()) <= depends, set(want.split()) - depends
    # and nothing of a recipe that line does not have
    assert not ({"libcudla", "tegra-libraries-dla-compiler"} - set(want.split())) & depends
    pn = d.getVar("PN")
    assert {"cudnn", "libcublas"} <= set(d.getVar("RDEPENDS:%s-plugins" % pn).split())
    # libraries under NVIDIA's SLA, headers under Apache-2.0
    # (SPDX operators on master, whose oe.license warns that "&" is an old syntax)
    prop = "Proprietary" if series != "master" else "LicenseRef-Proprietary"
    assert d.getVar("LICENSE") == "Apache-2.0" + (" & " if series != "master" else " AND ") + prop
    assert d.getVar("LICENSE:" + pn) == prop and "Apache-2.0" in d.getVar("LICENSE:%s-dev" % pn)
    assert d.getVar("PACKAGE_ARCH") == d.getVar("TEGRA_PKGARCH") or d.getVar("PACKAGE_ARCH") == "${TEGRA_PKGARCH}"
