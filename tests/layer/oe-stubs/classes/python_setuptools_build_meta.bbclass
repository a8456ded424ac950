# openembedded-core classes-recipe/python_setuptools_build_meta.bbclass +
# python_pep517.bbclass (tasks as on master; scarthgap runs `nativepython3 -m build`,
# the same frontend). DEPENDS per series: ../data/oe-facts.json.
PEP517_SOURCE_PATH ?= "${S}"
PEP517_WHEEL_PATH ?= "${WORKDIR}/dist"
PEP517_BUILD_OPTS ?= ""
PEP517_INSTALL_PYTHON = "python3"
INSTALL_WHEEL_COMPILE_BYTECODE ?= "--compile-bytecode=0"

python_pep517_do_configure () {
    :
}

python_pep517_do_compile () {
    pyproject-build --no-isolation --wheel --outdir ${PEP517_WHEEL_PATH} ${PEP517_SOURCE_PATH} ${PEP517_BUILD_OPTS}
}
do_compile[cleandirs] += "${PEP517_WHEEL_PATH}"

python_pep517_do_install () {
    COUNT=$(find ${PEP517_WHEEL_PATH} -name '*.whl' -maxdepth 1 | wc -l)
    if test $COUNT -eq 0; then
        bbfatal No wheels found in ${PEP517_WHEEL_PATH}
    elif test $COUNT -gt 1; then
        bbfatal More than one wheel found in ${PEP517_WHEEL_PATH}, this should not happen
    fi
    nativepython3 -m installer ${INSTALL_WHEEL_COMPILE_BYTECODE} --interpreter "${USRBINPATH}/env ${PEP517_INSTALL_PYTHON}" --prefix=${prefix} --destdir=${D} ${PEP517_WHEEL_PATH}/*.whl
}

do_configure() {
    python_pep517_do_configure
}
do_compile() {
    python_pep517_do_compile
}
do_install() {
    python_pep517_do_install
}
FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}"
