"""Prebuilt engines from a signed engine mirror, fetched by the image build (no builder Jetson).

A CI Jetson of the product's module builds the engines (``tensorrt-optimize ensure``) and
publishes them (``tensorrt-optimize publish``) into a mirror: per engine the ``.engine``, its
sidecar ``.engine.json`` and the sidecar's Ed25519 signature ``.engine.sig``, plus an
``index.json`` that lists every engine with the sha256 of all three files. The image
build reads a copy of that index at parse time (``TEGRA_AI_PREBUILT_INDEX``), checks its
Ed25519 signature (and expiry) with ``TEGRA_AI_MIRROR_PUBKEYS``, and for every
model of the recipe adds the engines built for the image's TensorRT, compute capability,
L4T release (and module, ``TEGRA_AI_ENGINE_MODULE``, when set) as ordinary SRC_URI entries
with their sha256: they land in DL_DIR and source mirrors, and BitBake's fetcher checks
them. After the fetch, :func:`take` verifies again each
sidecar's signature with ``TEGRA_AI_MIRROR_PUBKEYS``, the engine's sha256 against the
signed sidecar, and the sidecar's key material against the bundle (model sha256, build
options) and the image (TensorRT, compute capability, L4T); what passes is installed as
a seed (``TEGRA_AI_ENGINE_SEED``), what does not is left out with a warning, and the
device then builds that engine on first boot as without a mirror. Engines of several
SKUs of one module family (a different SM count) may all be shipped: the device takes the
one whose key is its own.

Plain Python (no ``bb``): called from ``tensorrt_engine.bbclass``.
"""

import hashlib
import os
import re
import shutil

__all__ = ["PrebuiltError", "configured", "read_index", "select", "src_uri_entries", "apply", "take"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*/[A-Za-z0-9][A-Za-z0-9._+-]*\.engine$")


class PrebuiltError(ValueError):
    """A wrong prebuilt-engine setting; the message names the variable."""


def configured(d):
    return bool((d.getVar("TEGRA_AI_PREBUILT_INDEX") or "").strip())


def read_index(path, keys=()):
    """{relative engine path: entry} of a mirror's signed index.json (tegra_ai.cache.publish's
    format, version 2), after its signature verifies with one of ``keys`` (PublicKey objects)
    and it has not expired. Raises PrebuiltError naming TEGRA_AI_PREBUILT_INDEX."""
    import base64
    import binascii
    import datetime

    from tegra_ai.cache.mirror import MIRROR_INDEX_FORMAT, MIRROR_INDEX_VERSION
    from tegra_ai.cache.signing import canonical_json

    from tegra_ai.util.jsonfile import JSONFileError, read_json_file

    where = "TEGRA_AI_PREBUILT_INDEX = %r" % path
    try:
        data = read_json_file(path)
    except JSONFileError as e:
        if e.errno is not None:
            raise PrebuiltError("%s: cannot read it (%s); copy the mirror's index.json to the build host"
                                % (where, e))
        raise PrebuiltError("%s: %s" % (where, e))
    if not isinstance(data, dict) or data.get("format") != MIRROR_INDEX_FORMAT or \
            data.get("version") != MIRROR_INDEX_VERSION or not isinstance(data.get("signed"), dict):
        raise PrebuiltError("%s: not a version %d engine mirror index (index.json written by "
                            "'tensorrt-optimize publish')" % (where, MIRROR_INDEX_VERSION))
    signed = data["signed"]
    try:
        signature = base64.b64decode(data.get("signature") or "", validate=True)
        body = canonical_json(signed)
    except (binascii.Error, ValueError, TypeError):
        raise PrebuiltError("%s: its signature is not base64" % where)
    if not any(k.verify(body, signature) for k in keys):
        raise PrebuiltError("%s: its signature does not verify with TEGRA_AI_MIRROR_PUBKEYS (%s)"
                            % (where, ", ".join(k.key_id for k in keys)))
    expires = signed.get("expires")
    if expires is not None:
        try:
            when = datetime.datetime.fromisoformat(str(expires))
            expired = when.tzinfo is None or datetime.datetime.now(datetime.timezone.utc) >= when
        except ValueError:
            expired = True
        if expired:
            raise PrebuiltError("%s: it expired at %s; copy the mirror's current index.json" % (where, expires))
    if not isinstance(signed.get("engines"), dict):
        raise PrebuiltError("%s: it has no engine list" % where)
    return signed["engines"]


def _short(v, parts=3):
    nums = [x for x in str(v or "").split("-")[0].split(".") if x.isdigit()]
    return ".".join(nums[:parts])


def _target(d):
    """What an engine must have been built for: (TensorRT X.Y.Z, compute capability, L4T, module or '')."""
    return (_short(d.getVar("TEGRA_AI_TRT_VERSION")), (d.getVar("TEGRA_AI_COMPUTE_CAPABILITY") or "").strip(),
            (d.getVar("TEGRA_AI_L4T_VERSION") or "").strip(), (d.getVar("TEGRA_AI_ENGINE_MODULE") or "").strip())


def _matches(tensorrt, device, target):
    trt, cc, l4t, module = target
    lib = (tensorrt or {}).get("library_version") or (tensorrt or {}).get("version")
    return (bool(trt) and _short(lib) == trt and (device or {}).get("compute_capability") == cc
            and (device or {}).get("l4t_release") == l4t and (not module or (device or {}).get("module") == module))


def select(d, models, index):
    """Index entries for ``models`` built for this image, as dicts with rel, name, key and the
    three sha256; sorted, so SRC_URI is stable."""
    target = _target(d)
    out = []
    for rel, e in sorted(index.items()):
        if not isinstance(e, dict) or e.get("name") not in models or not _REL.match(str(rel)):
            continue
        if not all(_HEX64.match(str(e.get(k) or "")) for k in ("sha256", "sidecar_sha256", "signature_sha256")):
            continue        # published before the index recorded all digests: publish again
        if str(rel).split("/")[0] != e["name"] or not _matches(e.get("tensorrt"), e.get("device"), target):
            continue
        out.append({"rel": rel, "name": e["name"], "key": e.get("key", ""), "engine": e["sha256"],
                    "sidecar": e["sidecar_sha256"], "signature": e["signature_sha256"]})
    return out


def src_uri_entries(mirror, selected):
    """(SRC_URI entry, name, sha256) per file: engine, sidecar, signature of each selected engine,
    unpacked into tegra-ai-prebuilt/<model>/."""
    from tegra_ai.cache.mirror import signature_path
    from tegra_ai.spec import sidecar_path

    out = []
    for i, e in enumerate(selected):
        for kind, rel, sha in (("e", e["rel"], e["engine"]), ("j", sidecar_path(e["rel"]), e["sidecar"]),
                               ("s", signature_path(e["rel"]), e["signature"])):
            name = "tegra-ai-%s%d" % (kind, i)
            # the file names carry the key (<model>-<key>.engine): unique in DL_DIR
            out.append(("%s/%s;name=%s;subdir=tegra-ai-prebuilt/%s" % (mirror.rstrip("/"), rel, name, e["name"]),
                        name, sha))
    return out


def apply(d, models):
    """Parse time: check the settings, add the SRC_URI entries and their checksums.
    Returns the selected engines ([] when not configured). Raises PrebuiltError."""
    if not configured(d):
        return []
    index_path = d.getVar("TEGRA_AI_PREBUILT_INDEX").strip()
    mirror = (d.getVar("TEGRA_AI_PREBUILT_MIRROR") or "").strip()
    if not mirror.startswith(("https://", "http://", "file://")):
        raise PrebuiltError("TEGRA_AI_PREBUILT_INDEX is set but TEGRA_AI_PREBUILT_MIRROR = %r is not the mirror's "
                            "https:// (or file://) URL" % mirror)
    keys = (d.getVar("TEGRA_AI_MIRROR_PUBKEYS") or "").split()
    if not keys:
        raise PrebuiltError("TEGRA_AI_PREBUILT_INDEX is set but TEGRA_AI_MIRROR_PUBKEYS is empty: give the "
                            "Ed25519 public key(s) the mirror's engines are signed with")
    for k in keys:
        if not os.path.isabs(k) or not os.path.isfile(k):
            raise PrebuiltError("TEGRA_AI_MIRROR_PUBKEYS: %r is not an existing file (give absolute paths)" % k)
    module = (d.getVar("TEGRA_AI_ENGINE_MODULE") or "").strip()
    if module and not re.match(r"^p\d{4}-\d{4}$", module):
        raise PrebuiltError("TEGRA_AI_ENGINE_MODULE = %r: the module's part number, e.g. p3767-0005 (nvidia,p3767-0005 "
                            "in the device's /proc/device-tree/compatible)" % module)
    if (d.getVar("TEGRA_AI_ENGINE_BUILDER") or "").strip():
        raise PrebuiltError("TEGRA_AI_PREBUILT_INDEX and TEGRA_AI_ENGINE_BUILDER are both set: take engines from "
                            "the mirror or build them on a builder Jetson, not both")
    from tegra_ai.cache.signing import load_public_keys
    from tegra_ai.errors import TegraAIError
    try:
        public = load_public_keys(keys)
    except TegraAIError as e:
        raise PrebuiltError("TEGRA_AI_MIRROR_PUBKEYS: %s" % e.message)
    selected = select(d, models, read_index(index_path, public))
    for entry, name, sha in src_uri_entries(mirror, selected):
        d.appendVar("SRC_URI", " " + entry)
        d.setVarFlag("SRC_URI", name + ".sha256sum", sha)
    return selected


def take(d, log=None):
    """After do_compile: verify the fetched engines and put the good ones where do_install
    takes seeds from (TEGRA_AI_ENGINE_DIR/<model>/). Returns (taken, rejected) lists of
    (model, file, reason); rejected ones are logged with ``log`` and built on first boot."""
    from tegra_ai.cache.signing import load_public_keys
    from tegra_ai.spec import Sidecar
    from tegra_ai.errors import TegraAIError

    src = os.path.join(d.getVar("UNPACKDIR") or d.getVar("WORKDIR"), "tegra-ai-prebuilt")
    if not os.path.isdir(src):
        return [], []
    keys = load_public_keys((d.getVar("TEGRA_AI_MIRROR_PUBKEYS") or "").split())
    from tegra_ai.cache.manifest import load_manifest

    manifest = os.path.join(d.getVar("TEGRA_AI_BUNDLE_DIR"), "manifest.json")
    try:     # the one manifest reader (bounded JSON, the models' build requests whole)
        models = {m.name: m for m in load_manifest(manifest)}
    except TegraAIError as e:
        raise PrebuiltError("%s: not a bundle manifest (%s)" % (manifest, e))
    target = _target(d)
    out_dir = d.getVar("TEGRA_AI_ENGINE_DIR")
    taken, rejected = [], []
    for name in sorted(os.listdir(src)):
        for fn in sorted(f for f in os.listdir(os.path.join(src, name)) if f.endswith(".engine")):
            engine = os.path.join(src, name, fn)
            reason = _check(engine, name, models.get(name), keys, target, Sidecar, TegraAIError)
            if reason:
                rejected.append((name, fn, reason))
                if log:
                    log("%s: prebuilt engine %s not used (%s); the device builds it on first boot" % (name, fn, reason))
                continue
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
            shutil.copyfile(engine, os.path.join(out_dir, name, fn))
            shutil.copyfile(engine + ".json", os.path.join(out_dir, name, fn + ".json"))
            taken.append((name, fn, ""))
    return taken, rejected


def _check(engine, name, model, keys, target, Sidecar, TegraAIError):
    from tegra_ai.util.jsonfile import loads as json_loads

    try:
        raw = open(engine + ".json", "rb").read(1 << 22)
        signature = open(engine + ".sig", "rb").read(4096)
    except OSError as e:
        return "missing sidecar or signature (%s)" % (e.strerror or e)
    if not any(k.verify(raw, signature) for k in keys):
        return "the sidecar's signature does not verify with TEGRA_AI_MIRROR_PUBKEYS"
    try:
        sidecar = Sidecar.from_dict(json_loads(raw), where=engine + ".json")
    except (ValueError, TegraAIError) as e:     # JSONFileError (hostile JSON) is a ValueError
        return "bad sidecar: %s" % getattr(e, "message", e)
    data = open(engine, "rb").read()
    if len(data) != sidecar.engine_size or hashlib.sha256(data).hexdigest() != sidecar.engine_sha256:
        return "the engine is not the one its signed sidecar describes"
    if model is None:
        return "no model %r in this bundle" % name
    km = sidecar.key_material
    if km.get("model_sha256") != model.sha256 or km.get("options") != model.request.options.to_dict():
        return "built from another model file or with other build options than this bundle's"
    if not _matches(sidecar.tensorrt, sidecar.device, target):
        return "built for another TensorRT, GPU, L4T release or module than this image's"
    if os.path.basename(engine) != "%s-%s.engine" % (name, sidecar.cache_key[:24]):
        return "its file name is not its key's"
    return ""
