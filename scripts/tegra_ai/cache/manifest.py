"""Bundles: models + ``manifest.json``, written on the build host by ``bundle`` and
consumed on the device by ``ensure`` (format in docs/ARCHITECTURE.md). Reading a
manifest needs no onnx: the bundle lists every file of every model."""

from __future__ import annotations

import glob
import json
import os
import shutil
from dataclasses import dataclass

from tegra_ai.cache.options import BuildOptions
from tegra_ai.cache.store import check_model_name
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.atomic import atomic_write_json

MANIFEST_FORMAT = "tegra-ai-manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class ModelEntry:
    name: str
    onnx: str              # absolute path once loaded
    files: list            # absolute paths: the model and its external data
    sha256: str
    options: BuildOptions
    preprocess: dict | None = None
    manifest: str | None = None
    calibration_data: str | None = None     # implicit INT8 (TensorRT <= 10.x): .npz, absolute once loaded
    calibration_cache: str | None = None
    timing_cache: str | None = None          # a starting timing cache shipped with the model

    def to_json(self, base: str) -> dict:
        rel = lambda p: os.path.relpath(p, base) if p else None  # noqa: E731
        return {"name": self.name, "onnx": rel(self.onnx), "files": [rel(p) for p in self.files],
                "sha256": self.sha256, "options": self.options.normalized(), "preprocess": self.preprocess,
                "calibration_data": rel(self.calibration_data), "calibration_cache": rel(self.calibration_cache),
                "timing_cache": rel(self.timing_cache)}


def _bad(path: str, msg: str) -> TegraAIError:
    return TegraAIError(f"manifest {path}: {msg}", exit_code=EXIT_USAGE)


def load_manifest(path: str) -> list:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise _bad(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise _bad(path, f"not a {MANIFEST_FORMAT} file")
    if data.get("version") != MANIFEST_VERSION:
        raise _bad(path, f"version {data.get('version')!r} is not supported (expected {MANIFEST_VERSION})")
    base = os.path.dirname(os.path.abspath(path))
    entries, seen = [], set()
    for i, m in enumerate(data.get("models") or []):
        try:
            name = check_model_name(m["name"])
            if name in seen:
                raise _bad(path, f"model {name!r} appears twice")
            seen.add(name)
            files = [os.path.normpath(os.path.join(base, p)) for p in m["files"]]
            onnx = os.path.normpath(os.path.join(base, m["onnx"]))
            calib = {k: os.path.normpath(os.path.join(base, m[k])) if m.get(k) else None
                     for k in ("calibration_data", "calibration_cache", "timing_cache")}
            entries.append(ModelEntry(name=name, onnx=onnx, files=files, sha256=m["sha256"],
                                      options=BuildOptions.from_dict(m.get("options") or {}),
                                      preprocess=m.get("preprocess"), manifest=os.path.abspath(path), **calib))
        except (KeyError, TypeError) as exc:
            raise _bad(path, f"model #{i + 1} lacks {exc}") from None
        except TegraAIError as exc:
            raise _bad(path, f"model #{i + 1}: {exc.message}") from None
    return entries


def find_manifests(paths: list) -> list:
    """Manifest files from paths that are manifests or directories holding */manifest.json."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            direct = os.path.join(p, MANIFEST_NAME)
            found += [direct] if os.path.isfile(direct) else sorted(glob.glob(os.path.join(p, "*", MANIFEST_NAME)))
        elif os.path.isfile(p):
            found.append(p)
        else:
            raise TegraAIError(f"manifest {p} does not exist", exit_code=EXIT_USAGE)
    return found


def add_to_bundle(out_dir: str, name: str, model_files: list, sha256: str, options: BuildOptions,
                  preprocess: dict | None = None, calibration_data: str | None = None,
                  calibration_cache: str | None = None, timing_cache: str | None = None) -> str:
    """Copy a model (+ external data) to ``out_dir/name/`` and add it to the bundle's manifest."""
    check_model_name(name)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    models = []
    if os.path.exists(manifest_path):
        existing = load_manifest(manifest_path)
        models = [e.to_json(out_dir) for e in existing if e.name != name]
    dest_dir = os.path.join(out_dir, name)
    src_base = os.path.dirname(model_files[0])
    copied = []
    try:
        os.makedirs(dest_dir, exist_ok=True)
        for src in model_files:
            dest = os.path.join(dest_dir, os.path.relpath(src, src_base))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = dest + ".tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
            copied.append(dest)
        calib = {}
        for key, src, dest_name in (("calibration_data", calibration_data, "calibration.npz"),
                                    ("calibration_cache", calibration_cache, "calibration.cache"),
                                    ("timing_cache", timing_cache, "timing.cache")):
            if src:
                dest = os.path.join(dest_dir, dest_name)
                shutil.copyfile(src, dest + ".tmp")
                os.replace(dest + ".tmp", dest)
                calib[key] = dest
    except OSError as exc:
        raise TegraAIError(f"cannot write bundle {out_dir}: {exc.strerror or exc}",
                           hint="choose a writable --out directory") from None
    entry = ModelEntry(name=name, onnx=copied[0], files=copied, sha256=sha256, options=options, preprocess=preprocess,
                       **calib)
    models.append(entry.to_json(out_dir))
    models.sort(key=lambda m: m["name"])
    atomic_write_json(manifest_path, {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "models": models})
    return manifest_path
