# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "tegra-ai TensorRT preprocessing plugin"
DESCRIPTION = "libtegra_ai_plugin.so: the TensorRT plugin that runs the tegra-ai \
preprocessing spec inside an engine (IPluginV2DynamicExt on TensorRT 8.5, IPluginV3 on \
TensorRT 10). Loaded by path; engines that use it need it on the device."

TEGRA_AI_SOURCE_FILES = "pyproject.toml scripts/tegra_ai/plugin scripts/tegra_ai/kernels"
inherit tegra_ai_source cmake cuda

OECMAKE_SOURCEPATH = "${S}/scripts/tegra_ai/plugin"
DEPENDS += "tensorrt-core cuda-cudart"

# The plugin is dlopen()ed by path (tensorrt-optimize --plugin, trtexec
# --staticPlugins), not linked against: keep it out of the default library
# path and out of the -dev package.
TEGRA_AI_PLUGIN_DIR = "${libdir}/tegra-ai"
do_install:append() {
    install -d ${D}${TEGRA_AI_PLUGIN_DIR}
    for lib in $(find ${D}${prefix} -name 'libtegra_ai_plugin.so*' ! -path '*/tegra-ai/*'); do
        mv $lib ${D}${TEGRA_AI_PLUGIN_DIR}/
    done
    if [ ! -e ${D}${TEGRA_AI_PLUGIN_DIR}/libtegra_ai_plugin.so ]; then
        install -m 0755 ${B}/libtegra_ai_plugin.so ${D}${TEGRA_AI_PLUGIN_DIR}/
    fi
    find ${D}${libdir} -depth -type d -empty -delete
}

FILES:${PN} = "${TEGRA_AI_PLUGIN_DIR}/libtegra_ai_plugin.so*"
RDEPENDS:${PN} += "tensorrt-core"

COMPATIBLE_MACHINE = "(tegra)"
# CUDA code for this SoC family (as meta-tegra's cuda class does).
PACKAGE_ARCH = "${SOC_FAMILY_PKGARCH}"
