"""Bad-input catalogue of the layer's settings: each wrong value stops parsing (bitbake -p)
with one message that names the variable, before any task runs or any file is written.

(The model options' catalogue is in test_class_bitbake.py and test_engines_lib.py.)
"""

import logging

import pytest

import emulate

pytestmark = pytest.mark.yocto

ENGINES = "recipes-ai/tegra-ai-engines/tegra-ai-engines_0.1.0.bb"
MODEL = "recipes-ai/tegra-ai-model-digits/tegra-ai-model-digits_0.1.0.bb"
SSH = "ssh -o BatchMode=yes root@orin-ref"
# prebuilt-engine settings whose files exist (this file stands in for the index; @PUB@ is
# replaced by a real Ed25519 public key made for the test)
PREBUILT = {"TEGRA_AI_PREBUILT_INDEX": __file__, "TEGRA_AI_PREBUILT_MIRROR": "https://engines.example.com/fleet",
            "TEGRA_AI_MIRROR_PUBKEYS": "@PUB@"}

CASES = [
    # on-device locations (tegra_ai_paths.bbclass), for the service and for model recipes
    (ENGINES, {"TEGRA_AI_ENGINE_CACHE": "engines"}, "TEGRA_AI_ENGINE_CACHE = 'engines': give an absolute path"),
    (ENGINES, {"TEGRA_AI_ENGINE_CACHE": "/"}, "TEGRA_AI_ENGINE_CACHE = '/': give an absolute path"),
    (ENGINES, {"TEGRA_AI_ENGINE_CACHE": "/data/my engines"}, "may not contain spaces"),
    (ENGINES, {"TEGRA_AI_ENGINE_CACHE": "/data/a,b"}, "may not contain spaces"),
    (ENGINES, {"TEGRA_AI_MODELS_DIR": ""}, "TEGRA_AI_MODELS_DIR = '': give an absolute path"),
    (ENGINES, {"TEGRA_AI_ENGINE_CACHE": "/usr/share/tegra-ai/models/cache"}, "overlaps TEGRA_AI_MODELS_DIR"),
    (MODEL, {"TEGRA_AI_ENGINE_SEED": "/var/lib/tegra-ai/engines"}, "overlaps TEGRA_AI_ENGINE_SEED"),
    (MODEL, {"TEGRA_AI_ENGINE_SEED": "seed"}, "TEGRA_AI_ENGINE_SEED = 'seed': give an absolute path"),
    # the service's time limits and retries
    (ENGINES, {"TEGRA_AI_ENGINES_TIMEOUT": "forever"}, "TEGRA_AI_ENGINES_TIMEOUT = 'forever': a systemd time span"),
    (ENGINES, {"TEGRA_AI_ENGINES_RETRY_WINDOW": "6 hours"}, "TEGRA_AI_ENGINES_RETRY_WINDOW = '6 hours'"),
    (ENGINES, {"TEGRA_AI_MODEL_TIMEOUT": "1h"}, "TEGRA_AI_MODEL_TIMEOUT = '1h': a whole number of seconds"),
    (ENGINES, {"TEGRA_AI_MODEL_TIMEOUT": "0"}, "TEGRA_AI_MODEL_TIMEOUT = '0': a whole number of seconds"),
    (ENGINES, {"TEGRA_AI_ENGINES_RETRIES": "-1"}, "TEGRA_AI_ENGINES_RETRIES = '-1': a whole number"),
    (ENGINES, {"TEGRA_AI_MIRROR_TIMEOUT": "30s"}, "TEGRA_AI_MIRROR_TIMEOUT = '30s': a whole number of seconds"),
    (ENGINES, {"TEGRA_AI_MIRROR_TOTAL_TIMEOUT": "0"}, "TEGRA_AI_MIRROR_TOTAL_TIMEOUT = '0': a whole number of seconds"),
    # the service's system user
    (ENGINES, {"TEGRA_AI_ENGINES_USER": "root"}, "TEGRA_AI_ENGINES_USER = 'root': a system user name other than root"),
    (ENGINES, {"TEGRA_AI_ENGINES_USER": "Tegra AI"}, "TEGRA_AI_ENGINES_USER = 'Tegra AI': a system user name"),
    # the image-build-time builder
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": SSH, "TEGRA_AI_ENGINE_BUILDER_CACHE": "builder-cache"},
     "TEGRA_AI_ENGINE_BUILDER_CACHE = 'builder-cache': an absolute path on the builder"),
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": SSH, "TEGRA_AI_ENGINE_BUILDER_CACHE": "/var/lib/$(reboot)"},
     "TEGRA_AI_ENGINE_BUILDER_CACHE = '/var/lib/$(reboot)'"),
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": SSH, "TEGRA_AI_ENGINE_BUILDER_MODULE": "Orin\nNano"},
     "TEGRA_AI_ENGINE_BUILDER_MODULE = 'Orin\\nNano': the module's part number"),
    # key format 3: the module is its part number, not the carrier board's model string
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": SSH,
             "TEGRA_AI_ENGINE_BUILDER_MODULE": "NVIDIA Jetson Orin Nano Developer Kit"},
     "TEGRA_AI_ENGINE_BUILDER_MODULE = 'NVIDIA Jetson Orin Nano Developer Kit': the module's part number"),
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": "local"}, "an x86 build host cannot build Jetson engines"),
    # prebuilt engines from a signed mirror
    (MODEL, dict(PREBUILT, TEGRA_AI_PREBUILT_MIRROR=""), "TEGRA_AI_PREBUILT_MIRROR = '' is not the mirror's"),
    (MODEL, dict(PREBUILT, TEGRA_AI_PREBUILT_MIRROR="ftp://m/x"), "TEGRA_AI_PREBUILT_MIRROR = 'ftp://m/x'"),
    (MODEL, dict(PREBUILT, TEGRA_AI_MIRROR_PUBKEYS=""), "TEGRA_AI_MIRROR_PUBKEYS is empty"),
    (MODEL, dict(PREBUILT, TEGRA_AI_MIRROR_PUBKEYS="fleet.pub"), "TEGRA_AI_MIRROR_PUBKEYS: 'fleet.pub' is not an existing"),
    (MODEL, dict(PREBUILT, TEGRA_AI_PREBUILT_INDEX="/nonexistent/index.json"), "cannot read it"),
    (MODEL, PREBUILT, "not valid JSON"),
    (MODEL, dict(PREBUILT, TEGRA_AI_ENGINE_BUILDER=SSH), "not both"),
    (MODEL, dict(PREBUILT, TEGRA_AI_ENGINE_MODULE="Orin Nano"), "TEGRA_AI_ENGINE_MODULE = 'Orin Nano': the module's part"),
    (MODEL, dict(PREBUILT, TEGRA_AI_MIRROR_PUBKEYS=__file__), "is not a PEM key file"),
    (MODEL, {"TEGRA_AI_ENGINE_BUILDER": SSH, "TEGRA_CUDA_ARCHITECTURE": "", "TEGRA_AI_COMPUTE_CAPABILITY": ""},
     "the target's compute capability is unknown"),
]


@pytest.fixture
def bb_messages():
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("BitBake")
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


@pytest.mark.parametrize("recipe, conf, message", CASES, ids=lambda v: v if isinstance(v, str) and "/" not in v
                         else None)
def test_bad_setting_stops_parsing(tmp_path, bb_messages, recipe, conf, message):
    try:
        import bb
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    work = tmp_path / "work"
    if "@PUB@" in conf.values():
        from tegra_ai.cache.signing import generate_keypair
        generate_keypair(str(tmp_path / "keys"), "fleet")
        conf = {k: (str(tmp_path / "keys" / "fleet.pub") if v == "@PUB@" else v) for k, v in conf.items()}
    with pytest.raises(bb.BBHandledException):
        emulate.parse(recipe, work, "scarthgap", conf)
    errors = [m for m in bb_messages if message in m]
    assert len(errors) == 1, bb_messages
    assert errors[0].count("\n") == 0, "one line: %r" % errors[0]
    assert not work.exists() or not any(work.iterdir()), "parsing wrote files"


@pytest.mark.parametrize("recipe", [ENGINES, MODEL])
def test_defaults_parse(tmp_path, recipe):
    """The catalogue is not vacuous: the same recipes parse with the defaults."""
    try:
        d = emulate.parse(recipe, tmp_path / "work", "scarthgap")
    except ImportError as e:
        pytest.skip("BitBake's bb package is not installed (pip install bitbake-setup): %s" % e)
    assert d.getVar("TEGRA_AI_ENGINE_CACHE") == "/var/lib/tegra-ai/engines"
