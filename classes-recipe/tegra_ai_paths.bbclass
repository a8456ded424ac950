# tegra_ai_paths.bbclass: where tegra-ai keeps models and engines on the device.
# One definition for the model recipes (tensorrt_engine.bbclass) and the
# first-boot service (tegra-ai-engines); set them in local.conf or the distro
# configuration, never in one recipe alone.
#
#   TEGRA_AI_MODELS_DIR    model bundles (*/manifest.json), read-only, in the rootfs
#   TEGRA_AI_ENGINE_SEED   engines prebuilt at image-build time, read-only, in the rootfs
#   TEGRA_AI_ENGINE_CACHE  the engine cache the device builds into: it must be
#                          PERSISTENT storage. With a read-only rootfs,
#                          openembedded-core's volatile-binds puts /var/lib in RAM
#                          (tmpfs): every boot would rebuild every engine. Point it
#                          at a persistent partition shared by both A/B slots, e.g.
#                          TEGRA_AI_ENGINE_CACHE = "/data/tegra-ai/engines"
#                          (tegra-demo-distro keeps its persistent state on /data).
#                          Engines are keyed by the L4T release and TensorRT
#                          version, so both slots' engines live there side by side.
#                          The service warns in the journal when it is on tmpfs.
#                          A cache on the read-only rootfs itself serves the
#                          engines put there when the image was made (verified,
#                          unlocked) and can build none: a model without one
#                          fails the service with exit 73 (docs/yocto.md). Ship
#                          image-time engines in TEGRA_AI_ENGINE_SEED instead.
#   Stable engine paths: the contract is that ${TEGRA_AI_ENGINE_CACHE}/<model>.engine
#   is a symlink to the current engine of <model>, for applications and
#   DeepStream's model-engine-file (ensure keeps it current; also
#   `tensorrt-optimize path <model> --cache ${TEGRA_AI_ENGINE_CACHE}`).

TEGRA_AI_MODELS_DIR ??= "${datadir}/tegra-ai/models"
TEGRA_AI_ENGINE_SEED ??= "${datadir}/tegra-ai/engines"
TEGRA_AI_ENGINE_CACHE ??= "${localstatedir}/lib/tegra-ai/engines"

python __anonymous() {
    import tegra_ai_layer.compat as compat
    try:
        compat.check_paths(d)
    except ValueError as e:
        bb.fatal("%s: %s" % (d.getVar("PN"), e))
}
