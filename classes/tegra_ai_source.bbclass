# tegra_ai_source.bbclass: build from this repository (the layer's own tree)
# instead of fetching: the Python package, the CUDA kernels and the plugin live
# next to the layer metadata, so recipes take them with file:// from
# TEGRA_AI_LAYERDIR (set in conf/layer.conf). No network is needed.
#
#   TEGRA_AI_SOURCE_FILES  paths relative to the repository root to unpack
#                          (files or directories), e.g. "pyproject.toml scripts"
#
# They are unpacked below ${S}, keeping their relative paths. Recipes using
# it are named <pn>_<version of pyproject.toml>.bb (tests/layer checks that).

TEGRA_AI_SOURCE_FILES ??= "pyproject.toml"

LICENSE = "MIT"
# The project's license is declared in pyproject.toml (MIT); the text is the common one.
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

FILESEXTRAPATHS:prepend := "${TEGRA_AI_LAYERDIR}:"
SRC_URI = "${@' '.join('file://%s;subdir=tegra-ai' % p for p in d.getVar('TEGRA_AI_SOURCE_FILES').split())}"

S = "${@tegra_ai_layer.compat.unpackdir(d)}/tegra-ai"
