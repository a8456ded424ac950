# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "First-boot TensorRT engine service for tegra-ai model bundles"
DESCRIPTION = "A systemd oneshot unit that runs 'tensorrt-optimize ensure' over the model \
bundles in TEGRA_AI_MODELS_DIR before the applications start (without holding up \
multi-user.target), as an unprivileged system user, building into a persistent cache, \
so that engines are made on the device they run on and rebuilt only when TensorRT, a \
model or its options change."

LICENSE = "MIT"
LIC_FILES_CHKSUM = "${TEGRA_AI_LICENSE_CHKSUM}"

SRC_URI = "file://tegra-ai-engines.service file://tegra-ai-engines.default file://tegra-ai-engines.tmpfiles"
S = "${@tegra_ai_layer.compat.unpackdir(d)}"
# The unit and files are rendered here (never over their sources in S).
B = "${WORKDIR}/build"

# TEGRA_AI_MODELS_DIR, TEGRA_AI_ENGINE_CACHE (persistent!), TEGRA_AI_ENGINE_SEED
inherit tegra_ai_paths systemd allarch useradd
# Files only: no compiler or C library (allarch also sets this; said here for the reader).
INHIBIT_DEFAULT_DEPS = "1"

# A backstop for a whole run (systemd TimeoutStartSec; all models of a first
# boot), the limit of one model's build in seconds, and how many failed starts
# within TEGRA_AI_ENGINES_RETRY_WINDOW are retried.
TEGRA_AI_ENGINES_TIMEOUT ??= "24h"
TEGRA_AI_MODEL_TIMEOUT ??= "3600"
TEGRA_AI_ENGINES_RETRIES ??= "4"
TEGRA_AI_ENGINES_RETRY_WINDOW ??= "6h"

# Engine mirrors for fleets (docs/yocto.md, "Engine mirrors for fleets"): on a
# cache miss the service fetches a signed engine for exactly this device's key
# before building. Space-separated https:// (or file://) URLs, the Ed25519
# public keys (*.pub files on the build host) the engines must be signed with,
# the time budget per model in seconds (it bounds each whole fetch), after which
# the device builds, and the cap on all mirror traffic of one run in seconds.
# Without mirrors the unit has no network and does not wait for network-online.target.
TEGRA_AI_ENGINE_MIRRORS ??= ""
TEGRA_AI_MIRROR_PUBKEYS ??= ""
TEGRA_AI_MIRROR_TIMEOUT ??= "30"
TEGRA_AI_MIRROR_TOTAL_TIMEOUT ??= "300"
TEGRA_AI_MIRROR_KEYDIR = "${sysconfdir}/tegra-ai/mirror-keys"

# The system user the service builds as (no login, no capabilities), in the
# groups that own the GPU's device nodes: video (/dev/nvhost-*, /dev/nvmap,
# /dev/nvgpu/*: L4T's 99-tegra-devices.rules) and render (/dev/dri/renderD*:
# systemd's udev rules). It owns the engine cache.
TEGRA_AI_ENGINES_USER ??= "tegra-ai"
USERADD_PACKAGES = "${PN}"
# groupadd is skipped for a group that exists already (useradd_base.bbclass)
GROUPADD_PARAM:${PN} = "--system video; --system render"
USERADD_PARAM:${PN} = "--system --user-group --no-create-home --home-dir /nonexistent \
    --shell ${base_sbindir}/nologin --groups video,render ${TEGRA_AI_ENGINES_USER}"

python __anonymous() {
    import tegra_ai_layer.compat as compat
    try:
        compat.check_service_settings(d)
        keys = compat.mirror_keys(d)
    except ValueError as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
    if keys:
        # Keys change the image: hash their contents, not only their names.
        d.appendVarFlag("do_install", "file-checksums", " " + " ".join("%s:True" % k for k in keys))
        # Ed25519 verification: cryptography, or the openssl command it falls back to.
        d.appendVar("RDEPENDS:" + d.getVar("PN"), " python3-cryptography")
}

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    f=${S}
    install -d ${B}
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/default ${D}${nonarch_libdir}/tmpfiles.d \
        ${D}${TEGRA_AI_MODELS_DIR}
    for src in tegra-ai-engines.service tegra-ai-engines.default tegra-ai-engines.tmpfiles; do
        sed -e 's,@BINDIR@,${bindir},g' \
            -e 's,@SYSCONFDIR@,${sysconfdir},g' \
            -e 's,@SERVICEUSER@,${TEGRA_AI_ENGINES_USER},g' \
            -e 's,@MODELSDIR@,${TEGRA_AI_MODELS_DIR},g' \
            -e 's,@ENGINECACHE@,${TEGRA_AI_ENGINE_CACHE},g' \
            -e 's,@ENGINESEED@,${TEGRA_AI_ENGINE_SEED},g' \
            -e 's,@STATEDIRECTORY@,${@tegra_ai_layer.compat.state_directory_line(d)},g' \
            -e 's,@TIMEOUT@,${TEGRA_AI_ENGINES_TIMEOUT},g' \
            -e 's,@MODELTIMEOUT@,${TEGRA_AI_MODEL_TIMEOUT},g' \
            -e 's,@RETRIES@,${TEGRA_AI_ENGINES_RETRIES},g' \
            -e 's,@RETRYWINDOW@,${TEGRA_AI_ENGINES_RETRY_WINDOW},g' \
            $f/$src > ${B}/$src
    done
    install -m 0644 ${B}/tegra-ai-engines.service ${D}${systemd_system_unitdir}/tegra-ai-engines.service
    install -m 0644 ${B}/tegra-ai-engines.default ${D}${sysconfdir}/default/tegra-ai-engines
    install -m 0644 ${B}/tegra-ai-engines.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/tegra-ai-engines.conf
    if [ -n "${TEGRA_AI_ENGINE_MIRRORS}" ]; then
        install -d -m 0755 ${D}${TEGRA_AI_MIRROR_KEYDIR} ${D}${systemd_system_unitdir}/tegra-ai-engines.service.d
        for key in ${@tegra_ai_layer.compat.mirror_keys_words(d)}; do
            install -m 0644 $key ${D}${TEGRA_AI_MIRROR_KEYDIR}/$(basename $key)
        done
        printf '%s\n' '# from TEGRA_AI_ENGINE_MIRRORS at image-build time' \
            'TEGRA_AI_ENGINE_MIRRORS="${TEGRA_AI_ENGINE_MIRRORS}"' \
            'TEGRA_AI_MIRROR_KEYS=${TEGRA_AI_MIRROR_KEYDIR}' \
            'TEGRA_AI_MIRROR_TIMEOUT=${TEGRA_AI_MIRROR_TIMEOUT}' \
            'TEGRA_AI_MIRROR_TOTAL_TIMEOUT=${TEGRA_AI_MIRROR_TOTAL_TIMEOUT}' >> ${D}${sysconfdir}/default/tegra-ai-engines
        # Mirrors need the network: wait for it, lift the unit's PrivateNetwork and
        # IPAddressDeny (an empty assignment resets the list), and allow IP sockets
        # (netlink: glibc's getaddrinfo asks the kernel for the interface addresses).
        printf '%s\n' '# from TEGRA_AI_ENGINE_MIRRORS at image-build time' \
            '[Unit]' 'Wants=network-online.target' 'After=network-online.target' \
            '[Service]' 'PrivateNetwork=no' 'IPAddressDeny=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK' \
            > ${D}${systemd_system_unitdir}/tegra-ai-engines.service.d/mirror.conf
    fi
}

SYSTEMD_SERVICE:${PN} = "tegra-ai-engines.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# The cache itself is created on the device (tmpfiles.d), not shipped: it may be
# on a partition that is not part of the rootfs.
FILES:${PN} += "${TEGRA_AI_MODELS_DIR} ${nonarch_libdir}/tmpfiles.d/tegra-ai-engines.conf \
                ${TEGRA_AI_MIRROR_KEYDIR} ${systemd_system_unitdir}/tegra-ai-engines.service.d"
CONFFILES:${PN} = "${sysconfdir}/default/tegra-ai-engines"
RDEPENDS:${PN} = "tegra-ai-tools"

# Needs the target tools (TensorRT from meta-tegra): Jetson machines only.
COMPATIBLE_MACHINE = "(tegra)"
