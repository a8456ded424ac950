# tegra_ai_source.bbclass: build from this repository (the layer's own tree)
# instead of fetching: the Python package, the CUDA kernels and the plugin live
# next to the layer metadata, so recipes take them with file:// from
# TEGRA_AI_LAYERDIR (set in conf/layer.conf). No network is needed.
#
#   TEGRA_AI_SOURCE_FILES  paths relative to the repository root to unpack
#                          (files or directories), e.g. "pyproject.toml scripts"
#
# They are unpacked below ${S}, keeping their relative paths, with the
# repository's LICENSE. Python bytecode caches (__pycache__, *.pyc) of the
# checkout are removed after unpacking: they must not reach packages. Recipes
# using it are named <pn>_<version of pyproject.toml>.bb (tests/layer checks that).

TEGRA_AI_SOURCE_FILES ??= "pyproject.toml"

LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=5e3b6bef2c6ac12d9ed004a8ea51d866"

FILESEXTRAPATHS:prepend := "${TEGRA_AI_LAYERDIR}:"
SRC_URI = "${@' '.join('file://%s;subdir=tegra-ai' % p for p in ['LICENSE'] + d.getVar('TEGRA_AI_SOURCE_FILES').split())}"

S = "${@tegra_ai_layer.compat.unpackdir(d)}/tegra-ai"

tegra_ai_source_drop_bytecode() {
    find ${S} -depth -type d -name __pycache__ -exec rm -rf {} +
    find ${S} -type f -name '*.py[co]' -exec rm -f {} +
}
do_unpack[postfuncs] += "tegra_ai_source_drop_bytecode"
