"""Ed25519 signatures of engine sidecars for mirrors (no home-made cryptography).

Keys are the PEM files that ``openssl genpkey -algorithm ed25519`` writes (PKCS#8 private
key, SubjectPublicKeyInfo public key); signatures are the raw 64 bytes that
``openssl pkeyutl -sign -rawin`` writes. The signing operations run in the ``cryptography``
package (``pip install 'meta-tegra-ai[mirror]'``; ``python3-cryptography`` in oe-core) or,
where it is missing, in the ``openssl`` command (OpenSSL 3, in every oe-core image that has
``openssl-bin``). Only the fixed DER framing of the two key formats is read here, to name
keys and refuse the wrong kind of key early.

A signature covers the sidecar's bytes; the sidecar holds the engine's sha256 and size, so
one signature covers both."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from tegra_ai.errors import EXIT_UNAVAILABLE, EXIT_USAGE, MissingDependencyError, TegraAIError

__all__ = ["PublicKey", "PrivateKey", "load_public_keys", "load_private_key", "generate_keypair", "backend_name",
           "public_key_id", "SIGNATURE_SIZE"]

SIGNATURE_SIZE = 64
# DER framing of Ed25519 keys (RFC 8410): SubjectPublicKeyInfo and unencrypted PKCS#8.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)
_MAX_KEY_FILE = 64 * 1024
BACKENDS = ("cryptography", "openssl")


def _usage(message, hint=None):
    return TegraAIError(message, hint=hint, exit_code=EXIT_USAGE)


def _cryptography():
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        return None
    return ed25519


def backend_name(prefer: str | None = None) -> str:
    """'cryptography' or 'openssl'; exit 69 when neither exists. ``prefer`` forces one."""
    if prefer not in (None, *BACKENDS):
        raise _usage(f"signing backend {prefer!r}: expected one of {', '.join(BACKENDS)}")
    if prefer in (None, "cryptography") and _cryptography() is not None:
        return "cryptography"
    if prefer in (None, "openssl") and shutil.which("openssl"):
        return "openssl"
    if prefer == "openssl":
        raise TegraAIError("Ed25519 signatures need the openssl command, which is not on PATH",
                           hint="install openssl (openssl-bin in Yocto)", exit_code=EXIT_UNAVAILABLE)
    raise MissingDependencyError("cryptography", extra="mirror", purpose="signed engine mirrors")


def _read_pem(path: str, what: str):
    try:
        if os.path.isdir(path):
            raise _usage(f"{what} {path} is a directory, not a key file")
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise _usage(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    m = _PEM.search(data)
    if len(data) > _MAX_KEY_FILE or not m:
        raise _usage(f"{path} is not a PEM key file",
                     hint="make keys with 'tensorrt-optimize mirror-keygen' or 'openssl genpkey -algorithm ed25519'")
    try:
        der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise _usage(f"{path}: the PEM block is not valid base64") from None
    return m.group(1).decode(), der


def _key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _spki_pem(raw: bytes) -> bytes:
    b64 = base64.encodebytes(_SPKI_PREFIX + raw).replace(b"\n", b"")
    return b"-----BEGIN PUBLIC KEY-----\n" + b64 + b"\n-----END PUBLIC KEY-----\n"


def _pkcs8_pem(seed: bytes) -> bytes:
    b64 = base64.encodebytes(_PKCS8_PREFIX + seed).replace(b"\n", b"")
    return b"-----BEGIN PRIVATE KEY-----\n" + b64 + b"\n-----END PRIVATE KEY-----\n"


def _openssl(args: list, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["openssl", *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TegraAIError(f"openssl {what} failed: {exc}", exit_code=EXIT_UNAVAILABLE) from None


class PublicKey:
    """A trusted Ed25519 public key (32 raw bytes), named by ``key_id`` (sha256 prefix)."""

    def __init__(self, raw: bytes, path: str = "", backend: str | None = None):
        if len(raw) != 32:
            raise _usage(f"{path or 'public key'}: not an Ed25519 public key")
        self.raw = raw
        self.path = path
        self.key_id = _key_id(raw)
        self.backend = backend_name(backend)

    def pem(self) -> bytes:
        return _spki_pem(self.raw)

    def verify(self, data: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        if self.backend == "cryptography":
            from cryptography.exceptions import InvalidSignature

            try:
                _cryptography().Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
                return True
            except InvalidSignature:
                return False
        with tempfile.TemporaryDirectory(prefix="tegra-ai-verify-") as tmp:
            files = {"key.pem": self.pem(), "data": data, "sig": signature}
            for name, content in files.items():
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(content)
            p = lambda n: os.path.join(tmp, n)  # noqa: E731
            res = _openssl(["pkeyutl", "-verify", "-pubin", "-inkey", p("key.pem"), "-rawin", "-in", p("data"),
                            "-sigfile", p("sig")], "verify")
            return res.returncode == 0 and b"Signature Verified Successfully" in res.stdout

    @classmethod
    def from_file(cls, path: str, backend: str | None = None) -> "PublicKey":
        return cls(_public_raw_from_file(path), path, backend)


def _public_raw_from_file(path: str) -> bytes:
    label, der = _read_pem(path, "public key")
    if label in ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        raise _usage(f"{path} is a private key; a device needs only the public key",
                     hint="install the .pub file made by mirror-keygen, keep the private key on the publisher")
    if label != "PUBLIC KEY" or len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        raise _usage(f"{path} is not an Ed25519 public key",
                     hint="make keys with 'tensorrt-optimize mirror-keygen' or 'openssl genpkey -algorithm ed25519'")
    return der[len(_SPKI_PREFIX):]


def public_key_id(path: str) -> str:
    """The key id of an Ed25519 public key file, checking its form only (standard library,
    no signing backend: what a build system can call at parse time). Exit code 2 for a
    private key, another kind of key or a file that is not PEM."""
    return _key_id(_public_raw_from_file(path))


class PrivateKey:
    """An Ed25519 signing key (the publisher's; never installed on devices)."""

    def __init__(self, seed: bytes, path: str = "", backend: str | None = None):
        self._seed = seed
        self.path = path
        self.backend = backend_name(backend)
        self.public = PublicKey(self._public_raw(), path, self.backend)
        self.key_id = self.public.key_id

    def _public_raw(self) -> bytes:
        if self.backend == "cryptography":
            from cryptography.hazmat.primitives import serialization

            pub = _cryptography().Ed25519PrivateKey.from_private_bytes(self._seed).public_key()
            return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        with tempfile.TemporaryDirectory(prefix="tegra-ai-key-") as tmp:
            key = os.path.join(tmp, "key.pem")
            with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(_pkcs8_pem(self._seed))
            res = _openssl(["pkey", "-in", key, "-pubout", "-outform", "DER"], "public key")
        if res.returncode != 0 or not res.stdout.startswith(_SPKI_PREFIX):
            raise TegraAIError(f"openssl cannot read the key {self.path}: "
                               f"{res.stderr.decode(errors='replace').strip()[:200]}")
        return res.stdout[len(_SPKI_PREFIX):]

    def sign(self, data: bytes) -> bytes:
        if self.backend == "cryptography":
            return _cryptography().Ed25519PrivateKey.from_private_bytes(self._seed).sign(data)
        with tempfile.TemporaryDirectory(prefix="tegra-ai-sign-") as tmp:
            key, src, sig = (os.path.join(tmp, n) for n in ("key.pem", "data", "sig"))
            with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(_pkcs8_pem(self._seed))
            with open(src, "wb") as f:
                f.write(data)
            res = _openssl(["pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", src, "-out", sig], "sign")
            if res.returncode != 0:
                raise TegraAIError(f"openssl could not sign: {res.stderr.decode(errors='replace').strip()[:200]}")
            with open(sig, "rb") as f:
                return f.read()

    @classmethod
    def from_file(cls, path: str, backend: str | None = None) -> "PrivateKey":
        label, der = _read_pem(path, "private key")
        if label == "ENCRYPTED PRIVATE KEY":
            raise _usage(f"{path} is encrypted with a passphrase; publish needs an unencrypted key",
                         hint="openssl pkey -in KEY -out plain.key (keep it on the publishing machine only)")
        if label == "PUBLIC KEY":
            raise _usage(f"{path} is a public key; publish signs with the private key")
        if label != "PRIVATE KEY" or len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
            raise _usage(f"{path} is not an Ed25519 private key",
                         hint="make keys with 'tensorrt-optimize mirror-keygen' or 'openssl genpkey -algorithm ed25519'")
        return cls(der[len(_PKCS8_PREFIX):], path, backend)


def load_public_keys(paths, backend: str | None = None) -> list:
    """Public keys from files, or from directories (every ``*.pub`` and ``*.pem`` in them)."""
    keys, seen = [], set()
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith((".pub", ".pem")))
            if not names:
                raise _usage(f"key directory {path} holds no *.pub or *.pem public keys")
            files = [os.path.join(path, n) for n in names]
        elif not os.path.exists(path):
            raise _usage(f"public key {path} does not exist")
        else:
            files = [path]
        for f in files:
            key = PublicKey.from_file(f, backend)
            if key.key_id not in seen:
                seen.add(key.key_id)
                keys.append(key)
    return keys


def canonical_json(obj) -> bytes:
    """The bytes a signature over a JSON object covers: sorted keys, no spaces, ASCII.
    A verifier re-serializes what it parsed the same way (ints and strings round-trip)."""
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def load_private_key(path: str, backend: str | None = None) -> PrivateKey:
    if not os.path.exists(path):
        raise _usage(f"private key {path} does not exist")
    return PrivateKey.from_file(path, backend)


def generate_keypair(out_dir: str, name: str = "mirror", backend: str | None = None) -> dict:
    """``OUT/NAME.key`` (private, mode 0600) and ``OUT/NAME.pub``; never overwrites a file."""
    from tegra_ai.util.atomic import atomic_write_bytes, make_dirs

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise _usage(f"key name {name!r}: use letters, digits, '.', '_', '-' (it names NAME.key and NAME.pub)")
    backend = backend_name(backend)
    priv_path, pub_path = os.path.join(out_dir, name + ".key"), os.path.join(out_dir, name + ".pub")
    for p in (priv_path, pub_path):
        if os.path.lexists(p):
            raise _usage(f"{p} exists; refusing to overwrite a key", hint="choose another --out or --name")
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise _usage(f"{out_dir} exists and is not a directory")
    try:
        make_dirs(out_dir)
    except OSError as exc:
        raise _usage(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise _usage(f"{out_dir} is not writable")
    if backend == "cryptography":
        from cryptography.hazmat.primitives import serialization

        seed = _cryptography().Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    else:
        res = _openssl(["genpkey", "-algorithm", "ed25519", "-outform", "DER"], "genpkey")
        if res.returncode != 0 or not res.stdout.startswith(_PKCS8_PREFIX):
            raise TegraAIError("openssl genpkey -algorithm ed25519 failed (OpenSSL 1.1.1 or later needed)",
                               exit_code=EXIT_UNAVAILABLE)
        seed = res.stdout[len(_PKCS8_PREFIX):]
    key = PrivateKey(seed, priv_path, backend)
    old = os.umask(0o077)
    try:
        atomic_write_bytes(priv_path, _pkcs8_pem(seed), permissions=0o600)
    finally:
        os.umask(old)
    with contextlib.suppress(OSError):
        os.chmod(priv_path, 0o600)
    atomic_write_bytes(pub_path, key.public.pem())
    return {"private_key": os.path.abspath(priv_path), "public_key": os.path.abspath(pub_path),
            "key_id": key.key_id, "backend": backend}
