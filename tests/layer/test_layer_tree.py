"""The layer's recipes against this repository: versions, and the source paths they take."""

import os
import re

import pytest

from conftest import ROOT, metadata_files

from tegra_ai_layer import compat


def recipes_using(cls):
    out = []
    for f in metadata_files():
        if "/docs/" in f:
            continue  # examples for users' own layers
        if f.endswith(".bb") and re.search(r"^inherit .*\b%s\b" % cls, open(f).read(), re.M):
            out.append(f)
    return out


def test_recipe_versions_follow_pyproject():
    version = compat.project_version(ROOT)
    assert version != "0.0.0"
    recipes = recipes_using("tegra_ai_source") + recipes_using("tensorrt_engine")
    assert recipes
    for f in recipes:
        assert os.path.basename(f).endswith("_%s.bb" % version), \
            "%s: rename it to <pn>_%s.bb (pyproject.toml's version)" % (os.path.relpath(f, ROOT), version)


@pytest.mark.parametrize("recipe", recipes_using("tegra_ai_source"), ids=os.path.basename)
def test_source_files_exist(recipe):
    m = re.search(r'^TEGRA_AI_SOURCE_FILES = "([^"]*)"', open(recipe).read(), re.M)
    assert m, "%s sets no TEGRA_AI_SOURCE_FILES" % recipe
    for path in m.group(1).split():
        assert os.path.exists(os.path.join(ROOT, path)), "%s needs %s, which is not in the repository" % (
            os.path.basename(recipe), path)


@pytest.mark.parametrize("path", [
    "scripts/tegra_ai/models/digits.onnx",
    "scripts/tegra_ai/models/digits.preprocess.json",
    "scripts/tegra_ai/kernels/CMakeLists.txt",
    "scripts/tegra_ai/plugin/CMakeLists.txt",
])
def test_files_the_recipes_build_from(path):
    assert os.path.exists(os.path.join(ROOT, path)), "%s is missing: the layer's recipes build from it" % path


def test_unit_file_is_taken_from_files_dir():
    assert os.path.exists(os.path.join(ROOT, "recipes-ai", "tegra-ai-engines", "files", "tegra-ai-engines.service"))


# --- what yocto-check-layer and meta-tegra users expect -------------------------

def test_license_checksum_is_the_repositorys_license():
    import hashlib
    md5 = hashlib.md5(open(os.path.join(ROOT, "LICENSE"), "rb").read()).hexdigest()
    layer_conf = open(os.path.join(ROOT, "conf", "layer.conf")).read()
    source_class = open(os.path.join(ROOT, "classes-recipe", "tegra_ai_source.bbclass")).read()
    assert 'TEGRA_AI_LICENSE_CHKSUM = "file://${TEGRA_AI_LAYERDIR}/LICENSE;md5=%s"' % md5 in layer_conf
    assert 'LIC_FILES_CHKSUM = "file://LICENSE;md5=%s"' % md5 in source_class
    for f in metadata_files():
        text = open(f).read()
        if f.endswith(".bb") and "COMMON_LICENSE_DIR}/MIT" in text:
            raise AssertionError("%s: point LIC_FILES_CHKSUM at the repository's LICENSE" % f)


def test_classes_are_in_classes_recipe():
    """Since langdale, recipe classes live in classes-recipe/ (yocto-check-layer on master)."""
    assert not os.path.isdir(os.path.join(ROOT, "classes"))
    for c in ("tensorrt_engine", "tegra_ai_source", "tegra_ai_paths"):
        assert os.path.exists(os.path.join(ROOT, "classes-recipe", c + ".bbclass"))


def test_security_and_readme_sections():
    """yocto-check-layer's test_readme (openembedded-core scripts/lib/checklayer/cases/common.py),
    including the e-mail address it failed on; a README that names another README skips
    its checks there, so ours must not."""
    assert os.path.getsize(os.path.join(ROOT, "SECURITY.md")) > 0
    data = open(os.path.join(ROOT, "README.md")).read()
    assert not re.search("README", data, re.IGNORECASE)
    assert "maintainer" in data.lower() and "patch" in data.lower()
    assert re.compile(r"[^@]+@[^@]+").match(data)
    assert re.search(r"Maintainer: [^<\n]+<[^@>\s]+@[^>\s]+>", data)


def test_feature_packages(bb_layer_data):
    assert bb_layer_data.getVar("FEATURE_PACKAGES_tegra-ai") == "packagegroup-tegra-ai"
    assert bb_layer_data.getVar("FEATURE_PACKAGES_tegra-ai-dev") == "packagegroup-tegra-ai-dev-tools"


def test_tegra_only_recipes_declare_it():
    """Recipes whose packages need meta-tegra's TensorRT are skipped on other machines (world builds)."""
    for f in metadata_files():
        if not f.endswith(".bb") or "/docs/" in f:
            continue
        text = open(f).read()
        if re.search(r"tensorrt|tegra-ai-engines|tegra-ai-tools", text.split("COMPATIBLE_MACHINE")[0]):
            assert re.search(r'^COMPATIBLE_MACHINE(:class-target)? = "\((tegra|cuda)\)"', text, re.M), f


def test_onnx_native_append_only_where_onnx_exists(tmp_path):
    class D(object):
        def __init__(self, v):
            self.v = v

        def getVar(self, name):
            return self.v.get(name)
    with_onnx = tmp_path / "meta-tegra-community"
    (with_onnx / "recipes-devtools" / "onnx").mkdir(parents=True)
    (with_onnx / "recipes-devtools" / "onnx" / "onnx_1.20.1.bb").write_text("")
    without = tmp_path / "meta-tegra"
    without.mkdir()
    assert compat.appends_if_recipe(D({"BBLAYERS": "%s %s" % (without, with_onnx)}), "onnx", "X/*.bbappend") == \
        "X/*.bbappend"
    assert compat.appends_if_recipe(D({"BBLAYERS": str(without)}), "onnx", "X/*.bbappend") == ""
    # as conf/layer.conf calls it: only when the configuration enables the build-time check
    both = "%s %s" % (without, with_onnx)
    assert compat.appends_if_recipe(D({"BBLAYERS": both}), "onnx", "X/*.bbappend", "TEGRA_AI_ONNX_CHECK") == ""
    assert compat.appends_if_recipe(D({"BBLAYERS": both, "TEGRA_AI_ONNX_CHECK": "0"}), "onnx", "X/*.bbappend",
                                    "TEGRA_AI_ONNX_CHECK") == ""
    assert compat.appends_if_recipe(D({"BBLAYERS": both, "TEGRA_AI_ONNX_CHECK": "1"}), "onnx", "X/*.bbappend",
                                    "TEGRA_AI_ONNX_CHECK") == "X/*.bbappend"
    assert "'TEGRA_AI_ONNX_CHECK')" in open(os.path.join(ROOT, "conf", "layer.conf")).read()
    assert os.path.exists(os.path.join(ROOT, "dynamic-layers", "onnx-native", "onnx_%.bbappend"))


def test_oeqa_runtime_cases_compile(tmp_path):
    import py_compile
    path = os.path.join(ROOT, "lib", "oeqa", "runtime", "cases", "tegra_ai.py")
    py_compile.compile(path, doraise=True, cfile=str(tmp_path / "tegra_ai.pyc"))
    text = open(path).read()
    assert "OEHasPackage([\"tegra-ai-engines\"])" in text and "class TegraAIEnginesTest(OERuntimeTestCase)" in text
