# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "First-boot TensorRT engine service for tegra-ai model bundles"
DESCRIPTION = "A systemd oneshot unit that runs 'tensorrt-optimize ensure' over the model \
bundles in ${datadir}/tegra-ai/models before the applications start, building into a \
persistent cache, so that engines are made on the device they run on and rebuilt only \
when TensorRT, a model or its options change."

LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://tegra-ai-engines.service file://tegra-ai-engines.default"
S = "${@tegra_ai_layer.compat.unpackdir(d)}"

inherit systemd allarch

# How long one start may build engines before systemd stops it, and how many
# failed starts within TEGRA_AI_ENGINES_RETRY_WINDOW are retried.
TEGRA_AI_ENGINES_TIMEOUT ??= "1h"
TEGRA_AI_ENGINES_RETRIES ??= "4"
TEGRA_AI_ENGINES_RETRY_WINDOW ??= "6h"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    f=${S}
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/default \
        ${D}${datadir}/tegra-ai/models ${D}${localstatedir}/lib/tegra-ai/engines
    sed -e 's,@BINDIR@,${bindir},g' \
        -e 's,@SYSCONFDIR@,${sysconfdir},g' \
        -e 's,@MODELSDIR@,${datadir}/tegra-ai/models,g' \
        -e 's,@ENGINECACHE@,${localstatedir}/lib/tegra-ai/engines,g' \
        -e 's,@ENGINESEED@,${datadir}/tegra-ai/engines,g' \
        -e 's,@TIMEOUT@,${TEGRA_AI_ENGINES_TIMEOUT},g' \
        -e 's,@RETRIES@,${TEGRA_AI_ENGINES_RETRIES},g' \
        -e 's,@RETRYWINDOW@,${TEGRA_AI_ENGINES_RETRY_WINDOW},g' \
        $f/tegra-ai-engines.service > ${D}${systemd_system_unitdir}/tegra-ai-engines.service
    chmod 0644 ${D}${systemd_system_unitdir}/tegra-ai-engines.service
    install -m 0644 $f/tegra-ai-engines.default ${D}${sysconfdir}/default/tegra-ai-engines
}

SYSTEMD_SERVICE:${PN} = "tegra-ai-engines.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

FILES:${PN} += "${datadir}/tegra-ai/models ${localstatedir}/lib/tegra-ai/engines"
CONFFILES:${PN} = "${sysconfdir}/default/tegra-ai-engines"
RDEPENDS:${PN} = "tensorrt-model-optimizer"
