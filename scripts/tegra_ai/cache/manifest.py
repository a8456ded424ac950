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
from tegra_ai.spec import BuildOptions, BuildRequest, check_model_name
from tegra_ai.util.atomic import FILE_MODE, atomic_write_json, make_dirs
from tegra_ai.util.jsonfile import JSONFileError, read_json_file

MANIFEST_FORMAT = "tegra-ai-manifest"
MANIFEST_VERSION = 2      # 2: each model holds its build request whole ("request")
READ_VERSIONS = (1, 2)    # 1: the request's parts as loose fields (onnx, options, calibration_*, ...)
MANIFEST_NAME = "manifest.json"


@dataclass
class ModelEntry:
    """One model of a bundle: its files and the :class:`~tegra_ai.spec.BuildRequest` the
    bundle was given, taken whole (paths absolute once loaded, pointing at the bundle's
    copies). ``onnx``, ``options`` and the other build inputs are views of that request."""
    name: str
    files: list            # absolute paths: the model and its external data
    sha256: str
    request: BuildRequest
    preprocess: dict | None = None
    manifest: str | None = None

    onnx = property(lambda self: self.request.model)
    options = property(lambda self: self.request.options)
    calibration_data = property(lambda self: self.request.calibration_data)    # implicit INT8: .npz
    calibration_cache = property(lambda self: self.request.calibration_cache)
    timing_cache = property(lambda self: self.request.timing_cache)            # shipped with the model
    plugins = property(lambda self: self.request.plugins)    # as the device finds them (absolute path or soname)

    def build_request(self, timing_cache: str | None = None) -> BuildRequest:
        """The bundle's request, whole; ``timing_cache``: the one the build reads and
        updates instead of the one shipped with the model (ensure's per-cache file)."""
        return self.request.replace(timing_cache=timing_cache) if timing_cache else self.request

    def to_json(self, base: str) -> dict:
        rel = lambda p: os.path.relpath(p, base)  # noqa: E731
        return {"name": self.name, "files": [rel(p) for p in self.files], "sha256": self.sha256,
                "preprocess": self.preprocess, "request": self.request.map_files(rel).to_dict()}


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


def _request_v1(m: dict, base: str, path: str, name: str) -> BuildRequest:
    """Version 1 entries (before the request was recorded whole): its loose fields."""
    plugins = m.get("plugins") or []
    if not isinstance(plugins, list):
        raise _bad(path, f"model {name!r}: 'plugins' must be a list")
    files = {k: _inside(base, m[k], path, f"model {name!r} {k}") if m.get(k) else None
             for k in ("calibration_data", "calibration_cache", "timing_cache")}
    return BuildRequest(model=_inside(base, m["onnx"], path, f"model {name!r} onnx"),
                        options=BuildOptions.from_dict(m.get("options")),
                        plugins=tuple(check_plugin_name(p) for p in plugins), **files)


def _request_v2(m: dict, base: str, path: str, name: str) -> BuildRequest:
    """The entry's build request, whole: validated by ``BuildRequest.from_dict``, its
    files confined to the bundle, its plugins names the device can load."""
    raw = m["request"]
    plugins = raw.get("plugins") if isinstance(raw, dict) else None
    if plugins is not None and not isinstance(plugins, list):
        raise _bad(path, f"model {name!r}: the request's 'plugins' must be a list")
    for lib in plugins or ():
        check_plugin_name(lib)        # before the request's own check: the device's rule, named
    request = BuildRequest.from_dict(raw)
    return request.map_files(lambda p: _inside(base, p, path, f"model {name!r} request file"))


def load_manifest(path: str) -> list:
    try:
        data = read_json_file(path)
    except JSONFileError as exc:
        raise _bad(path, str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise _bad(path, f"not a {MANIFEST_FORMAT} file")
    version = data.get("version")
    if version not in READ_VERSIONS:
        raise _bad(path, f"version {version!r} is not supported (expected one of "
                         f"{', '.join(map(str, READ_VERSIONS))})")
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
            sha = m["sha256"]
            if not isinstance(sha, str) or len(sha) != 64:
                raise _bad(path, f"model {name!r}: sha256 {sha!r} is not a sha256 digest")
            request = (_request_v1 if version == 1 else _request_v2)(m, base, path, name)
            if version > 1 and request.model not in files:
                raise _bad(path, f"model {name!r}: the request's model is not one of its 'files'")
            preprocess = m.get("preprocess")
            if preprocess is not None and not isinstance(preprocess, dict):
                raise _bad(path, f"model {name!r}: 'preprocess' must be an object")
            entries.append(ModelEntry(name=name, files=files, sha256=sha, request=request,
                                      preprocess=preprocess, manifest=os.path.abspath(path)))
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


def add_to_bundle(out_dir: str, name: str, model_files: list, sha256: str, request,
                  preprocess: dict | None = None, *, calibration_data: str | None = None,
                  calibration_cache: str | None = None, timing_cache: str | None = None,
                  plugins: tuple = ()) -> str:
    """Copy a model (+ external data) and the files its build reads to ``out_dir/name/`` and
    add it to the bundle's manifest with its :class:`~tegra_ai.spec.BuildRequest` whole
    (pointing at the copies). ``model_files``: ``onnx_files.model_digest``'s list, the
    model first. ``request`` is the BuildRequest, or (for library callers) the
    BuildOptions from which it is constructed here with the keyword arguments."""
    if isinstance(request, BuildOptions):
        request = BuildRequest(model=model_files[0], options=request, calibration_data=calibration_data,
                               calibration_cache=calibration_cache, timing_cache=timing_cache,
                               plugins=tuple(plugins))
    elif calibration_data or calibration_cache or timing_cache or plugins:
        raise TypeError("add_to_bundle: the BuildRequest holds the calibration, timing cache and plugins")
    check_model_name(name)
    for lib in request.plugins:
        check_plugin_name(lib)
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
        copies = {"model": copied[0]}
        for key, dest_name in (("calibration_data", "calibration.npz"), ("calibration_cache", "calibration.cache"),
                               ("timing_cache", "timing.cache")):
            src = getattr(request, key)
            if src:
                dest = os.path.join(dest_dir, dest_name)
                shutil.copyfile(src, dest + ".tmp")
                os.chmod(dest + ".tmp", FILE_MODE)
                os.replace(dest + ".tmp", dest)
                copies[key] = dest
    except OSError as exc:
        raise TegraAIError(f"cannot write bundle {out_dir}: {exc.strerror or exc}",
                           hint="choose a writable --out directory", exit_code=EXIT_USAGE) from None
    # The same request, its files now the bundle's copies: what ensure builds on the device.
    entry = ModelEntry(name=name, files=copied, sha256=sha256, request=request.replace(**copies),
                       preprocess=preprocess)
    models.append(entry.to_json(out_dir))
    models.sort(key=lambda m: m["name"])
    atomic_write_json(manifest_path, {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "models": models})
    return manifest_path
