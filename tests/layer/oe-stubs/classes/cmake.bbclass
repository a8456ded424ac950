# openembedded-core classes-recipe/cmake.bbclass: the parts our recipes reach.
OECMAKE_SOURCEPATH ??= "${S}"
OECMAKE_GENERATOR ?= "Unix Makefiles"
EXTRA_OECMAKE ?= ""

cmake_do_generate_toolchain_file() {
    cat > ${WORKDIR}/toolchain.cmake <<EOF
set(CMAKE_SYSTEM_NAME Linux)
EOF
}

cmake_do_configure() {
    cmake_do_generate_toolchain_file
    cmake -G "${OECMAKE_GENERATOR}" -S ${OECMAKE_SOURCEPATH} -B ${B} \
        -DCMAKE_INSTALL_PREFIX:PATH=${prefix} -DCMAKE_INSTALL_DATADIR:PATH=${@os.path.relpath(d.getVar('datadir'), d.getVar('prefix'))} \
        -DCMAKE_INSTALL_LIBDIR:PATH=${@os.path.relpath(d.getVar('libdir'), d.getVar('prefix'))} \
        -DCMAKE_TOOLCHAIN_FILE:FILEPATH=${WORKDIR}/toolchain.cmake ${EXTRA_OECMAKE} -Wno-dev
}

cmake_do_compile() {
    cmake --build ${B} -- ${PARALLEL_MAKE}
}

cmake_do_install() {
    DESTDIR=${D} cmake --install ${B}
}

do_configure() {
    cmake_do_configure
}
do_compile() {
    cmake_do_compile
}
do_install() {
    cmake_do_install
}
