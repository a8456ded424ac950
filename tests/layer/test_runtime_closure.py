"""Run-time dependencies complete by construction.

Every standard-library module the installed tegra_ai package imports (anywhere: at module
level or inside functions) must be shipped by a package in the closure of the tools
recipe's RDEPENDS on the target, as openembedded-core splits the standard library for
that release (python3-manifest.json; tests/layer/data/python3-manifest-<series>.json,
extracted with tools/python-manifest-map; scarthgap-l4t-r35.x uses scarthgap's
openembedded-core). A host test cannot see a missing one otherwise: on the Jetson it is a
ModuleNotFoundError (model-ensemble died on python3-statistics).

The same for what else can be enumerated: the programs the engine service runs and the
libraries the plugin links.
"""

import ast
import json
import os
import re
import subprocess
import sys

import pytest

import emulate

pytestmark = pytest.mark.yocto

DATA = os.path.join(emulate.HERE, "data")
PACKAGE = os.path.join(emulate.ROOT, "scripts", "tegra_ai")
TOOLS = "recipes-devtools/tegra-ai-tools/tegra-ai-tools_0.1.0.bb"
ENGINES = "recipes-ai/tegra-ai-engines/tegra-ai-engines_0.1.0.bb"
PLUGIN = "recipes-ai/tegra-ai-plugin/tegra-ai-plugin_0.1.0.bb"
MANIFEST_SERIES = {"scarthgap": "scarthgap", "scarthgap-l4t-r35.x": "scarthgap", "master": "master"}


def table(series):
    with open(os.path.join(DATA, "python3-manifest-%s.json" % MANIFEST_SERIES[series])) as f:
        return json.load(f)


def imported_modules(root=PACKAGE):
    """{dotted module name: first 'file:line' importing it} of every absolute import."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if n != "__pycache__"]
        for fn in filenames:
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dirpath, fn)
            tree = ast.parse(open(path, "rb").read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module + "." + a.name for a in node.names] + [node.module]
                else:
                    continue
                for n in names:
                    found.setdefault(n, "%s:%d" % (os.path.relpath(path, emulate.ROOT), node.lineno))
    return found


def stdlib_modules(imports):
    """The standard-library ones (``sys.stdlib_module_names``), minus what is built into the interpreter."""
    out = {}
    for name, where in imports.items():
        top = name.split(".")[0]
        if top in sys.stdlib_module_names and top not in sys.builtin_module_names and top != "__future__":
            out[name] = where
    return out


def package_of(module, modules):
    """The package shipping ``module`` (longest dotted prefix in the manifest), else None."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        pkg = modules.get(".".join(parts[:i]))
        if pkg:
            return pkg
    return None


def closure(packages, rdepends):
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(rdepends.get(p, ()))
    return seen


def target_rdepends(relpath, series, tmp_path, package=None):
    try:
        d = emulate.parse(relpath, tmp_path / ("w-" + series), series)
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    return (d.getVar("RDEPENDS:" + (package or d.getVar("PN"))) or "").split(), d


def test_import_scan_sees_imports_inside_functions():
    mods = imported_modules()
    # model-ensemble's statistics import is inside a function
    assert "statistics" in stdlib_modules(mods)
    assert "tegra_ai" not in stdlib_modules(mods) and "numpy" not in stdlib_modules(mods)


@pytest.mark.parametrize("series", emulate.SERIES)
def test_tools_rdepends_cover_every_stdlib_import(series, tmp_path):
    t = table(series)
    rdeps, _d = target_rdepends(TOOLS, series, tmp_path)
    have = closure(rdeps, t["rdepends"])
    missing, unknown = {}, {}
    for module, where in sorted(stdlib_modules(imported_modules()).items()):
        pkg = package_of(module, t["modules"])
        if pkg is None:
            unknown[module] = where
        elif pkg not in have:
            missing.setdefault(pkg, []).append("%s (%s)" % (module, where))
    assert not unknown, "no python3 package of %s ships %s" % (series, unknown)
    assert not missing, "add to RDEPENDS:${PN} of %s: %s" % (TOOLS, missing)


def test_closure_check_fails_without_statistics(tmp_path):
    """The check itself: python3-statistics out of the RDEPENDS leaves statistics uncovered."""
    t = table("scarthgap")
    rdeps, _d = target_rdepends(TOOLS, "scarthgap", tmp_path)
    assert "python3-statistics" in rdeps
    have = closure([r for r in rdeps if r != "python3-statistics"], t["rdepends"])
    assert package_of("statistics", t["modules"]) == "python3-statistics" not in have


# --- what the engine service runs, what the plugin links ----------------------

# Programs a unit may run -> the package that must be in tegra-ai-engines' RDEPENDS
# ('' = part of every systemd image: the shell and coreutils/busybox of the base).
UNIT_PROGRAMS = {
    "tensorrt-optimize": "tegra-ai-tools",
    "sh": "", "stat": "", "echo": "", "[": "", "if": "", "then": "", "fi": "", "else": "",
}


def unit_programs(text):
    progs = set()
    for m in re.finditer(r"^Exec\w+=[-@:+!]*(\S+)(.*)$", text, re.M):
        exe, rest = os.path.basename(m.group(1)), m.group(2)
        progs.add(exe)
        if exe == "sh":
            script = re.search(r"-c '([^']*)'", rest)
            script = script.group(1) if script else ""
            progs |= set(re.findall(r"\$\$\(\s*([\w.\[-]+)", script))      # command substitutions
            script = re.sub(r'"(?:[^"\\]|\\.)*"', '""', script)          # then no strings
            for part in re.split(r";|&&|\|\||\|", script):
                words = part.split()
                if words:
                    progs.add(words[0])
    return progs


@pytest.mark.parametrize("series", emulate.SERIES)
def test_engine_service_programs_are_rdepended(series, tmp_path):
    rdeps, _d = target_rdepends(ENGINES, series, tmp_path)
    files = os.path.join(emulate.ROOT, os.path.dirname(ENGINES), "files")
    progs = set()
    for fn in os.listdir(files):
        if fn.endswith(".service"):
            progs |= unit_programs(open(os.path.join(files, fn)).read())
    assert "tensorrt-optimize" in progs
    unknown = sorted(p for p in progs if p not in UNIT_PROGRAMS)
    assert not unknown, "a unit runs %s: add it to UNIT_PROGRAMS with its package (and RDEPENDS)" % unknown
    assert {UNIT_PROGRAMS[p] for p in progs if UNIT_PROGRAMS[p]} <= set(rdeps)


# CMake link names of the plugin -> the meta-tegra recipe that provides them (DEPENDS);
# the run-time package follows from the library's soname (shlibs) and RDEPENDS.
PLUGIN_LIBS = {"NVINFER_LIBRARY": "tensorrt-core", "CUDA::cudart": "cuda-cudart"}


@pytest.mark.parametrize("series", emulate.SERIES)
def test_plugin_links_only_what_it_depends_on(series, tmp_path):
    rdeps, d = target_rdepends(PLUGIN, series, tmp_path)
    cmake = open(os.path.join(PACKAGE, "plugin", "CMakeLists.txt")).read()
    linked = set()
    for m in re.finditer(r"target_link_libraries\(\s*\S+\s+(?:PUBLIC|PRIVATE|INTERFACE)?([^)]*)\)", cmake):
        linked |= {w.strip("${}") for w in m.group(1).split() if w not in ("PUBLIC", "PRIVATE", "INTERFACE")}
    linked -= {"tegra_ai_preprocess_core"}          # built here
    assert linked and set(linked) <= set(PLUGIN_LIBS), linked
    depends = set((d.getVar("DEPENDS") or "").split())
    assert {PLUGIN_LIBS[x] for x in linked} <= depends
    assert "tensorrt-core" in rdeps


# --- the committed table against openembedded-core itself ---------------------

LAYERS = os.environ.get("TEGRA_AI_YOCTO_LAYERS")


@pytest.mark.skipif(not LAYERS, reason="set TEGRA_AI_YOCTO_LAYERS to a folder with an openembedded-core checkout "
                                       "to re-extract the module table from its python3-manifest.json")
def test_table_is_what_openembedded_core_says():
    oe_core = os.path.join(LAYERS, "openembedded-core")
    series = "master" if "blacksail" in open(os.path.join(oe_core, "meta", "conf", "layer.conf")).read() \
        else "scarthgap"
    out = subprocess.run([sys.executable, os.path.join(emulate.ROOT, "tools", "python-manifest-map"), oe_core,
                          series], stdout=subprocess.PIPE, check=True).stdout
    fresh, committed = json.loads(out), table(series)
    assert fresh["modules"] == committed["modules"]
    assert fresh["rdepends"] == committed["rdepends"]
