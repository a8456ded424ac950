# nooelint: oelint.var.mandatoryvar.HOMEPAGE - built from this repository itself (the layer's own tree); it has no separate upstream page
SUMMARY = "tegra-ai CUDA preprocessing and post-processing kernels, compiled ahead of time"
DESCRIPTION = "cubins of scripts/tegra_ai/kernels/*.cu for this machine's GPU architecture, \
installed as ${datadir}/tegra-ai/kernels/<module>.sm_<XY>.cubin where the tegra_ai loader \
looks first (it falls back to NVRTC when a cubin is missing)."

TEGRA_AI_SOURCE_FILES = "pyproject.toml scripts/tegra_ai/kernels"
inherit tegra_ai_source cmake cuda

OECMAKE_SOURCEPATH = "${S}/scripts/tegra_ai/kernels"
# meta-tegra's cuda class passes CMAKE_CUDA_ARCHITECTURES from TEGRA_CUDA_ARCHITECTURE.

FILES:${PN} = "${datadir}/tegra-ai/kernels"
# cubins are CUDA ELF images (EM_CUDA), not code for the CPU: the ELF machine
# check cannot apply to them.
# nooelint: oelint.vars.insaneskip
INSANE_SKIP:${PN} = "arch"

COMPATIBLE_MACHINE = "(cuda)"
PACKAGE_ARCH = "${SOC_FAMILY_PKGARCH}"
