"""Bundles: models + ``manifest.json``, written on the build host by ``bundle`` and
consumed on the device by ``ensure`` (format in docs/ARCHITECTURE.md). Reading a
manifest needs no onnx: the bundle lists every file of every model."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from dataclasses import dataclass

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.spec import BuildOptions, check_model_name
from tegra_ai.util.atomic import FILE_MODE, atomic_write_json, make_dirs
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

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
    plugins: tuple = ()                      # plugin libraries as the device finds them (absolute path or soname)

    def build_request(self, timing_cache: str | None = None):
        """The :class:`~tegra_ai.spec.BuildRequest` of this model (``timing_cache``: the
        one the build reads and updates; by default the one shipped with the model)."""
        from tegra_ai.spec import BuildRequest

        return BuildRequest(model=self.onnx, options=self.options, timing_cache=timing_cache or self.timing_cache,
                            calibration_data=self.calibration_data, calibration_cache=self.calibration_cache,
                            plugins=tuple(self.plugins))

    def to_json(self, base: str) -> dict:
        rel = lambda p: os.path.relpath(p, base) if p else None  # noqa: E731
        return {"name": self.name, "onnx": rel(self.onnx), "files": [rel(p) for p in self.files],
                "sha256": self.sha256, "options": self.options.to_dict(), "preprocess": self.preprocess,
                "calibration_data": rel(self.calibration_data), "calibration_cache": rel(self.calibration_cache),
                "timing_cache": rel(self.timing_cache), "plugins": list(self.plugins)}


def check_plugin_name(lib) -> str:
    """A plugin library as the device will find it: an absolute path on the target, or a
    bare soname (``libfoo.so``, ``libfoo.so.1``) the dynamic loader finds. A relative path
    would depend on the directory ``ensure`` runs in."""
    if not isinstance(lib, str) or not lib or "\0" in lib or "\n" in lib:
        raise TegraAIError(f"plugin {lib!r}: expected an absolute path or a soname", exit_code=EXIT_USAGE)
    if not os.path.isabs(lib) and "/" in lib:
        raise TegraAIError(f"plugin {lib}: a relative path; give the absolute path the library has on the device "
                           "(e.g. /usr/lib/tegra-ai/libtegra_ai_plugin.so) or its soname", exit_code=EXIT_USAGE)
    if not re.search(r"\.so(\.\d+)*$", os.path.basename(lib)):
        raise TegraAIError(f"plugin {lib}: not a shared library name (expected NAME.so or NAME.so.N)",
                           exit_code=EXIT_USAGE)
    return lib


def _bad(path: str, msg: str) -> TegraAIError:
    return TegraAIError(f"manifest {path}: {msg}", exit_code=EXIT_USAGE)


def _inside(base: str, rel, path: str, what: str) -> str:
    """A path of the manifest, confined to the bundle directory (no absolute paths, no '..')."""
    if not isinstance(rel, str) or not rel:
        raise _bad(path, f"{what} must be a relative file name, got {rel!r}")
    if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        raise _bad(path, f"{what} {rel!r} leaves the bundle directory")
    full = os.path.normpath(os.path.join(base, rel))
    real_base = os.path.realpath(base)
    if os.path.commonpath([os.path.realpath(full), real_base]) != real_base:
        raise _bad(path, f"{what} {rel!r} leaves the bundle directory (symbolic link)")
    return full


def load_manifest(path: str) -> list:
    try:
        data = read_json_file(path)
    except JSONFileError as exc:
        raise _bad(path, str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise _bad(path, f"not a {MANIFEST_FORMAT} file")
    if data.get("version") != MANIFEST_VERSION:
        raise _bad(path, f"version {data.get('version')!r} is not supported (expected {MANIFEST_VERSION})")
    models = data.get("models")
    if not isinstance(models, list):
        raise _bad(path, "'models' must be a list")
    base = os.path.dirname(os.path.abspath(path))
    entries, seen = [], set()
    for i, m in enumerate(models):
        try:
            if not isinstance(m, dict):
                raise _bad(path, f"model #{i + 1} is not an object")
            name = check_model_name(m["name"])
            if name in seen:
                raise _bad(path, f"model {name!r} appears twice")
            seen.add(name)
            if not isinstance(m["files"], list) or not m["files"]:
                raise _bad(path, f"model {name!r}: 'files' must be a non-empty list")
            files = [_inside(base, p, path, f"model {name!r} file") for p in m["files"]]
            onnx = _inside(base, m["onnx"], path, f"model {name!r} onnx")
            sha = m["sha256"]
            if not isinstance(sha, str) or len(sha) != 64:
                raise _bad(path, f"model {name!r}: sha256 {sha!r} is not a sha256 digest")
            calib = {k: _inside(base, m[k], path, f"model {name!r} {k}") if m.get(k) else None
                     for k in ("calibration_data", "calibration_cache", "timing_cache")}
            plugins = m.get("plugins") or []
            if not isinstance(plugins, list):
                raise _bad(path, f"model {name!r}: 'plugins' must be a list")
            plugins = tuple(check_plugin_name(p) for p in plugins)
            options = BuildOptions.from_dict(m.get("options"))
            if sorted(os.path.basename(p) for p in plugins) != list(options.plugins):
                raise _bad(path, f"model {name!r}: 'plugins' {list(plugins)} do not match the build options' "
                                 f"plugins {list(options.plugins)}")
            preprocess = m.get("preprocess")
            if preprocess is not None and not isinstance(preprocess, dict):
                raise _bad(path, f"model {name!r}: 'preprocess' must be an object")
            entries.append(ModelEntry(name=name, onnx=onnx, files=files, sha256=sha,
                                      options=options,
                                      preprocess=preprocess, manifest=os.path.abspath(path), plugins=plugins,
                                      **calib))
        except KeyError as exc:
            raise _bad(path, f"model #{i + 1} lacks {exc}") from None
        except TegraAIError as exc:
            if exc.message.startswith(f"manifest {path}:"):
                raise
            raise _bad(path, f"model #{i + 1}: {exc.message}") from None
    return entries


def find_manifests(paths: list) -> list:
    """Manifest files from paths that are manifests or directories holding */manifest.json."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            direct = os.path.join(p, MANIFEST_NAME)
            # lexists, not isfile: a FIFO or device named manifest.json is refused by the
            # bounded reader with one line ("not a regular file"), not skipped in silence
            found += [direct] if os.path.lexists(direct) else sorted(glob.glob(os.path.join(p, "*", MANIFEST_NAME)))
        elif os.path.lexists(p) and not os.path.isdir(p):
            found.append(p)
        else:
            raise TegraAIError(f"manifest {p} does not exist", exit_code=EXIT_USAGE)
    return found


def add_to_bundle(out_dir: str, name: str, model_files: list, sha256: str, options: BuildOptions,
                  preprocess: dict | None = None, calibration_data: str | None = None,
                  calibration_cache: str | None = None, timing_cache: str | None = None,
                  plugins: tuple = ()) -> str:
    """Copy a model (+ external data) to ``out_dir/name/`` and add it to the bundle's manifest."""
    check_model_name(name)
    plugins = tuple(check_plugin_name(p) for p in plugins)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    existing = load_manifest(manifest_path) if os.path.exists(manifest_path) else []
    models = [e.to_json(out_dir) for e in existing if e.name != name]
    dest_dir = os.path.join(out_dir, name)
    ours = any(e.name == name for e in existing)
    if os.path.lexists(dest_dir) and not ours and (not os.path.isdir(dest_dir) or os.listdir(dest_dir)):
        raise TegraAIError(f"{dest_dir} exists and is not a model of this bundle; refusing to write into it",
                           hint="choose another --name or --out", exit_code=EXIT_USAGE)
    src_base = os.path.dirname(model_files[0])
    copied = []
    try:
        make_dirs(dest_dir)
        for src in model_files:
            dest = os.path.join(dest_dir, os.path.relpath(src, src_base))
            make_dirs(os.path.dirname(dest))
            tmp = dest + ".tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, dest)
            copied.append(dest)
        calib = {}
        for key, src, dest_name in (("calibration_data", calibration_data, "calibration.npz"),
                                    ("calibration_cache", calibration_cache, "calibration.cache"),
                                    ("timing_cache", timing_cache, "timing.cache")):
            if src:
                dest = os.path.join(dest_dir, dest_name)
                shutil.copyfile(src, dest + ".tmp")
                os.chmod(dest + ".tmp", FILE_MODE)
                os.replace(dest + ".tmp", dest)
                calib[key] = dest
    except OSError as exc:
        raise TegraAIError(f"cannot write bundle {out_dir}: {exc.strerror or exc}",
                           hint="choose a writable --out directory", exit_code=EXIT_USAGE) from None
    entry = ModelEntry(name=name, onnx=copied[0], files=copied, sha256=sha256, options=options, preprocess=preprocess,
                       plugins=plugins, **calib)
    models.append(entry.to_json(out_dir))
    models.sort(key=lambda m: m["name"])
    atomic_write_json(manifest_path, {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "models": models})
    return manifest_path
