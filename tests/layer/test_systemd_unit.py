"""tegra-ai-engines.service: structure, and `systemd-analyze verify` where systemd is installed."""

import configparser
import os
import re
import subprocess

import pytest

from conftest import ROOT, which_or_skip

UNIT_DIR = os.path.join(ROOT, "recipes-ai", "tegra-ai-engines", "files")
UNIT = os.path.join(UNIT_DIR, "tegra-ai-engines.service")
RECIPE_DIR = os.path.join(ROOT, "recipes-ai", "tegra-ai-engines")


def render(bindir, sysconfdir="/etc", modelsdir="/usr/share/tegra-ai/models",
           cache="/var/lib/tegra-ai/engines"):
    """What the recipe's do_install writes (same placeholders, same defaults)."""
    text = open(UNIT).read()
    for k, v in {"@BINDIR@": bindir, "@SYSCONFDIR@": sysconfdir, "@MODELSDIR@": modelsdir,
                 "@ENGINECACHE@": cache, "@ENGINESEED@": "/usr/share/tegra-ai/engines", "@TIMEOUT@": "24h", "@RETRIES@": "4", "@RETRYWINDOW@": "6h",
                 "@MODELTIMEOUT@": "3600", "@STATEDIRECTORY@": "StateDirectory=tegra-ai/engines",
                 "@SERVICEUSER@": "tegra-ai"}.items():
        text = text.replace(k, v)
    return text


def parsed(text):
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read_string(text)
    return cp


def test_recipe_fills_every_placeholder():
    recipe = [f for f in os.listdir(RECIPE_DIR) if f.endswith(".bb")]
    assert len(recipe) == 1
    text = open(os.path.join(RECIPE_DIR, recipe[0])).read()
    for placeholder in ("@BINDIR@", "@SYSCONFDIR@", "@MODELSDIR@", "@ENGINECACHE@", "@ENGINESEED@", "@TIMEOUT@",
                        "@RETRIES@", "@RETRYWINDOW@", "@MODELTIMEOUT@", "@STATEDIRECTORY@", "@SERVICEUSER@"):
        assert placeholder in text
    assert not re.search(r"@[A-Z_]+@", render("/usr/bin"))   # (SystemCallFilter=@group is systemd's syntax)


def test_unit_contract():
    u = parsed(render("/usr/bin"))
    s = u["Service"]
    assert s["Type"] == "oneshot" and s["RemainAfterExit"] == "yes"
    assert s["ExecStart"].startswith("/usr/bin/tensorrt-optimize ensure --manifest ${TEGRA_AI_MODELS_DIR} "
                                     "--cache ${TEGRA_AI_ENGINE_CACHE}")
    assert "TEGRA_AI_MODELS_DIR=/usr/share/tegra-ai/models" in s["Environment"]
    assert "TEGRA_AI_ENGINE_CACHE=/var/lib/tegra-ai/engines" in s["Environment"]
    # engines prebuilt into the read-only rootfs seed the persistent cache
    assert "--seed ${TEGRA_AI_ENGINE_SEED}" in s["ExecStart"]
    assert "TEGRA_AI_ENGINE_SEED=/usr/share/tegra-ai/engines" in s["Environment"]
    # the whole run may take hours; each model has its own limit (TEGRA_AI_MODEL_TIMEOUT)
    assert s["TimeoutStartSec"] == "24h" and "TEGRA_AI_MODEL_TIMEOUT=3600" in s["Environment"]
    assert s["Restart"] == "on-failure"          # retried after a failure
    # bad input, no TensorRT, cache not writable (full, read-only), stopped
    assert set(s["RestartPreventExitStatus"].split()) == {"2", "69", "73", "143"}
    assert u["Unit"]["StartLimitBurst"] == "4"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    # applications order themselves After= this unit; it must not hold up the whole boot
    # (test_service_boot.py derives the boot order)
    assert "multi-user.target" not in u["Unit"].get("Before", "")
    assert u["Unit"]["DefaultDependencies"] == "no"


def test_systemd_analyze_verify(tmp_path):
    tool = which_or_skip("systemd-analyze", "install systemd (Debian package 'systemd')")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "tensorrt-optimize"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / "tegra-ai-engines.service"
    unit.write_text(render(str(bindir), sysconfdir=str(tmp_path)))
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    # Lines about other units on this machine (or a system not booted with systemd) are not ours.
    ours = [line for line in res.stdout.splitlines() if "tegra-ai-engines" in line]
    assert not ours, res.stdout


def test_systemd_analyze_verify_can_fail(tmp_path):
    tool = which_or_skip("systemd-analyze", "install systemd (Debian package 'systemd')")
    unit = tmp_path / "tegra-ai-engines.service"
    unit.write_text(render(str(tmp_path / "missing-bin")).replace("Type=oneshot", "Type=oneshoot"))
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert "tegra-ai-engines" in res.stdout
