"""tegra-ai-engines: the recipe's do_install run as BitBake runs it, the unit it installs
checked with systemd-analyze, the installed tree against FILES, and the on-device
behaviour the unit promises (hardening, cache location, tmpfs warning)."""

import configparser
import os
import re
import subprocess

import pytest

import emulate
from conftest import which_or_skip

pytestmark = pytest.mark.yocto

RECIPE = "recipes-ai/tegra-ai-engines/tegra-ai-engines_0.1.0.bb"


@pytest.fixture(params=emulate.SERIES)
def series(request):
    return request.param


def install(tmp_path, series, conf=None):
    return emulate.install(RECIPE, tmp_path / "work", series, conf)


def unit(d):
    text = open(d.getVar("D") + d.getVar("systemd_system_unitdir") + "/tegra-ai-engines.service").read()
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read_string(text)
    return text, cp


def test_installed_tree_matches_files(tmp_path, series):
    d = install(tmp_path, series)
    files = emulate.installed_files(d)
    assert d.getVar("systemd_system_unitdir") + "/tegra-ai-engines.service" in files
    assert "/etc/default/tegra-ai-engines" in files
    assert "/usr/lib/tmpfiles.d/tegra-ai-engines.conf" in files
    split = emulate.package_split(d, files)
    assert None not in split, "installed but in no package: %s" % split.get(None)
    text, _ = unit(d)
    assert not re.search(r"@[A-Z_]+@", text), "a placeholder was not filled"


def test_unit_hardening_and_order(tmp_path):
    d = install(tmp_path, "scarthgap")
    _, u = unit(d)
    s = u["Service"]
    for key, value in {"ProtectSystem": "strict", "PrivateNetwork": "yes", "NoNewPrivileges": "yes",
                       "StateDirectory": "tegra-ai/engines", "ReadWritePaths": "/var/lib/tegra-ai/engines",
                       "NotifyAccess": "all", "TimeoutStartSec": "24h"}.items():
        assert s.get(key) == value, key
    assert "nvfancontrol.service" in u["Unit"]["After"].split()
    # a model's own time limit reaches ensure; the other A/B slot's engines are kept
    env = s["Environment"]
    assert "TEGRA_AI_MODEL_TIMEOUT=3600" in env and "TEGRA_AI_PRUNE=stale" in env
    assert "--prune ${TEGRA_AI_PRUNE}" in s["ExecStart"]
    assert "--model-timeout ${TEGRA_AI_MODEL_TIMEOUT}" in s["ExecStart"]
    assert "143" in s["RestartPreventExitStatus"].split()
    # without mirrors: no network, no drop-in, no keys
    assert not os.path.exists(d.getVar("D") + d.getVar("systemd_system_unitdir") + "/tegra-ai-engines.service.d")


def _keypair(tmp_path):
    from tegra_ai.cache.signing import generate_keypair

    try:
        return generate_keypair(str(tmp_path / "keys"), name="fleet")
    except Exception as e:  # noqa: BLE001 - no signing backend on this machine
        pytest.skip("no Ed25519 backend (cryptography or openssl): %s" % e)


def test_mirrors_install_keys_defaults_and_network_drop_in(tmp_path):
    keys = _keypair(tmp_path)
    d = install(tmp_path, "master", {"TEGRA_AI_ENGINE_MIRRORS": "https://engines.example.com/fleet",
                                     "TEGRA_AI_MIRROR_PUBKEYS": keys["public_key"]})
    root = d.getVar("D")
    assert open(root + "/etc/tegra-ai/mirror-keys/fleet.pub").read() == open(keys["public_key"]).read()
    defaults = open(root + "/etc/default/tegra-ai-engines").read()
    assert 'TEGRA_AI_ENGINE_MIRRORS="https://engines.example.com/fleet"' in defaults
    assert "TEGRA_AI_MIRROR_KEYS=/etc/tegra-ai/mirror-keys" in defaults
    assert "TEGRA_AI_MIRROR_TIMEOUT=30" in defaults and "TEGRA_AI_MIRROR_TOTAL_TIMEOUT=300" in defaults
    dropin = open(root + d.getVar("systemd_system_unitdir") + "/tegra-ai-engines.service.d/mirror.conf").read()
    assert "After=network-online.target" in dropin and "PrivateNetwork=no" in dropin
    assert "IPAddressDeny=\n" in dropin and "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK" in dropin
    assert "python3-cryptography" in d.getVar("RDEPENDS:" + d.getVar("PN"))
    split = emulate.package_split(d, emulate.installed_files(d))
    assert None not in split, "installed but in no package: %s" % split.get(None)
    # the defaults file says what ensure reads from its environment
    from tegra_ai.cache.mirror import parse_mirror_list

    assert parse_mirror_list("https://engines.example.com/fleet") == ["https://engines.example.com/fleet"]


@pytest.mark.parametrize("conf, words", [
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://m.example.com"}, "TEGRA_AI_MIRROR_PUBKEYS is empty"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "ftp://m.example.com", "TEGRA_AI_MIRROR_PUBKEYS": "/x.pub"}, "not an https://"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://m", "TEGRA_AI_MIRROR_PUBKEYS": "/nonexistent/k.pub"}, "not an existing file"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://m", "TEGRA_AI_MIRROR_PUBKEYS": "PRIVATE"}, "TEGRA_AI_MIRROR_PUBKEYS"),
])
def test_bad_mirror_settings_fail_at_parse_time(tmp_path, conf, words, caplog):
    if conf.get("TEGRA_AI_MIRROR_PUBKEYS") == "PRIVATE":
        conf = dict(conf, TEGRA_AI_MIRROR_PUBKEYS=_keypair(tmp_path)["private_key"])   # never into an image
    with pytest.raises(Exception) as e:   # bb.fatal: BBHandledException, the message in BitBake's log
        install(tmp_path, "scarthgap", conf)
    assert words in str(e.value) + caplog.text


def test_cache_location_is_a_variable(tmp_path):
    """A read-only rootfs keeps the cache on a persistent partition: /data, not /var/lib."""
    d = install(tmp_path, "master", {"TEGRA_AI_ENGINE_CACHE": "/data/tegra-ai/engines"})
    text, u = unit(d)
    s = u["Service"]
    assert "StateDirectory" not in s
    assert s["ReadWritePaths"] == "/data/tegra-ai/engines"
    assert "TEGRA_AI_ENGINE_CACHE=/data/tegra-ai/engines" in s["Environment"]
    assert u["Unit"]["RequiresMountsFor"] == "/data/tegra-ai/engines"
    tmpfiles = open(os.path.join(d.getVar("D"), "usr/lib/tmpfiles.d/tegra-ai-engines.conf")).read()
    assert "d /data/tegra-ai/engines 0755 tegra-ai tegra-ai -" in tmpfiles
    assert "/var/lib/tegra-ai" not in text


def test_systemd_analyze_verify_installed_unit(tmp_path):
    tool = which_or_skip("systemd-analyze", "install systemd (Debian package 'systemd')")
    d = install(tmp_path, "scarthgap")
    text, _ = unit(d)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "tensorrt-optimize"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    path = tmp_path / "tegra-ai-engines.service"
    path.write_text(text.replace("/usr/bin/tensorrt-optimize", str(fake)))
    res = subprocess.run([tool, "verify", "--man=no", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    ours = [line for line in res.stdout.splitlines() if "tegra-ai-engines" in line]
    assert not ours, res.stdout


def _exec_start_pre(u, cache):
    """ExecStartPre as systemd runs it: '$$' -> '$', '%%' -> '%', then /bin/sh -c."""
    cmd = u["Service"]["ExecStartPre"].replace("$$", "$").replace("%%", "%")
    assert cmd.startswith("/bin/sh -c '") and cmd.endswith("'")
    return subprocess.run(["/bin/sh", "-c", cmd[len("/bin/sh -c '"):-1]], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, TEGRA_AI_ENGINE_CACHE=str(cache)))


def _fstype(path):
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


def test_warns_when_the_cache_is_in_ram(tmp_path):
    d = install(tmp_path, "scarthgap")
    _, u = unit(d)
    shm = "/dev/shm"
    if not os.path.isdir(shm) or _fstype(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm to try the warning on")
    res = _exec_start_pre(u, shm)
    assert res.returncode == 0
    assert res.stderr.startswith("<4>WARNING: the engine cache /dev/shm is on tmpfs"), res.stderr
    persistent = next((p for p in (str(tmp_path), os.getcwd(), "/") if _fstype(p) != "tmpfs"), None)
    if persistent:
        res = _exec_start_pre(u, persistent)
        assert res.returncode == 0 and res.stderr == ""
