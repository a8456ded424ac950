# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "Example tegra-ai model: the 8x8 digits classifier and its TensorRT engine"
DESCRIPTION = "Bundles the project's default model (scripts/tegra_ai/models/digits.onnx, \
input 'input' Nx1x8x8 float32 with a dynamic batch) with tensorrt_engine.bbclass. The \
engine is built on the device at first boot by tegra-ai-engines.service, or at \
image-build time when TEGRA_AI_ENGINE_BUILDER points at a reference Jetson."

# The model is taken from this repository's tree, not copied into the layer: SRC_URI
# names the files where they are (relative to the repository root).
LICENSE = "MIT"
LIC_FILES_CHKSUM = "${TEGRA_AI_LICENSE_CHKSUM}"
FILESEXTRAPATHS:prepend := "${TEGRA_AI_LAYERDIR}:"
SRC_URI = "file://scripts/tegra_ai/models/digits.onnx file://scripts/tegra_ai/models/digits.preprocess.json"
S = "${@tegra_ai_layer.compat.unpackdir(d)}"
TEGRA_AI_SRCDIR = "${S}/scripts/tegra_ai/models"

inherit tensorrt_engine

TEGRA_AI_MODELS = "digits"
TEGRA_AI_MODEL_digits = "digits.onnx"
TEGRA_AI_MODEL_digits[precision] = "fp16"
# One profile: batch 1..32, tuned for 8.
TEGRA_AI_MODEL_digits[shapes] = "input:1x1x8x8:8x1x8x8:32x1x8x8"
TEGRA_AI_MODEL_digits[workspace] = "64M"
TEGRA_AI_MODEL_digits[preprocess] = "digits.preprocess.json"

COMPATIBLE_MACHINE = "(tegra)"
