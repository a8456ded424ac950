SUMMARY = "tegra-ai: TensorRT engine tools, first-boot engine service, CUDA kernels and plugin"
LICENSE = "MIT"

# Package-specific dependencies (tensorrt, CUDA kernels for this SoC).
PACKAGE_ARCH = "${TEGRA_PKGARCH}"
inherit packagegroup

PACKAGES = "${PN} ${PN}-dev-tools"

RDEPENDS:${PN} = " \
    tensorrt-model-optimizer \
    tegra-ai-engines \
    tegra-ai-kernels \
    tegra-ai-plugin \
"
# On-device development: benchmarks, calibration data sets, trtexec on PATH.
RDEPENDS:${PN}-dev-tools = " \
    ${PN} \
    tensorrt-model-optimizer-benchmark \
    tensorrt-model-optimizer-calibration \
    tensorrt-trtexec-path \
"

COMPATIBLE_MACHINE = "(tegra)"
