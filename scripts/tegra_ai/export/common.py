"""What the exporters share: the models of some manifests that have a valid engine in a
cache, with their IO tensors (from the sidecar; the ONNX model for sidecars written before
the sidecar recorded outputs), and writing files without overwriting any the tool did not write."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, TegraAIError
from tegra_ai.util.atomic import atomic_write_text, make_dirs

# First line of every text file an exporter writes: a file there without it is not ours.
MARKER = "# Written by tensorrt-optimize export (tegra-ai); regenerated on every export."


@dataclass
class Tensor:
    name: str
    dims: list          # None where the dimension is dynamic
    dtype: str          # numpy-style name (trt.compat.dtype_name)


@dataclass
class ExportModel:
    name: str
    engine: str         # CACHE/NAME.engine: the stable link ensure keeps pointing at the current engine
    sidecar: object     # spec.Sidecar of the engine
    entry: object       # cache.manifest.ModelEntry
    inputs: list
    outputs: list
    notes: list = field(default_factory=list)

    @property
    def precision(self) -> str:
        return self.sidecar.options.precision

    @property
    def profiles(self) -> list:
        return self.sidecar.profiles or []


def _usage(msg: str, hint: str | None = None) -> TegraAIError:
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def _tensors(rows, where: str) -> list:
    out = []
    for r in rows:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("dims"), list):
            raise _usage(f"{where}: malformed tensor record {r!r}")
        out.append(Tensor(r["name"], [None if d is None or int(d) < 0 else int(d) for d in r["dims"]],
                          str(r.get("dtype") or "float32")))
    return out


def _onnx_outputs(entry) -> list:
    """Outputs from the ONNX model (sidecars before outputs were recorded)."""
    from tegra_ai.util.lazy import lazy_import

    onnx = lazy_import("onnx", extra="onnx")
    try:
        model = onnx.load(entry.onnx, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 (onnx raises several types for a bad file)
        raise _usage(f"model {entry.name}: cannot read {entry.onnx} for its outputs ({exc})") from None
    out = []
    for o in model.graph.output:
        t = o.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
        out.append(Tensor(o.name, dims, dtype))
    return out


def collect(manifests: list, cache_dir: str, names: tuple = ()) -> tuple:
    """(models with a valid engine in ``cache_dir``, [{"name", "reason"}] of the others).

    ``names``: only these models (each must be listed in a manifest)."""
    from tegra_ai.cache.ensure import engine_path_for
    from tegra_ai.cache.manifest import find_manifests, load_manifest
    from tegra_ai.spec import check_model_name

    if not os.path.isdir(cache_dir):
        raise _usage(f"engine cache {cache_dir} does not exist", hint="give the --cache that ensure fills")
    paths = find_manifests(list(manifests))
    if not paths:
        raise _usage(f"no manifest.json in {', '.join(manifests)}")
    entries = {}
    for path in paths:
        for e in load_manifest(path):
            entries.setdefault(e.name, e)
    for n in names:
        check_model_name(n)
        if n not in entries:
            raise _usage(f"model {n} is not in the manifests ({', '.join(sorted(entries)) or 'none'})")
    models, skipped = [], []
    for name, entry in sorted(entries.items()):
        if names and name not in names:
            continue
        try:
            info = engine_path_for(cache_dir, name)
        except TegraAIError as exc:
            if exc.exit_code != EXIT_FAILURE:
                raise
            skipped.append({"name": name, "reason": "no engine in the cache (run ensure first)"})
            continue
        from tegra_ai.spec import Sidecar

        sidecar = Sidecar.load(info["sidecar"])
        if sidecar.model_sha256 != entry.sha256 or sidecar.options != entry.options:
            skipped.append({"name": name, "reason": "the cache's engine is of another model version or other "
                                                    "build options (run ensure first)"})
            continue
        inputs = _tensors(sidecar.inputs, info["sidecar"])
        outputs = _tensors(sidecar.outputs, info["sidecar"]) if sidecar.outputs else _onnx_outputs(entry)
        if not inputs or not outputs:
            raise _usage(f"model {name}: the engine's sidecar lists no {'inputs' if not inputs else 'outputs'}")
        models.append(ExportModel(name, info["engine"], sidecar, entry, inputs, outputs))
    return models, skipped


def batch_of(model: ExportModel) -> tuple:
    """(max batch, True when every input and output has a dynamic first dimension).

    The largest batch is that of the first optimization profile's max shapes (profile 0
    is the one Triton and nvinfer use); a static first dimension is the batch itself."""
    tensors = model.inputs + model.outputs
    dynamic = all(t.dims and t.dims[0] is None for t in tensors)
    if dynamic:
        first = model.profiles[0] if model.profiles else []
        maxes = [s["max"][0] for s in first if isinstance(s, dict) and s.get("max")]
        if not maxes:
            raise _usage(f"model {model.name}: the batch dimension is dynamic but the sidecar has no profile")
        return min(maxes), True
    first = model.inputs[0].dims[0] if model.inputs[0].dims else 1
    return (first if first else 1), False


class OwnedWriter:
    """Writes text files and links atomically, refusing (before anything is written, see
    :meth:`check`) to replace a file it did not write."""

    def __init__(self):
        self.planned = []   # (path, kind, payload)

    def text(self, path: str, text: str) -> None:
        self.planned.append((path, "text", MARKER + "\n" + text))

    def link(self, path: str, target: str) -> None:
        self.planned.append((path, "link", target))

    def copy(self, path: str, source: str) -> None:
        self.planned.append((path, "copy", source))

    @staticmethod
    def _ours(path: str, kind: str, payload: str) -> bool:
        from tegra_ai.spec import is_ours

        if not os.path.lexists(path):
            return True
        if os.path.isdir(path) and not os.path.islink(path):
            return False
        if kind == "text":
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return f.readline().rstrip("\n") == MARKER
            except OSError:
                return False
        # the engine (a link to the cache's engine, or a copy with its sidecar beside it)
        return (os.path.islink(path) and os.readlink(path) == payload) or is_ours(path)

    def check(self) -> None:
        for path, kind, payload in self.planned:
            if not self._ours(path, kind, payload):
                raise _usage(f"{path} exists and was not written by export; refusing to overwrite it",
                             hint="remove it yourself or export into another directory")

    def write(self) -> list:
        import shutil

        from tegra_ai.spec import sidecar_path

        self.check()
        written = []
        for path, kind, payload in self.planned:
            try:
                make_dirs(os.path.dirname(path))
                if kind == "text":
                    atomic_write_text(path, payload)
                elif kind == "link":
                    for src, dst in ((payload, path), (sidecar_path(payload), sidecar_path(path))):
                        tmp = f"{dst}.tmp-{os.getpid()}"
                        if os.path.lexists(tmp):
                            os.unlink(tmp)
                        os.symlink(src, tmp)
                        os.replace(tmp, dst)
                else:
                    # engine first, then its sidecar (the commit point, as in the cache)
                    for src, dst in ((os.path.realpath(payload), path),
                                     (os.path.realpath(sidecar_path(payload)), sidecar_path(path))):
                        tmp = f"{dst}.tmp-{os.getpid()}"
                        if os.path.lexists(dst) and os.path.islink(dst):
                            os.unlink(dst)
                        shutil.copyfile(src, tmp)
                        os.replace(tmp, dst)
            except OSError as exc:
                raise TegraAIError(f"cannot write {path}: {exc.strerror or exc}",
                                   hint="choose a writable output directory", exit_code=EXIT_USAGE) from None
            written.append(path)
        return written

