SUMMARY = "NVIDIA TensorRT from a tarball you downloaded, for a version meta-tegra does not ship"
DESCRIPTION = "Packages NVIDIA's TensorRT tar archive for Jetson (L4T aarch64) under the \
package names of meta-tegra's TensorRT recipes (tensorrt-core, tensorrt-plugins, \
tensorrt-trtexec), so the rest of the image, python3-tensorrt included, uses it. \
NVIDIA's license does not allow redistributing the archive: download it yourself, \
accept the license, and point TENSORRT_TARBALL at it. Select it in local.conf with \
PREFERRED_PROVIDER_tensorrt-core = \"tensorrt-tarball\" (and the same for \
tensorrt-plugins and tensorrt-trtexec)."
HOMEPAGE = "https://developer.nvidia.com/tensorrt"
# The archive holds NVIDIA's libraries and trtexec under the TensorRT SLA ("Proprietary"
# on scarthgap, "LicenseRef-Proprietary" from the SPDX-syntax releases on; accepted
# through LICENSE_FLAGS below) and headers under the Apache-2.0 SPDX header that
# LIC_FILES_CHKSUM checks (meta-tegra's tensorrt-core labels only that: Apache-2.0).
LICENSE = "${@tegra_ai_layer.compat.license_all(d, 'Apache-2.0', tegra_ai_layer.compat.proprietary_license(d))}"
LICENSE:${PN} = "${@tegra_ai_layer.compat.proprietary_license(d)}"
LICENSE:${PN}-plugins = "${@tegra_ai_layer.compat.proprietary_license(d)}"
LICENSE:${PN}-trtexec = "${@tegra_ai_layer.compat.proprietary_license(d)}"
LICENSE:${PN}-staticdev = "${@tegra_ai_layer.compat.proprietary_license(d)}"
LICENSE:${PN}-dev = "${@tegra_ai_layer.compat.license_all(d, 'Apache-2.0', tegra_ai_layer.compat.proprietary_license(d))}"
LICENSE:${PN}-plugins-dev = "${@tegra_ai_layer.compat.license_all(d, 'Apache-2.0', tegra_ai_layer.compat.proprietary_license(d))}"
# The SPDX header of NvInfer.h (TensorRT 10.3); for another release bitbake
# prints the new checksum: set TENSORRT_TARBALL_LIC_FILES_CHKSUM to it after
# reading NVIDIA's license.
TENSORRT_TARBALL_LIC_FILES_CHKSUM ??= "file://include/NvInfer.h;endline=16;md5=cac95541e748626c31067a3f6573562f"
LIC_FILES_CHKSUM = "${TENSORRT_TARBALL_LIC_FILES_CHKSUM}"
# Accept NVIDIA's TensorRT license explicitly: LICENSE_FLAGS_ACCEPTED += "nvidia-tensorrt"
LICENSE_FLAGS = "nvidia-tensorrt"

# The archive, as a SRC_URI entry: file:///path/to/TensorRT-10.x.y.z.l4t.aarch64-gnu.cuda-12.x.tar.gz
# (or an https URL of your own mirror); its sha256 and the TensorRT version it holds.
TENSORRT_TARBALL ??= ""
TENSORRT_TARBALL_SHA256 ??= ""
TENSORRT_TARBALL_VERSION ??= ""

# The archive's top directory (TensorRT-<version>/) is stripped.
SRC_URI = "${TENSORRT_TARBALL};subdir=tensorrt;striplevel=1"
SRC_URI[sha256sum] = "${TENSORRT_TARBALL_SHA256}"
# The version is the tarball's, not this file name's.
PV = "${@d.getVar('TENSORRT_TARBALL_VERSION') or '0'}"
S = "${@tegra_ai_layer.compat.unpackdir(d)}/tensorrt"

inherit features_check

REQUIRED_DISTRO_FEATURES = "opengl"

PROVIDES = "tensorrt-core tensorrt-plugins tensorrt-trtexec"
# What meta-tegra's tensorrt-core, tensorrt-plugins-prebuilt and tensorrt-trtexec-prebuilt
# depend on together, on each line (libcudla and the DLA compiler libraries are
# separate recipes up to JetPack 6; on master tegra-libraries-multimedia has them).
DEPENDS += "cuda-cudart cudnn libcublas tegra-libraries-multimedia \
    ${@tegra_ai_layer.compat.recipe_available(d, 'libcudla')} \
    ${@tegra_ai_layer.compat.recipe_available(d, 'tegra-libraries-dla-compiler')}"

python __anonymous() {
    tarball = (d.getVar("TENSORRT_TARBALL") or "").strip()
    if not tarball:
        raise bb.parse.SkipRecipe("no TensorRT tarball configured: set TENSORRT_TARBALL (a file:// or https:// "
                                  "SRC_URI entry for NVIDIA's TensorRT tar archive for L4T), TENSORRT_TARBALL_SHA256 and "
                                  "TENSORRT_TARBALL_VERSION in local.conf, and PREFERRED_PROVIDER_tensorrt-core/"
                                  "-plugins/-trtexec = \"tensorrt-tarball\"; meta-tegra's own TensorRT is used otherwise")
    if not (d.getVar("TENSORRT_TARBALL_VERSION") or "").strip():
        raise bb.parse.SkipRecipe("TENSORRT_TARBALL is set but TENSORRT_TARBALL_VERSION is not (e.g. 10.3.0.26)")
    if not tarball.startswith("file://") and not (d.getVar("TENSORRT_TARBALL_SHA256") or "").strip():
        raise bb.parse.SkipRecipe("TENSORRT_TARBALL is downloaded (%s): set TENSORRT_TARBALL_SHA256" % tarball.split(";")[0])
}

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${libdir} ${D}${includedir} ${D}${prefix}/src/tensorrt/bin
    # Libraries with their version symlinks; stubs/ (link-time stubs) stays out.
    for f in ${S}/lib/lib*.so* ${S}/lib/lib*.a; do
        [ -e "$f" ] || continue
        if [ -L "$f" ]; then
            ln -s $(readlink "$f") ${D}${libdir}/$(basename "$f")
        else
            install -m 0644 "$f" ${D}${libdir}/
        fi
    done
    install -m 0644 ${S}/include/*.h ${D}${includedir}/
    # Where meta-tegra's tensorrt-trtexec puts it (tensorrt-trtexec-path adds it to PATH).
    install -m 0755 ${S}/bin/trtexec ${D}${prefix}/src/tensorrt/bin/trtexec
}

# meta-tegra's package names, selected by PREFERRED_PROVIDER; RCONFLICTS keeps
# both TensorRTs out of one image.
PACKAGES = "${PN}-dbg ${PN}-staticdev ${PN}-plugins-dev ${PN}-plugins ${PN}-trtexec ${PN}-dev ${PN}"

FILES:${PN}-plugins = "${libdir}/libnvinfer_plugin${SOLIBS} ${libdir}/libnvinfer_vc_plugin${SOLIBS} \
    ${libdir}/libnvonnxparser${SOLIBS}"
FILES:${PN}-plugins-dev = "${libdir}/libnvinfer_plugin${SOLIBSDEV} ${libdir}/libnvinfer_vc_plugin${SOLIBSDEV} \
    ${libdir}/libnvonnxparser${SOLIBSDEV} ${includedir}/NvInferPlugin*.h ${includedir}/NvOnnx*.h"
FILES:${PN}-trtexec = "${prefix}/src/tensorrt/bin"
FILES:${PN} = "${libdir}/libnvinfer*${SOLIBS}"
FILES:${PN}-dev = "${libdir}/libnvinfer*${SOLIBSDEV} ${includedir}"

RPROVIDES:${PN} = "tensorrt-core"
RCONFLICTS:${PN} = "tensorrt-core"
RPROVIDES:${PN}-dev = "tensorrt-core-dev"
RCONFLICTS:${PN}-dev = "tensorrt-core-dev"
RPROVIDES:${PN}-plugins = "tensorrt-plugins"
RCONFLICTS:${PN}-plugins = "tensorrt-plugins"
RPROVIDES:${PN}-plugins-dev = "tensorrt-plugins-dev"
RCONFLICTS:${PN}-plugins-dev = "tensorrt-plugins-dev"
RPROVIDES:${PN}-trtexec = "tensorrt-trtexec"
RCONFLICTS:${PN}-trtexec = "tensorrt-trtexec"
RDEPENDS:${PN}-plugins-dev = "${PN}-dev"
# Loaded with dlopen() by the plugins (not in their ELF NEEDED, so shlibs cannot see
# them), as meta-tegra's tensorrt-plugins-prebuilt declares.
RDEPENDS:${PN}-plugins += "cudnn libcublas"

# NVIDIA's binaries come stripped and cannot be rebuilt: packaged as they are,
# like meta-tegra's prebuilt TensorRT recipes.
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
INHIBIT_SYSROOT_STRIP = "1"

COMPATIBLE_MACHINE = "(tegra)"
# One aarch64 archive for every Jetson of a JetPack release (meta-tegra's scarthgap
# tensorrt-core is TEGRA_PKGARCH too).
PACKAGE_ARCH = "${TEGRA_PKGARCH}"
