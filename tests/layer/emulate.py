"""Run the layer's recipe tasks on this machine the way BitBake would, without openembedded-core.

A recipe is parsed with BitBake's real parser (``bb`` from bitbake-setup), this layer's
conf/layer.conf and classes, and stand-ins of openembedded-core's and meta-tegra's
classes (``oe-stubs/``). A task runs as BitBake runs a shell task: ``bb.data.emit_func``
writes the function with every function it calls and every exported variable, and
bash runs it in the task's directory. What differs between release lines (which native
Python packages the PEP 517 class provides, what meta-tegra's cuda class puts in
CUDAHOSTCXX and CUDAFLAGS, the FILES of our packages) comes from ``data/oe-facts.json``,
recorded from ``bitbake -e`` on the real layers (``test_real_layers.py`` re-checks it).
"""

import fnmatch
import io
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STUBS = os.path.join(HERE, "oe-stubs")
FACTS_FILE = os.path.join(HERE, "data", "oe-facts.json")
SERIES = ("scarthgap", "scarthgap-l4t-r35.x", "master")

with open(FACTS_FILE) as _f:
    FACTS = json.load(_f)


def recipe(relpath):
    return os.path.join(ROOT, relpath)


def _bb():
    stubs = os.path.join(HERE, "stubs")
    if stubs not in sys.path:
        sys.path.insert(0, stubs)
    lib = os.path.join(ROOT, "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import bb  # noqa: F401  (callers skip when missing)
    import bb.data
    import bb.parse
    import bb.siggen
    return bb


# What openembedded-core's bitbake.conf and the machine configuration give every recipe.
def _base_vars(workdir, series, machine_facts):
    v = {
        "PYTHON_SITEPACKAGES_DIR": "/usr/lib/python%d.%d/site-packages" % sys.version_info[:2],
        "TMPDIR": os.path.join(workdir, "tmp"), "WORKDIR": workdir,
        "B": "${S}", "D": os.path.join(workdir, "image"), "PARALLEL_MAKE": "-j2",
        "BUILD_ARCH": "x86_64", "LAYERSERIES_CORENAMES": FACTS[series]["LAYERSERIES_CORENAMES"],
        "PN": "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[0] or 'defaultpkgname'}",
        "PV": "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[1] or '1.0'}",
    }
    # bitbake.conf's default S (a recipe without sources, e.g. one that installs a symlink,
    # keeps it): scarthgap "${WORKDIR}/${BP}", master "${UNPACKDIR}/${BP}". Without it B stays
    # the literal "${S}" and a task ran in a folder of that name under the caller's cwd.
    v["BP"] = "${BPN}-${PV}"
    v["S"] = "${WORKDIR}/${BP}"
    if FACTS[series].get("UNPACKDIR"):
        v["UNPACKDIR"] = os.path.join(workdir, "sources")
        v["S"] = "${UNPACKDIR}/${BP}"
    v.update(machine_facts)
    return v


def parse(relpath, workdir, series="scarthgap", conf=None, variant=""):
    """The data store of recipe ``relpath`` for ``series`` (building in ``workdir``);
    ``variant``: "" (target) or a BBCLASSEXTEND variant ("native", "nativesdk")."""
    bb = _bb()
    d = bb.data.init()
    d.setVar("__bbclasstype", "recipe")
    d.setVar("BBPATH", ROOT + ":" + STUBS)
    bb.parse.handle(os.path.join(STUBS, "conf", "bitbake.conf"), d, True, baseconfig=True)
    d.setVar("LAYERDIR", ROOT)
    bb.parse.handle(os.path.join(ROOT, "conf", "layer.conf"), d, True, baseconfig=True)
    d.delVar("LAYERDIR")
    bb.parse.siggen = bb.siggen.init(d)
    for k, val in _base_vars(str(workdir), series, FACTS[series]["machine"]).items():
        d.setVar(k, val)
    # BitBake's original environment: a data store object, whose str() differs on every
    # run (anything that puts it into a signature makes every build rebuild)
    origenv = bb.data.init()
    conf = dict(conf or {})
    if "SSH_AUTH_SOCK" in conf:
        origenv.setVar("SSH_AUTH_SOCK", conf.pop("SSH_AUTH_SOCK"))
    d.setVar("BB_ORIGENV", origenv)
    d.setVar("BBFILES", conf.pop("BBFILES", ""))    # the other layers' recipes (none unless given)
    for k, val in conf.items():
        d.setVar(k, val)
    return bb.parse.handle(recipe(relpath), d)[variant]


def unpack(d):
    """do_unpack for file:// entries: copy them from FILESPATH (FILESEXTRAPATHS) into UNPACKDIR/subdir."""
    unpackdir = d.getVar("UNPACKDIR") or d.getVar("WORKDIR")
    paths = [p for p in (d.getVar("FILESEXTRAPATHS") or "").split(":") if p and p != "__default"]
    paths.append(os.path.join(os.path.dirname(d.getVar("FILE")), "files"))
    for entry in (d.getVar("SRC_URI") or "").split():
        url, _, params = entry.partition(";")
        assert url.startswith("file://"), "only file:// entries are emulated: %s" % entry
        name = url[len("file://"):]
        opts = dict(p.split("=", 1) for p in params.split(";") if "=" in p)
        src = next((os.path.join(p, name) for p in paths if os.path.exists(os.path.join(p, name))), None)
        assert src, "%s not found in %s" % (name, paths)
        dest = os.path.join(unpackdir, opts.get("subdir", ""), name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)
    for post in (d.getVarFlag("do_unpack", "postfuncs") or "").split():
        run(d, post)


def script(d, func):
    """The shell script BitBake would run for ``func`` (bb.data.emit_func) with bbnote/bbfatal."""
    import bb.data
    out = io.StringIO()
    out.write("#!/bin/bash\nset -e\n")
    out.write("bbnote() { echo \"NOTE: $*\"; }\nbbwarn() { echo \"WARNING: $*\" >&2; }\n"
              "bbplain() { echo \"$*\"; }\nbbfatal() { echo \"ERROR: $*\" >&2; exit 1; }\n"
              "bbfatal_log() { bbfatal \"$@\"; }\nbbdebug() { :; }\n")
    bb.data.emit_func(func, out, d)
    out.write("\n%s\n" % func)
    return out.getvalue()


def run_python(d, func):
    """Run python function ``func`` as BitBake runs a task's python prefunc (bb.build.exec_func)."""
    import bb.build
    if not d.getVar("T"):
        d.setVar("T", os.path.join(d.getVar("WORKDIR"), "temp"))
    os.makedirs(d.getVar("T"), exist_ok=True)
    bb.build.exec_func(func, d)


def run(d, func, env=None, check=True, cwd=None):
    """Run shell function ``func`` as a task (cwd: the first of its [dirs], else B), after
    its [prefuncs] (python ones in this process, as BitBake runs them in its own)."""
    for pre in (d.getVarFlag(func, "prefuncs") or "").split():
        if d.getVarFlag(pre, "python"):
            run_python(d, pre)
        else:
            run(d, pre, env=env, cwd=cwd)
    text = script(d, func)
    dirs = (d.getVarFlag(func, "dirs") or "").split()
    for flag in ("cleandirs",):
        for p in (d.getVarFlag(func, flag) or "").split():
            shutil.rmtree(p, ignore_errors=True)
            os.makedirs(p)
    os.makedirs(d.getVar("WORKDIR"), exist_ok=True)
    cwd = cwd or (dirs[-1] if dirs else d.getVar("B"))
    # an unexpanded or relative directory would be made under the test run's cwd (the repository)
    assert os.path.isabs(cwd) and "${" not in cwd, "task directory of %s is not an absolute path: %r" % (func, cwd)
    os.makedirs(cwd, exist_ok=True)
    path = os.path.join(d.getVar("WORKDIR"), "run.%s.sh" % func)
    with open(path, "w") as f:
        f.write(text)
    full_env = dict(os.environ)
    full_env.update(env or {})
    res = subprocess.run(["bash", path], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (exit %d):\n%s" % (func, res.returncode, res.stdout[-6000:]))
    return res


def install(relpath, workdir, series="scarthgap", conf=None):
    """Parse ``relpath``, unpack it and run its do_install; skips the calling test when
    BitBake's bb package is missing."""
    try:
        d = parse(relpath, workdir, series, conf)
    except ImportError as e:
        import pytest

        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    unpack(d)
    run(d, "do_install")
    return d


def installed_files(d):
    """Paths (from /) of every file and symlink under D."""
    root = d.getVar("D")
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            found.append("/" + os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


def package_split(d, files):
    """{package: [files]} as do_package assigns them: PACKAGES in order, first FILES pattern wins."""
    packages = (d.getVar("PACKAGES") or "").split()
    owner = {}
    for f in files:
        for pkg in packages:
            patterns = (d.getVar("FILES:" + pkg) or "").split()
            if any(f == p or f.startswith(p.rstrip("/") + "/") or fnmatch.fnmatch(f, p) for p in patterns):
                owner.setdefault(pkg, []).append(f)
                break
        else:
            owner.setdefault(None, []).append(f)
    return owner


def task_hash(d, task):
    """BitBake's base hash of ``task`` (bb.data.generate_dependencies/_hash, as siggen does)."""
    import bb.data
    d = bb.data.createCopy(d)
    # openembedded-core's list (recorded; it does NOT hold BB_ORIGENV or SSH_AUTH_SOCK) plus the layer's
    ignored = set((d.getVar("BB_BASEHASH_IGNORE_VARS") or "").split()) | set(FACTS["BB_BASEHASH_IGNORE_VARS"])
    d.setVar("__BBTASKS", [task])
    if d.getVar("__exportlist", False) is None:
        d.setVar("__exportlist", set())
    tasklist, gendeps, lookup = bb.data.generate_dependencies(d, ignored)
    _deps, basehash = bb.data.generate_dependency_hash(tasklist, gendeps, lookup, ignored, "recipe")
    return basehash["recipe:" + task]
