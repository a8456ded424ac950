# nooelint: oelint.var.mandatoryvar.HOMEPAGE - a product's own model has no upstream page
# A model recipe of your own, in your layer (e.g. meta-my-product/recipes-models/my-detector/):
# the ONNX and its calibration cache sit next to it in files/, and the image gets
# IMAGE_INSTALL:append = " my-detector". At build time each model is hashed,
# checked against the image's TensorRT (where python3-onnx-native exists) and
# bundled; the engine is built on the device at first boot (or on the engine
# builder Jetson, TEGRA_AI_ENGINE_BUILDER). Applications find it through
# ${TEGRA_AI_ENGINE_CACHE}/index.json once tegra-ai-engines.service is done.
SUMMARY = "Object detector for the product's camera"
DESCRIPTION = "The product's detector (ONNX) with its INT8 calibration cache and preprocessing, \
bundled for tegra-ai-engines.service."
LICENSE = "CLOSED"

SRC_URI = "file://detector.onnx file://detector.calib file://detector.preprocess.json"
S = "${@tegra_ai_layer.compat.unpackdir(d)}"

inherit tensorrt_engine

TEGRA_AI_MODELS = "detector"
TEGRA_AI_MODEL_detector = "detector.onnx"
TEGRA_AI_MODEL_detector[precision] = "int8"
TEGRA_AI_MODEL_detector[calibration] = "detector.calib"
# batch 1..4, tuned for 1
TEGRA_AI_MODEL_detector[shapes] = "images:1x3x640x640:1x3x640x640:4x3x640x640"
TEGRA_AI_MODEL_detector[workspace] = "1G"
TEGRA_AI_MODEL_detector[preprocess] = "detector.preprocess.json"

COMPATIBLE_MACHINE = "(tegra)"
