# meta-tegra classes-recipe/cuda.bbclass (+ cuda-gcc.bbclass): how CUDA code is
# compiled. CUDAHOSTCXX is the cross g++ *name* alone; every flag, the target
# sysroot included, is a -Xcompiler word in CUDAFLAGS (CMake's CMAKE_CUDA_FLAGS).
# meta-tegra's gcc-for-nvcc-cross is configured --with-sysroot=/not/exist: an
# nvcc call that drops CUDAFLAGS cannot find the C library's headers.
# The emulation sets CXX_FOR_CUDA and CUDA_NVCC_FLAGS (../data/oe-facts.json).
# scarthgap lines: prefix '-Xcompiler ' (two words); master: '-Xcompiler=' (CUDA_XCOMPILER_PREFIX here).
def cuda_extract_compiler(compiler, d, prefix='-Xcompiler='):
    args = d.getVar(compiler).split()
    if args[0] == "ccache":
        return args[1], ' '.join([prefix + arg for arg in args[2:]])
    return args[0], ' '.join([prefix + arg for arg in args[1:]])

export CUDAHOSTCXX = "${@cuda_extract_compiler('CXX_FOR_CUDA', d)[0]}"
export CUDAFLAGS = "${CUDA_NVCC_FLAGS} ${@cuda_extract_compiler('CXX_FOR_CUDA', d, d.getVar('CUDA_XCOMPILER_PREFIX') or '-Xcompiler=')[1]}"
OECMAKE_CUDA_COMPILER ?= "nvcc"
OECMAKE_CUDA_ARCHITECTURES ?= "${CUDA_ARCHITECTURES}"

cmake_do_generate_toolchain_file:append() {
    cat >> ${WORKDIR}/toolchain.cmake <<EOF
set(CMAKE_CUDA_COMPILER ${OECMAKE_CUDA_COMPILER})
set(CMAKE_CUDA_ARCHITECTURES ${OECMAKE_CUDA_ARCHITECTURES})
EOF
}
