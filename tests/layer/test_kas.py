"""kas/*.yml against kas's own JSON schema, and the layout the issue asks for."""

import glob
import json
import os

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read kas files (pip install kas)")

KAS_DIR = os.path.join(ROOT, "kas")
TARGETS = {
    "jetson-orin-nano-devkit.yml": "scarthgap",
    "jetson-agx-orin-devkit.yml": "scarthgap",
    "jetson-xavier-nx-devkit.yml": "scarthgap-l4t-r35",
    "jetson-agx-thor-devkit.yml": "master",
}


def kas_files():
    return sorted(glob.glob(os.path.join(KAS_DIR, "*.yml")) + glob.glob(os.path.join(KAS_DIR, "include", "*.yml")))


@pytest.fixture(scope="module")
def schema():
    try:
        import kas
    except ImportError:
        pytest.skip("kas is not installed (pip install kas)")
    path = os.path.join(os.path.dirname(kas.__file__), "schema-kas.json")
    if not os.path.exists(path):
        pytest.skip("this kas has no schema-kas.json")
    with open(path) as f:
        return json.load(f)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def merged(path, seen=None):
    """The configuration after includes (repository-root-relative, as kas resolves them for one repo)."""
    seen = seen or []
    data = load(path)
    result = {}
    for inc in data.get("header", {}).get("includes", []):
        assert isinstance(inc, str), "includes from other repositories are not expected here"
        inc_path = os.path.join(ROOT, inc)
        assert os.path.exists(inc_path), "%s includes %s, which does not exist" % (path, inc)
        assert inc_path not in seen, "include loop at %s" % inc
        deep_merge(result, merged(inc_path, seen + [inc_path]))
    deep_merge(result, data)
    return result


def deep_merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            deep_merge(a[k], v)
        else:
            a[k] = v


@pytest.mark.parametrize("path", kas_files(), ids=lambda p: os.path.relpath(p, KAS_DIR))
def test_valid_against_kas_schema(schema, path):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(load(path), schema)


def test_schema_check_can_fail(schema):
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"header": {"version": 14}, "machine": 7, "repoz": {}}, schema)


@pytest.mark.parametrize("name, series", sorted(TARGETS.items()))
def test_targets(schema, name, series):
    jsonschema = pytest.importorskip("jsonschema")
    path = os.path.join(KAS_DIR, name)
    cfg = merged(path)
    jsonschema.validate(cfg, schema)
    assert cfg["machine"] == name[:-4]
    repos = cfg["repos"]
    assert "meta-tegra-ai" in repos and repos["meta-tegra-ai"] is None
    for repo in ("openembedded-core", "bitbake", "meta-openembedded", "meta-tegra", "meta-tegra-community"):
        assert repo in repos, "%s does not pin %s" % (name, repo)
        commit = repos[repo].get("commit", "")
        assert len(commit) == 40 and int(commit, 16) >= 0, "%s: %s is not pinned to a commit" % (name, repo)
    branch = {"scarthgap": "scarthgap", "scarthgap-l4t-r35": "scarthgap-l4t-r35.x", "master": "master"}[series]
    assert repos["meta-tegra"]["branch"] == branch
    conf = "\n".join(cfg["local_conf_header"].values())
    assert "packagegroup-tegra-ai" in conf and "tegra-ai-model-digits" in conf
    assert 'INIT_MANAGER = "systemd"' in conf


DOC = os.path.join(ROOT, "docs", "yocto.md")


def doc_snippet():
    """The kas snippet of docs/yocto.md ("Adding the layer to your own project")."""
    import re
    text = open(DOC).read()
    m = re.search(r"<!-- kas-snippet: begin -->\n```yaml\n(.*?)```\n<!-- kas-snippet: end -->", text, re.S)
    assert m, "docs/yocto.md lost its kas snippet markers"
    return m.group(1)


def test_doc_snippet_is_valid_kas(schema):
    jsonschema = pytest.importorskip("jsonschema")
    cfg = yaml.safe_load(doc_snippet())
    jsonschema.validate(cfg, schema)
    repo = cfg["repos"]["meta-tegra-ai"]
    assert repo["branch"] == "main" and len(repo["commit"]) == 40 and repo["layers"] == {".": None}


def test_doc_snippet_in_a_kas_project(tmp_path):
    """The snippet, included from a user's kas project that already has openembedded-core,
    meta-openembedded and meta-tegra, as `kas dump` resolves it (offline: the repositories
    are given by path, this checkout standing in for the snippet's url/commit)."""
    import shutil
    import subprocess
    import sys
    kas = shutil.which("kas") or os.path.join(os.path.dirname(sys.executable), "kas")
    if not os.path.exists(kas):
        pytest.skip("kas is not installed (pip install kas)")
    project = tmp_path / "product"
    (project / "kas").mkdir(parents=True)
    for layer in ("openembedded-core/meta", "meta-openembedded/meta-oe", "meta-openembedded/meta-python", "meta-tegra"):
        (tmp_path / "src" / layer / "conf").mkdir(parents=True)
        (tmp_path / "src" / layer / "conf" / "layer.conf").write_text("# stand-in\n")
    snippet = yaml.safe_load(doc_snippet())
    snippet["repos"]["meta-tegra-ai"] = {"path": ROOT, "layers": {".": None}}
    (project / "kas" / "tegra-ai.yml").write_text(yaml.safe_dump(snippet))
    (project / "product.yml").write_text(yaml.safe_dump({
        "header": {"version": 14, "includes": ["kas/tegra-ai.yml"]},
        "machine": "jetson-orin-nano-devkit", "distro": "nodistro", "target": "core-image-base",
        "repos": {
            "product": None,
            "openembedded-core": {"path": str(tmp_path / "src" / "openembedded-core"), "layers": {"meta": None}},
            "meta-openembedded": {"path": str(tmp_path / "src" / "meta-openembedded"),
                                  "layers": {"meta-oe": None, "meta-python": None}},
            "meta-tegra": {"path": str(tmp_path / "src" / "meta-tegra")},
        }}))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    env = dict(os.environ, KAS_WORK_DIR=str(tmp_path / "work"))
    (tmp_path / "work").mkdir()
    res = subprocess.run([kas, "dump", str(project / "product.yml")], cwd=str(project), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    dumped = yaml.safe_load(res.stdout)
    assert dumped["repos"]["meta-tegra-ai"]["path"] == ROOT
    conf = dumped["local_conf_header"]["tegra-ai"]
    assert "packagegroup-tegra-ai" in conf and 'DISTRO_FEATURES:append = " opengl"' in conf
