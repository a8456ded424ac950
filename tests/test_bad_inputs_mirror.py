"""Bad-input catalogue of engine mirrors: ensure --mirror*, publish and mirror-keygen.

Each case: a documented exit code, one error line, no traceback, clean JSON stdout and no
file created, changed or removed (tests/badinput.py)."""

from __future__ import annotations

import pytest

from badinput import assert_bad_input
from test_cache_ensure import FakeBuilder
from tegra_ai.cache import signing
from tegra_ai.cache.ensure import ensure
from tegra_ai.cache.manifest import add_to_bundle
from tegra_ai.cli.optimize import main
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import BuildOptions

pytest.importorskip("cryptography", reason="signed mirrors need cryptography (pip install '.[mirror]')")


@pytest.fixture
def ws(tmp_path, model_factory, monkeypatch):
    """cwd with a bundle, a filled engine cache, a key pair and a few bad files."""
    for name in ("TEGRA_AI_ENGINE_MIRRORS", "TEGRA_AI_MIRROR_KEYS", "TEGRA_AI_MIRROR_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    sha, files = model_digest(model_factory("net.onnx", input_dims=(1, 3, 8, 8)))
    add_to_bundle(str(tmp_path / "bundle"), "net", files, sha, BuildOptions(precision="fp16"))
    b = FakeBuilder()
    ensure([str(tmp_path / "bundle")], str(tmp_path / "cache"), builder=b, loader=None, runtime=b.rt,
           show_progress=False, log=lambda m: None)
    signing.generate_keypair(str(tmp_path / "keys"))
    (tmp_path / "garbage.pem").write_text("this is not a key\n")
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "emptykeys").mkdir()
    (tmp_path / "emptycache").mkdir()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "holiday.jpg").write_text("x")
    (tmp_path / "afile").write_text("x")
    return tmp_path


ENSURE = ["ensure", "--manifest", "bundle", "--cache", "devcache", "--json"]
KEY = ["--mirror-key", "keys/mirror.pub"]

ENSURE_CASES = [
    ("ftp-scheme", ["--mirror", "ftp://h/x", *KEY], 2, "scheme ftp: is not supported"),
    ("no-scheme", ["--mirror", "engines/dir", *KEY], 2, "scheme (none) is not supported"),
    ("plain-http", ["--mirror", "http://h/x", *KEY], 2, "is plain http"),
    ("spaces", ["--mirror", "https://h/a b", *KEY], 2, "spaces or control characters"),
    ("empty-url", ["--mirror", "", *KEY], 2, "empty mirror URL"),
    ("file-with-host", ["--mirror", "file://server/engines", *KEY], 2, "file:///DIR"),
    ("file-relative", ["--mirror", "file:engines", *KEY], 2, "needs an absolute path"),
    ("no-host", ["--mirror", "https:///engines", *KEY], 2, "has no host"),
    ("credentials", ["--mirror", "https://u:pw@h/x", *KEY], 2, "user name or password"),
    ("bad-port", ["--mirror", "https://h:99999/x", *KEY], 2, "port out of range"),
    ("query", ["--mirror", "https://h/x?token=1", *KEY], 2, "query or fragment"),
    ("no-key", ["--mirror", "https://h/x"], 2, "needs a trusted public key"),
    ("missing-key", ["--mirror", "https://h/x", "--mirror-key", "nope.pub"], 2, "nope.pub does not exist"),
    ("garbage-key", ["--mirror", "https://h/x", "--mirror-key", "garbage.pem"], 2, "is not a PEM key file"),
    ("cert-as-key", ["--mirror", "https://h/x", "--mirror-key", "cert.pem"], 2, "is not an Ed25519 public key"),
    ("private-as-key", ["--mirror", "https://h/x", "--mirror-key", "keys/mirror.key"], 2, "is a private key"),
    ("empty-key-dir", ["--mirror", "https://h/x", "--mirror-key", "emptykeys"], 2, "holds no *.pub"),
    ("zero-timeout", ["--mirror", "https://h/x", *KEY, "--mirror-timeout", "0"], 2, "expected seconds > 0"),
    ("negative-timeout", ["--mirror", "https://h/x", *KEY, "--mirror-timeout", "-5"], 2, "expected seconds > 0"),
    ("text-timeout", ["--mirror", "https://h/x", *KEY, "--mirror-timeout", "soon"], 2, "invalid float value"),
    ("zero-total-timeout", ["--mirror", "https://h/x", *KEY, "--mirror-total-timeout", "0"], 2,
     "mirror total timeout 0.0: expected seconds > 0"),
    ("huge-total-timeout", ["--mirror", "https://h/x", *KEY, "--mirror-total-timeout", "1e9"], 2, "at most a day"),
    ("total-timeout-alone", ["--mirror-total-timeout", "60"], 2, "--mirror-total-timeout needs --mirror URL"),
    ("missing-ca", ["--mirror", "https://h/x", *KEY, "--mirror-ca", "nope.pem"], 2, "CA file nope.pem does not exist"),
    ("garbage-ca", ["--mirror", "https://h/x", *KEY, "--mirror-ca", "garbage.pem"], 2, "no usable PEM certificates"),
    ("unsigned-alone", ["--mirror-unsigned"], 2, "--mirror-unsigned needs --mirror URL"),
    ("key-alone", [*KEY], 2, "--mirror-key needs --mirror URL"),
]


@pytest.mark.parametrize("argv, code, line", [c[1:] for c in ENSURE_CASES], ids=[c[0] for c in ENSURE_CASES])
def test_ensure_mirror_options(ws, argv, code, line):
    assert_bad_input(main, ENSURE + argv, str(ws), code, line)


@pytest.mark.parametrize("env, line", [
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://ok/x ftp://bad/y", "TEGRA_AI_MIRROR_KEYS": "keys/mirror.pub"},
     "scheme ftp: is not supported"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://ok/x"}, "needs a trusted public key"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://ok/x", "TEGRA_AI_MIRROR_KEYS": "keys/mirror.pub",
      "TEGRA_AI_MIRROR_TIMEOUT": "1min"}, "TEGRA_AI_MIRROR_TIMEOUT='1min': expected seconds"),
    ({"TEGRA_AI_ENGINE_MIRRORS": "https://ok/x", "TEGRA_AI_MIRROR_KEYS": "keys/mirror.pub",
      "TEGRA_AI_MIRROR_TOTAL_TIMEOUT": "5min"}, "TEGRA_AI_MIRROR_TOTAL_TIMEOUT='5min': expected seconds"),
], ids=["env-bad-url", "env-no-key", "env-bad-timeout", "env-bad-total-timeout"])
def test_ensure_mirror_environment(ws, monkeypatch, env, line):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert_bad_input(main, ENSURE, str(ws), 2, line)


def test_no_signature_library_is_69(ws, monkeypatch):
    monkeypatch.setattr(signing, "_cryptography", lambda: None)
    monkeypatch.setattr(signing.shutil, "which", lambda name: None)
    assert_bad_input(main, ENSURE + ["--mirror", "https://h/x", *KEY], str(ws), 69,
                     "needs the Python module 'cryptography'")


PUBLISH = ["publish", "--json"]
PUBLISH_CASES = [
    ("missing-key", ["--cache", "cache", "--to", "m", "--key", "nope.key"], 2, "private key nope.key does not exist"),
    ("public-as-private", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.pub"], 2, "is a public key"),
    ("garbage-key", ["--cache", "cache", "--to", "m", "--key", "garbage.pem"], 2, "is not a PEM key file"),
    ("key-is-dir", ["--cache", "cache", "--to", "m", "--key", "keys"], 2, "is a directory"),
    ("missing-cache", ["--cache", "nocache", "--to", "m", "--key", "keys/mirror.key"], 2, "does not exist"),
    ("empty-cache", ["--cache", "emptycache", "--to", "m", "--key", "keys/mirror.key"], 2, "no valid engines"),
    ("foreign-dir", ["--cache", "cache", "--to", "foreign", "--key", "keys/mirror.key"], 2, "not an engine mirror"),
    ("to-is-file", ["--cache", "cache", "--to", "afile", "--key", "keys/mirror.key"], 2, "is not a directory"),
    ("to-under-file", ["--cache", "cache", "--to", "afile/m", "--key", "keys/mirror.key"], 2, "is not writable"),
    ("to-inside-cache", ["--cache", "cache", "--to", "cache/mirror", "--key", "keys/mirror.key"], 2, "overlap"),
    ("unknown-model", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--name", "yolo"], 2,
     "no valid engine of yolo"),
    ("bad-model-name", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--name", "../x"], 2,
     "model name '../x'"),
    ("no-to", ["--cache", "cache", "--key", "keys/mirror.key"], 2, "the following arguments are required: --to"),
    ("zero-index-expiry", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--index-expiry", "0"], 2,
     "index expiry 0.0: expected days > 0"),
    ("nan-index-expiry", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--index-expiry", "nan"], 2,
     "index expiry nan: expected days > 0"),
    ("text-index-expiry", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--index-expiry", "1w"], 2,
     "invalid float value"),
    ("negative-lock-timeout", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--lock-timeout", "-5"],
     2, "--lock-timeout -5.0: expected a number of seconds >= 0"),
    ("inf-lock-timeout", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--lock-timeout", "inf"],
     2, "--lock-timeout inf: expected a number of seconds >= 0"),
    ("text-lock-timeout", ["--cache", "cache", "--to", "m", "--key", "keys/mirror.key", "--lock-timeout", "soon"],
     2, "invalid float value"),
]


@pytest.mark.parametrize("argv, code, line", [c[1:] for c in PUBLISH_CASES], ids=[c[0] for c in PUBLISH_CASES])
def test_publish(ws, argv, code, line):
    assert_bad_input(main, PUBLISH + argv, str(ws), code, line)


def test_publish_encrypted_key(ws):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    (ws / "enc.key").write_bytes(pem)
    assert_bad_input(main, PUBLISH + ["--cache", "cache", "--to", "m", "--key", "enc.key"], str(ws), 2,
                     "encrypted with a passphrase")


KEYGEN_CASES = [
    ("existing-key", ["--out", "keys"], 2, "refusing to overwrite a key"),
    ("out-is-file", ["--out", "afile"], 2, "is not a directory"),
    ("bad-name", ["--out", "k2", "--name", "a/b"], 2, "key name 'a/b'"),
    ("dot-name", ["--out", "k2", "--name", ".hidden"], 2, "key name '.hidden'"),
    ("no-out", [], 2, "the following arguments are required: --out"),
]


@pytest.mark.parametrize("argv, code, line", [c[1:] for c in KEYGEN_CASES], ids=[c[0] for c in KEYGEN_CASES])
def test_mirror_keygen(ws, argv, code, line):
    assert_bad_input(main, ["mirror-keygen", "--json", *argv], str(ws), code, line)

