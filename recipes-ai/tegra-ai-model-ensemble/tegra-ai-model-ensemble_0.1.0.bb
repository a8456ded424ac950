# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "tegra-ai multi-model example: two digits models in parallel and a locator -> digits cascade"
DESCRIPTION = "Runs with one command on the device: model-ensemble \
${datadir}/tegra-ai/ensembles/digits-ensemble.json --npz ${datadir}/tegra-ai/ensembles/digits_grid_samples.npz. \
Bundles the example locator model (scripts/tegra_ai/models/digits_locator.onnx, a 2x2-grid digit \
locator with a YOLOv8-style head, not a trained detector) with tensorrt_engine.bbclass; the digits \
engine comes from tegra-ai-model-digits. Both engines are built at first boot by \
tegra-ai-engines.service (or at image-build time with TEGRA_AI_ENGINE_BUILDER) and found by name \
in the engine cache index."

LICENSE = "MIT"
LIC_FILES_CHKSUM = "${TEGRA_AI_LICENSE_CHKSUM}"
# The models come from this repository's tree (SRC_URI names them where they are,
# relative to the repository root); the Jetson ensemble description from files/.
FILESEXTRAPATHS:prepend := "${TEGRA_AI_LAYERDIR}:"
SRC_URI = "\
    file://scripts/tegra_ai/models/digits_locator.onnx \
    file://scripts/tegra_ai/models/digits_locator.preprocess.json \
    file://scripts/tegra_ai/models/digits.preprocess.json \
    file://scripts/tegra_ai/models/digits_grid_samples.npz \
    file://digits-ensemble-jetson.json \
"
S = "${@tegra_ai_layer.compat.unpackdir(d)}"
TEGRA_AI_SRCDIR = "${S}/scripts/tegra_ai/models"

inherit tensorrt_engine

TEGRA_AI_MODELS = "digits_locator"
TEGRA_AI_MODEL_digits_locator = "digits_locator.onnx"
TEGRA_AI_MODEL_digits_locator[precision] = "fp16"
TEGRA_AI_MODEL_digits_locator[shapes] = "image:1x1x32x32:1x1x32x32:4x1x32x32"
TEGRA_AI_MODEL_digits_locator[workspace] = "64M"
TEGRA_AI_MODEL_digits_locator[preprocess] = "digits_locator.preprocess.json"

TEGRA_AI_ENSEMBLE_DIR = "${datadir}/tegra-ai/ensembles"

do_install:append() {
    install -d ${D}${TEGRA_AI_ENSEMBLE_DIR}
    # The Jetson description names the engines in the cache index ("cached"); the one
    # beside the models in the Python package runs them on ONNX Runtime instead.
    install -m 0644 ${S}/digits-ensemble-jetson.json ${D}${TEGRA_AI_ENSEMBLE_DIR}/digits-ensemble.json
    for f in digits.preprocess.json digits_locator.preprocess.json digits_grid_samples.npz; do
        install -m 0644 ${TEGRA_AI_SRCDIR}/$f ${D}${TEGRA_AI_ENSEMBLE_DIR}/$f
    done
}

FILES:${PN} += "${TEGRA_AI_ENSEMBLE_DIR}"
# model-ensemble and the runtime are part of the tegra_ai package; the digits engine
# is another bundle's.
RDEPENDS:${PN} += "tegra-ai-tools tegra-ai-model-digits tegra-ai-kernels python3-numpy"

COMPATIBLE_MACHINE = "(tegra)"
