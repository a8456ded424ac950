# nooelint: oelint.var.mandatoryvar.SRC_URI - nothing to fetch: the recipe installs one symlink
SUMMARY = "Put trtexec on PATH"
DESCRIPTION = "meta-tegra's tensorrt-trtexec (and tensorrt-tarball) install trtexec as \
${prefix}/src/tensorrt/bin/trtexec, like NVIDIA's packages; this adds ${bindir}/trtexec."
HOMEPAGE = "https://developer.nvidia.com/tensorrt"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "${TEGRA_AI_LICENSE_CHKSUM}"

inherit allarch
# One symlink: no compiler or C library.
INHIBIT_DEFAULT_DEPS = "1"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${bindir}
    ln -s ../src/tensorrt/bin/trtexec ${D}${bindir}/trtexec
}

FILES:${PN} = "${bindir}/trtexec"
RDEPENDS:${PN} = "tensorrt-trtexec"

# tensorrt-trtexec comes from meta-tegra: Jetson machines only.
COMPATIBLE_MACHINE = "(tegra)"
