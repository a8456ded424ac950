# tensorrt_engine.bbclass: ship ONNX models with the manifest that
# `tensorrt-optimize ensure` reads, and (optionally) TensorRT engines prebuilt
# on a builder that matches the target.
#
# Inherit it in a recipe that lists its models:
#
#   inherit tensorrt_engine
#   SRC_URI = "file://detector.onnx file://detector.calib"
#   TEGRA_AI_MODELS = "detector"
#   TEGRA_AI_MODEL_detector = "detector.onnx"
#   TEGRA_AI_MODEL_detector[precision] = "int8"
#   TEGRA_AI_MODEL_detector[calibration] = "detector.calib"
#   TEGRA_AI_MODEL_detector[shapes] = "images:1x3x640x640"
#
# Per-model options are varflags on TEGRA_AI_MODEL_<name> (relative file names
# are looked up where SRC_URI is unpacked):
#   [precision]      fp32 | fp16 | int8 | best     (default TEGRA_AI_ENGINE_PRECISION)
#   [shapes]         optimization profiles, whitespace-separated; one profile is
#                    NAME:DIMS or NAME:MIN:OPT:MAX, several inputs joined by ','
#   [workspace]      builder workspace limit: bytes or 256M / 2G (default TEGRA_AI_ENGINE_WORKSPACE)
#   [dla_core]       0 or 1: build for a DLA core (AGX Orin, Xavier; Orin Nano has none)
#   [gpu_fallback]   1: with dla_core, layers the DLA cannot run fall back to the GPU
#   [opt_level]      builder optimization level 0..5
#   [calibration]    INT8 calibration cache (precision int8 or best)
#   [qdq]            1: the ONNX is already quantized (Q/DQ), int8 without calibration
#   [strongly_typed] 1: strongly typed network (types from the ONNX)
#   [timing_cache]   TensorRT timing cache to start from
#   [preprocess]     preprocessing spec JSON (tegra_ai PreprocessSpec)
# A wrong option stops parsing with a message naming the variable and flag.
#
# Where engines are built:
#  * By default (TEGRA_AI_ENGINE_BUILDER empty) on the device at first boot, by
#    tegra-ai-engines.service, into ${TEGRA_AI_ENGINE_CACHE}.
#  * TEGRA_AI_ENGINE_BUILDER = "ssh root@orin-ref": a reference Jetson of the same
#    module and BSP, running this layer's image (tensorrt-optimize on its PATH),
#    builds them at image-build time. The value is any command that runs its
#    last argument as a shell script with stdin/stdout passed through (ssh,
#    "docker exec -i NAME sh -c", ...). ssh must be allowed on the build host:
#    HOSTTOOLS_NONFATAL += "ssh" in local.conf.
#  * TEGRA_AI_ENGINE_BUILDER = "local": the build host itself, only accepted when
#    the build host is an aarch64 Jetson (set TEGRA_AI_ENGINE_BUILDER_TOOL to an
#    absolute path there). An x86 build host cannot build Jetson engines: an
#    engine is tied to the GPU, the TensorRT version and the platform.
# Engines coming back from a builder are checked with `tensorrt-optimize
# verify-cache` against TEGRA_AI_TRT_VERSION and TEGRA_AI_COMPUTE_CAPABILITY;
# a mismatch fails the build instead of packaging engines the device would
# reject. They are packaged under their cache keys in ${TEGRA_AI_ENGINE_SEED}
# (read-only, part of the rootfs and so of every OTA update); the first-boot
# service copies a matching one into the persistent ${TEGRA_AI_ENGINE_CACHE}
# instead of building it (`ensure --seed`).

# Models of this recipe (names; each needs TEGRA_AI_MODEL_<name>).
TEGRA_AI_MODELS ??= ""
# Defaults for models that do not set [precision] / [workspace].
TEGRA_AI_ENGINE_PRECISION ??= "fp16"
TEGRA_AI_ENGINE_WORKSPACE ??= ""
# Bundle name: the models go to ${datadir}/tegra-ai/models/${TEGRA_AI_BUNDLE}/.
TEGRA_AI_BUNDLE ??= "${PN}"
# Target description, derived from meta-tegra; set them when deriving fails.
TEGRA_AI_TRT_VERSION ??= "${@tegra_ai_layer.engines.guess_trt_version(d)}"
TEGRA_AI_COMPUTE_CAPABILITY ??= "${@tegra_ai_layer.engines.compute_capability(d.getVar('TEGRA_CUDA_ARCHITECTURE'))}"
# --target of `tensorrt-optimize bundle` (preflight of the ONNX against that TensorRT).
TEGRA_AI_BUNDLE_TARGET ??= "${@tegra_ai_layer.engines.bundle_target(d.getVar('TEGRA_AI_TRT_VERSION'))}"
# 1: validate the ONNX with the onnx package at build time (needs a layer that
# provides python3-onnx-native; none of openembedded-core, meta-openembedded
# or meta-tegra does). 0: hash and copy only; TensorRT's parser validates on the device.
TEGRA_AI_ONNX_CHECK ??= "0"
# Image-build-time engine builder (see above); empty: build on first boot.
TEGRA_AI_ENGINE_BUILDER ??= ""
# tensorrt-optimize as the builder runs it.
TEGRA_AI_ENGINE_BUILDER_TOOL ??= "tensorrt-optimize"
# On-device locations (the contract in docs/ARCHITECTURE.md).
TEGRA_AI_MODELS_DIR ??= "${datadir}/tegra-ai/models"
TEGRA_AI_ENGINE_CACHE ??= "${localstatedir}/lib/tegra-ai/engines"
# Engines prebuilt at image-build time (read-only seed of the cache above).
TEGRA_AI_ENGINE_SEED ??= "${datadir}/tegra-ai/engines"

TEGRA_AI_SRCDIR ?= "${@tegra_ai_layer.compat.unpackdir(d)}"
TEGRA_AI_BUNDLE_DIR = "${B}/tegra-ai-bundle"
TEGRA_AI_ENGINE_DIR = "${B}/tegra-ai-engines"

DEPENDS += "tensorrt-model-optimizer-native python3-numpy-native \
    ${@'python3-onnx-native' if d.getVar('TEGRA_AI_ONNX_CHECK') == '1' else ''}"

python __anonymous() {
    import tegra_ai_layer.engines as engines
    try:
        engines.parse_models(d)
        builder = engines.check_builder(d)
    except engines.ModelConfigError as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
    if builder:
        # Engines are device specific: package them for this machine only.
        d.setVar("PACKAGE_ARCH", d.getVar("MACHINE_ARCH"))
        # The builder is outside BitBake's view: rebuild every time, never from sstate.
        d.setVarFlag("do_compile", "nostamp", "1")
}

tensorrt_engine_build_on_builder() {
    bbnote "Building TensorRT engines on the engine builder '${TEGRA_AI_ENGINE_BUILDER}' (target: TensorRT ${TEGRA_AI_TRT_VERSION}, compute capability ${TEGRA_AI_COMPUTE_CAPABILITY})"
    mkdir -p ${TEGRA_AI_ENGINE_DIR}
    if ! tar -C ${TEGRA_AI_BUNDLE_DIR} -cf - . \
        | ${@tegra_ai_layer.engines.builder_command(d) or 'false'} \
        | tar -C ${TEGRA_AI_ENGINE_DIR} -xf -; then
        bbfatal "the engine builder '${TEGRA_AI_ENGINE_BUILDER}' failed; fix it, or leave TEGRA_AI_ENGINE_BUILDER empty to build the engines on the device at first boot"
    fi
    if ! tensorrt-optimize verify-cache ${TEGRA_AI_ENGINE_DIR} --trt-version ${@tegra_ai_layer.engines.short_trt_version(d.getVar('TEGRA_AI_TRT_VERSION'))} --compute-capability ${TEGRA_AI_COMPUTE_CAPABILITY}; then
        bbfatal "refusing the engines from '${TEGRA_AI_ENGINE_BUILDER}': they were not built with TensorRT ${TEGRA_AI_TRT_VERSION} for compute capability ${TEGRA_AI_COMPUTE_CAPABILITY} (the image's). Use a builder Jetson with the same module and BSP as the image, or leave TEGRA_AI_ENGINE_BUILDER empty."
    fi
}

tensorrt_engine_do_compile() {
    rm -rf ${TEGRA_AI_BUNDLE_DIR} ${TEGRA_AI_ENGINE_DIR}
    mkdir -p ${TEGRA_AI_BUNDLE_DIR}
    cd ${TEGRA_AI_SRCDIR}
    ${@tegra_ai_layer.engines.bundle_commands(d)}
    if [ -n "${TEGRA_AI_ENGINE_BUILDER}" ]; then
        tensorrt_engine_build_on_builder
    else
        bbnote "TensorRT engines for ${TEGRA_AI_MODELS} will be built on the device at first boot (tegra-ai-engines.service); set TEGRA_AI_ENGINE_BUILDER to build them on a reference Jetson instead"
    fi
}
do_compile[vardeps] += "TEGRA_AI_MODELS ${@' '.join('TEGRA_AI_MODEL_' + m for m in (d.getVar('TEGRA_AI_MODELS') or '').split())}"
# Models given by absolute path (not through SRC_URI) are tracked here.
do_compile[file-checksums] += "${@tegra_ai_layer.engines.absolute_file_checksums(d)}"

tensorrt_engine_do_install() {
    install -d ${D}${TEGRA_AI_MODELS_DIR}/${TEGRA_AI_BUNDLE}
    cp -R --no-preserve=ownership ${TEGRA_AI_BUNDLE_DIR}/. ${D}${TEGRA_AI_MODELS_DIR}/${TEGRA_AI_BUNDLE}/
    chmod -R u=rwX,go=rX ${D}${TEGRA_AI_MODELS_DIR}/${TEGRA_AI_BUNDLE}
    if [ -d ${TEGRA_AI_ENGINE_DIR} ]; then
        # Only engines and their sidecars: index.json, the hash memo and locks
        # belong to the device's cache and are written there by ensure.
        for f in ${TEGRA_AI_ENGINE_DIR}/*/*.engine ${TEGRA_AI_ENGINE_DIR}/*/*.json; do
            [ -f "$f" ] || continue
            n=$(basename $(dirname "$f"))
            install -D -m 0644 "$f" ${D}${TEGRA_AI_ENGINE_SEED}/$n/$(basename "$f")
        done
    fi
}

EXPORT_FUNCTIONS do_compile do_install

FILES:${PN} += "${TEGRA_AI_MODELS_DIR}/${TEGRA_AI_BUNDLE} ${TEGRA_AI_ENGINE_SEED}"
# The first-boot service turns the bundle into engines (and accepts prebuilt ones).
RDEPENDS:${PN} += "tegra-ai-engines"
# The bundle's manifest targets this BSP's TensorRT version.
PACKAGE_ARCH = "${@d.getVar('TEGRA_PKGARCH') or d.getVar('MACHINE_ARCH')}"
