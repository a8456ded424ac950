"""The layer's recipes against this repository: versions, and the source paths they take."""

import os
import re

import pytest

from conftest import ROOT, metadata_files

from tegra_ai_layer import compat


def recipes_using(cls):
    out = []
    for f in metadata_files():
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
