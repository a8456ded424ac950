"""Implicit INT8 calibrators (TensorRT <= 10.x; deprecated in 10.1, gone in 11.0 — the
compat module refuses them there, and Q/DQ models are the way forward).

Calibration data is an ``.npz`` with one array per network input (already
preprocessed, e.g. by ``calibration-dataset`` with the model's PreprocessSpec), samples
along axis 0; or a directory of ``<input>.npy`` files."""

from __future__ import annotations

import glob
import os

import numpy as np

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.trt import compat
from tegra_ai.util.atomic import atomic_write_bytes


def _usage(msg: str) -> TegraAIError:
    return TegraAIError(msg, exit_code=EXIT_USAGE)


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
    if path.endswith(".npy"):
        raise _usage(f"calibration data {path}: one .npy file; give an .npz with one array per input "
                     "(or a directory of <input>.npy)")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise _usage(f"calibration data {path} is one array, not an .npz file with one array per input")
        with data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _usage(f"calibration data {path} holds Python objects (pickled); only numeric arrays are "
                         "loaded, never pickles") from None
        raise _usage(f"calibration data {path} is not an .npz file ({str(exc).splitlines()[0]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _usage(f"calibration data {path} is not an .npz file ({exc})") from None


class CalibrationBatches:
    """Validated calibration arrays, served in batches (pure NumPy, no GPU)."""

    def __init__(self, path: str, inputs: list, batch_size: int = 8):
        self.path = path
        arrays = load_calibration_arrays(path)
        if not arrays:
            raise _usage(f"calibration data {path} holds no arrays")
        self.arrays = {}
        counts = set()
        for inp in inputs:
            if inp.name not in arrays:
                raise _usage(f"calibration data {path} has no array for input {inp.name!r} (it has {', '.join(arrays)})")
            a = arrays[inp.name]
            if a.ndim != len(inp.dims):
                raise _usage(f"calibration array {inp.name!r} has rank {a.ndim}, the input has rank {len(inp.dims)}")
            for axis, d in enumerate(inp.dims):
                if axis and isinstance(d, int) and d > 0 and a.shape[axis] != d:
                    raise _usage(f"calibration array {inp.name!r} has shape {list(a.shape)}; dimension {axis} of the "
                                 f"input is {d}")
            self.arrays[inp.name] = a
            counts.add(a.shape[0])
        if len(counts) != 1:
            raise _usage(f"calibration arrays in {path} have different sample counts {sorted(counts)}")
        self.samples = counts.pop()
        if self.samples == 0:
            raise _usage(f"calibration data {path} has no samples")
        self.batch_size = max(1, min(int(batch_size), self.samples))
        self.num_batches = self.samples // self.batch_size  # whole batches only: a ragged one skews the histogram

    def sample_shape(self, name: str) -> tuple:
        return tuple(self.arrays[name].shape[1:])

    def batch(self, index: int) -> dict | None:
        if index >= self.num_batches:
            return None
        lo = index * self.batch_size
        return {n: np.ascontiguousarray(a[lo:lo + self.batch_size], dtype=np.float32) for n, a in self.arrays.items()}


def _read(path):
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read() or None
    return None


def make_calibrator(trt, feats, batches: CalibrationBatches | None, cache_path: str | None, progress=None):
    """An IInt8EntropyCalibrator2 over ``batches`` (device buffers through cuda-python),
    reading and writing ``cache_path``. With no batches it serves the cache alone."""
    base = compat.calibrator_base(trt, feats)
    if batches is None and not _read(cache_path):
        raise _usage(f"calibration cache {cache_path} does not exist or is empty")

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self.index = 0
            self.buffers = {}

        def get_batch_size(self):
            return batches.batch_size if batches else 1

        def get_batch(self, names):
            if batches is None:
                return None
            data = batches.batch(self.index)
            if data is None:
                return None
            from tegra_ai.cuda.driver import DeviceBuffer

            pointers = []
            for name in names:
                arr = data[name]
                buf = self.buffers.get(name)
                if buf is None:
                    buf = self.buffers[name] = DeviceBuffer(arr.nbytes)
                buf.upload(arr)
                pointers.append(int(buf))
            self.index += 1
            if progress is not None:
                progress.update(f"calibration batch {self.index}/{batches.num_batches}")
            return pointers

        def read_calibration_cache(self):
            return _read(cache_path)

        def write_calibration_cache(self, cache):
            if cache_path:
                atomic_write_bytes(cache_path, bytes(cache))

    return Calibrator()
