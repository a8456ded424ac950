"""This layer with the real openembedded-core, BitBake, meta-openembedded and meta-tegra.

Not in CI (it has no openembedded-core). Set TEGRA_AI_YOCTO_LAYERS to a folder holding one
release line's checkouts (openembedded-core/, bitbake/, meta-openembedded/, meta-tegra/,
optionally meta-tegra-community/; see /work/shared/yocto-parse.md or docs/yocto.md) and run
as a user other than root (BitBake refuses root). TEGRA_AI_YOCTO_BUILDDIR reuses a build
directory (its bblayers.conf must list this repository); otherwise one is made under
pytest's tmp dir (a cold parse takes minutes). It checks that the layer parses, that the
dependency graph resolves, and that what the emulation tests take from
``data/oe-facts.json`` is what ``bitbake -e`` says for that line.
"""

import os
import re
import shlex
import subprocess

import pytest

import emulate

LAYERS = os.environ.get("TEGRA_AI_YOCTO_LAYERS")
MACHINES = {"scarthgap": "jetson-orin-nano-devkit", "scarthgap-l4t-r35.x": "jetson-xavier-nx-devkit",
            "master": "jetson-agx-thor-devkit"}

pytestmark = [
    pytest.mark.yocto,
    pytest.mark.skipif(not LAYERS, reason="set TEGRA_AI_YOCTO_LAYERS to a folder with openembedded-core, bitbake, "
                                          "meta-openembedded and meta-tegra checkouts of one release line"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="BitBake refuses to run as root"),
]


def series_of(layers):
    compat = open(os.path.join(layers, "meta-tegra", "conf", "layer.conf")).read()
    l4t = open(os.path.join(layers, "meta-tegra", "classes", "l4t_version.bbclass")).read()
    if re.search(r'LAYERSERIES_COMPAT_tegra = "scarthgap"', compat):
        return "scarthgap-l4t-r35.x" if re.search(r'L4T_VERSION \?= "35\.', l4t) else "scarthgap"
    return "master"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    layers = os.path.abspath(LAYERS)
    series = series_of(layers)
    builddir = os.environ.get("TEGRA_AI_YOCTO_BUILDDIR")
    if not builddir:
        builddir = str(tmp_path_factory.mktemp("build"))
        os.makedirs(os.path.join(builddir, "conf"))
        with open(os.path.join(builddir, "conf", "local.conf"), "w") as f:
            f.write('MACHINE ??= "%s"\nDISTRO = "nodistro"\nBB_NO_NETWORK = "1"\n'
                    'DISTRO_FEATURES:append = " opengl"\nINIT_MANAGER = "systemd"\nCONF_VERSION = "2"\n'
                    % os.environ.get("TEGRA_AI_YOCTO_MACHINE", MACHINES[series]))
        bblayers = [os.path.join(layers, p) for p in ("openembedded-core/meta", "meta-openembedded/meta-oe",
                                                      "meta-openembedded/meta-python", "meta-tegra",
                                                      "meta-tegra-community")]
        with open(os.path.join(builddir, "conf", "bblayers.conf"), "w") as f:
            f.write('BBPATH = "${TOPDIR}"\nBBFILES ?= ""\nBBLAYERS = "%s %s"\n'
                    % (" ".join(p for p in bblayers if os.path.isdir(p)), emulate.ROOT))
    assert emulate.ROOT in open(os.path.join(builddir, "conf", "bblayers.conf")).read()

    def bitbake(args, check=True, machine=None):
        cmd = ". ./oe-init-build-env %s >/dev/null && bitbake %s" % (shlex.quote(builddir), args)
        env = dict(os.environ, BITBAKEDIR=os.path.join(layers, "bitbake"))
        if machine:   # local.conf says MACHINE ??= (a build dir of yours must, too)
            env.update(MACHINE=machine, BB_ENV_PASSTHROUGH_ADDITIONS="MACHINE")
        res = subprocess.run(["bash", "-c", cmd], cwd=os.path.join(layers, "openembedded-core"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             env=env, timeout=3600)
        if check:
            assert res.returncode == 0, res.stdout[-4000:]
        return res.stdout

    bitbake.builddir = builddir
    envs = {}

    def env(recipe):
        if recipe not in envs:
            out = bitbake("-e " + recipe)
            envs[recipe] = dict(re.findall(r'^(?:export )?([A-Za-z0-9_:${}.+-]+)="(.*)"$', out, re.M))
            envs[recipe]["__text"] = out
        return envs[recipe]

    return series, bitbake, env


def test_parses_without_errors(real):
    _series, bitbake, _env = real
    out = bitbake("-p")
    # a cold parse ends with "... 0 errors."; a cached one only says what it loaded
    assert "ERROR" not in out, out[-3000:]
    assert re.search(r"Parsing of \d+ \.bb files complete .* 0 errors\.|Loaded \d+ entries from dependency cache", out)


def test_dependency_graph_resolves(real, tmp_path):
    _series, bitbake, _env = real
    bitbake("-g packagegroup-tegra-ai tegra-ai-model-digits")


def test_pep517_class_facts(real):
    series, _bitbake, env = real
    e = env("tegra-ai-tools")
    natives = {w for w in e["DEPENDS"].split() if w.startswith("python3-") and w.endswith("-native")}
    recorded = set(emulate.FACTS[series]["pep517"]["native_depends"])
    # the class's own DEPENDS (the rest, pyproject-hooks and packaging, come with build's RDEPENDS)
    class_natives = natives & {"python3-setuptools-native", "python3-wheel-native", "python3-build-native",
                               "python3-installer-native"}
    assert class_natives == recorded & {"python3-setuptools-native", "python3-wheel-native",
                                        "python3-build-native", "python3-installer-native"}
    assert "--no-isolation --wheel" in e["__text"]
    m = re.search(r"^PV=\"(.*)\"", env("python3-setuptools-native")["__text"], re.M)
    assert m and m.group(1) == emulate.FACTS[series]["pep517"]["setuptools"]


def test_cuda_class_facts(real):
    series, _bitbake, env = real
    e = env("tegra-ai-kernels")
    facts = emulate.FACTS[series]
    assert e["CUDAHOSTCXX"] == facts["cuda"]["host_compiler"]  # the name alone, no flags
    assert re.search(re.escape(facts["cuda"]["xcompiler_prefix"]) + r"--sysroot=\S+", e["CUDAFLAGS"]), e["CUDAFLAGS"]
    arch = facts["machine"]["TEGRA_CUDA_ARCHITECTURE"]
    assert "--gpu-architecture=compute_%s --gpu-code=sm_%s" % (arch, arch) in e["CUDAFLAGS"]
    assert e["TEGRA_CUDA_ARCHITECTURE"] == arch


def test_machine_facts(real):
    series, _bitbake, env = real
    e = env("tegra-ai-model-digits")
    m = emulate.FACTS[series]["machine"]
    assert e["L4T_VERSION"] == m["L4T_VERSION"] == e["TEGRA_AI_L4T_VERSION"]
    assert e["TEGRA_AI_TRT_VERSION"] == emulate.FACTS[series]["machine"]["PREFERRED_VERSION_tensorrt-core"].split("-")[0]
    assert e["LAYERSERIES_CORENAMES"] == emulate.FACTS[series]["LAYERSERIES_CORENAMES"]
    assert bool(e.get("UNPACKDIR")) == emulate.FACTS[series]["UNPACKDIR"]
    assert "nostamp" not in re.findall(r"^# do_compile\[(\w+)\]", e["__text"], re.M)


# --- package architectures: what two machines share (oe-core's test_sstate_sametune_samesigs) ---

# (machine A, machine B, recipes whose every task signature must be equal, recipes whose
# do_compile must differ): same SoC family -> everything of ours is shared; Xavier and
# Orin on r35 (one TensorRT) share all but the CUDA code.
SIG_PAIRS = {
    "scarthgap": ("jetson-orin-nano-devkit", "jetson-agx-orin-devkit", (), ()),
    "scarthgap-l4t-r35.x": ("jetson-xavier-nx-devkit", "jetson-agx-orin-devkit", ("tegra-ai-kernels", "tegra-ai-plugin"),
                            ("tegra-ai-kernels", "tegra-ai-plugin")),
    "master": ("jetson-agx-thor-devkit", "jetson-agx-orin-devkit", ("tegra-ai-kernels", "tegra-ai-plugin"),
               ("tegra-ai-kernels", "tegra-ai-plugin")),
}
SIG_RECIPES = ("tegra-ai-tools", "tegra-ai-tools-native", "tegra-ai-engines", "tegra-ai-model-digits",
               "tegra-ai-kernels", "tegra-ai-plugin", "tensorrt-trtexec-path")


def locked_sigs(bitbake, machine):
    """{(recipe, task): signature} from `bitbake -S lockedsigs` (what yocto-check-layer compares)."""
    out = bitbake("-S lockedsigs " + " ".join(SIG_RECIPES), machine=machine)
    path = os.path.join(bitbake.builddir, "locked-sigs.inc")
    sigs = {}
    for pn, task, sig in re.findall(r"^\s*([\w.+-]+):(do_\w+):([0-9a-f]{64})", open(path).read(), re.M):
        sigs[(pn, task)] = sig
    assert sigs, out[-2000:]
    return sigs


def test_machines_share_what_does_not_depend_on_them(real):
    """Two machines: our tools, service, bundle and trtexec link have identical task
    signatures (sstate is reused, nothing rebuilt for the second machine); only the CUDA
    code of another SoC family differs."""
    series, bitbake, _env = real
    a_machine, b_machine, differ, compiled_differently = SIG_PAIRS[series]
    a, b = locked_sigs(bitbake, a_machine), locked_sigs(bitbake, b_machine)
    for pn in SIG_RECIPES:
        tasks = sorted(t for (p, t) in a if p == pn)
        assert tasks, "no signatures of %s" % pn
        # do_build: a no-op task without output or sstate whose hash also covers every
        # dependency's do_build (the machine's kernel's deploy among them): it never
        # makes anything rebuild.
        changed = [t for t in tasks if a.get((pn, t)) != b.get((pn, t)) and t != "do_build"]
        if pn in differ:
            if pn in compiled_differently:
                assert "do_compile" in changed, pn
        else:
            assert not changed, "%s: %s differ between %s and %s" % (pn, changed, a_machine, b_machine)
