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
#   [contexts]       execution contexts that may run a dynamic-shape engine at once
#                    (pipeline streams, runtime workers): one profile set each (default 1)
# A wrong option stops parsing with a message naming the variable and flag.
# At do_compile each model's options become one build request (tegra_ai.spec.BuildRequest,
# ${TEGRA_AI_REQUEST_DIR}/<name>.json) that `tensorrt-optimize bundle --request` records
# whole in the bundle's manifest; the device's `ensure` builds exactly that request.
#
# Where engines are built:
#  * By default (TEGRA_AI_ENGINE_BUILDER empty) on the device at first boot, by
#    tegra-ai-engines.service, into ${TEGRA_AI_ENGINE_CACHE}.
#  * TEGRA_AI_ENGINE_BUILDER = "ssh -o BatchMode=yes root@orin-ref": a reference
#    Jetson of the same module and BSP, running this layer's image (tensorrt-optimize
#    on its PATH), builds them at image-build time. The value is any command that
#    runs its last argument as a shell script with stdin/stdout passed through
#    (ssh, "docker exec -i NAME sh -c", ...). ssh must be allowed on the build
#    host: HOSTTOOLS_NONFATAL += "ssh" in local.conf. Credentials: the ssh-agent
#    of the shell that started bitbake is used (SSH_AUTH_SOCK is passed to this
#    task only), or a key file: "ssh -i /path/key -o BatchMode=yes root@orin-ref".
#    The task gets network access ([network]) only in this case, and BitBake runs
#    the engine tasks of one builder one at a time ([lockfiles]).
#  * TEGRA_AI_ENGINE_BUILDER = "local": the build host itself, only accepted when
#    the build host is an aarch64 Jetson (set TEGRA_AI_ENGINE_BUILDER_TOOL to an
#    absolute path there). An x86 build host cannot build Jetson engines: an
#    engine is tied to the GPU, the TensorRT version and the platform.
# Before building, the builder must report the image's TensorRT version, compute
# capability, L4T release (and TEGRA_AI_ENGINE_BUILDER_MODULE when set); otherwise
# the task fails with what differs. These values are in the task's signature,
# with the models and their options: an unchanged model is not rebuilt, and the
# builder keeps a persistent cache (TEGRA_AI_ENGINE_BUILDER_CACHE) so a task that
# runs again (new sstate, another build host) gets cache hits there.
# Engines coming back are also checked with `tensorrt-optimize verify-cache`.
# They are packaged under their cache keys in ${TEGRA_AI_ENGINE_SEED} (read-only,
# part of the rootfs and so of every OTA update); the first-boot service uses a
# matching one in place of building it (`ensure --seed`).

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
# 1: check every model against the image's TensorRT at build time
# (tensorrt-optimize bundle --target: operators, types, shapes), so that an
# unsupported model fails the image build, not the first boot. Needs
# python3-onnx-native. Set it in local.conf or the distro (not only in a
# recipe): then, where meta-tegra-community has an onnx recipe (master), this
# layer extends that recipe to native (dynamic-layers/onnx-native); on the
# scarthgap lines add a layer of your own that provides python3-onnx-native.
# Default 0: hash and copy only (TensorRT's parser validates on the device),
# and other layers' recipes are left as they are.
TEGRA_AI_ONNX_CHECK ??= "0"
# Prebuilt engines from a signed engine mirror (a CI Jetson that publishes them), no
# builder Jetson needed: a copy of the mirror's index.json on the build host, the
# mirror's URL and the public key(s); TEGRA_AI_ENGINE_MODULE (e.g. p3767-0005) narrows
# the choice to one module. docs/yocto.md, "Prebuilt engines without a builder Jetson".
TEGRA_AI_PREBUILT_INDEX ??= ""
TEGRA_AI_PREBUILT_MIRROR ??= ""
TEGRA_AI_MIRROR_PUBKEYS ??= ""
TEGRA_AI_ENGINE_MODULE ??= ""
# Image-build-time engine builder (see above); empty: build on first boot.
TEGRA_AI_ENGINE_BUILDER ??= ""
# tensorrt-optimize as the builder runs it.
TEGRA_AI_ENGINE_BUILDER_TOOL ??= "tensorrt-optimize"
# The image's L4T release (meta-tegra's L4T_VERSION), checked on the builder.
TEGRA_AI_L4T_VERSION ??= "${@d.getVar('L4T_VERSION') or ''}"
# The builder's Jetson module part number (e.g. p3767-0005: nvidia,p3767-0005 in
# /proc/device-tree/compatible; never the carrier board's model string), checked
# when set: engines are keyed on the module, so a builder of another module gives
# engines the device rebuilds.
TEGRA_AI_ENGINE_BUILDER_MODULE ??= ""
# The builder's persistent engine cache (one folder per MACHINE, L4T release and bundle).
TEGRA_AI_ENGINE_BUILDER_CACHE ??= "/var/lib/tegra-ai/builder-cache"

# On-device locations: TEGRA_AI_MODELS_DIR, TEGRA_AI_ENGINE_CACHE, TEGRA_AI_ENGINE_SEED.
inherit tegra_ai_paths
# L4T_VERSION comes from meta-tegra's l4t_version class.
inherit ${@'l4t_version' if any(bb.utils.which(d.getVar('BBPATH'), c + '/l4t_version.bbclass') for c in ('classes', 'classes-recipe')) else ''}

TEGRA_AI_SRCDIR ?= "${@tegra_ai_layer.compat.unpackdir(d)}"

# Data only (models, manifests, engines): no compiler or C library is needed to build it.
INHIBIT_DEFAULT_DEPS = "1"
TEGRA_AI_BUNDLE_DIR = "${B}/tegra-ai-bundle"
# One build request per model (<name>.json), written by tensorrt_engine_write_requests.
TEGRA_AI_REQUEST_DIR = "${B}/tegra-ai-requests"
TEGRA_AI_ENGINE_DIR = "${B}/tegra-ai-engines"

DEPENDS += "tegra-ai-tools-native python3-numpy-native \
    ${@'python3-onnx-native' if d.getVar('TEGRA_AI_ONNX_CHECK') == '1' else ''}"

python __anonymous() {
    import tegra_ai_layer.engines as engines
    import tegra_ai_layer.prebuilt as prebuilt
    try:
        models = engines.parse_models(d)
        builder = engines.check_builder(d)
        if prebuilt.configured(d):
            # the recipe's SRC_URI depends on the index: parse again when it changes
            bb.parse.mark_dependency(d, d.getVar("TEGRA_AI_PREBUILT_INDEX").strip())
        prebuilt.apply(d, [m.name for m in models])
    except (engines.ModelConfigError, prebuilt.PrebuiltError) as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
    if prebuilt.configured(d):
        # Engines are device specific: this machine's package. Each fetched engine is
        # checked after the bundle is made (its signature, model, options, target).
        d.setVar("PACKAGE_ARCH", d.getVar("MACHINE_ARCH"))
        d.appendVarFlag("do_compile", "postfuncs", " tensorrt_engine_take_prebuilt")
        d.appendVarFlag("do_compile", "vardeps", " MACHINE TEGRA_AI_MIRROR_PUBKEYS")
        d.appendVarFlag("do_compile", "file-checksums",
                        " " + " ".join("%s:True" % k for k in d.getVar("TEGRA_AI_MIRROR_PUBKEYS").split()))
    d.setVar("TEGRA_AI_ENGINES_PREBUILT", "1" if builder else "0")
    # The pipeline stage that reaches the builder (address, cache folder, the
    # facts it must report); the facts are in the signature through their variables.
    d.setVar("TEGRA_AI_ENGINE_BUILDER_COMMAND", engines.builder_command(d) or "false")
    # The ssh-agent of the shell that started bitbake, read here and not in the
    # task: BB_ORIGENV must not reach the task's signature.
    d.setVar("TEGRA_AI_SSH_AUTH_SOCK", engines.ssh_auth_sock(d) if builder else "")
    if builder:
        # Engines are device specific: package them for this machine only, and the
        # machine (its module) is in the engine task's signature. Without a builder the
        # bundle is the same for every machine of one BSP (TEGRA_PKGARCH).
        d.setVar("PACKAGE_ARCH", d.getVar("MACHINE_ARCH"))
        d.appendVarFlag("do_compile", "vardeps", " MACHINE")
        # ssh to the builder: tasks run without network unless they ask for it.
        d.setVarFlag("do_compile", "network", "1")
        # One engine build at a time per builder (one GPU, limited memory).
        d.appendVarFlag("do_compile", "lockfiles", " " + engines.builder_lockfile(d))
    else:
        # Not called then: the builder's facts (compute capability, L4T) stay out of the
        # bundle's signature (Xavier and Orin of one BSP share it).
        d.appendVarFlag("tensorrt_engine_do_compile", "vardepsexclude", " tensorrt_engine_build_on_builder")
}

tensorrt_engine_build_on_builder() {
    bbnote "Building TensorRT engines on the engine builder '${TEGRA_AI_ENGINE_BUILDER}' (target: TensorRT ${TEGRA_AI_TRT_VERSION}, compute capability ${TEGRA_AI_COMPUTE_CAPABILITY}, L4T ${TEGRA_AI_L4T_VERSION})"
    mkdir -p ${TEGRA_AI_ENGINE_DIR}
    sock="${TEGRA_AI_SSH_AUTH_SOCK}"
    [ -z "$sock" ] || export SSH_AUTH_SOCK="$sock"
    if ! tar -C ${TEGRA_AI_BUNDLE_DIR} -cf - . \
        | ${TEGRA_AI_ENGINE_BUILDER_COMMAND} \
        | tar -C ${TEGRA_AI_ENGINE_DIR} -xf -; then
        bbfatal "the engine builder '${TEGRA_AI_ENGINE_BUILDER}' failed (see the lines above: a 'builder mismatch' means it is not the image's TensorRT/GPU/L4T); fix it, or leave TEGRA_AI_ENGINE_BUILDER empty to build the engines on the device at first boot"
    fi
    if ! tensorrt-optimize verify-cache ${TEGRA_AI_ENGINE_DIR} --manifest ${TEGRA_AI_BUNDLE_DIR} ${@tegra_ai_layer.engines.verify_cache_args(d)}; then
        bbfatal "refusing the engines from '${TEGRA_AI_ENGINE_BUILDER}': they are not this bundle's engines for TensorRT ${TEGRA_AI_TRT_VERSION}, compute capability ${TEGRA_AI_COMPUTE_CAPABILITY}, L4T ${TEGRA_AI_L4T_VERSION} (the image's; see the lines above). Use a builder Jetson with the same module and BSP as the image, or leave TEGRA_AI_ENGINE_BUILDER empty."
    fi
}
# The builder's address, its cache folder and the agent socket do not change the
# engines: the facts checked on the builder (in the function) do.
tensorrt_engine_build_on_builder[vardepsexclude] += "TEGRA_AI_ENGINE_BUILDER TEGRA_AI_ENGINE_BUILDER_COMMAND TEGRA_AI_ENGINE_BUILDER_CACHE TEGRA_AI_SSH_AUTH_SOCK TMPDIR"
tensorrt_engine_build_on_builder[vardeps] += "TEGRA_AI_TRT_VERSION TEGRA_AI_COMPUTE_CAPABILITY TEGRA_AI_L4T_VERSION TEGRA_AI_ENGINE_BUILDER_MODULE"

# Each model's build request (tegra_ai.spec.BuildRequest), constructed once from its
# variables (parsed and validated by tegra_ai_layer.engines, the one place that reads
# them) and the fetched files (a calibration cache is hashed), written as JSON; the
# bundle step below takes it whole (`tensorrt-optimize bundle --request FILE`), records
# it in the bundle's manifest, and the device's `ensure` builds exactly that request.
python tensorrt_engine_write_requests() {
    import tegra_ai_layer.engines as engines
    try:
        for path in engines.write_requests(d):
            bb.debug(1, "build request: %s" % path)
    except engines.ModelConfigError as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
}
do_compile[prefuncs] += "tensorrt_engine_write_requests"

tensorrt_engine_do_compile() {
    rm -rf ${TEGRA_AI_BUNDLE_DIR} ${TEGRA_AI_ENGINE_DIR}
    mkdir -p ${TEGRA_AI_BUNDLE_DIR}
    cd ${TEGRA_AI_SRCDIR}
    ${@tegra_ai_layer.engines.bundle_commands(d)}
    if [ "${TEGRA_AI_ENGINES_PREBUILT}" = "1" ]; then
        tensorrt_engine_build_on_builder
    else
        bbnote "TensorRT engines for ${TEGRA_AI_MODELS} will be built on the device at first boot (tegra-ai-engines.service); set TEGRA_AI_ENGINE_BUILDER to build them on a reference Jetson instead"
    fi
}
do_compile[vardepsexclude] += "TEGRA_AI_ENGINE_BUILDER"
# Task signature: the models' options are varflags, which BitBake does not hash;
# TEGRA_AI_MODELS_SIGNATURE holds them (and the models' file names) as one value: what
# the build requests are made of, besides the files' contents (SRC_URI checksums).
# The target description is computed by python; [vardepvalue] hashes its result.
TEGRA_AI_MODELS_SIGNATURE = "${@tegra_ai_layer.engines.models_signature(d)}"
TEGRA_AI_MODELS_SIGNATURE[vardepvalue] = "${TEGRA_AI_MODELS_SIGNATURE}"
TEGRA_AI_TRT_VERSION[vardepvalue] = "${TEGRA_AI_TRT_VERSION}"
TEGRA_AI_COMPUTE_CAPABILITY[vardepvalue] = "${TEGRA_AI_COMPUTE_CAPABILITY}"
TEGRA_AI_L4T_VERSION[vardepvalue] = "${TEGRA_AI_L4T_VERSION}"
TEGRA_AI_BUNDLE_TARGET[vardepvalue] = "${TEGRA_AI_BUNDLE_TARGET}"
do_compile[vardeps] += "TEGRA_AI_MODELS_SIGNATURE TEGRA_AI_ENGINES_PREBUILT TEGRA_AI_MODELS ${@' '.join('TEGRA_AI_MODEL_' + m for m in (d.getVar('TEGRA_AI_MODELS') or '').split())}"
# Models given by absolute path (not through SRC_URI) are tracked here.
do_compile[file-checksums] += "${@tegra_ai_layer.engines.absolute_file_checksums(d)}"

python tensorrt_engine_take_prebuilt() {
    import tegra_ai_layer.prebuilt as prebuilt
    taken, rejected = prebuilt.take(d, log=bb.warn)
    for name, fn, _ in taken:
        bb.note("%s: prebuilt engine %s from %s (signature, model, options and target checked)"
                % (name, fn, d.getVar("TEGRA_AI_PREBUILT_MIRROR")))
    if not taken:
        bb.note("no prebuilt engine of the mirror matches this image: the device builds them on first boot")
}

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
# The bundle's manifest targets this BSP's TensorRT version: one package for every
# machine of the BSP (meta-tegra's TEGRA_PKGARCH). Not "${@... or MACHINE_ARCH}": that
# reference alone puts MACHINE into every task's signature (found by
# tests/layer/test_real_layers.py on a real parse). Engines (builder, mirror): MACHINE_ARCH.
PACKAGE_ARCH = "${TEGRA_PKGARCH}"
