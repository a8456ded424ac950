"""The mirror workflow through the CLI with a real engine (TensorRT-RTX builds here; the
same commands run with full TensorRT on a Jetson): bundle, ensure on a reference device,
mirror-keygen, publish, then ensure --mirror on a fresh device, over file:// and http://
(a server of this test on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mirror_server import MirrorServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.rtx
pytest.importorskip("cryptography", reason="signed mirrors need cryptography (pip install '.[mirror]')")


def cli(*args, env=None):
    e = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"), TEGRA_AI_TENSORRT="tensorrt_rtx", **(env or {}))
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "TEGRA_AI_ENGINE_MIRRORS",
              "TEGRA_AI_MIRROR_KEYS", "TEGRA_AI_MIRROR_TIMEOUT"):
        if k not in (env or {}):
            e.pop(k, None)
    return subprocess.run([sys.executable, "-m", "tegra_ai.cli.optimize", *args], capture_output=True, text=True,
                          env=e, timeout=300)


def test_publish_then_fleet_fetches(tmp_path, default_model):
    b = str(tmp_path / "bundle")
    ok = lambda p: p.returncode == 0 or pytest.fail(p.stderr)  # noqa: E731
    ok(cli("bundle", default_model, "--out", b, "--name", "digits", "--shapes", "input:1x1x8x8:8x1x8x8:64x1x8x8",
           "--no-check"))
    ref = json.loads(cli("ensure", "--manifest", b, "--cache", str(tmp_path / "ref"), "--json", "--no-progress").stdout)
    assert ref["built"] == 1, ref
    keys = json.loads(cli("mirror-keygen", "--out", str(tmp_path / "keys"), "--json").stdout)
    mirror = str(tmp_path / "mirror")
    pub = cli("publish", "--cache", str(tmp_path / "ref"), "--to", mirror, "--key", keys["private_key"], "--json")
    ok(pub)
    assert json.loads(pub.stdout)["published"] == 1

    dev = cli("ensure", "--manifest", b, "--cache", str(tmp_path / "dev1"), "--json", "--no-progress",
              "--mirror", "file://" + mirror, "--mirror-key", keys["public_key"])
    ok(dev)
    s = json.loads(dev.stdout)
    assert (s["fetched"], s["built"]) == (1, 0) and s["mirrors"] == ["file://" + mirror]
    m = s["models"][0]
    assert m["status"] == "fetched" and m["attempts"][0]["result"] == "hit"
    assert open(m["engine"], "rb").read() == open(ref["models"][0]["engine"], "rb").read()

    # the service's way: everything from the environment (its defaults file), over http
    with MirrorServer(mirror) as srv:
        env = {"TEGRA_AI_ENGINE_MIRRORS": f"{srv.url}/missing {srv.url}", "TEGRA_AI_MIRROR_KEYS": keys["public_key"]}
        dev2 = cli("ensure", "--manifest", b, "--cache", str(tmp_path / "dev2"), "--json", "--no-progress",
                   "--allow-http", env=env)
    ok(dev2)
    m2 = json.loads(dev2.stdout)["models"][0]
    assert [a["result"] for a in m2["attempts"]] == ["miss", "hit"] and m2["source"] == f"mirror {srv.url}"

    # human output of publish: already there
    again = cli("publish", "--cache", str(tmp_path / "ref"), "--to", mirror, "--key", keys["private_key"])
    assert again.returncode == 0 and "0 published, 1 already there" in again.stdout
    # the summary once (issue #16: it was printed twice), nothing of it on stderr
    assert again.stdout.count("published, ") == 1 and "published" not in again.stderr, (again.stdout, again.stderr)
