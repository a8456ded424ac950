"""Check a cache's engines by their sidecars alone (no TensorRT): what the Yocto class
runs on the build host before it packages engines a builder Jetson made."""

from __future__ import annotations

import os

from tegra_ai.cache.store import EngineCache
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt.compat import parse_version


def _version_matches(expected: str, actual: str | None) -> bool:
    if not actual:
        return False
    e, a = parse_version(expected), parse_version(actual)
    return a[:len(e)] == e  # "10.3" matches 10.3.0.30


def verify_cache(cache_dir: str, trt_version: str | None = None, compute_capability: str | None = None) -> dict:
    if not os.path.isdir(cache_dir):
        raise TegraAIError(f"engine cache {cache_dir} does not exist", exit_code=EXIT_USAGE)
    cache = EngineCache(cache_dir, create=False)
    problems, count = [], 0
    for name, path, sidecar in cache.entries():
        rel = os.path.relpath(path, cache.root)
        if sidecar is None:
            continue  # not a sidecar (e.g. a timing cache); engines without sidecars are not engines
        count += 1
        key = sidecar.get("cache_key")
        hit = cache.lookup(name, key) if key else None
        if hit is None:
            problems.append(f"{rel}: engine missing, truncated or not matching its sidecar")
            continue
        trt_info = sidecar.get("tensorrt", {})
        if trt_version and not _version_matches(trt_version, trt_info.get("version")):
            problems.append(f"{rel}: built with TensorRT {trt_info.get('version')}, the image has {trt_version}")
        cc = sidecar.get("device", {}).get("compute_capability")
        if compute_capability and cc != compute_capability:
            problems.append(f"{rel}: built for compute capability {cc}, the image's GPU is {compute_capability}")
    return {"cache": cache.root, "engines": count, "problems": problems}
