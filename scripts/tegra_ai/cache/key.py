"""The engine cache key. One function, used at image-build time (on a builder Jetson)
and on the device, so a prebuilt engine is a cache hit on first boot."""

from __future__ import annotations

import hashlib
import json

KEY_FORMAT = 1
KEY_LENGTH = 24  # hex digits in file names; the sidecar keeps the full digest


def key_material(model_sha256: str, options: dict, trt_flavor: str, trt_version: str, device: dict) -> dict:
    return {
        "format": KEY_FORMAT,
        "model_sha256": model_sha256,
        "options": options,
        "tensorrt": {"flavor": trt_flavor, "version": trt_version},
        "device": {
            "compute_capability": device.get("compute_capability"),
            "device_name": device.get("device_name"),
            "module": device.get("module"),
            "l4t_release": device.get("l4t_release"),
        },
    }


def cache_key(material: dict) -> str:
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def short_key(key: str) -> str:
    return key[:KEY_LENGTH]
