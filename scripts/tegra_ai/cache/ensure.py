"""``ensure``: make every model in the manifests have a valid engine in the cache.

Idempotent (a second run is all cache hits), safe against concurrent runs (a per-model
lock), safe against power cuts (engines count only with a matching sidecar), and
prunes engines of stale keys. This is what the first-boot systemd unit runs, and what
an image-build-time builder Jetson runs, with the same cache key."""

from __future__ import annotations

import os
import shutil
import time

from tegra_ai.cache.manifest import find_manifests, load_manifest
from tegra_ai.cache.store import EngineCache
from tegra_ai.errors import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, TegraAIError
from tegra_ai.onnx_tools.model_files import model_digest

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


def _from_seeds(seed_caches, cache, name, key, loader, log):
    """Copy a valid engine for ``key`` from a read-only seed cache into ``cache``."""
    for seed in seed_caches:
        found = seed.lookup(name, key)
        if found is None:
            continue
        engine_path, sidecar = found
        if loader is not None:
            try:
                loader(engine_path)
            except TegraAIError as exc:
                log(f"{name}: prebuilt engine in {seed.root} does not load ({exc.message}); ignoring it")
                continue
        with open(engine_path, "rb") as f:
            engine = f.read()
        return cache.store(name, key, engine, sidecar)
    return None


def ensure(manifest_paths: list, cache_dir: str, *, prune: str = "stale", builder=None, loader="default",
           runtime=None, seeds: tuple = (), show_progress: bool = True, verbose: bool = False, log=print) -> dict:
    """Returns a JSON-able summary; ``summary["exit_code"]`` is what the CLI exits with.

    ``runtime`` is ``(features, facts_for(options))``; by default TensorRT and this GPU.
    ``seeds`` are read-only caches (engines prebuilt into the rootfs at image-build
    time): a miss in ``cache_dir`` that a seed holds is copied, not built. This keeps
    prebuilt engines working when /var/lib is a persistent partition an A/B OTA
    update does not replace."""
    if prune not in PRUNE_POLICIES:
        raise TegraAIError(f"--prune {prune!r}: expected one of {', '.join(PRUNE_POLICIES)}", exit_code=EXIT_USAGE)
    started = time.monotonic()
    entries = load_entries(manifest_paths)
    cache = EngineCache(cache_dir)
    summary = {"cache": cache.root, "models": [], "built": 0, "hits": 0, "failed": 0}

    if runtime is None:
        from tegra_ai.trt import compat
        from tegra_ai.trt.builder import target_facts

        try:
            _trt, feats = compat.load()
        except TegraAIError as exc:
            summary.update(exit_code=EXIT_UNAVAILABLE, error=exc.message)
            return summary
        runtime = (feats, lambda options: target_facts(feats, options.compute_capability))
    feats, facts_for = runtime
    summary["tensorrt"] = {"flavor": feats.flavor, "version": feats.version_string}
    builder = builder or default_builder(cache, show_progress, verbose)
    seed_caches = [EngineCache(p, create=False) for p in seeds if os.path.isdir(p)]
    if loader == "default":
        loader = default_loader()

    from tegra_ai.trt.builder import engine_key

    index = {}
    for entry in entries:
        record = {"name": entry.name, "manifest": entry.manifest}
        summary["models"].append(record)
        try:
            sha, _files = model_digest(entry.onnx, cache.memo)
            if sha != entry.sha256:
                raise TegraAIError(f"{entry.onnx} does not match its manifest (sha256 differs): the bundle is corrupt "
                                   "or was changed after it was made")
            facts = facts_for(entry.options)
            record["device"] = facts.to_dict()
            key, _material = engine_key(sha, entry.options, feats, facts)
            record["key"] = key
            with cache.lock(entry.name):
                hit = cache.lookup(entry.name, key)
                if hit is not None and loader is not None:
                    try:
                        loader(hit[0])
                    except TegraAIError as exc:
                        log(f"{entry.name}: cached engine does not load ({exc.message}); rebuilding")
                        hit = None
                seeded = None if hit is not None else _from_seeds(seed_caches, cache, entry.name, key, loader, log)
                if hit is not None:
                    record["status"] = "hit"
                    summary["hits"] += 1
                    engine_path, sidecar = hit
                elif seeded is not None:
                    record["status"] = "seeded"
                    summary["seeded"] = summary.get("seeded", 0) + 1
                    engine_path, sidecar = seeded
                else:
                    log(f"{entry.name}: building engine (key {key[:12]})")
                    result = builder(entry)
                    engine_path, sidecar = cache.store(entry.name, key, result.engine, result.sidecar)
                    record["status"] = "built"
                    record["build_seconds"] = sidecar.get("build_seconds")
                    summary["built"] += 1
                if prune != "none":
                    record["pruned"] = cache.prune(entry.name, {key})
            record["engine"] = engine_path
            index[entry.name] = {"engine": engine_path, "sidecar": os.path.splitext(engine_path)[0] + ".json",
                                 "key": key, "preprocess": entry.preprocess,
                                 "tensorrt": sidecar.get("tensorrt"), "device": sidecar.get("device")}
        except TegraAIError as exc:
            record["status"] = "failed"
            record["error"] = str(exc)
            summary["failed"] += 1
            log(f"{entry.name}: FAILED: {exc}")

    if prune == "unlisted":
        listed = {e.name for e in entries}
        for name in sorted(os.listdir(cache.root)):
            path = os.path.join(cache.root, name)
            if os.path.isdir(path) and name not in listed:
                shutil.rmtree(path, ignore_errors=True)
                summary.setdefault("pruned_models", []).append(name)
    if index:
        cache.write_index(index)
    cache.memo.save()
    summary["seconds"] = round(time.monotonic() - started, 3)
    summary["exit_code"] = EXIT_FAILURE if summary["failed"] else 0
    return summary
