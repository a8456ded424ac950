"""Prebuilt engines from a CI Jetson's signed mirror, fetched by the image build.

The mirror is made the way the CI Jetson makes it: the real ``ensure`` (only TensorRT's
engine build replaced: there is no Jetson GPU here) for two Orin Nano SKUs (4 and 8 SMs)
and an older L4T release, then the real ``publish`` with an Ed25519 key. The example model
recipe is parsed with BitBake's parser; its SRC_URI is fetched as BitBake's fetcher
does for these entries (the file at the URL, its sha256 checked against the SRC_URI
flag, copied to UNPACKDIR/subdir); do_compile and do_install run as BitBake runs them,
with the class's postfunc in between.
"""

import hashlib
import json
import os
import shutil

import pytest

import emulate
from test_emulate_model import RECIPE, native_tool

pytestmark = pytest.mark.yocto


def _cache_for(tmp_path, bundle_dir, name, sm_count, l4t, trt="10.3.0.30"):
    from tegra_ai import platform
    from tegra_ai.cache.ensure import ensure
    from tegra_ai.spec import Sidecar
    from tegra_ai.trt import compat
    from tegra_ai.trt.builder import BuildResult, engine_key

    feats = compat.features_for(trt)
    facts = platform.DeviceFacts("8.7", "Orin", "p3767-0005", l4t, sm_count, "12.6")

    def build(entry):
        _key, material = engine_key(entry.sha256, entry.options, feats, facts)
        return BuildResult(engine=("engine sm%d L4T %s" % (sm_count, l4t)).encode(), sidecar=Sidecar.new(material))
    cache = str(tmp_path / name)
    s = ensure([bundle_dir], cache, builder=build, loader=None, runtime=(feats, lambda o: facts),
               show_progress=False, log=lambda m: None)
    assert s["exit_code"] == 0, s
    return cache


@pytest.fixture
def mirror(tmp_path):
    """(mirror dir, public key): what the CI Jetson published for the example model."""
    from tegra_ai.cache.publish import publish
    from tegra_ai.cache.signing import generate_keypair

    # the bundle exactly as the recipe makes it (same model file, same options)
    d = parse(tmp_path / "ci")
    emulate.unpack(d)
    emulate.run(d, "do_compile", env=native_tool(tmp_path))
    bundle = d.getVar("TEGRA_AI_BUNDLE_DIR")
    generate_keypair(str(tmp_path / "keys"), "fleet")
    out = str(tmp_path / "mirror")
    for name, sms, l4t in (("c8", 8, "36.5.0"), ("c4", 4, "36.5.0"), ("old", 8, "36.4.3")):
        publish(_cache_for(tmp_path, bundle, name, sms, l4t), out, str(tmp_path / "keys" / "fleet.key"))
    return out, str(tmp_path / "keys" / "fleet.pub")


def parse(work, **conf):
    try:
        return emulate.parse(RECIPE, work, "scarthgap", dict({"TEGRA_AI_ONNX_CHECK": "0"}, **conf))
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)


def fetch(d):
    """BitBake's fetch + unpack of the mirror entries (file:// here): sha256 checked."""
    unpackdir = d.getVar("UNPACKDIR") or d.getVar("WORKDIR")
    n = 0
    for entry in d.getVar("SRC_URI").split():
        url, _, params = entry.partition(";")
        opts = dict(p.split("=", 1) for p in params.split(";") if "=" in p)
        if "name" not in opts:
            continue
        src = url[len("file://"):]
        want = d.getVarFlag("SRC_URI", opts["name"] + ".sha256sum")
        assert hashlib.sha256(open(src, "rb").read()).hexdigest() == want, "checksum mismatch for " + url
        dest = os.path.join(unpackdir, opts["subdir"])
        os.makedirs(dest, exist_ok=True)
        shutil.copy(src, dest)
        n += 1
    return n


def image_build(tmp_path, mirror_dir, pub, **conf):
    import tegra_ai_layer.prebuilt as prebuilt
    d = parse(tmp_path / "image", TEGRA_AI_PREBUILT_INDEX=os.path.join(mirror_dir, "index.json"),
              TEGRA_AI_PREBUILT_MIRROR="file://" + mirror_dir, TEGRA_AI_MIRROR_PUBKEYS=pub, **conf)
    assert "tensorrt_engine_take_prebuilt" in d.getVarFlag("do_compile", "postfuncs")
    return d, prebuilt


def run_build(tmp_path, d, prebuilt):
    env = native_tool(tmp_path)
    # file:// entries of the layer (the model) as emulate unpacks them, the mirror's as BitBake fetches them
    model_uri = " ".join(e for e in d.getVar("SRC_URI").split() if "tegra-ai-prebuilt" not in e)
    full = d.getVar("SRC_URI")
    d.setVar("SRC_URI", model_uri)
    emulate.unpack(d)
    d.setVar("SRC_URI", full)
    fetched = fetch(d)
    emulate.run(d, "do_compile", env=env)
    warnings = []
    taken, rejected = prebuilt.take(d, log=warnings.append)     # do_compile[postfuncs]
    emulate.run(d, "do_install", env=env)
    seed = d.getVar("D") + "/usr/share/tegra-ai/engines/digits"
    installed = sorted(os.listdir(seed)) if os.path.isdir(seed) else []
    return fetched, taken, rejected, warnings, installed


def test_engines_of_the_image_come_from_the_mirror(tmp_path, mirror):
    mirror_dir, pub = mirror
    d, prebuilt = image_build(tmp_path, mirror_dir, pub)
    # both SKUs of this release, not the old release's engine: 2 engines x (engine, sidecar, signature)
    index = json.load(open(os.path.join(mirror_dir, "index.json")))["signed"]["engines"]
    assert len(index) == 3
    fetched, taken, rejected, warnings, installed = run_build(tmp_path, d, prebuilt)
    assert fetched == 6 and len(taken) == 2 and not rejected and not warnings
    assert len([f for f in installed if f.endswith(".engine")]) == 2
    assert d.getVar("PACKAGE_ARCH") == d.getVar("MACHINE_ARCH")
    for f in installed:
        if f.endswith(".engine.json"):
            assert json.load(open(os.path.join(d.getVar("D") + "/usr/share/tegra-ai/engines/digits", f))) \
                ["key_material"]["device"]["l4t_release"] == "36.5.0"


def test_one_module_only(tmp_path, mirror):
    mirror_dir, pub = mirror
    d, _prebuilt = image_build(tmp_path, mirror_dir, pub, TEGRA_AI_ENGINE_MODULE="p3701-0005")
    assert "tegra-ai-prebuilt" not in d.getVar("SRC_URI")     # none for AGX Orin: first boot builds


def test_changed_sidecar_fails_the_fetch(tmp_path, mirror):
    """A sidecar changed on the mirror after publishing: its sha256 is not the one the
    signed index gave SRC_URI, and BitBake's fetcher stops there."""
    mirror_dir, pub = mirror
    rel = sorted(json.load(open(os.path.join(mirror_dir, "index.json")))["signed"]["engines"])[0]
    side = os.path.join(mirror_dir, rel + ".json")
    data = json.load(open(side))
    data["notes"] = list(data.get("notes") or []) + ["edited"]
    open(side, "w").write(json.dumps(data))
    d, prebuilt = image_build(tmp_path, mirror_dir, pub)
    with pytest.raises(AssertionError, match="checksum mismatch"):
        run_build(tmp_path, d, prebuilt)


def test_edited_index_is_refused_at_parse_time(tmp_path, mirror):
    """The index is signed: edited digests (to let a changed file through) do not verify."""
    import tegra_ai_layer.prebuilt as prebuilt
    mirror_dir, pub = mirror
    path = os.path.join(mirror_dir, "index.json")
    index = json.load(open(path))
    rel = sorted(index["signed"]["engines"])[0]
    index["signed"]["engines"][rel]["sidecar_sha256"] = "0" * 64
    json.dump(index, open(path, "w"))
    from tegra_ai.cache.signing import load_public_keys
    with pytest.raises(prebuilt.PrebuiltError, match="signature does not verify"):
        prebuilt.read_index(path, load_public_keys([pub]))


def test_bad_signature_in_the_download_is_not_installed(tmp_path, mirror):
    """Checked again after the fetch: a signature file that does not verify (a damaged
    download directory) keeps that engine out of the image; the device builds it."""
    mirror_dir, pub = mirror
    d, prebuilt = image_build(tmp_path, mirror_dir, pub)
    real_take = prebuilt.take

    def take(d, log=None):
        src = os.path.join(d.getVar("UNPACKDIR") or d.getVar("WORKDIR"), "tegra-ai-prebuilt", "digits")
        sig = sorted(f for f in os.listdir(src) if f.endswith(".sig"))[0]
        open(os.path.join(src, sig), "wb").write(b"\0" * 64)
        return real_take(d, log)
    prebuilt.take = take
    try:
        fetched, taken, rejected, warnings, installed = run_build(tmp_path, d, prebuilt)
    finally:
        prebuilt.take = real_take
    assert len(taken) == 1 and len(rejected) == 1 and "signature" in rejected[0][2]
    assert len([f for f in installed if f.endswith(".engine")]) == 1 and warnings


def test_another_models_engine_is_not_installed(tmp_path, mirror):
    mirror_dir, pub = mirror
    d, prebuilt = image_build(tmp_path, mirror_dir, pub, **{"TEGRA_AI_MODEL_digits[precision]": "fp32"})
    d.setVarFlag("TEGRA_AI_MODEL_digits", "precision", "fp32")
    fetched, taken, rejected, warnings, installed = run_build(tmp_path, d, prebuilt)
    assert not taken and len(rejected) == 2 and "build options" in rejected[0][2]
    assert not [f for f in installed if f.endswith(".engine")]


@pytest.mark.parametrize("conf, message", [
    ({"TEGRA_AI_PREBUILT_MIRROR": ""}, "TEGRA_AI_PREBUILT_MIRROR"),
    ({"TEGRA_AI_MIRROR_PUBKEYS": ""}, "TEGRA_AI_MIRROR_PUBKEYS is empty"),
    ({"TEGRA_AI_PREBUILT_INDEX": "/nonexistent/index.json"}, "cannot read it"),
    ({"TEGRA_AI_ENGINE_BUILDER": "ssh root@jetson"}, "not both"),
])
def test_bad_settings_stop_parsing(tmp_path, mirror, conf, message):
    import tegra_ai_layer.prebuilt as prebuilt

    mirror_dir, pub = mirror
    base = {"TEGRA_AI_PREBUILT_INDEX": os.path.join(mirror_dir, "index.json"),
            "TEGRA_AI_PREBUILT_MIRROR": "file://" + mirror_dir, "TEGRA_AI_MIRROR_PUBKEYS": pub}
    base.update(conf)

    class D(dict):
        def getVar(self, k, expand=True):
            return self.get(k)

        def appendVar(self, k, v):
            self[k] = (self.get(k) or "") + v

        def setVarFlag(self, *a):
            pass
    with pytest.raises(prebuilt.PrebuiltError, match=message):
        prebuilt.apply(D(base, TEGRA_AI_TRT_VERSION="10.3.0.30", TEGRA_AI_COMPUTE_CAPABILITY="8.7",
                         TEGRA_AI_L4T_VERSION="36.5.0"), ["digits"])
