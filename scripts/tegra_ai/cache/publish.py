"""``publish``: sign engines of a cache and place them into a mirror directory.

Run where engines are built for the fleet (a reference device, or the builder Jetson at
image-build time); serve the directory with any static web server, or mount it (file://).
The mirror has the cache's layout plus ``.engine.sig`` files and a signed ``index.json``:
what is there, with a sequence number that grows with every publish and an optional
expiry. Devices check it before any engine (rollback protection): they refuse an index
older than the newest they have seen, or expired, and any engine it does not list, so
an attacker who serves an old copy of the mirror cannot bring back a withdrawn engine
set. A mirror never gets a different engine for a key it already has, and nothing is
written into a directory that is not empty and not a mirror of ours.

``index.json`` (version 2)::

    {"format": "tegra-ai-mirror-index", "version": 2, "key_id": "...", "signature": "<base64>",
     "signed": {"sequence": N, "published": ISO-8601, "expires": ISO-8601 or null,
                "engines": {"<name>/<name>-<key24>.engine": {"key", "sha256", "size", ...}}}}

where ``signature`` is the publisher's Ed25519 signature of ``canonical_json(signed)``.
The sequence is one more than the index's before, and at least the publish time in Unix
seconds, so a lost index.json does not lock devices out."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import logging
import math
import os
import re
import time

from tegra_ai.cache.mirror import MIRROR_INDEX, MIRROR_INDEX_FORMAT, MIRROR_INDEX_VERSION, signature_path
from tegra_ai.cache.store import DEFAULT_LOCK_TIMEOUT, EngineCache, check_lock_timeout, engine_relpath, file_lock
from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, TegraAIError, not_writable
from tegra_ai.spec import Sidecar, check_model_name, sidecar_path
from tegra_ai.util.atomic import atomic_write_bytes, atomic_write_json, create_exclusive, make_dirs
from tegra_ai.util.hashing import sha256_file
from tegra_ai.util.jsonfile import JSONFileError, read_json_file
from tegra_ai.util.jsonfile import loads as json_loads

LOG = logging.getLogger("tegra_ai.publish")
MIRROR_MARKER = ".tegra-ai-mirror"
MAX_INDEX_EXPIRY_DAYS = 3650


def _usage(message, hint=None):
    return TegraAIError(message, hint=hint, exit_code=EXIT_USAGE)


def _check_mirror_dir(path: str) -> bool:
    """True when the directory must be created. Refuses a foreign non-empty directory."""
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise _usage(f"cannot create mirror directory {path}: {parent} is not writable")
        if not os.access(parent, os.W_OK):
            raise not_writable(parent)     # read-only (EROFS) or not ours (EACCES): 73
        return True
    if not os.path.isdir(path):
        raise _usage(f"mirror {path} exists and is not a directory")
    if not os.access(path, os.W_OK):
        raise not_writable(path)
    # A concurrent publish may be creating the marker right now: only other files count.
    if not os.path.isfile(os.path.join(path, MIRROR_MARKER)) and \
            [n for n in os.listdir(path) if n not in (MIRROR_MARKER, ".publish.lock")]:
        raise _usage(f"{path} is not empty and not an engine mirror (no {MIRROR_MARKER}); refusing to write into it",
                     hint="give an empty or new directory, or an existing mirror")
    return False


def _read(path: str, limit: int | None = None) -> bytes:
    with open(path, "rb") as f:
        return f.read() if limit is None else f.read(limit)


def _present(mirror: str, rel: str, sidecar: Sidecar, listed: bool = True):
    """'absent', 'same' (this engine is there), or 'different' (something else holds the paths).
    An engine (and signature) without a sidecar that the index does not list (``listed``
    False) is a killed publish's: the sidecar is written last and the index after it, so
    it counts as absent and is written again (the caller holds the publish lock)."""
    paths = [os.path.join(mirror, *p.split("/")) for p in (rel, sidecar_path(rel), signature_path(rel))]
    if not any(os.path.lexists(p) for p in paths):
        return "absent"
    if not listed and not os.path.lexists(paths[1]) and all(os.path.isfile(p) or not os.path.lexists(p)
                                                           for p in paths):
        return "absent"
    there = Sidecar.read_if_ours(paths[1])
    if there is None or there.cache_key != sidecar.cache_key or there.engine_sha256 != sidecar.engine_sha256:
        return "different"
    try:
        if os.path.getsize(paths[0]) != there.engine_size:
            return "different"
    except OSError:
        return "different"
    return "same"


def _engines(root: str) -> list:
    """(name, sidecar path, Sidecar or None) of every ``<name>/*.engine.json`` under ``root``:
    an ensure cache, or a seed installed in an image (which has no model markers)."""
    import glob

    out = []
    for name in sorted(os.listdir(root)):
        try:
            check_model_name(name)
        except TegraAIError:
            continue
        if os.path.isdir(os.path.join(root, name)):
            for path in sorted(glob.glob(os.path.join(glob.escape(root), glob.escape(name), "*.engine.json"))):
                out.append((name, path, Sidecar.read_if_ours(path)))
    return out


_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")   # util.atomic's mkstemp names


def _remove_stale_temp_files(mirror: str) -> None:
    """Under the publish lock no publisher is writing, so a temp file named as
    ``atomic_write_bytes`` names them is a killed publish's: remove it (nothing else)."""
    for dirpath, _dirs, files in os.walk(mirror):
        for name in files:
            if _TEMP_NAME.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))


def _engine_files(mirror: str):
    """(relative path, path) of every regular ``*.engine`` file in the mirror's model folders
    (folders with a valid model name, not links), in sorted order."""
    for name in sorted(os.listdir(mirror)):
        folder = os.path.join(mirror, name)
        try:
            check_model_name(name)
        except TegraAIError:
            continue
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            path = os.path.join(folder, f)
            if f.endswith(".engine") and not os.path.islink(path) and os.path.isfile(path):
                yield f"{name}/{f}", path


def _remove_unfinished(mirror: str, listed: dict) -> list:
    """Engine files that have no sidecar and that the index does not list: a killed publish's
    (it writes the engine, its signature, then the sidecar, then the index), whose model may
    have left the cache since, so no later publish completes it. Removed under the publish
    lock with their signatures (a reader never takes an engine without its sidecar)."""
    removed = []
    for rel, path in _engine_files(mirror):
        if rel in listed or os.path.lexists(sidecar_path(path)):
            continue
        for p in (signature_path(path), path):
            with contextlib.suppress(OSError):
                os.unlink(p)
        removed.append(rel)
    return removed


def _list_complete(mirror: str, index: dict, key, now: str) -> list:
    """Complete engine sets (engine, signature, sidecar) that the index does not list: a
    publish killed after an engine's sidecar and before the index, whose engine then left
    the cache (pruned as stale) so no later publish lists it. Under the publish lock each
    is listed when it verifies as the publish that wrote it left it (sidecar ours and
    naming this path, engine size and sha256, the signature of the sidecar by ``key``);
    anything else is left as it is. Returns the listed paths."""
    listed = []
    for rel, path in _engine_files(mirror):
        if rel in index:
            continue
        name = rel.split("/", 1)[0]
        sc = Sidecar.read_if_ours(sidecar_path(path))
        try:
            if sc is None or engine_relpath(name, sc.cache_key) != rel or os.path.getsize(path) != sc.engine_size:
                continue
            raw_sidecar, signature = _read(sidecar_path(path), 1 << 22), _read(signature_path(path), 1 << 16)
            if not key.public.verify(raw_sidecar, signature) or sha256_file(path) != sc.engine_sha256:
                continue
        except (OSError, TegraAIError):
            continue
        index[rel] = _index_entry(name, sc, raw_sidecar, signature, key, now)
        listed.append(rel)
    return listed


@contextlib.contextmanager
def _publish_lock(mirror: str, timeout: float = DEFAULT_LOCK_TIMEOUT):
    # flock: released by the kernel when a holder dies; waited for at most ``timeout`` s
    with file_lock(os.path.join(mirror, ".publish.lock"), timeout=timeout, what=f"mirror {mirror}",
                   hint="another tensorrt-optimize publish is writing this mirror; retry later, or stop that "
                        "process if it hangs"):
        _remove_stale_temp_files(mirror)
        yield


def _read_index_file(mirror: str) -> dict:
    """The index's engines and sequence as this publisher wrote them (version 1 had no
    signature and no sequence)."""
    try:
        data = read_json_file(os.path.join(mirror, MIRROR_INDEX))
    except JSONFileError:
        return {}
    if not isinstance(data, dict) or data.get("format") != MIRROR_INDEX_FORMAT:
        return {}
    return data.get("signed") if isinstance(data.get("signed"), dict) else data


def read_index(mirror: str) -> dict:
    engines = _read_index_file(mirror).get("engines")
    return engines if isinstance(engines, dict) else {}


def index_sequence(mirror: str) -> int:
    seq = _read_index_file(mirror).get("sequence")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else 0


def signed_index(key, engines: dict, sequence: int, published: str, expires: str | None) -> dict:
    """The index document (see the module's docstring), signed with ``key``."""
    from tegra_ai.cache.signing import canonical_json

    signed = {"sequence": sequence, "published": published, "expires": expires, "engines": engines}
    return {"format": MIRROR_INDEX_FORMAT, "version": MIRROR_INDEX_VERSION, "key_id": key.key_id,
            "signature": base64.b64encode(key.sign(canonical_json(signed))).decode("ascii"), "signed": signed}


def check_index_expiry(days):
    """``--index-expiry`` days: None, or a number of days > 0 (at most ten years)."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) \
            or not 0 < days <= MAX_INDEX_EXPIRY_DAYS:
        raise _usage(f"index expiry {days!r}: expected days > 0 (at most {MAX_INDEX_EXPIRY_DAYS})",
                     hint="e.g. --index-expiry 30: devices refuse the index 30 days after this publish")
    return float(days)


def _index_entry(name: str, sidecar: Sidecar, raw_sidecar: bytes, signature: bytes, key, now: str) -> dict:
    """One engine's row in the signed index: its identity and the digests of its three files."""
    return {"name": name, "key": sidecar.cache_key, "size": sidecar.engine_size,
            "sha256": sidecar.engine_sha256, "tensorrt": sidecar.tensorrt, "device": sidecar.device,
            "sidecar_sha256": hashlib.sha256(raw_sidecar).hexdigest(),
            "signature_sha256": hashlib.sha256(signature).hexdigest(),
            "key_id": key.key_id, "published": now}


def publish(cache_dir: str, mirror_dir: str, private_key: str, *, names=(), key_backend: str | None = None,
            index_expiry_days: float | None = None, lock_timeout: float | None = None) -> dict:
    """Sign and copy every valid engine of ``cache_dir`` (or of ``names``) into ``mirror_dir``,
    and sign a new index (next sequence number; expiring ``index_expiry_days`` from now).
    Returns a JSON-able summary; ``exit_code`` 1 when an engine conflicts with one there.
    One publisher at a time per mirror: another one's lock is waited for at most
    ``lock_timeout`` seconds (default :data:`~tegra_ai.cache.store.DEFAULT_LOCK_TIMEOUT`),
    then :class:`~tegra_ai.cache.store.LockTimeout` (exit 75) names its PID."""
    from tegra_ai.cache.signing import load_private_key

    index_expiry_days = check_index_expiry(index_expiry_days)
    lock_timeout = check_lock_timeout(lock_timeout)
    key = load_private_key(private_key, backend=key_backend)
    if not os.path.isdir(cache_dir):
        raise _usage(f"engine cache {cache_dir} does not exist or is not a directory")
    for n in names:
        check_model_name(n)
    cache = EngineCache(cache_dir, create=False)
    mirror = os.path.abspath(mirror_dir)
    if os.path.commonpath([mirror, cache.root]) in (mirror, cache.root):
        raise _usage(f"the mirror {mirror} and the cache {cache.root} overlap; publish into another directory")
    create = _check_mirror_dir(mirror)

    candidates, skipped = [], []
    for name, path, sc in _engines(cache.root):
        if names and name not in names:
            continue
        found = cache.lookup(name, sc.cache_key) if sc is not None else None
        if found is None:
            skipped.append({"name": name, "sidecar": path, "reason": "no valid engine beside this sidecar"})
            continue
        candidates.append((name, found[0], found[1]))
    missing = sorted(set(names) - {c[0] for c in candidates})
    if missing:
        raise _usage(f"no valid engine of {', '.join(missing)} in {cache.root}")
    if not candidates:
        raise _usage(f"no valid engines in {cache.root}", hint="point --cache at an engine cache that ensure filled")

    if create:
        make_dirs(mirror)
    marker = os.path.join(mirror, MIRROR_MARKER)
    if not os.path.exists(marker):
        # Its existence is the mark: created exclusively, no temp file a concurrent publish could see.
        create_exclusive(marker, "engine mirror written by tensorrt-optimize publish\n")

    with _publish_lock(mirror, DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout):
        # one publisher at a time: engine, signature and sidecar stay a set
        moment = datetime.datetime.now(datetime.timezone.utc)
        now = moment.isoformat(timespec="seconds")
        listed = read_index(mirror)
        index = {rel: e for rel, e in listed.items()
                 if os.path.isfile(os.path.join(mirror, *str(rel).split("/")))}
        results = []
        for name, engine_path, sidecar in candidates:
            rel = engine_relpath(name, sidecar.cache_key)
            row = {"name": name, "key": sidecar.cache_key, "engine": rel, "size": sidecar.engine_size}
            results.append(row)
            state = _present(mirror, rel, sidecar, listed=rel in listed)
            if state == "different":
                row.update(status="conflict", reason=f"{rel} already holds a different engine (or foreign files) for "
                                                     "this key; not overwritten")
                LOG.warning("%s: %s", name, row["reason"])
                continue
            dest = os.path.join(mirror, *rel.split("/"))
            if state == "same":
                row["status"] = "present"
                if not os.path.exists(signature_path(dest)):   # published unsigned before: sign what is there
                    atomic_write_bytes(signature_path(dest), key.sign(_read(sidecar_path(dest), 1 << 22)))
                    row["status"] = "signed"
                if row["status"] == "signed" or rel not in index:
                    # the index lists every engine with its three digests (an image build fetches
                    # them by checksum): a newly signed or earlier unlisted engine joins it too
                    index[rel] = _index_entry(name, sidecar, _read(sidecar_path(dest), 1 << 22),
                                              _read(signature_path(dest), 1 << 16), key, now)
                continue
            try:
                raw_sidecar = _read(sidecar_path(engine_path), 1 << 22)
                engine = _read(engine_path)
            except OSError:     # a concurrent ensure pruned it (publish takes no cache lock)
                row.update(status="skipped", reason="the engine was removed from the cache while it was read")
                continue
            try:
                check = Sidecar.from_dict(json_loads(raw_sidecar), where=sidecar_path(engine_path))
            except (JSONFileError, TegraAIError):
                check = None
            if check is None:
                row.update(status="skipped", reason="its sidecar changed while it was read and is no longer valid")
                continue
            if check.cache_key != sidecar.cache_key or hashlib.sha256(engine).hexdigest() != check.engine_sha256:
                row.update(status="skipped", reason="the engine changed while it was read")
                continue
            # Engine, signature, then the sidecar: a reader that finds a sidecar finds the rest.
            signature = key.sign(raw_sidecar)
            try:
                atomic_write_bytes(dest, engine)
                atomic_write_bytes(signature_path(dest), signature)
                atomic_write_bytes(sidecar_path(dest), raw_sidecar)
            except TegraAIError:
                # A full or read-only mirror: what this engine got so far goes again (a
                # lone engine would read as foreign files next time); the index is untouched.
                for path in (signature_path(dest), dest):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            row["status"] = "published"
            # The digests of all three files: an image build fetches them as SRC_URI entries
            # with checksums known at parse time (tensorrt_engine.bbclass, TEGRA_AI_PREBUILT_INDEX).
            index[rel] = _index_entry(name, sidecar, raw_sidecar, signature, key, now)
            LOG.info("%s: published %s", name, rel)
        for rel in _remove_unfinished(mirror, index):
            LOG.info("removed %s: a killed publish's engine without a sidecar, no longer in the cache", rel)
        for rel in _list_complete(mirror, index, key, now):
            LOG.info("listed %s: a killed publish's complete engine, no longer in the cache", rel)
        sequence = max(index_sequence(mirror) + 1, int(time.time()))
        expires = None if index_expiry_days is None else \
            (moment + datetime.timedelta(days=index_expiry_days)).isoformat(timespec="seconds")
        atomic_write_json(os.path.join(mirror, MIRROR_INDEX), signed_index(key, index, sequence, now, expires))
    count = lambda s: sum(1 for r in results if r["status"] == s)  # noqa: E731
    summary = {"mirror": mirror, "cache": cache.root, "key_id": key.key_id, "sequence": sequence,
               "expires": expires, "engines": results, "skipped": skipped,
               "published": count("published"), "present": count("present"), "conflicts": count("conflict")}
    summary["exit_code"] = EXIT_FAILURE if summary["conflicts"] else 0
    return summary
