"""Files and folders the tools write are 0644 and 0755 whatever the umask (issue #19: the
engine service writes as its own user, applications read as theirs; the unit also sets
UMask=0022). The whole flow runs under umask 000: bundle, ensure into a cache, keygen,
publish into a mirror, ensure from that mirror on another device."""

from __future__ import annotations

import os
import stat

import pytest

from test_cache_ensure import FakeBuilder
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions


def modes(root):
    """{relative path: permission bits} of every file and folder under ``root`` (links skipped)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                out[os.path.relpath(p, root)] = stat.S_IMODE(st.st_mode)
    out["."] = stat.S_IMODE(os.stat(root).st_mode)
    return out


@pytest.fixture
def umask_000():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def run(bundle, cache, sources=()):
    b = FakeBuilder()
    return ensure([bundle], cache, builder=b, loader=None, runtime=b.rt, sources=tuple(sources), show_progress=False,
                  log=lambda m: None)


def check(root, private=()):
    got = modes(root)
    assert len(got) > 1, root
    for rel, mode in got.items():
        want = 0o600 if rel in private else 0o755 if os.path.isdir(os.path.join(root, rel)) else 0o644
        assert mode == want, "%s/%s is %o, expected %o" % (root, rel, mode, want)


def test_everything_written_is_0644_or_0755_under_umask_000(tmp_path, model_factory, umask_000):
    bundle = str(tmp_path / "deep" / "bundle")       # intermediate folders are created too
    sha, files = model_digest(model_factory("net.onnx", input_dims=(1, 3, 8, 8)))
    add_to_bundle(bundle, "net", files, sha, BuildOptions(precision="fp16"))
    check(bundle)

    cache = str(tmp_path / "data" / "engines")
    s = run(bundle, cache)
    assert s["built"] == 1
    check(cache)
    assert os.path.islink(os.path.join(cache, "net.engine"))

    pytest.importorskip("cryptography", reason="signed mirrors need cryptography (pip install '.[mirror]')")
    from tegra_ai.cache import signing
    from tegra_ai.cache.mirror import mirror_sources
    from tegra_ai.cache.publish import publish

    keys = signing.generate_keypair(str(tmp_path / "keys" / "fleet"))
    check(str(tmp_path / "keys" / "fleet"), private={"mirror.key"})
    mirror = str(tmp_path / "srv" / "mirror")
    assert publish(cache, mirror, keys["private_key"])["published"] == 1
    check(mirror)

    device = str(tmp_path / "device")
    s = run(bundle, device, mirror_sources(["file://" + mirror], [keys["public_key"]]))
    assert s["fetched"] == 1
    check(device)
