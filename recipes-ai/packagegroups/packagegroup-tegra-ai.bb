SUMMARY = "tegra-ai: TensorRT engine tools, engine service, CUDA kernels, plugin"
DESCRIPTION = "Everything an image needs to run tegra-ai model bundles: tensorrt-optimize, \
the first-boot engine service, the prebuilt CUDA kernels and the TensorRT plugin; \
${PN}-dev-tools adds benchmark and calibration tools and trtexec on PATH."
LICENSE = "MIT"

# Package-specific dependencies (tensorrt, CUDA kernels for this SoC).
PACKAGE_ARCH = "${TEGRA_PKGARCH}"
inherit packagegroup

PACKAGES = "${PN} ${PN}-dev-tools"

RDEPENDS:${PN} = "\
    tegra-ai-engines \
    tegra-ai-kernels \
    tegra-ai-plugin \
    tegra-ai-tools \
"
# On-device development: benchmarks, calibration data sets, trtexec on PATH.
RDEPENDS:${PN}-dev-tools = "\
    ${PN} \
    tegra-ai-tools-benchmark \
    tegra-ai-tools-calibration \
    tensorrt-trtexec-path \
    tegra-ai-model-ensemble \
"

COMPATIBLE_MACHINE = "(tegra)"
