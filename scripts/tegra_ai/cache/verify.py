"""Check a cache's engines by their sidecars alone (no TensorRT): what the Yocto class
runs on the build host before it packages engines a builder Jetson made.

Every key input can be checked (TensorRT version, library version, compute capability,
Jetson module, L4T release; with manifests, the model and its build options), and every
problem names the input that differs."""

from __future__ import annotations

import os
import re

from tegra_ai.cache.store import EngineCache
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.spec import key_differences, parse_version, sidecar_path


def _version_matches(expected: str, actual) -> bool:
    if not actual:
        return False
    try:
        e, a = parse_version(expected), parse_version(actual)
    except TegraAIError:
        return False
    return a[:len(e)] == e  # "10.3" matches 10.3.0.30


def verify_cache(cache_dir: str, trt_version: str | None = None, compute_capability: str | None = None, *,
                 library_version: str | None = None, module: str | None = None, l4t_release: str | None = None,
                 manifests: tuple = ()) -> dict:
    if not os.path.isdir(cache_dir):
        raise TegraAIError(f"engine cache {cache_dir} does not exist", exit_code=EXIT_USAGE)
    for flag, value in (("--trt-version", trt_version), ("--library-version", library_version),
                        ("--l4t-release", l4t_release)):
        if value is not None and not re.fullmatch(r"R?\d+(\.\d+){0,3}", str(value)):
            raise TegraAIError(f"{flag} {value!r}: not a version", hint="e.g. 10.3 or 10.3.0.30",
                               exit_code=EXIT_USAGE)
    if compute_capability is not None and not re.fullmatch(r"\d{1,2}\.\d", str(compute_capability)):
        raise TegraAIError(f"--compute-capability {compute_capability!r}: expected M.m, e.g. 8.7",
                           exit_code=EXIT_USAGE)
    expected_models = {}
    if manifests:
        from tegra_ai.cache.ensure import load_entries

        expected_models = {e.name: e for e in load_entries(list(manifests))}
    cache = EngineCache(cache_dir, create=False)
    problems, engines, seen = [], [], set()
    for name, path, sidecar in cache.entries():
        rel = os.path.relpath(path, cache.root)
        if sidecar is None:
            problems.append(f"{rel}: not a valid sidecar (unreadable, another format, or its key does not match "
                            "its key material)")
            continue
        engine_path = path[:-len(".json")]
        hit = cache.lookup(name, sidecar.cache_key)
        if hit is None or sidecar_path(hit[0]) != path:
            problems.append(f"{rel}: engine missing, truncated or not matching its sidecar")
            continue
        seen.add(name)
        engines.append({"name": name, "engine": engine_path, "key": sidecar.cache_key})
        trt_info, dev = sidecar.tensorrt, sidecar.device
        checks = [("TensorRT version", trt_version, trt_info.get("version"), _version_matches),
                  ("TensorRT library version", library_version, trt_info.get("library_version"), _version_matches),
                  ("compute capability", compute_capability, dev.get("compute_capability"), None),
                  ("Jetson module", module, dev.get("module"), None),
                  ("L4T release", l4t_release, dev.get("l4t_release"), _version_matches)]
        for what, want, have, match in checks:
            if want and not (match(want, have) if match else want == have):
                problems.append(f"{rel}: {what} differs: built for {have!r}, the image has {want!r}")
        entry = expected_models.get(name)
        if entry is not None:
            want = dict(sidecar.key_material, model_sha256=entry.sha256, options=entry.options.to_dict())
            for diff in key_differences(want, sidecar.key_material):
                problems.append(f"{rel}: {diff}")
    for name in sorted(set(expected_models) - seen):
        problems.append(f"{name}: no engine in the cache")
    return {"cache": cache.root, "engines": len(engines), "entries": engines, "problems": problems}

