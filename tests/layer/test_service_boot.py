"""tegra-ai-engines.service as the recipe installs it: the boot is not held back by engine
builds, the documented way for applications to wait for their engines works, and the
unit runs with least privilege.

Boot order is shown twice:

* by systemd's documented dependency rules, applied here to the rendered units and the
  stock units they meet (``boot_waits_for``), so it runs wherever Python does;
* by a real systemd (``systemd --test --system``: "determine the initial start-up
  transaction, dump it and exit"), where systemd is installed: the After= list of
  multi-user.target it computes, and the start jobs of the initial transaction.

Each has a control that puts the unit's default dependencies back (the unit before
issue #19) and sees multi-user.target wait again, so neither check can pass by accident.
"""

import configparser
import os
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict

import pytest

import emulate
from conftest import which_or_skip

pytestmark = pytest.mark.yocto

RECIPE = "recipes-ai/tegra-ai-engines/tegra-ai-engines_0.1.0.bb"
ENGINES = "tegra-ai-engines.service"
APP = "my-detector.service"


def install(tmp_path, series="scarthgap", conf=None):
    return emulate.install(RECIPE, tmp_path / "work", series, conf)


def rendered(d, dropin=False):
    """The installed unit's text (with the mirror drop-in appended: its settings apply after the unit's)."""
    unitdir = d.getVar("D") + d.getVar("systemd_system_unitdir")
    text = open(os.path.join(unitdir, ENGINES)).read()
    if dropin:
        text += "\n" + open(os.path.join(unitdir, ENGINES + ".d", "mirror.conf")).read()
    return text


def documented_application(unit_text):
    """The application unit the engine unit's header comment tells users to write."""
    lines = [line[len("#     "):] for line in unit_text.splitlines() if line.startswith("#     ")]
    assert any("After=tegra-ai-engines.service" in line for line in lines), "the unit documents no application"
    return "\n".join(["[Unit]", "Description=an application that runs an engine"]
                     + lines[1:]).replace("[Install]", "[Service]\nType=exec\nExecStart=/bin/true\n[Install]")


def without_boot_fix(unit_text):
    """The unit with its default dependencies back (as before issue #19): the control case."""
    return re.sub(r"(?m)^DefaultDependencies=no\n", "", unit_text)


# --------------------------------------------------------------------------- the documented rules

def parse(text):
    """{section: {key: [values]}}; repeated keys accumulate, as systemd's list settings do."""
    out = defaultdict(lambda: defaultdict(list))
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out[section][key.strip()].append(value.strip())
    return out


def words(unit, section, key):
    return [w for v in unit[section].get(key, []) for w in v.split()]


def setting(unit, section, key, default):
    values = unit[section].get(key)
    return values[-1] if values else default


# The stock units the rendered ones meet, as systemd ships them (units/*.target in
# systemd's source; the same in v250-v257, and on this machine in /lib/systemd/system).
STOCK = {
    "sysinit.target": "[Unit]\nWants=local-fs.target swap.target\nAfter=local-fs.target swap.target\n"
                      "DefaultDependencies=no\n",
    "basic.target": "[Unit]\nRequires=sysinit.target\nWants=sockets.target timers.target paths.target slices.target\n"
                    "After=sysinit.target sockets.target paths.target slices.target tmp.mount\n",
    "multi-user.target": "[Unit]\nRequires=basic.target\nConflicts=rescue.service rescue.target\n"
                         "After=basic.target rescue.service rescue.target\nAllowIsolate=yes\n",
    "graphical.target": "[Unit]\nRequires=multi-user.target\nWants=display-manager.service\n"
                        "Conflicts=rescue.service rescue.target\n"
                        "After=multi-user.target rescue.service rescue.target display-manager.service\n",
    "shutdown.target": "[Unit]\nDefaultDependencies=no\nRefuseManualStart=yes\n",
}


def order(units):
    """{unit: units it is ordered after}, by systemd's documented rules, for enabled units."""
    parsed = {name: parse(text) for name, text in units.items()}
    after, wants = defaultdict(set), defaultdict(set)

    def defaults(name):
        return name not in parsed or setting(parsed[name], "Unit", "DefaultDependencies", "yes") in ("yes", "true", "1")

    for name, u in parsed.items():
        # systemd.unit(5): After= orders this unit after the listed ones, Before= the reverse
        after[name].update(words(u, "Unit", "After"))
        for other in words(u, "Unit", "Before"):
            after[other].add(name)
        wants[name].update(words(u, "Unit", "Wants") + words(u, "Unit", "Requires"))
        # systemd.unit(5) [Install]: enabling WantedBy=/RequiredBy= adds Wants=/Requires= to the named unit
        for other in words(u, "Install", "WantedBy") + words(u, "Install", "RequiredBy"):
            wants[other].add(name)
        # systemd.service(5), default dependencies: After=sysinit.target basic.target,
        # Before=shutdown.target, unless DefaultDependencies=no
        if name.endswith(".service") and defaults(name):
            after[name].update({"sysinit.target", "basic.target"})
            after["shutdown.target"].add(name)
    # systemd.target(5), default dependencies: "Target units will automatically complement all
    # configured dependencies of type Wants= or Requires= with dependencies of type After=
    # unless DefaultDependencies=no is set in the specified units."
    for target in list(wants):
        if target.endswith(".target") and defaults(target):
            after[target].update(u for u in wants[target] if defaults(u))
    return after, parsed


def boot_waits_for(units, first, unit):
    """Does ``first`` become active only after ``unit`` is up, and is that after the build?

    Up means (systemd.service(5), Type=): oneshot "after the main process exits", notify after
    READY=1; simple and exec at once. Ordering is transitive: a unit after one that is after
    ``unit`` waits too."""
    after, parsed = order(units)
    seen, todo = set(), [first]
    while todo:
        name = todo.pop()
        for other in after.get(name, ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    kind = setting(parsed[unit], "Service", "Type", "simple") if unit in parsed else "simple"
    return unit in seen and kind in ("oneshot", "notify", "forking", "dbus")


def boot_units(engines_text):
    units = dict(STOCK)
    units[ENGINES] = engines_text
    units[APP] = documented_application(engines_text)
    return units


def test_boot_does_not_wait_for_engines_by_the_documented_rules(tmp_path):
    text = rendered(install(tmp_path))
    units = boot_units(text)
    for target in ("multi-user.target", "graphical.target"):
        assert not boot_waits_for(units, target, ENGINES), target
        assert not boot_waits_for(units, target, APP), target
    # ... while the documented application still waits for its engines
    assert boot_waits_for(units, APP, ENGINES)
    # and the unit is still started at every boot (multi-user.target wants it)
    assert "multi-user.target" in words(parse(text), "Install", "WantedBy")
    # control: with its default dependencies (the unit before issue #19) the boot waits
    old = boot_units(without_boot_fix(text))
    assert boot_waits_for(old, "multi-user.target", ENGINES)
    assert boot_waits_for(old, "graphical.target", ENGINES)
    # an application installed into multi-user.target instead holds it (what the unit's comment says)
    held = dict(units)
    held[APP] = units[APP].replace("WantedBy=tegra-ai-engines.service", "WantedBy=multi-user.target")
    assert boot_waits_for(held, "multi-user.target", ENGINES)


def test_no_network_wait_without_mirrors(tmp_path):
    u = parse(rendered(install(tmp_path)))
    assert "network-online.target" not in words(u, "Unit", "After") + words(u, "Unit", "Wants")
    assert setting(u, "Service", "PrivateNetwork", "no") == "yes"


# --------------------------------------------------------------------------- a real systemd

def _systemd_test(units, tmp):
    """Run ``systemd --test --system`` on ``units`` (+ the stock units); the dump's text.

    systemd refuses test mode as root, so as root it runs as nobody (setpriv)."""
    binary = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)), None)
    stock = next((p for p in ("/lib/systemd/system", "/usr/lib/systemd/system")
                  if os.path.exists(os.path.join(p, "multi-user.target"))), None)
    if not binary or not stock:
        pytest.skip("systemd is not installed (Debian package 'systemd')")
    unitdir = os.path.join(tmp, "units")
    os.makedirs(unitdir)
    for name, text in units.items():
        with open(os.path.join(unitdir, name), "w") as f:
            f.write(text)
        for target in words(parse(text), "Install", "WantedBy"):   # systemctl enable
            wants = os.path.join(unitdir, target + ".wants")
            os.makedirs(wants, exist_ok=True)
            os.symlink(os.path.join("..", name), os.path.join(wants, name))
    for dirpath, dirnames, filenames in os.walk(tmp):
        os.chmod(dirpath, 0o755)
    cmd = [binary, "--test", "--system", "--unit=multi-user.target", "--no-pager"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("systemd --test refuses to run as root and setpriv (util-linux) is missing")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    env = dict(os.environ, SYSTEMD_UNIT_PATH=unitdir + ":" + stock, SYSTEMD_LOG_LEVEL="err", HOME=tmp)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                         timeout=120, cwd=tmp)
    if res.returncode != 0 or "-> Unit multi-user.target:" not in res.stdout:
        pytest.skip("systemd --test does not run here (rc %d): %s" % (res.returncode, res.stderr.strip()[-300:]))
    return res.stdout


def dump_unit(dump, name):
    """{key: [values]} of one unit in systemd's dump ('\\t\\tAfter: x.service (origin-default)')."""
    m = re.search(r"(?ms)^\t-> Unit %s:\n(.*?)(?=^\t-> Unit |\Z)" % re.escape(name), dump)
    assert m, "%s is not in systemd's dump" % name
    out = defaultdict(list)
    for line in m.group(1).splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            out[key].append(value.split(" (")[0])
    return out


def start_jobs(dump):
    return set(re.findall(r"Action: (\S+) -> start", dump))


def test_boot_does_not_wait_for_engines_in_real_systemd(tmp_path):
    text = rendered(install(tmp_path))
    units = {ENGINES: text, APP: documented_application(text)}
    with tempfile.TemporaryDirectory(prefix="tegra-ai-systemd-") as tmp:
        dump = _systemd_test(units, tmp)
    target = dump_unit(dump, "multi-user.target")
    assert ENGINES in target["Wants"]                      # started at every boot ...
    assert ENGINES not in target["After"], target["After"]  # ... but the target does not wait for it
    assert APP not in target["After"]
    assert {ENGINES, APP, "multi-user.target"} <= start_jobs(dump)   # all in the boot transaction
    assert ENGINES in dump_unit(dump, APP)["After"]         # the application waits for its engines
    engines = dump_unit(dump, ENGINES)
    assert "network-online.target" not in engines["After"]
    # the GPU's device nodes stay reachable: no device list (ProtectClock= adds none to an open policy)
    assert engines["DevicePolicy"] == ["auto"] and not engines.get("DeviceAllow"), engines.get("DeviceAllow")
    assert engines["User"] == ["tegra-ai"] and engines["UMask"] == ["0022"]
    # control: the unit as it was before issue #19
    with tempfile.TemporaryDirectory(prefix="tegra-ai-systemd-") as tmp:
        old = _systemd_test({ENGINES: without_boot_fix(text)}, tmp)
    assert ENGINES in dump_unit(old, "multi-user.target")["After"]


# --------------------------------------------------------------------------- least privilege

def _security(tool, text, tmp_path):
    path = tmp_path / ENGINES
    path.write_text(text)
    res = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True,
                         env=dict(os.environ, SYSTEMD_LOG_LEVEL="err", SYSTEMD_COLORS="0"))
    m = re.search(r"Overall exposure level for %s: (\d+\.\d)" % re.escape(ENGINES), res.stdout)
    if not m:
        pytest.skip("systemd-analyze security --offline is not available here: %s" % res.stdout[-300:])
    return float(m.group(1)), res.stdout


@pytest.mark.parametrize("mirrors", [False, True], ids=["no-mirror", "mirror-drop-in"])
def test_least_privilege_score(tmp_path, mirrors):
    tool = which_or_skip("systemd-analyze", "install systemd (Debian package 'systemd')")
    conf = None
    if mirrors:
        from tegra_ai.cache.signing import generate_keypair

        try:
            keys = generate_keypair(str(tmp_path / "keys"), name="fleet")
        except Exception as e:  # noqa: BLE001 - no signing backend on this machine
            pytest.skip("no Ed25519 backend (cryptography or openssl): %s" % e)
        conf = {"TEGRA_AI_ENGINE_MIRRORS": "https://engines.example.com/fleet",
                "TEGRA_AI_MIRROR_PUBKEYS": keys["public_key"]}
    d = install(tmp_path, "master", conf)
    text = rendered(d, dropin=mirrors)
    score, report = _security(tool, text, tmp_path)
    assert score <= 3.0, report
    # and the unit (with its drop-in) passes `systemd-analyze verify`
    fake = tmp_path / "bin" / "tensorrt-optimize"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    path = tmp_path / ENGINES
    path.write_text(text.replace("/usr/bin/tensorrt-optimize", str(fake)))
    res = subprocess.run([tool, "verify", "--man=no", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    assert not [line for line in res.stdout.splitlines() if ENGINES in line], res.stdout
    u = parse(text)
    assert setting(u, "Service", "User", "root") == "tegra-ai"
    assert setting(u, "Service", "CapabilityBoundingSet", None) == ""
    assert set(words(u, "Service", "SupplementaryGroups")) == {"video", "render"}
    assert setting(u, "Service", "UMask", None) == "0022"
    families = set(words(u, "Service", "RestrictAddressFamilies"))
    assert families == ({"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} if mirrors else {"AF_UNIX"})
    # control: the same unit as root with none of the hardening scores EXPOSED
    bare = re.sub(r"(?ms)^# Least privilege.*?(?=^\[Install\])", "", text)
    assert _security(tool, bare, tmp_path)[0] > 7.0


def test_cache_is_owned_by_the_service_user(tmp_path):
    d = install(tmp_path, "scarthgap", {"TEGRA_AI_ENGINE_CACHE": "/data/tegra-ai/engines",
                                        "TEGRA_AI_ENGINES_USER": "engines"})
    tmpfiles = open(os.path.join(d.getVar("D"), "usr/lib/tmpfiles.d/tegra-ai-engines.conf")).read()
    assert "d /data/tegra-ai/engines 0755 engines engines -" in tmpfiles
    assert "Z /data/tegra-ai/engines - engines engines -" in tmpfiles   # a root-owned cache of an older image
    u = parse(rendered(d))
    assert setting(u, "Service", "User", None) == "engines"
    pn = d.getVar("PN")
    assert d.getVar("USERADD_PACKAGES").split() == [pn]
    params = d.getVar("USERADD_PARAM:" + pn).split()
    assert params[-1] == "engines" and "--system" in params and "video,render" in params
    assert "--system video" in d.getVar("GROUPADD_PARAM:" + pn)
