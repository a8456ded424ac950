"""``ensure``: make every model in the manifests have a valid engine.

Idempotent (a second run is all cache hits), safe against concurrent runs (a per-model
lock), safe against power cuts (engines count only with a matching sidecar), and
prunes engines of stale keys (only files it made). This is what the first-boot systemd
unit runs, and what an image-build-time builder Jetson runs, with the same cache key
(:func:`tegra_ai.spec.key_material`).

For each model: the cache, then each :class:`EngineSource` in order (read-only seed
caches from the image, used in place; mirrors), then a build."""

from __future__ import annotations

import logging
import os
import shutil
import time

from tegra_ai.cache.manifest import find_manifests, load_manifest
from tegra_ai.cache.store import EngineCache
from tegra_ai.errors import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.onnx_files import model_digest
from tegra_ai.spec import sidecar_path

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


def default_builder(cache: EngineCache, show_progress: bool, verbose: bool):
    def build(entry):
        from tegra_ai.trt.builder import build_engine

        # One timing cache for the whole cache dir: rebuilding after an OTA update of one
        # model reuses the tactic timings of every layer seen before. A timing cache
        # shipped in the bundle seeds it.
        timing_cache = os.path.join(cache.root, "timing.cache")
        if entry.timing_cache and os.path.isfile(entry.timing_cache) and not os.path.exists(timing_cache):
            shutil.copyfile(entry.timing_cache, timing_cache)
        return build_engine(entry.onnx, entry.options, timing_cache_path=timing_cache,
                            calibration_data=entry.calibration_data, calibration_cache=entry.calibration_cache,
                            show_progress=show_progress, verbose=verbose, memo=cache.memo)
    return build


def default_loader():
    """Deserialize an engine to prove it loads (full TensorRT only)."""
    from tegra_ai.trt import compat

    trt, feats = compat.load()
    if feats.is_rtx:
        return None

    def load(engine_path):
        logger = trt.Logger(trt.Logger.ERROR)
        with open(engine_path, "rb") as f:
            compat.deserialize(trt, feats, logger, f.read())
    return load


class EngineSource:
    """Somewhere a ready engine for a key may come from before building one."""
    label = "source"

    def fetch(self, entry, key: str, material: dict, cache: EngineCache):
        """(engine path, Sidecar, status) or None. The engine must be verified (sidecar
        key == ``key``, size and sha256) before it is returned."""
        raise NotImplementedError


class SeedSource(EngineSource):
    """A read-only cache prebuilt into the image at image-build time. Its engines are used
    in place (no copy): the image's /usr is part of every OTA update, so a seed always
    belongs to the running slot."""

    def __init__(self, root: str):
        self.cache = EngineCache(root, create=False)
        self.label = f"seed {self.cache.root}"

    def fetch(self, entry, key, material, cache):
        found = self.cache.lookup(entry.name, key)
        return None if found is None else (found[0], found[1], "seeded")


def ensure(manifest_paths: list, cache_dir: str, *, prune: str = "stale", builder=None, loader="default",
           runtime=None, seeds: tuple = (), sources: tuple = (), show_progress: bool = True, verbose: bool = False,
           log=LOG.info) -> dict:
    """Returns a JSON-able summary; ``summary["exit_code"]`` is what the CLI exits with.

    ``runtime`` is ``(features, facts_for(options))``; by default TensorRT and this GPU.
    ``seeds`` are read-only caches (engines prebuilt into the rootfs); ``sources`` are
    further :class:`EngineSource` objects tried after them (mirrors)."""
    if prune not in PRUNE_POLICIES:
        raise TegraAIError(f"--prune {prune!r}: expected one of {', '.join(PRUNE_POLICIES)}", exit_code=EXIT_USAGE)
    started = time.monotonic()
    entries = load_entries(manifest_paths)
    cache = EngineCache(cache_dir)
    summary = {"cache": cache.root, "models": [], "built": 0, "hits": 0, "seeded": 0, "fetched": 0, "failed": 0}

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
    feats, facts_for = runtime
    from tegra_ai.trt.builder import engine_key, tensorrt_identity

    summary["tensorrt"] = tensorrt_identity(feats)
    builder = builder or default_builder(cache, show_progress, verbose)
    chain = [SeedSource(p) for p in seeds if os.path.isdir(p)] + list(sources)
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
    for entry in entries:
        record = {"name": entry.name, "manifest": entry.manifest}
        summary["models"].append(record)
        t0 = time.monotonic()
        try:
            sha, _files = model_digest(entry.onnx, cache.memo)
            if sha != entry.sha256:
                raise TegraAIError(f"{entry.onnx} does not match its manifest (sha256 differs): the bundle is corrupt "
                                   "or was changed after it was made")
            facts = facts_for(entry.options)
            record["device"] = facts.to_dict()
            key, material = engine_key(sha, entry.options, feats, facts)
            record["key"] = key
            with cache.lock(entry.name):
                found = cache.lookup(entry.name, key)
                status = "hit"
                if found is not None and not loads(found[0], "the cache"):
                    found = None
                if found is None:
                    for source in chain:
                        got = source.fetch(entry, key, material, cache)
                        if got is not None and loads(got[0], source.label):
                            engine_path, sidecar, status = got
                            found = (engine_path, sidecar)
                            record["source"] = source.label
                            break
                if found is None:
                    log(f"{entry.name}: building engine (key {key[:12]})")
                    result = builder(entry)
                    found = cache.store(entry.name, key, result.engine, result.sidecar)
                    status = "built"
                    record["build_seconds"] = found[1].build_seconds
                engine_path, sidecar = found
                record["status"] = status
                summary[{"hit": "hits", "seeded": "seeded", "fetched": "fetched", "built": "built"}[status]] += 1
                if prune != "none":
                    record["pruned"] = cache.prune(entry.name, {key})
            record["engine"] = engine_path
            index[entry.name] = {"engine": engine_path, "sidecar": sidecar_path(engine_path), "key": key,
                                 "preprocess": entry.preprocess, "tensorrt": sidecar.tensorrt, "device": sidecar.device}
        except TegraAIError as exc:
            record["status"] = "failed"
            record["error"] = str(exc)
            summary["failed"] += 1
            log(f"{entry.name}: FAILED: {exc}")
        record["seconds"] = round(time.monotonic() - t0, 3)

    # A model whose engine failed has no valid engine for its current key: applications
    # must not pick up the previous one from the index.
    dropped = {r["name"] for r in summary["models"] if r.get("status") == "failed"}
    if prune == "unlisted":
        summary["pruned_models"] = cache.prune_unlisted({e.name for e in entries})
        dropped |= set(summary["pruned_models"])
    cache.write_index(index, drop=dropped)
    cache.memo.save()
    summary["seconds"] = round(time.monotonic() - started, 3)
    summary["exit_code"] = EXIT_FAILURE if summary["failed"] else 0
    return summary
