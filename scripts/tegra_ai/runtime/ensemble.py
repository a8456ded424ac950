"""Ensembles described in a small JSON (or YAML) file, run on the multi-model runtime.

    {
      "format": "tegra-ai-ensemble", "version": 1,
      "models": {
        "digits_a": {"onnx": "digits.onnx", "preprocess": "digits.preprocess.json", "workers": 2},
        "digits_b": {"engine": "/var/lib/tegra-ai/engines/digits/digits-<key>.engine", "preprocess": {...}},
        "digits_c": {"cached": "digits"},          # the engine index of tensorrt-optimize ensure
        "det":      {"onnx": "det.onnx", "preprocess": {"height": 640, "width": 640, "resize": "letterbox"}}
      },
      "ensembles": {
        "vote":    {"parallel": ["digits_a", "digits_b"], "combine": "mean"},
        "cascade": {"detector": "det", "detection": {"head": "yolov8", "score_threshold": 0.3},
                    "classifier": "digits_a", "max_crops": 32}
      }
    }

* ``parallel``: every member model sees the same image (through its own preprocessing),
  they run at once, and ``combine`` merges their first (or ``output``) outputs:
  ``mean`` (element-wise mean; the class is its argmax), ``vote`` (each member's argmax
  votes; most votes wins, ties go to the lowest class index) or ``concat`` (along the
  last axis).
* ``cascade``: the detector's head is post-processed (:mod:`tegra_ai.postprocess.detection`),
  the detections (at most ``max_crops``, best first) are cropped from the source image
  (on the GPU by the preprocessing kernel with ``device="gpu"``) and classified as one batch.

Paths are relative to the description file. A model's ``preprocess`` is a
:class:`~tegra_ai.preprocess.spec.PreprocessSpec` (object or JSON file); without it the
image must already be the model's input tensor.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.postprocess.detection import DetectionSpec
from tegra_ai.preprocess.spec import PreprocessSpec

FORMAT = "tegra-ai-ensemble"
VERSION = 1
COMBINE_RULES = ("mean", "vote", "concat")
MODEL_SOURCES = ("onnx", "engine", "cached")
DEFAULT_ENGINE_CACHE = "/var/lib/tegra-ai/engines"


def _bad(where: str, message: str):
    raise TegraAIError(f"{where}: {message}", exit_code=EXIT_USAGE)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str                   # onnx | engine | cached
    path: str                     # file (onnx, engine) or the name in the engine index (cached)
    preprocess: PreprocessSpec | None = None
    workers: int = 1
    output: str | None = None


@dataclass(frozen=True)
class Parallel:
    name: str
    models: tuple
    combine: str = "mean"


@dataclass(frozen=True)
class Cascade:
    name: str
    detector: str
    classifier: str
    detection: DetectionSpec = field(default_factory=DetectionSpec)
    max_crops: int = 32


@dataclass(frozen=True)
class EnsembleFile:
    path: str
    models: dict
    ensembles: dict

    def models_used(self, names=None) -> list:
        used = []
        for e in self.select(names):
            for m in (e.models if isinstance(e, Parallel) else (e.detector, e.classifier)):
                if m not in used:
                    used.append(m)
        return used

    def select(self, names=None) -> list:
        if not names:
            return list(self.ensembles.values())
        unknown = [n for n in names if n not in self.ensembles]
        if unknown:
            raise TegraAIError(f"{self.path}: no ensemble {', '.join(map(repr, unknown))} (it has "
                               f"{', '.join(self.ensembles)})", exit_code=EXIT_USAGE)
        return [self.ensembles[n] for n in names]


def _read(path: str):
    """The description at ``path`` through the bounded reader (regular file, size and
    nesting capped: a FIFO or a document nested thousands deep is one line, exit 2)."""
    from tegra_ai.util.jsonfile import JSONFileError, check_depth, read_bytes
    from tegra_ai.util.jsonfile import loads as json_loads

    if os.path.isdir(path):
        _bad(path, "is a directory, not an ensemble description")
    try:
        raw = read_bytes(path)
    except JSONFileError as exc:
        _bad(path, "no such file" if exc.missing else f"cannot read: {exc}")
    if path.lower().endswith((".yaml", ".yml")):
        from tegra_ai.util.lazy import require

        yaml = require("yaml", extra="yaml", purpose="YAML ensemble descriptions (JSON needs nothing)")
        try:
            text = raw.decode("utf-8")
            check_depth(raw)    # flow style ([[[...]]]) is where YAML nests deep in few bytes
            return yaml.safe_load(text)
        except UnicodeDecodeError:
            _bad(path, "not a text file")
        except JSONFileError as exc:
            _bad(path, str(exc).replace("JSON", "YAML"))
        except RecursionError:
            _bad(path, "not valid YAML for this tool (nested too deep)")
        except yaml.YAMLError as exc:
            _bad(path, f"not valid YAML ({str(exc).splitlines()[0]})")
    try:
        return json_loads(raw)
    except JSONFileError as exc:
        _bad(path, "not a text file" if "not UTF-8" in str(exc) else str(exc))


def _check_keys(where, d, allowed):
    if not isinstance(d, dict):
        _bad(where, f"expected an object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        _bad(where, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(allowed)})")


def _preprocess(where, value, base):
    if value is None:
        return None
    if isinstance(value, str):
        p = value if os.path.isabs(value) else os.path.join(base, value)
        try:
            return PreprocessSpec.load(p)
        except TegraAIError as exc:
            _bad(where, f"preprocess file {exc.message}")
    if isinstance(value, dict):
        try:
            return PreprocessSpec.from_dict(value)
        except TegraAIError as exc:
            _bad(where, exc.message)
    _bad(where, f"preprocess must be an object or a JSON file name, got {type(value).__name__}")


def _name_ok(where, name):
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        _bad(where, f"name {name!r} must be letters, digits, '-', '_' or '.'")


def _positive_int(where, key, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        _bad(where, f"{key} must be a positive integer, got {v!r}")
    return v


def parse(data, path: str = "<ensemble>") -> EnsembleFile:
    base = os.path.dirname(os.path.abspath(path)) if os.path.exists(path) else os.getcwd()
    _check_keys(path, data, ("format", "version", "models", "ensembles"))
    if data.get("format", FORMAT) != FORMAT:
        _bad(path, f"format {data.get('format')!r} is not {FORMAT!r}")
    if data.get("version", VERSION) != VERSION:
        _bad(path, f"version {data.get('version')!r} is not supported (this tool reads version {VERSION})")
    models_in, ens_in = data.get("models"), data.get("ensembles")
    if not isinstance(models_in, dict) or not models_in:
        _bad(path, "'models' must be a non-empty object of name -> model")
    if not isinstance(ens_in, dict) or not ens_in:
        _bad(path, "'ensembles' must be a non-empty object of name -> ensemble")
    models = {}
    for name, m in models_in.items():
        where = f"{path}: model {name!r}"
        _name_ok(where, name)
        _check_keys(where, m, MODEL_SOURCES + ("preprocess", "workers", "output"))
        sources = [k for k in MODEL_SOURCES if k in m]
        if len(sources) != 1:
            _bad(where, f"needs exactly one of {', '.join(MODEL_SOURCES)}")
        src = sources[0]
        value = m[src]
        if not isinstance(value, str) or not value:
            _bad(where, f"{src} must be a non-empty string")
        if src != "cached":
            value = value if os.path.isabs(value) else os.path.join(base, value)
        output = m.get("output")
        if output is not None and not isinstance(output, str):
            _bad(where, "output must be a tensor name")
        models[name] = ModelEntry(name, src, value, _preprocess(where, m.get("preprocess"), base),
                                  _positive_int(where, "workers", m.get("workers", 1)), output)
    ensembles = {}
    for name, e in ens_in.items():
        where = f"{path}: ensemble {name!r}"
        _name_ok(where, name)
        if isinstance(e, dict) and "parallel" in e:
            _check_keys(where, e, ("parallel", "combine"))
            members = e["parallel"]
            if not isinstance(members, list) or len(members) < 2:
                _bad(where, "parallel needs a list of at least two model names")
            combine = e.get("combine", "mean")
            if combine not in COMBINE_RULES:
                _bad(where, f"combine {combine!r} is not one of {', '.join(COMBINE_RULES)}")
            for m in members:
                if m not in models:
                    _bad(where, f"unknown model {m!r} (the file defines {', '.join(models)})")
            ensembles[name] = Parallel(name, tuple(members), combine)
        elif isinstance(e, dict) and "detector" in e:
            _check_keys(where, e, ("detector", "classifier", "detection", "max_crops"))
            for role in ("detector", "classifier"):
                if e.get(role) not in models:
                    _bad(where, f"{role} {e.get(role)!r} is not a model of this file ({', '.join(models)})")
            try:
                det = DetectionSpec.from_dict(e.get("detection", {}))
            except TegraAIError as exc:
                _bad(where, exc.message)
            if models[e["detector"]].preprocess is None or models[e["classifier"]].preprocess is None:
                _bad(where, "a cascade's detector and classifier need a preprocess spec (boxes map back "
                            "through it; crops are preprocessed with it)")
            ensembles[name] = Cascade(name, e["detector"], e["classifier"], det,
                                      _positive_int(where, "max_crops", e.get("max_crops", 32)))
        else:
            _bad(where, "needs 'parallel' (a list of models) or 'detector' and 'classifier' (a cascade)")
    return EnsembleFile(path, models, ensembles)


def load(path: str) -> EnsembleFile:
    return parse(_read(path), path)


# --- running -----------------------------------------------------------------------

def _index_engine(index: str, name: str) -> str:
    """The engine path of model ``name`` in a cache's index.json (bounded reader:
    JSONFileError, a ValueError, for a hostile index; KeyError/TypeError for no entry)."""
    from tegra_ai.util.jsonfile import read_json_file

    path = read_json_file(index)["models"][name]["engine"]
    if not isinstance(path, str):
        raise TypeError(name)
    return path


def _runner_factory(entry: ModelEntry, engine_cache: str):
    if entry.source == "onnx":
        if not os.path.isfile(entry.path):
            raise TegraAIError(f"model {entry.name}: ONNX file {entry.path} does not exist", exit_code=EXIT_USAGE)

        def make():
            from tegra_ai.backend.onnxruntime import OnnxRuntimeRunner

            return OnnxRuntimeRunner(entry.path)
        return make
    path = entry.path
    if entry.source == "cached":
        index = os.path.join(engine_cache, "index.json")
        try:
            path = _index_engine(index, entry.path)
        except (ValueError, KeyError, TypeError):
            raise TegraAIError(f"model {entry.name}: no engine {entry.path!r} in {index}", exit_code=EXIT_USAGE,
                               hint="run tensorrt-optimize ensure first, or give --cache") from None
    if not os.path.isfile(path):
        raise TegraAIError(f"model {entry.name}: engine {path} does not exist", exit_code=EXIT_USAGE)

    from tegra_ai.backend.tensorrt import shared_engine_factory

    # one deserialized engine for every worker of this model; each worker's runner takes
    # its own execution context and profile slot
    return shared_engine_factory(path)


def require_gpu() -> None:
    """cuda-python and a CUDA device for ``device="gpu"`` (preprocessing, crops and NMS
    kernels), or one error: exit 69 naming what is missing."""
    from tegra_ai.cuda.driver import ensure_context
    from tegra_ai.errors import EXIT_UNAVAILABLE, MissingDependencyError

    try:
        ensure_context(0)
    except MissingDependencyError:
        raise
    except TegraAIError as exc:
        raise TegraAIError(f"--device gpu: no usable CUDA device ({exc.message})", hint="use --device cpu",
                           exit_code=EXIT_UNAVAILABLE) from None


def _model_io(entry: ModelEntry, engine_cache: str):
    """(inputs, outputs) as [(name, dims with None where dynamic)] from the ONNX graph or
    the engine's sidecar; None where neither can be read here (no onnx package, no sidecar)."""
    if entry.source == "onnx":
        from tegra_ai.util.lazy import is_available

        if not is_available("onnx") or not os.path.isfile(entry.path):
            return None
        import onnx

        try:
            m = onnx.load(entry.path, load_external_data=False)
        except Exception:  # noqa: BLE001 - the runner reports an unreadable model
            return None
        init = {i.name for i in m.graph.initializer}

        def dims(v):
            if not v.type.tensor_type.HasField("shape"):
                return None
            return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                         for d in v.type.tensor_type.shape.dim)
        return ([(i.name, dims(i)) for i in m.graph.input if i.name not in init],
                [(o.name, dims(o)) for o in m.graph.output])
    from tegra_ai.spec import Sidecar, sidecar_path

    path = entry.path
    if entry.source == "cached":
        try:
            path = _index_engine(os.path.join(engine_cache, "index.json"), entry.path)
        except (ValueError, KeyError, TypeError):
            return None
    sc = Sidecar.read_if_ours(sidecar_path(path))
    if sc is None or not sc.inputs:
        return None
    as_io = lambda rows: [(r["name"], tuple(r["dims"])) for r in rows]  # noqa: E731
    return as_io(sc.inputs), (as_io(sc.outputs) if sc.outputs else None)


def _fmt_dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _fits(want, have) -> bool:
    """Static dimensions agree (None matches anything)."""
    return len(want) == len(have) and all(a is None or b is None or a == b for a, b in zip(want, have))


def check_shapes(desc: EnsembleFile, names=None, engine_cache: str = DEFAULT_ENGINE_CACHE) -> list:
    """Shape problems of the selected ensembles, found from the models' files without
    running them: a preprocessing spec whose tensor does not fit the model's input (a
    cascade's crops feed the classifier through it), a detector head the detection spec
    cannot read, parallel members whose outputs the combine rule cannot merge. A model
    whose IO cannot be read here (no onnx package, engine without sidecar) is skipped."""
    from tegra_ai.postprocess.detection import resolve_head

    problems, io = [], {}
    for m in desc.models_used(names):
        entry = desc.models[m]
        io[m] = _model_io(entry, engine_cache)
        if io[m] is None:
            continue
        inputs, _ = io[m]
        if len(inputs) != 1:
            problems.append(f"model {m}: ensembles run one-input image models; it takes "
                            f"{', '.join(n for n, _ in inputs)}")
            continue
        name, dims = inputs[0]
        if entry.preprocess is not None and dims is not None:
            made = (None,) + tuple(entry.preprocess.output_shape)
            if not _fits(made, dims):
                problems.append(f"model {m}: its preprocessing makes {_fmt_dims(made[1:])} per image, its input "
                                f"{name} takes {_fmt_dims(dims)}")

    def output_dims(m):
        if io.get(m) is None or io[m][1] is None:
            return None
        outs = dict(io[m][1])
        key = desc.models[m].output or next(iter(outs), None)
        if key not in outs:
            problems.append(f"model {m}: no output {key!r} ({', '.join(outs)})")
            return None
        return outs[key]

    for e in desc.select(names):
        if isinstance(e, Cascade):
            head = output_dims(e.detector)
            if head is not None and all(d is not None for d in head[1:]):
                try:
                    resolve_head(e.detection, [(1,) + tuple(head[1:])])
                except TegraAIError as exc:
                    problems.append(f"ensemble {e.name}: detector {e.detector}'s output {_fmt_dims(head)} does not "
                                    f"fit its detection spec ({exc.message})")
        else:
            shapes = {m: output_dims(m) for m in e.models}
            known = {m: d for m, d in shapes.items() if d is not None}
            if len(known) > 1:
                first_m, first = next(iter(known.items()))
                for m, d in known.items():
                    same = _fits(first[1:], d[1:]) if e.combine != "concat" else _fits(first[1:-1], d[1:-1])
                    if not same:
                        what = "equal output shapes" if e.combine != "concat" else "equal shapes but the last axis"
                        problems.append(f"ensemble {e.name}: combine {e.combine} needs {what}; {first_m} gives "
                                        f"{_fmt_dims(first)}, {m} {_fmt_dims(d)}")
    return problems


def convert_image(image: np.ndarray, to_format: str) -> np.ndarray:
    """A BGR (HxWx3) or gray (HxW) uint8 image in ``to_format``."""
    from tegra_ai.runtime.sources import bgr_to_format

    image = np.asarray(image)
    if image.ndim == 2:
        if to_format == "gray8":
            return image
        image = np.repeat(image[:, :, None], 3, axis=2)
    return bgr_to_format(image, to_format)


class EnsembleRunner:
    """Runs the ensembles of a description on one image at a time; every model is a
    worker of one :class:`~tegra_ai.runtime.engine.ModelRuntime`, so the members of a
    parallel ensemble (and several ensembles) run at once."""

    def __init__(self, desc: EnsembleFile, names=None, device: str = "cpu", engine_cache: str = DEFAULT_ENGINE_CACHE,
                 queue_size: int = 8):
        from tegra_ai.runtime.engine import ModelRuntime

        if device not in ("cpu", "gpu"):
            raise TegraAIError(f"device {device!r}: cpu or gpu", exit_code=EXIT_USAGE)
        if device == "gpu":
            require_gpu()      # once, before any model or image: not once per image
        self.desc, self.device = desc, device
        self.ensembles = desc.select(names)
        used = desc.models_used(names)
        factories = {m: _runner_factory(desc.models[m], engine_cache) for m in used}
        self.runtime = ModelRuntime(factories, queue_size=queue_size,
                                    workers={m: desc.models[m].workers for m in used})
        self._croppers = {}
        self.timing = {e.name: [] for e in self.ensembles}

    def close(self):
        self.runtime.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # preprocessing: GPU kernel or NumPy reference, same numbers
    def _prep(self, entry: ModelEntry, image):
        if entry.preprocess is None:  # the image is the input tensor, in the model's dtype
            meta = self.runtime.input_metadata(entry.name)
            return np.asarray(image).astype(meta[0].dtype if meta else np.float32), None, None
        spec = entry.preprocess
        img = convert_image(image, spec.input_format)
        if self.device == "gpu":
            from tegra_ai.kernels import preprocess

            x, maps = preprocess(spec, [img])
        else:
            from tegra_ai.kernels.api import box_mapping
            from tegra_ai.preprocess.reference import preprocess_batch_reference

            x = preprocess_batch_reference(spec, [img])
            h, w = (img.shape[0] * 2 // 3, img.shape[1]) if spec.input_format == "nv12" else img.shape[:2]
            maps = [box_mapping(spec, h, w)]
        return x.astype(np.float16 if spec.dtype == "float16" else np.float32), maps[0], img

    def _feed(self, name, x):
        # One-input models (what ensembles of image models are); the input name comes from the runner.
        return {self._input_name(name): x}

    def _input_name(self, name):
        metas = self.runtime.input_metadata(name)
        if len(metas) != 1:
            raise TegraAIError(f"model {name}: ensembles run one-input image models; it takes "
                               f"{', '.join(m.name for m in metas)}", exit_code=EXIT_USAGE)
        return metas[0].name

    def _output(self, name, outputs):
        key = self.desc.models[name].output
        if key is None:
            return next(iter(outputs.values()))
        if key not in outputs:
            raise TegraAIError(f"model {name} has no output {key!r} ({', '.join(outputs)})", exit_code=EXIT_USAGE)
        return outputs[key]

    def run(self, image) -> dict:
        """name -> result of every selected ensemble for one image."""
        pending = {}
        for e in self.ensembles:
            t0 = time.perf_counter()
            if isinstance(e, Parallel):
                futs = {}
                for m in e.models:
                    x, _, _ = self._prep(self.desc.models[m], image)
                    futs[m] = self.runtime.submit(m, self._feed(m, x))
                pending[e.name] = (e, t0, futs)
            else:
                det = self.desc.models[e.detector]
                x, mapping, img = self._prep(det, image)
                pending[e.name] = (e, t0, (self.runtime.submit(e.detector, self._feed(e.detector, x)), mapping, img))
        out = {}
        for name, (e, t0, work) in pending.items():
            out[name] = self._parallel(e, work) if isinstance(e, Parallel) else self._cascade(e, *work)
            self.timing[name].append((time.perf_counter() - t0) * 1e3)
        return out

    def _parallel(self, e: Parallel, futs) -> dict:
        outs = {m: np.asarray(self._output(m, f.result()), dtype=np.float64) for m, f in futs.items()}
        return combine(e.combine, outs)

    def _cascade(self, e: Cascade, fut, mapping, img) -> dict:
        from tegra_ai.postprocess.detection import reference as det_reference

        head = self._output(e.detector, fut.result())
        spec = e.detection
        h, w = (img.shape[0] * 2 // 3, img.shape[1]) if self.desc.models[e.detector].preprocess.input_format == "nv12" \
            else img.shape[:2]
        if self.device == "gpu":
            dets = self._gpu_post(e, head, mapping, (h, w))
        else:
            dets = det_reference(spec, [head], mappings=[mapping], image_sizes=[(h, w)])[0]
        n = min(len(dets), e.max_crops)
        result = {"detections": []}
        if n == 0:
            return result
        cls_entry = self.desc.models[e.classifier]
        from tegra_ai.runtime.crops import crop_rects, crops_reference

        src = convert_image(img, cls_entry.preprocess.input_format)
        rects = crop_rects(dets.boxes[:n], h, w, cls_entry.preprocess.input_format)
        if self.device == "gpu":
            from tegra_ai.runtime.crops import GpuCropper

            cropper = self._croppers.get(e.name)
            if cropper is None:
                cropper = self._croppers[e.name] = GpuCropper(cls_entry.preprocess)
            batch = cropper(src, rects)
        else:
            batch = crops_reference(cls_entry.preprocess, src, rects)
        batch = batch.astype(np.float16 if cls_entry.preprocess.dtype == "float16" else np.float32)
        logits = self._classify(e.classifier, batch)
        for i in range(n):
            row = logits[i].reshape(-1)
            result["detections"].append({
                "box": [round(float(v), 3) for v in dets.boxes[i]], "score": round(float(dets.scores[i]), 5),
                "class": int(dets.classes[i]), "label": int(np.argmax(row)), "label_score": round(float(row.max()), 5)})
        return result

    def _classify(self, name, batch):
        """All crops in one request when the model's batch dimension allows it, else in
        requests of its fixed batch size (run at once by the model's workers; the last
        one padded with zeros)."""
        fixed = self.runtime.input_metadata(name)[0].shape[0]
        n = len(batch)
        if fixed is None or fixed == n:
            return np.asarray(self._output(name, self.runtime.submit(name, self._feed(name, batch)).result()))
        futs = []
        for i in range(0, n, fixed):
            chunk = batch[i:i + fixed]
            if len(chunk) < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            futs.append(self.runtime.submit(name, self._feed(name, chunk)))
        return np.concatenate([np.asarray(self._output(name, f.result())) for f in futs])[:n]

    def _gpu_post(self, e, head, mapping, size):
        from tegra_ai.postprocess.gpu import DetectionPostprocessor

        head = np.asarray(head)
        post = self._croppers.get(("post", e.name))
        if post is None or post.shapes != [head.shape]:
            post = self._croppers[("post", e.name)] = DetectionPostprocessor(e.detection, [head.shape],
                                                                             dtype=str(head.dtype))
        return post([head], mappings=[mapping], image_sizes=[size])[0]


def combine(rule: str, outputs: dict) -> dict:
    """Merge member outputs (name -> array [1, C] or [C]) by ``rule``."""
    arrays = list(outputs.values())
    if rule == "concat":
        cat = np.concatenate([a.reshape(a.shape[0] if a.ndim > 1 else 1, -1) for a in arrays], axis=-1)
        return {"shape": list(cat.shape), "output": cat.round(6).tolist()}
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise TegraAIError(f"combine {rule}: member outputs differ in shape "
                           f"({', '.join(f'{m} {list(a.shape)}' for m, a in outputs.items())})", exit_code=EXIT_USAGE)
    members = {m: int(np.argmax(a.reshape(-1))) for m, a in outputs.items()}
    if rule == "mean":
        mean = np.mean(np.stack(arrays), axis=0).reshape(-1)
        return {"class": int(np.argmax(mean)), "score": round(float(mean.max()), 6), "members": members}
    votes = np.bincount(list(members.values()), minlength=arrays[0].size)
    return {"class": int(np.argmax(votes)), "votes": int(votes.max()), "members": members}
