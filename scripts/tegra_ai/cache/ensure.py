"""``ensure``: make every model in the manifests have a valid engine.

Idempotent (a second run is all cache hits), safe against concurrent runs (a per-model
lock), safe against power cuts (engines count only with a matching sidecar), and
prunes engines of stale keys (only files it made). This is what the first-boot systemd
unit runs, and what an image-build-time builder Jetson runs, with the same cache key
(:func:`tegra_ai.spec.key_material`).

For each model: the cache, then an engine of the previous key format in the same cache
(re-keyed once, :class:`RekeySource`), then each :class:`EngineSource` in order
(read-only seed caches from the image, used in place; mirrors), then a build.

A cache this process cannot write (:attr:`EngineCache.read_only`: a read-only rootfs, or
another user's cache) serves the valid engines it holds, verified as any hit, without
locking, and seeds in place; a model it has no valid engine for fails with exit 73
naming the directory; nothing is written there."""

from __future__ import annotations

import contextlib
import logging
import os
import time

from tegra_ai.cache.build_child import ChildProcessBuilder
from tegra_ai.cache.manifest import find_manifests, load_manifest
from tegra_ai.cache.store import (DEFAULT_LOCK_TIMEOUT, VOLATILE_FILESYSTEMS, EngineCache, LockTimeout,
                                  check_lock_timeout)
from tegra_ai.errors import (EXIT_CANTCREAT, EXIT_FAILURE, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError,
                             write_error)
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import KEY_FORMAT, Sidecar, sidecar_path

LOG = logging.getLogger("tegra_ai.ensure")
PRUNE_POLICIES = ("none", "stale", "unlisted")


def load_entries(manifest_paths: list) -> list:
    manifests = find_manifests(manifest_paths)
    if not manifests:
        raise TegraAIError("no manifest.json found in " + ", ".join(manifest_paths), exit_code=EXIT_USAGE)
    entries, owner = [], {}
    for path in manifests:
        for entry in load_manifest(path):
            if entry.name in owner:
                raise TegraAIError(f"model {entry.name!r} is in both {owner[entry.name]} and {path}", exit_code=EXIT_USAGE)
            owner[entry.name] = path
            entries.append(entry)
    return entries


def default_loader(bundle_dirs=()):
    """Deserialize an engine through the one engine loader (plugins first) to prove it
    loads (full TensorRT only)."""
    from tegra_ai.trt import compat
    from tegra_ai.trt.loader import load_engine

    _trt, feats = compat.load()
    if feats.is_rtx:
        return None

    def load(engine_path):
        load_engine(engine_path, bundle_dirs=bundle_dirs)
    return load


class EngineSource:
    """Somewhere a ready engine for a key may come from before building one.
    ``last_attempt``: what the last ``fetch`` did (JSON; e.g. a mirror's URL, result,
    bytes and seconds), reported per model by ``ensure``; None when nothing to say."""
    label = "source"
    last_attempt = None
    stores = True           # what it returns is stored into the cache (impossible on a read-only cache)

    def fetch(self, entry, key: str, material: dict, cache: EngineCache):
        """(engine path, Sidecar, status) or None. The engine must be verified (sidecar
        key == ``key``, size and sha256) before it is returned."""
        raise NotImplementedError


class SeedSource(EngineSource):
    """A read-only cache prebuilt into the image at image-build time. Its engines are used
    in place (no copy): the image's /usr is part of every OTA update, so a seed always
    belongs to the running slot."""
    stores = False

    def __init__(self, root: str):
        self.cache = EngineCache(root, create=False)
        self.label = f"seed {self.cache.root}"

    def fetch(self, entry, key, material, cache):
        found = self.cache.lookup(entry.name, key)
        return None if found is None else (found[0], found[1], "seeded")


def rekeyable(old: dict, new: dict) -> bool:
    """Whether an engine keyed with key format 2 is the engine ``new`` (format 3) describes.

    Format 2 keyed the GPU name and /proc/device-tree/model (the carrier board's name);
    format 3 keys the SM count, the CUDA driver and the module's part number instead. An
    engine in this device's own cache was built for this device, so it is the same engine
    when everything both formats key agrees: model, build options, TensorRT (bindings and
    library), plugins, compute capability and L4T release. ensure then loads it (TensorRT
    deserializes it) before it is used."""
    if not isinstance(old, dict) or old.get("format") != 2 or new.get("format") != KEY_FORMAT:
        return False
    if any(old.get(k) != new.get(k) for k in ("model_sha256", "options", "tensorrt", "plugins")):
        return False
    od, nd = old.get("device") or {}, new.get("device") or {}
    return all(od.get(k) and od.get(k) == nd.get(k) for k in ("compute_capability", "l4t_release"))


class RekeySource(EngineSource):
    """The one-time migration from key format 2: an engine of this cache whose old key
    matches (:func:`rekeyable`) and whose size and sha256 match its sidecar is moved under
    its new key with a new sidecar (never rebuilt); its old files are removed."""
    label = "this cache's key format 2 engine"

    def fetch(self, entry, key, material, cache):
        import hashlib

        from tegra_ai.util.jsonfile import JSONFileError, read_json_file

        for _name, side, _sc in cache.entries(entry.name):
            try:
                data = read_json_file(side, max_bytes=1 << 22)
            except JSONFileError:   # a hostile sidecar: that engine is no candidate
                continue
            if not isinstance(data, dict) or not rekeyable(data.get("key_material"), material):
                continue
            engine_path = side[:-len(".json")]
            try:
                with open(engine_path, "rb") as f:
                    engine = f.read()
            except OSError:
                continue
            digest = hashlib.sha256(engine).hexdigest()
            if len(engine) != data.get("engine_size") or digest != data.get("engine_sha256"):
                continue
            old_key = data.get("cache_key", "")
            keep = {k: v for k, v in data.items() if k in Sidecar.__dataclass_fields__
                    and k not in ("cache_key", "key_material", "format", "version", "engine_file")}
            keep["notes"] = list(keep.get("notes") or []) + [f"re-keyed from key format 2 (key {old_key[:24]})"]
            sidecar = Sidecar(cache_key=key, key_material=material, **keep)
            new_engine = cache.paths(entry.name, key)[0]
            stored = cache.store(entry.name, key, engine, sidecar.with_engine(new_engine, engine, digest), digest)
            for old in (side, engine_path):
                if old not in (stored[0], sidecar_path(stored[0])):
                    with contextlib.suppress(OSError):
                        os.unlink(old)
            return stored[0], stored[1], "rekeyed"
        return None


def _check_calibration(request) -> None:
    """The calibration data a build reads must be the data its key names (the bundle's
    copy can rot or be edited on the device): checked before a build, not on a cache hit."""
    from tegra_ai.spec import hash_calibration

    want = request.options.calibration_sha256
    if want and request.has_calibration:
        if hash_calibration(request.calibration_data, request.calibration_cache) != want:
            where = request.calibration_data or request.calibration_cache
            raise TegraAIError(f"{where} does not match its manifest (sha256 differs): the bundle is corrupt "
                               "or was changed after it was made")


def ensure(manifest_paths: list, cache_dir: str, *, prune: str = "stale", builder=None, loader="default",
           runtime=None, seeds: tuple = (), sources: tuple = (), show_progress: bool = True, verbose: bool = False,
           model_timeout: float | None = None, lock_timeout: float | None = None, load_plugin=None,
           log=LOG.info) -> dict:
    """Returns a JSON-able summary; ``summary["exit_code"]`` is what the CLI exits with.

    ``runtime`` is ``(features, facts_for(options))``; by default TensorRT and this GPU.
    ``seeds`` are read-only caches (engines prebuilt into the rootfs); ``sources`` are
    further :class:`EngineSource` objects tried after them (mirrors). ``builder`` is
    ``builder(entry) -> BuildResult``; by default each build runs in a child process
    (:class:`~tegra_ai.cache.build_child.ChildProcessBuilder`) stopped after
    ``model_timeout`` seconds. ``load_plugin(library)`` loads a model's plugin library
    before its engine is looked up or built (by default into TensorRT's registry).

    ``lock_timeout``: seconds to wait for a model's lock (another run building it) and the
    cache lock; default :data:`~tegra_ai.cache.store.DEFAULT_LOCK_TIMEOUT`, or
    ``model_timeout`` + 5 minutes when that is longer. A model whose lock stays held fails
    with the holder's PID (its link and index entry are left to the holder); exit 75
    (EX_TEMPFAIL) when that is the only kind of failure."""
    if prune not in PRUNE_POLICIES:
        raise TegraAIError(f"--prune {prune!r}: expected one of {', '.join(PRUNE_POLICIES)}", exit_code=EXIT_USAGE)
    if model_timeout is not None and not (isinstance(model_timeout, (int, float)) and model_timeout > 0):
        raise TegraAIError(f"--model-timeout {model_timeout!r}: expected a number of seconds > 0",
                           exit_code=EXIT_USAGE)
    lock_timeout = check_lock_timeout(lock_timeout)
    if lock_timeout is None:
        lock_timeout = max(DEFAULT_LOCK_TIMEOUT, (model_timeout or 0) + 300)
    started = time.monotonic()
    since = time.time()          # pruning never removes a model a concurrent run wrote after this
    entries = load_entries(manifest_paths)
    cache = EngineCache(cache_dir)
    summary = {"cache": cache.root, "models": [], "built": 0, "hits": 0, "seeded": 0, "fetched": 0, "rekeyed": 0,
               "failed": 0,
               "warnings": []}
    read_only = cache.read_only is not None
    if read_only:
        # An image's read-only rootfs (IMAGE_FEATURES read-only-rootfs) with engines built
        # into it, or another user's cache: its valid engines are served (verified as any
        # hit), seeds are used in place; nothing is built, stored, linked, pruned or indexed.
        summary["read_only"] = True
        log(f"engine cache {cache.root} is {cache.read_only_reason()}: its valid engines are used; nothing is "
            "built, stored, linked, pruned or indexed there")
    fstype = cache.filesystem_type()
    if fstype in VOLATILE_FILESYSTEMS:
        warning = (f"engine cache {cache.root} is on {fstype}: engines are lost at every reboot and rebuilt at every "
                   "boot (a volatile-binds or tmpfs mount?); use a persistent directory such as /var/lib/tegra-ai/engines")
        LOG.warning("warning: %s", warning)
        summary["warnings"].append(warning)

    if runtime is None:
        from tegra_ai.trt import compat
        from tegra_ai.trt.builder import target_facts

        try:
            _trt, feats = compat.load()
        except TegraAIError as exc:
            summary.update(exit_code=EXIT_UNAVAILABLE, error=exc.message,
                           models=[{"name": e.name, "manifest": e.manifest, "status": "pending"} for e in entries],
                           seconds=round(time.monotonic() - started, 3))
            return summary
        runtime = (feats, lambda options: target_facts(feats, options.compute_capability))
        if load_plugin is None:
            from tegra_ai.trt.loader import load_plugin_once

            load_plugin = lambda lib: load_plugin_once(_trt, feats, lib)  # noqa: E731
    feats, facts_for = runtime
    from tegra_ai.trt.builder import engine_key, plugin_digests, tensorrt_identity

    summary["tensorrt"] = tensorrt_identity(feats)
    builder = builder or ChildProcessBuilder(cache, timeout=model_timeout, show_progress=show_progress,
                                             verbose=verbose)
    chain = [RekeySource()] + [SeedSource(p) for p in seeds if os.path.isdir(p)] + list(sources)
    if loader == "default":
        loader = default_loader()

    def loads(path, where):
        if loader is None:
            return True
        try:
            loader(path)
            return True
        except TegraAIError as exc:
            log(f"{entry.name}: engine from {where} does not load ({exc.message}); not using it")
            return False

    index = {}
    this_release = None
    loaded_plugins = set()
    from tegra_ai.util import sdnotify

    for number, entry in enumerate(entries, 1):
        record = {"name": entry.name, "manifest": entry.manifest}
        summary["models"].append(record)
        sdnotify.status(f"model {number}/{len(entries)}: {entry.name}")   # systemctl status, under systemd
        t0 = time.monotonic()
        try:
            sha, _files = model_digest(entry.onnx, cache.memo)
            if sha != entry.sha256:
                raise TegraAIError(f"{entry.onnx} does not match its manifest (sha256 differs): the bundle is corrupt "
                                   "or was changed after it was made")
            request = entry.request       # the bundle's build request, whole: key and build both take it
            facts = facts_for(request.options)
            record["device"] = facts.to_dict()
            this_release = this_release or facts.l4t_release
            # Plugins first: their creators must be registered before an engine using
            # them is deserialized or built, and their digests are part of the key.
            for lib in request.plugins:
                if load_plugin is not None and lib not in loaded_plugins:   # once per process
                    load_plugin(lib)
                    loaded_plugins.add(lib)
            plugins = plugin_digests(request.plugins)
            if plugins:
                record["plugins"] = plugins
            key, material = engine_key(sha, request.options, feats, facts, plugins)
            record["key"] = key
            with cache.lock(entry.name, timeout=lock_timeout, on_wait=lambda pid, comm: log(
                    f"{entry.name}: waiting up to {lock_timeout:g} s for its lock, held by "
                    f"{f'PID {pid}' if pid else 'another process'}")):
                found = cache.lookup(entry.name, key)
                status = "hit"
                unloadable = found is not None and not loads(found[0], "the cache")
                if unloadable:
                    found = None
                if found is None:
                    for source in chain:
                        if read_only and source.stores:
                            continue            # it would store into the cache
                        got = source.fetch(entry, key, material, cache)
                        if source.last_attempt is not None:
                            record.setdefault("attempts", []).append(source.last_attempt)
                        if got is not None and loads(got[0], source.label):
                            engine_path, sidecar, status = got
                            found = (engine_path, sidecar)
                            record["source"] = source.label
                            break
                if found is None and read_only:
                    raise cache.read_only_error(entry.name, key, "an engine that does not load" if unloadable
                                                else cache.describe_miss(entry.name, key))
                if found is None:
                    _check_calibration(request)
                    log(f"{entry.name}: building engine (key {key[:12]})")
                    result = builder(entry)
                    if result.sidecar.cache_key != key:
                        from tegra_ai.spec import key_differences

                        diff = "; ".join(key_differences(material, result.sidecar.key_material)) or "unknown"
                        raise TegraAIError(f"the build produced an engine for another key than ensure computed "
                                           f"({diff}); not storing it")
                    found = cache.store(entry.name, key, result.engine, result.sidecar)
                    status = "built"
                    record["build_seconds"] = found[1].build_seconds
                engine_path, sidecar = found
                record["status"] = status
                summary[{"hit": "hits", "seeded": "seeded", "fetched": "fetched", "built": "built",
                         "rekeyed": "rekeyed"}[status]] += 1
                # The stable link moves to the new engine before anything old is pruned: a
                # kill in between leaves an old engine too many, never a dangling link.
                if read_only:
                    link = cache.link_to(entry.name, engine_path)
                    if link is None:
                        warning = (f"{entry.name}: the stable link {cache.link_path(entry.name)} does not point at "
                                   f"its current engine {engine_path}, and the cache is read-only: not updated")
                        LOG.warning("warning: %s", warning)
                        summary["warnings"].append(warning)
                else:
                    link = cache.update_link(entry.name, engine_path)
                if prune != "none" and not read_only:
                    record["pruned"] = cache.prune(entry.name, {key}, l4t_release=facts.l4t_release)
            record["engine"] = engine_path
            if link:
                record["link"] = link
            index[entry.name] = {"engine": engine_path, "sidecar": sidecar_path(engine_path), "key": key,
                                 "link": link, "preprocess": entry.preprocess, "tensorrt": sidecar.tensorrt,
                                 "device": sidecar.device}
        except (TegraAIError, OSError) as exc:
            if isinstance(exc, OSError):   # a lock, marker or link the cache could not write
                exc = write_error(exc.filename or cache.root, exc)
            record["status"] = "failed"
            record["error"] = str(exc)
            if isinstance(exc, LockTimeout):
                record["lock_holder"] = exc.holder      # its link and index entry are the holder's
            if exc.exit_code == EXIT_CANTCREAT:
                record["exit_code"] = EXIT_CANTCREAT
            summary["failed"] += 1
            log(f"{entry.name}: FAILED: {exc}")
        record["seconds"] = round(time.monotonic() - t0, 3)

    # A model whose engine failed has no valid engine for its current key: applications
    # must not pick up the previous one from the index or its stable link (under its lock,
    # unless a concurrent run linked an engine since this run started).
    failed = [r for r in summary["models"] if r.get("status") == "failed"]
    dropped = set()
    for r in failed:
        if "lock_holder" in r or read_only:
            continue
        with contextlib.suppress(FileNotFoundError, TegraAIError):      # LockTimeout is one
            with cache.lock(r["name"], timeout=lock_timeout, create=False):
                if not cache.linked_since(r["name"], since):
                    cache.remove_link(r["name"])
                    dropped.add(r["name"])
    if read_only:
        # Applications read index.json: say so when it is not what they would need.
        listed = cache.read_index()
        stale = sorted(n for n, e in index.items() if (listed.get(n) or {}).get("engine") != e["engine"])
        if stale:
            warning = (f"{os.path.join(cache.root, 'index.json')} does not list the current engine of "
                       f"{', '.join(stale)}, and the cache is read-only: not updated")
            LOG.warning("warning: %s", warning)
            summary["warnings"].append(warning)
    else:
        try:
            with cache.cache_lock(timeout=lock_timeout):
                if prune == "unlisted":
                    summary["pruned_models"] = cache.prune_unlisted({e.name for e in entries},
                                                                    l4t_release=this_release, since=since)
                    dropped |= set(summary["pruned_models"])
                cache.write_index(index, drop=dropped)
                cache.memo.save()
        except LockTimeout as exc:
            summary["warnings"].append(f"{exc} (index.json not updated)")
            log(f"warning: {exc}; index.json not updated")
            summary["index_lock_timeout"] = True
        except TegraAIError as exc:        # a full or read-only cache: the engines are there, the index is not
            summary["error"] = exc.message
            summary["failed_index"] = True
            log(f"FAILED: {exc}")
    summary["seconds"] = round(time.monotonic() - started, 3)
    # 73 when the cache could not be written (a model's files, its link or the index): a
    # full disk or read-only cache, named in each failed model's error; 75 when the only
    # failures are models (or the index) another process held past --lock-timeout; else
    # 1 if any failed
    cant_write = summary.get("failed_index") or any(r.get("exit_code") == EXIT_CANTCREAT for r in summary["models"])
    busy_only = all("lock_holder" in r for r in failed) and (failed or summary.get("index_lock_timeout"))
    summary["exit_code"] = EXIT_CANTCREAT if cant_write else EXIT_TEMPFAIL if busy_only else \
        EXIT_FAILURE if summary["failed"] else 0
    return summary


def engine_path_for(cache_dir: str, name: str) -> dict:
    """The stable path of a model's engine for applications (``CACHE/NAME.engine``, a link
    ``ensure`` keeps pointing at the current engine) and what it points at; raises when the
    model has no valid engine there (exit 1) or the arguments are bad (exit 2)."""
    from tegra_ai.spec import Sidecar, check_model_name

    check_model_name(name)
    if not os.path.isdir(cache_dir):
        raise TegraAIError(f"engine cache {cache_dir} does not exist", exit_code=EXIT_USAGE)
    cache = EngineCache(cache_dir, create=False)
    link = cache.link_path(name)
    target = os.path.realpath(link)
    sidecar = Sidecar.read_if_ours(sidecar_path(target)) if os.path.islink(link) else None
    if sidecar is None or not os.path.isfile(target) or os.path.getsize(target) != sidecar.engine_size:
        raise TegraAIError(f"no engine for {name} in {cache.root}",
                           hint="run 'tensorrt-optimize ensure' (the first-boot service) for it first",
                           exit_code=EXIT_FAILURE)
    return {"name": name, "engine": link, "sidecar": sidecar_path(link), "target": target, "key": sidecar.cache_key}
