"""Implicit INT8 calibrators (TensorRT <= 10.x; deprecated in 10.1, gone in 11.0 — the
compat module refuses them there, and Q/DQ models are the way forward).

Calibration data is an ``.npz`` with one array per network input (already
preprocessed, e.g. by ``calibration-dataset`` with the model's PreprocessSpec), samples
along axis 0; or a directory of ``<input>.npy`` files. Keys starting with ``_`` (the
dataset manifest) are not inputs.

How TensorRT reads it (explicit-batch networks, the only kind since 8.x): each batch has
the input's *network* shape — the static shape, or the calibration profile's shape for a
dynamic input — and ``get_batch_size()`` is ignored. A shape-tensor input is calibrated at
one set of values (the calibration profile's min = opt = max): the data's array for it when
it has one (every sample the same), else the ``--shapes`` opt values; see
:class:`CalibrationBatches`. So the batch served here is sized
from the input's real shape, in the input's own dtype; serving 8 samples to a static
1xCxHxW input would make TensorRT read only the first of every 8, and serving fewer
than a static batch would make it read past the buffer.

The Python binding swallows exceptions raised in ``get_batch`` (it logs them and ends
calibration early, silently producing a poorer engine): the calibrator keeps the first
one and :meth:`raise_if_failed` re-raises it after the build.

A calibration cache is tied to what it was computed from: a ``CACHE.json`` beside it
records the model's sha256, the preprocessing spec and the TensorRT version; a cache
whose record differs is never used (it is recalibrated when data is given, else refused);
a cache without a record (from trtexec, or older tools) is used and the build notes say
it was not checked."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat
from tegra_ai.util.atomic import atomic_write_bytes, atomic_write_json
from tegra_ai.util.jsonfile import JSONFileError, read_json_file
from tegra_ai.util.jsonfile import loads as json_loads

log = logging.getLogger("tegra_ai.trt.calibrator")

DEFAULT_DYNAMIC_BATCH = 8


def _usage(msg: str, hint: str | None = None) -> TegraAIError:
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def check_array_file(path: str) -> None:
    """Refuse a file that is neither .npz (zip) nor .npy by its magic bytes (NumPy would
    take it for a pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise _usage(f"cannot read {path}: {exc.strerror}") from None
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06") or head == b"\x93NUMPY"):
        raise _usage(f"{path} is not a valid .npz/.npy file (and is never loaded as pickled data)")


def _load_npy(path: str):
    if os.path.getsize(path) == 0:
        raise _usage(f"calibration array {path} is empty (0 bytes)")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise _usage(f"calibration array {path} is not a .npy file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise _usage(f"calibration array {path} holds Python objects (pickled); only numeric arrays are "
                         "loaded, never pickles") from None
        raise _usage(f"calibration array {path} is not a .npy file ({str(exc).splitlines()[0]})") from None
    except (OSError, EOFError) as exc:
        raise _usage(f"calibration array {path} is not a readable .npy file ({exc})") from None


def load_calibration_arrays(path: str) -> dict:
    """input name -> array from an ``.npz`` (or a directory of ``<input>.npy``); numeric
    arrays only (``allow_pickle=False``): calibration data never runs code."""
    import zipfile

    if not os.path.exists(path):
        raise _usage(f"calibration data {path} does not exist")
    if os.path.isdir(path):
        return {os.path.splitext(os.path.basename(f))[0]: _load_npy(f)
                for f in sorted(glob.glob(os.path.join(path, "*.npy")))}
    if os.path.getsize(path) == 0:
        raise _usage(f"calibration data {path} is empty (0 bytes)")
    check_array_file(path)
    if path.endswith(".npy"):
        raise _usage(f"calibration data {path}: one .npy file; give an .npz with one array per input "
                     "(or a directory of <input>.npy)")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise _usage(f"calibration data {path} is one array, not an .npz file with one array per input")
        with data:  # keys starting with "_" (a calibration-dataset manifest, labels) are not inputs
            arrays = {k: data[k] for k in data.files if not k.startswith("_")}
            manifest = data["_manifest"] if "_manifest" in data.files else None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _usage(f"calibration data {path} holds Python objects (pickled); only numeric arrays are "
                         "loaded, never pickles") from None
        raise _usage(f"calibration data {path} is not an .npz file ({str(exc).splitlines()[0]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _usage(f"calibration data {path} is not an .npz file ({exc})") from None
    return _model_inputs(path, arrays, manifest)


def _model_inputs(path: str, arrays: dict, manifest) -> dict:
    """calibration-dataset files may store uint8 pixels (manifest ``storage``): normalised here,
    so every reader of calibration data gets the model's input tensors."""
    from tegra_ai.preprocess.stored import decode_stored

    if manifest is None:
        return arrays
    try:
        meta = json_loads(bytes(manifest))
    except JSONFileError as exc:
        raise _usage(f"calibration data {path}: its _manifest is {exc}") from None
    try:
        return decode_stored(arrays, meta if isinstance(meta, dict) else None)
    except TegraAIError as exc:
        raise _usage(f"calibration data {path}: {exc.message}") from None


def _np_dtype(name: str):
    try:
        return np.dtype(name)
    except TypeError:
        raise _usage(f"calibration: TensorRT input type {name} has no NumPy equivalent") from None


class CalibrationBatches:
    """Validated calibration arrays, served in batches of the network's shape (pure NumPy).

    ``batch_size`` is used only when every input's batch dimension is dynamic (it becomes
    the calibration profile's batch); a static batch dimension always wins.

    ``profile`` is the build's first optimization profile (``InputShapes`` per input, as
    :func:`tegra_ai.trt.shapes.resolve_profiles` completes it). A shape-tensor input (its
    profile takes values, ``--shapes k=MIN:OPT:MAX``) is calibrated at one set of values,
    since the calibration profile has min = opt = max: the data's, when the data holds an
    array for it (one row of values per sample, every row the same), else the profile's opt
    values. Its batch is those values at the tensor's own shape (no batch axis)."""

    def __init__(self, path: str, inputs: list, batch_size: int | None = None, profile: list | None = None):
        self.path = path
        arrays = load_calibration_arrays(path)
        if not arrays:
            raise _usage(f"calibration data {path} holds no arrays")
        given = {s.name: s for s in (profile or [])}
        self.inputs = list(inputs)
        self.arrays, self.dtypes = {}, {}
        self.shape_values, self.shape_sources = {}, {}
        counts = set()
        static_batches = set()
        for inp in inputs:
            self.dtypes[inp.name] = _np_dtype(getattr(inp, "dtype", "float32") or "float32")
            entry = given.get(inp.name)
            # A parsed network says which inputs are shape tensors; on the host (check, bundle
            # --target) resolve_profiles has let values through only for a possible one.
            is_shape = inp.shape_tensor if inp.shape_tensor is not None else bool(entry is not None and entry.values)
            if is_shape:
                counts.update(self._shape_input(path, inp, arrays.get(inp.name), entry))
                continue
            if inp.name not in arrays:
                raise _usage(f"calibration data {path} has no array for input {inp.name!r} (it has "
                             f"{', '.join(arrays)})",
                             hint="every input needs an array of samples; only a shape-tensor input may be left "
                                  "out, with its values in --shapes NAME=MIN:OPT:MAX (calibration uses the opt values)")
            a = arrays[inp.name]
            if a.ndim != len(inp.dims):
                raise _usage(f"calibration array {inp.name!r} has rank {a.ndim}, the input has rank {len(inp.dims)}")
            for axis, d in enumerate(inp.dims):
                if axis and isinstance(d, int) and d > 0 and a.shape[axis] != d:
                    raise _usage(f"calibration array {inp.name!r} has shape {list(a.shape)}; dimension {axis} of the "
                                 f"input is {d}")
            if a.dtype.kind not in "biuf":
                raise _usage(f"calibration array {inp.name!r} has dtype {a.dtype}; numbers expected")
            d0 = inp.dims[0] if inp.dims else None
            if isinstance(d0, int) and d0 > 0:
                static_batches.add(d0)
            self.arrays[inp.name] = a
            counts.add(a.shape[0])
        if not self.arrays:
            raise _usage(f"calibration data {path}: the model's only inputs are shape tensors; there is nothing "
                         "to calibrate with")
        if len(counts) != 1:
            raise _usage(f"calibration arrays in {path} have different sample counts {sorted(counts)}")
        self.samples = counts.pop()
        if self.samples == 0:
            raise _usage(f"calibration data {path} has no samples")
        if len(static_batches) > 1:
            raise _usage(f"inputs have different static batch sizes {sorted(static_batches)}; cannot calibrate")
        self.static_batch = static_batches.pop() if static_batches else None
        if self.static_batch is not None:
            self.batch_size = self.static_batch
            if self.samples < self.batch_size:
                raise _usage(f"calibration data {path} has {self.samples} sample(s), fewer than the model's static "
                             f"batch of {self.batch_size}")
        else:
            self.batch_size = max(1, min(int(batch_size or DEFAULT_DYNAMIC_BATCH), self.samples))
        self.num_batches = self.samples // self.batch_size  # whole batches only: a ragged one skews the histogram

    def _shape_input(self, path: str, inp, a, entry) -> set:
        """Fix the one set of values shape-tensor input ``inp`` is calibrated at; returns the
        sample count its array adds (none when the data leaves it out)."""
        dims = tuple(inp.dims)
        if a is None:
            if entry is None or not entry.values:
                raise _usage(f"calibration data {path} has no array for shape-tensor input {inp.name!r} and --shapes "
                             "gives no values for it",
                             hint=f"give --shapes {inp.name}=MIN:OPT:MAX (calibration uses the opt values) or an "
                                  f"array {inp.name!r} of one row of values per sample")
            values, source = tuple(entry.opt), "profile"
        else:
            if a.ndim != len(dims) + 1 or tuple(a.shape[1:]) != dims:
                raise _usage(f"calibration array {inp.name!r} has shape {list(a.shape)}; shape-tensor input "
                             f"{inp.name!r} {list(dims)} takes one row of values per sample, shape [N] + {list(dims)}")
            if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.array_equal(a, np.round(a))):
                raise _usage(f"calibration array {inp.name!r} holds {a.dtype} values; shape-tensor input "
                             f"{inp.name!r} takes integers")
            if a.shape[0] == 0:
                raise _usage(f"calibration data {path} has no samples")
            rows = np.asarray(a).reshape(a.shape[0], -1)
            if not (rows == rows[0]).all():
                raise _usage(f"calibration array {inp.name!r} holds different values in different samples; a "
                             "shape-tensor input is calibrated at one set of values (the calibration profile has "
                             "min = opt = max)",
                             hint="calibrate once per set of values, or leave the array out to use the --shapes opt "
                                  "values")
            values, source = tuple(int(v) for v in rows[0]), "data"
            if entry is not None and entry.values and not all(
                    lo <= v <= hi for lo, v, hi in zip(entry.min, values, entry.max)):
                raise _usage(f"calibration array {inp.name!r} holds values {list(values)}, outside --shapes "
                             f"{entry.format()}: the engine would be calibrated at a shape it never runs")
        want = self.dtypes[inp.name]
        if want.kind not in "iu":
            raise _usage(f"shape-tensor input {inp.name!r} is {want}; shape tensors are integer tensors")
        info = np.iinfo(want)
        if not all(info.min <= v <= info.max for v in values):
            raise _usage(f"shape-tensor input {inp.name!r} is {want}; values {list(values)} do not fit")
        self.shape_values[inp.name] = np.array(values, dtype=want).reshape(dims)
        self.shape_sources[inp.name] = source
        return set() if a is None else {a.shape[0]}

    @property
    def dropped(self) -> int:
        """Samples left out because they do not fill a whole batch."""
        return self.samples - self.num_batches * self.batch_size

    def sample_shape(self, name: str) -> tuple:
        return tuple(self.arrays[name].shape[1:])

    def batch_shape(self, name: str) -> tuple:
        """The shape TensorRT reads for ``name`` (what the calibration profile must be); a
        shape-tensor input's own shape."""
        if name in self.shape_values:
            return tuple(self.shape_values[name].shape)
        return (self.batch_size,) + self.sample_shape(name)

    def calibration_profile(self) -> list:
        """The calibration profile, as ``InputShapes`` in input order (what
        :func:`tegra_ai.trt.compat.set_calibration_profile` takes): each execution input at its
        batch shape, each shape-tensor input at its one set of values (min = opt = max)."""
        from tegra_ai.spec import InputShapes

        out = []
        for inp in self.inputs:
            if inp.name in self.shape_values:
                v = tuple(int(x) for x in self.shape_values[inp.name].ravel())
                out.append(InputShapes(inp.name, v, v, v, True))
            else:
                b = self.batch_shape(inp.name)
                out.append(InputShapes(inp.name, b, b, b))
        return out

    def notes(self) -> list:
        return [f"shape-tensor input {n} calibrated at values {v.ravel().tolist()} ("
                + ("from the calibration data)" if self.shape_sources[n] == "data" else "the --shapes opt values)")
                for n, v in self.shape_values.items()]

    def batch(self, index: int) -> dict | None:
        if index >= self.num_batches:
            return None
        lo = index * self.batch_size
        out = {}
        for n, a in self.arrays.items():
            want = self.dtypes[n]
            chunk = a[lo:lo + self.batch_size]
            if want.kind in "iu" and chunk.dtype.kind == "f" and not np.array_equal(chunk, np.round(chunk)):
                raise _usage(f"calibration array {n!r} holds fractions; the input is {want}")
            out[n] = np.ascontiguousarray(chunk, dtype=want)
        for n, v in self.shape_values.items():
            out[n] = v      # the same values every batch (the calibration profile's)
        return out


# --------------------------------------------------------------------------- cache provenance

def cache_provenance(model_sha256: str, trt_version: str, preprocess: dict | None = None) -> dict:
    return {"format": "tegra-ai-calibration-cache", "version": 1, "model_sha256": model_sha256,
            "tensorrt": trt_version, "preprocess": preprocess}


def provenance_path(cache_path: str) -> str:
    return cache_path + ".json"


def check_cache(cache_path: str | None, provenance: dict | None) -> tuple:
    """(usable, reason) for the cache at ``cache_path`` against ``provenance``."""
    if not cache_path or not os.path.isfile(cache_path) or os.path.getsize(cache_path) == 0:
        return False, "no cache"
    if provenance is None:
        return True, "no provenance to check"
    try:
        recorded = read_json_file(provenance_path(cache_path))
    except JSONFileError as exc:
        if exc.missing:  # a cache from trtexec or an older tool: usable, but said to be unchecked
            return True, (f"calibration cache {cache_path} has no provenance record "
                          f"({os.path.basename(provenance_path(cache_path))}): used as given, not checked against "
                          "the model, TensorRT version or preprocessing")
        return False, f"provenance record of {cache_path} is unreadable ({exc})"
    if not isinstance(recorded, dict):
        return False, f"provenance record of {cache_path} is unreadable (not a JSON object)"
    for key, what in (("model_sha256", "another model"), ("tensorrt", "another TensorRT version"),
                      ("preprocess", "another preprocessing spec")):
        if key == "preprocess" and provenance.get(key) is None:
            continue  # a cache-only build does not know the spec; model and TensorRT still must match
        if recorded.get(key) != provenance.get(key):
            return False, f"{cache_path} was computed for {what} ({recorded.get(key)!r:.40} != {provenance.get(key)!r:.40})"
    return True, "provenance matches"


def cache_notes(cache_path: str | None, provenance: dict | None) -> list:
    """What a build should say about the cache it uses (an unchecked cache is said so)."""
    usable, reason = check_cache(cache_path, provenance)
    return [reason] if usable and "no provenance record" in reason else []


def dataset_preprocess(path: str | None) -> dict | None:
    """The preprocessing spec recorded in a calibration-dataset .npz manifest, if any."""
    if not path or os.path.isdir(path) or not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "_manifest" not in data.files:
                return None
            meta = json_loads(bytes(data["_manifest"]))
    except (OSError, ValueError, EOFError):   # JSONFileError is a ValueError
        return None
    return meta.get("spec") if isinstance(meta, dict) else None


# --------------------------------------------------------------------------- the calibrator

def _read(path):
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read() or None
    return None


def device_uploader():
    """name, array -> device pointer, reusing one device buffer per input (cuda-python)."""
    from tegra_ai.cuda.driver import DeviceBuffer

    buffers = {}

    def upload(name, arr):
        buf = buffers.get(name)
        if buf is None or buf.nbytes < arr.nbytes:
            buf = buffers[name] = DeviceBuffer(arr.nbytes)
        buf.upload(arr)
        return int(buf)
    return upload


def make_calibrator(trt, feats, batches: CalibrationBatches | None, cache_path: str | None, progress=None,
                    provenance: dict | None = None, uploader=None):
    """An IInt8EntropyCalibrator2 over ``batches``, reading and writing ``cache_path``.

    With no batches it serves the cache alone (which must match ``provenance``). With
    batches, a cache that does not match is ignored (logged) and recalibrated. ``uploader``
    (name, host array) -> device pointer; default: cuda-python device buffers."""
    base = compat.calibrator_base(trt, feats)
    usable, reason = check_cache(cache_path, provenance)
    if batches is None:
        if not _read(cache_path):
            raise _usage(f"calibration cache {cache_path} does not exist or is empty")
        if not usable:
            raise _usage(f"calibration cache refused: {reason}",
                         hint="recalibrate with --calibration DATA.npz (the stale cache is then replaced)")
    elif cache_path and _read(cache_path) and not usable:
        log.warning("ignoring calibration cache: %s; recalibrating", reason)
    for n in cache_notes(cache_path, provenance):
        log.warning("%s", n)
    upload = uploader

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self.index = 0
            self.error = None
            self.cache_used = bool(usable and _read(cache_path))
            self.served = []  # batch shapes handed to TensorRT

        def get_batch_size(self):
            return batches.batch_size if batches else 1

        def get_batch(self, names):
            nonlocal upload
            if batches is None or self.error is not None:
                return None
            try:
                data = batches.batch(self.index)
                if data is None:
                    return None
                if upload is None:
                    upload = device_uploader()
                # One device pointer per input, shape tensors included: IInt8Calibrator::getBatch
                # "bindings An array of pointers to device memory ... containing each network input
                # data" (NvInfer.h 8.5 l.7940-7941, 10.3 l.7694-7695, 10.13.3 l.8232-8233); the
                # binding's get_batch returns "device memory pointers" (pyInt8Doc.h). NVIDIA's own
                # calibrator does the same for shape tensors (Polygraphy backend/trt/calibrator.py).
                pointers = [upload(name, data[name]) for name in names]
                self.served.append({n: list(data[n].shape) for n in names})
                self.index += 1
                if progress is not None:
                    progress.update(f"calibration batch {self.index}/{batches.num_batches}")
                return pointers
            except BaseException as exc:  # noqa: BLE001 - the binding would swallow it; kept for raise_if_failed
                self.error = exc
                return None

        def read_calibration_cache(self):
            return _read(cache_path) if usable else None

        def write_calibration_cache(self, cache):
            if cache_path:
                atomic_write_bytes(cache_path, bytes(cache))
                if provenance is not None:
                    atomic_write_json(provenance_path(cache_path), provenance)

        def raise_if_failed(self):
            """Re-raise what get_batch hit (TensorRT ended calibration early because of it)."""
            if self.error is None:
                return
            if isinstance(self.error, TegraAIError):
                raise self.error
            raise TegraAIError(f"calibration failed at batch {self.index + 1}: {type(self.error).__name__}: "
                               f"{self.error}") from self.error

    return Calibrator()
