# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "ONNX to verified TensorRT engines on Jetson: optimizer, engine cache, benchmark and calibration tools"
DESCRIPTION = "The tegra_ai Python package of meta-tegra-ai: tensorrt-optimize (build, bundle, \
ensure and verify TensorRT engines with a persistent cache), model-benchmark and calibration-dataset. \
The native variant bundles models at image-build time and needs no TensorRT."
SECTION = "devel/python"

# Built from this repository's pyproject.toml (setuptools, package-dir scripts/).
TEGRA_AI_SOURCE_FILES = "pyproject.toml README.md scripts/tegra_ai"
inherit tegra_ai_source python_setuptools_build_meta

# scarthgap's setuptools (69) predates PEP 639 license expressions
# ('license = "MIT"', setuptools >= 77): rewrite it as the older table form
# there. Newer setuptools keep the file as it is.
do_configure:prepend() {
    if ! nativepython3 -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)'; then
        sed -i -e 's/^license = "\([^"]*\)"$/license = {text = "\1"}/' ${S}/pyproject.toml
    fi
}

DEPENDS:append:class-native = " python3-numpy-native"

PACKAGES =+ "${PN}-benchmark ${PN}-calibration"

# tensorrt-optimize and the tegra_ai package (engine build, cache, ensure)
FILES:${PN} += "${bindir}/tensorrt-optimize"
FILES:${PN}-benchmark = "${bindir}/model-benchmark"
FILES:${PN}-calibration = "${bindir}/calibration-dataset"

RDEPENDS:${PN} += "\
    python3-core python3-crypt python3-ctypes python3-fcntl python3-io python3-json \
    python3-logging python3-shell python3-statistics python3-numpy \
    python3-tensorrt tensorrt-plugins \
"
# Inference needs CUDA from Python too: python3-cuda is added from
# dynamic-layers/tegra-community where meta-tegra-community provides it.
RDEPENDS:${PN}-benchmark += "${PN} python3-numpy"
RDEPENDS:${PN}-calibration += "${PN} python3-numpy"

# Until 0.1.0 this recipe was called tensorrt-model-optimizer, which is the name of
# NVIDIA's own product (TensorRT Model Optimizer, nvidia-modelopt). Images that
# installed the old packages upgrade to these cleanly: the package manager
# replaces them, and anything that still asks for an old name gets these.
RPROVIDES:${PN} += "tensorrt-model-optimizer"
RREPLACES:${PN} += "tensorrt-model-optimizer"
RCONFLICTS:${PN} += "tensorrt-model-optimizer"
RPROVIDES:${PN}-benchmark += "tensorrt-model-optimizer-benchmark"
RREPLACES:${PN}-benchmark += "tensorrt-model-optimizer-benchmark"
RCONFLICTS:${PN}-benchmark += "tensorrt-model-optimizer-benchmark"
RPROVIDES:${PN}-calibration += "tensorrt-model-optimizer-calibration"
RREPLACES:${PN}-calibration += "tensorrt-model-optimizer-calibration"
RCONFLICTS:${PN}-calibration += "tensorrt-model-optimizer-calibration"

# Build-time use (tensorrt_engine.bbclass): bundle, check and verify-cache need
# neither TensorRT nor a GPU; the ONNX preflight (check --target) needs onnx.
RDEPENDS:${PN}:class-native = "python3-numpy-native"
RDEPENDS:${PN}-benchmark:class-native = ""
RDEPENDS:${PN}-calibration:class-native = ""
# In an SDK (TOOLCHAIN_HOST_TASK += "nativesdk-tegra-ai-tools"):
# bundle, check and verify-cache on the developer's machine, like -native.
RDEPENDS:${PN}:class-nativesdk = "nativesdk-python3-core nativesdk-python3-json nativesdk-python3-logging \
    nativesdk-python3-shell nativesdk-python3-numpy"
RDEPENDS:${PN}-benchmark:class-nativesdk = "${PN}"
RDEPENDS:${PN}-calibration:class-nativesdk = "${PN}"

BBCLASSEXTEND = "native nativesdk"

# The target package needs meta-tegra's TensorRT (python3-tensorrt, tensorrt-plugins):
# skipped on other machines (world builds); -native and nativesdk- build anywhere.
COMPATIBLE_MACHINE:class-target = "(tegra)"
