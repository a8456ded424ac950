"""Build a calibration dataset: sources -> preprocessed samples in one deterministic ``.npz``.

Sources, in the order given:

- an image file or a folder of images, searched recursively (jpg, jpeg, png, bmp, webp);
  with ``class_balanced`` the first-level sub-folders of a folder are classes and the
  sample takes the same number from each;
- a video file (mp4, avi, mkv, mov, webm, m4v): every ``video_every``-th frame, or
  ``video_frames`` frames evenly spaced over the video;
- an ``.npy``/``.npz`` of raw images (uint8, N x H x W [x C], in the spec's input format)
  or of already preprocessed samples (N x the spec's output shape); never unpickled.

Sampling is deterministic: candidates are enumerated in sorted order, and ``count`` of
them are drawn with ``numpy.random.default_rng(seed)``; the same sources and seed give a
byte-identical file (the zip entries carry a fixed timestamp).

The output is an ``.npz`` with one array under the model input's name plus ``_manifest``
(UTF-8 JSON as uint8): the spec, the source files with their sha256, what was skipped,
and per-channel statistics (of the model inputs). The samples are stored as their resized
uint8 pixels (manifest ``version`` 2, ``storage: "uint8"``) when the spec allows it, else
in the model's dtype; :func:`load_samples` (the one loader every reader uses) returns
model inputs either way. When every sample is an image in a class sub-folder,
``_labels`` holds each sample's class (index into the sorted sub-folder names, listed in
the manifest as ``classes``): ``tensorrt-optimize compare --labels DATA.npz`` reads it.

Decoding and resizing use OpenCV (``opencv-python-headless``, the ``opencv`` extra; Pillow
for ``antialias``) in worker processes; the resize follows the spec's geometry (OpenCV ``INTER_LINEAR``, what
the CUDA kernel and the plugin do) and is within one pixel level of the NumPy reference.
Without OpenCV, arrays of raw images are still preprocessed with the NumPy reference."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import tempfile
import zipfile

import numpy as np

from tegra_ai.errors import EXIT_FAILURE, EXIT_USAGE, TegraAIError
from tegra_ai.preprocess.spec import PreprocessSpec, center_crop_geometry, letterbox_geometry
from tegra_ai.preprocess.stored import STORAGE_UINT8, decode_stored, normalisation, normalize_pixels, uint8_exact
from tegra_ai.util.atomic import atomic_writer
from tegra_ai.util.hashing import sha256_file
from tegra_ai.util.jsonfile import loads as json_loads
from tegra_ai.util.lazy import is_available, require
from tegra_ai.util.progress import Progress

log = logging.getLogger("tegra_ai.dataset.calibration")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
ARRAY_EXTS = (".npy", ".npz")
MANIFEST_KEY = "_manifest"
LABELS_KEY = "_labels"
FORMAT = "tegra-ai-calibration-dataset"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _usage(msg, hint=None):
    return TegraAIError(msg, hint=hint, exit_code=EXIT_USAGE)


def _cv2():
    return require("cv2", extra="opencv", purpose="decoding images and video for calibration-dataset")


# --------------------------------------------------------------------------- preprocessing

def _resize(img: np.ndarray, new_h: int, new_w: int, top: int, left: int, out_h: int, out_w: int,
            antialias: bool) -> np.ndarray:
    """Rows ``top..top+out_h``, columns ``left..left+out_w`` of ``img`` resized to ``new_h x new_w``,
    uint8: OpenCV ``INTER_LINEAR``, or with ``antialias`` PIL's bilinear filter (what
    torchvision's ``Resize`` does to a PIL image; the NumPy reference without Pillow)."""
    if antialias:
        if is_available("PIL"):
            from PIL import Image

            resized = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((new_w, new_h), Image.BILINEAR))
        else:
            from tegra_ai.preprocess.reference import resize_region

            x = resize_region(img.astype(np.float64).reshape(img.shape[:2] + (-1,)), new_h, new_w, top, left,
                              out_h, out_w, True)
            return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape((out_h, out_w) + img.shape[2:])
    else:
        resized = _cv2().resize(img, (new_w, new_h), interpolation=_cv2().INTER_LINEAR)
    if (top, left, out_h, out_w) != (0, 0, new_h, new_w):
        resized = resized[top:top + out_h, left:left + out_w]
    return resized


def spec_pixels(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """One decoded image (in ``spec.input_format``) -> ``spec.output_shape`` before normalisation
    (steps 1-3 of the spec and its layout): uint8 when :func:`~tegra_ai.preprocess.stored.uint8_exact`,
    else float32. May be a strided view. Resize, border, crop and channel swaps stay uint8 (OpenCV;
    PIL for ``antialias``); matches the NumPy reference within one pixel level, which is what
    the uint8 rounding of the resize costs."""
    cv2 = _cv2()
    if spec.input_format == "nv12":
        image = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_YUV2RGB_NV12)
        fmt = "rgb8"
    else:
        fmt = spec.input_format
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TegraAIError(f"source image must be uint8, got {img.dtype}")
    if fmt == "gray8" and img.ndim != 2 or fmt != "gray8" and (img.ndim != 3 or img.shape[2] != 3):
        raise TegraAIError(f"{fmt} image has shape {img.shape}")
    h, w = img.shape[:2]
    H, W = spec.height, spec.width
    if spec.resize == "stretch":
        canvas = _resize(img, H, W, 0, 0, H, W, spec.antialias)
    elif spec.resize == "center_crop":
        nh, nw, top, left = center_crop_geometry(h, w, spec.resize_short, H, W)
        canvas = _resize(img, nh, nw, top, left, H, W, spec.antialias)
    else:
        pad = float(spec.pad_value)
        _, nh, nw, top, left = letterbox_geometry(h, w, H, W)
        resized = _resize(img, nh, nw, 0, 0, nh, nw, spec.antialias)
        bottom, right = H - nh - top, W - nw - left
        if pad.is_integer() and 0 <= pad <= 255:
            value = (int(pad),) * (1 if resized.ndim == 2 else 3)
            canvas = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
        else:
            canvas = np.full((H, W) + resized.shape[2:], pad, np.float32)
            canvas[top:top + nh, left:left + nw] = resized
    if canvas.ndim == 2:
        canvas = canvas[..., None]
    # colour: the canvas is BGR (bgr8), RGB (rgb8/nv12) or gray; channel swaps are views.
    if canvas.shape[2] == 1:
        x = canvas if spec.channel_order == "gray" else np.repeat(canvas, 3, axis=2)
    else:
        rgb = canvas[..., ::-1] if fmt == "bgr8" else canvas
        if spec.channel_order == "rgb":
            x = rgb
        elif spec.channel_order == "bgr":
            x = rgb[..., ::-1]
        else:
            rgb = rgb.astype(np.float32)
            x = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[..., None]
    if spec.layout == "nhwc":
        return x
    if x.dtype == np.uint8 and canvas.shape[2] == 3 and spec.channel_order != "gray":
        # HWC -> CHW: OpenCV's split and one stacked copy, several times a strided NumPy transpose
        planes = cv2.split(np.ascontiguousarray(canvas))
        return np.stack(planes[::-1] if _reverses(fmt, spec.channel_order) else planes)
    return np.transpose(x, (2, 0, 1))


def _reverses(fmt: str, channel_order: str) -> bool:
    """Whether output channel c is canvas channel 2 - c (bgr8 -> rgb, rgb8/nv12 -> bgr)."""
    return (fmt == "bgr8") != (channel_order == "bgr")


def preprocess_opencv(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    """One decoded image (in ``spec.input_format``) -> ``spec.output_shape`` in ``spec.dtype``:
    :func:`spec_pixels` and one fused multiply-subtract per channel."""
    return normalize_pixels(spec, spec_pixels(spec, image))


def preprocess_image(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    if is_available("cv2"):
        return preprocess_opencv(spec, image)
    from tegra_ai.preprocess.reference import preprocess_reference

    return preprocess_reference(spec, image, dtype=spec.dtype)


def _file_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """Image and video files decode to BGR (OpenCV) or gray: the spec for that source."""
    return dataclasses.replace(spec, input_format="gray8" if spec.input_format == "gray8" else "bgr8")


# --------------------------------------------------------------------------- sources

@dataclasses.dataclass(frozen=True)
class Candidate:
    kind: str          # image | video | array
    path: str
    index: int = 0     # frame (video) or row (array)
    key: str = ""      # array name inside an .npz
    label: str = ""    # class (sub-folder) for balanced sampling


def _video_frame_count(path: str) -> int:
    cv2 = _cv2()
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return -1
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n > 0:
            return n
        while cap.grab():  # containers without a frame count: count by decoding
            n += 1
        return n
    finally:
        cap.release()


def _array_members(path: str) -> list:
    """[(key, array)] of an .npy/.npz; raises on pickled content."""
    from tegra_ai.trt.calibrator import check_array_file

    check_array_file(path)
    try:
        if path.endswith(".npy"):
            return [("", np.load(path, mmap_mode="r", allow_pickle=False))]
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if not k.startswith("_")}
            manifest = json_loads(bytes(data[MANIFEST_KEY])) if MANIFEST_KEY in data.files else None
        return list(decode_stored(arrays, manifest).items())  # a compactly stored dataset: its model inputs
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise _usage(f"{path} holds object arrays; pickled data is never loaded") from None
        raise _usage(f"{path} is not a valid {os.path.splitext(path)[1]} file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise _usage(f"{path} is not a valid {os.path.splitext(path)[1]} file ({exc})") from None
    except TegraAIError as exc:
        raise _usage(f"{path}: {exc.message}") from None


def _array_kind(spec: PreprocessSpec, arr: np.ndarray) -> str | None:
    """'pre' for preprocessed samples, 'raw' for images to preprocess, None to ignore."""
    if arr.ndim >= 2 and tuple(arr.shape[1:]) == spec.output_shape and arr.dtype.kind == "f":
        return "pre"
    if arr.dtype == np.uint8:
        if spec.input_format == "gray8" and arr.ndim == 3:
            return "raw"
        if spec.input_format in ("bgr8", "rgb8") and arr.ndim == 4 and arr.shape[3] == 3:
            return "raw"
        if spec.input_format == "nv12" and arr.ndim == 3:
            return "raw"
    return None


def enumerate_candidates(sources, spec: PreprocessSpec, video_every: int | None = None,
                         video_frames: int | None = 16, skipped: list | None = None, arrays=None) -> list:
    """Every sample the sources could give, in a deterministic order."""
    skipped = skipped if skipped is not None else []
    out = []
    for src in sources:
        if not os.path.exists(src):
            raise _usage(f"source {src} does not exist")
        if os.path.isdir(src):
            found = []
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                for f in sorted(filenames):
                    if f.lower().endswith(IMAGE_EXTS):
                        p = os.path.join(dirpath, f)
                        rel = os.path.relpath(p, src)
                        label = rel.split(os.sep)[0] if os.sep in rel else ""
                        found.append(Candidate("image", p, label=label))
            if not found:
                raise _usage(f"source folder {src} has no images ({', '.join(IMAGE_EXTS)})")
            out += found
            continue
        low = src.lower()
        if low.endswith(IMAGE_EXTS):
            out.append(Candidate("image", src))
        elif low.endswith(VIDEO_EXTS):
            n = _video_frame_count(src)
            if n <= 0:
                skipped.append({"path": src, "reason": "unreadable video"})
                log.warning("skipping %s: unreadable video", src)
                continue
            if video_every:
                idx = range(0, n, int(video_every))
            else:
                k = min(int(video_frames or 16), n)
                idx = sorted({int(i) for i in np.linspace(0, n - 1, k).round()})
            out += [Candidate("video", src, index=i) for i in idx]
        elif low.endswith(ARRAY_EXTS):
            members = _array_members(src)
            if arrays:
                missing = sorted(set(arrays) - {k for k, _ in members})
                if len(missing) == len(set(arrays)):
                    raise _usage(f"{src} has no array {', '.join(missing)} (it has {', '.join(k for k, _ in members)})")
                members = [(k, a) for k, a in members if k in arrays]
            used = 0
            for key, arr in members:
                kind = _array_kind(spec, arr)
                if kind is None:
                    continue
                used += 1
                out += [Candidate("array", src, index=i, key=f"{key}:{kind}") for i in range(arr.shape[0])]
            if not used:
                shapes = ", ".join(f"{k or 'array'} {list(a.shape)} {a.dtype}" for k, a in members)
                raise _usage(f"{src} holds no images for input format {spec.input_format} and no samples of "
                             f"shape {list(spec.output_shape)} ({shapes})")
        else:
            raise _usage(f"source {src} is not an image, a video, an .npy/.npz or a folder",
                         hint=f"images: {' '.join(IMAGE_EXTS)}; videos: {' '.join(VIDEO_EXTS)}")
    return out


def sample(candidates: list, count: int | None, seed: int, class_balanced: bool = False) -> list:
    """``count`` candidates drawn with ``default_rng(seed)``, kept in enumeration order."""
    n = len(candidates)
    if count is None or count >= n:
        return list(candidates)
    rng = np.random.default_rng(seed)
    if not class_balanced:
        return [candidates[i] for i in sorted(rng.choice(n, size=count, replace=False))]
    groups = {}
    for i, c in enumerate(candidates):
        groups.setdefault(c.label, []).append(i)
    order = {lab: list(rng.permutation(idx)) for lab, idx in sorted(groups.items())}
    chosen = []
    while len(chosen) < count:  # round-robin over classes: equal counts while each class lasts
        for lab in sorted(order):
            if order[lab] and len(chosen) < count:
                chosen.append(order[lab].pop(0))
    return [candidates[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------- workers

_SAMPLES = {}


def _samples(path):
    """The shared samples file (a .npy memory map), opened once per worker process."""
    mm = _SAMPLES.get(path)
    if mm is None:
        mm = _SAMPLES[path] = np.load(path, mmap_mode="r+", allow_pickle=False)
    return mm


def sample_stats(x: np.ndarray, layout: str) -> tuple:
    """Per-channel (sum, sum of squares, min, max, count) of one sample, as float64."""
    v = x.astype(np.float32, copy=False)
    v = v.reshape(v.shape[0], -1) if layout == "nchw" else v.reshape(-1, v.shape[-1]).T
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    return f64(v.sum(1)), f64(np.einsum("ij,ij->i", v, v)), f64(v.min(1)), f64(v.max(1)), v.shape[1]


def pixel_stats(spec: PreprocessSpec, pixels: np.ndarray) -> tuple:
    """:func:`sample_stats` of the normalised sample, from its uint8 pixels (per-channel
    moments by OpenCV's ``meanStdDev``, float64, then the affine normalisation
    ``pixel * a - b`` applied to them)."""
    cv2 = _cv2()
    x = np.ascontiguousarray(pixels)
    if spec.layout == "nchw":
        chans = [cv2.meanStdDev(x[c]) for c in range(x.shape[0])]
        mean = np.array([m[0, 0] for m, _ in chans])
        std = np.array([d[0, 0] for _, d in chans])
        flat = x.reshape(x.shape[0], -1)
        lo, hi = flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64)
        n = flat.shape[1]
    else:
        flat = x.reshape(-1, x.shape[-1])
        m, d = cv2.meanStdDev(x.reshape(x.shape[0], x.shape[1], -1)) if x.shape[-1] <= 4 else (None, None)
        if m is None:
            f = flat.astype(np.float64)
            mean, std = f.mean(0), f.std(0)
        else:
            mean, std = m[:, 0], d[:, 0]
        lo, hi = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
        n = flat.shape[0]
    s, ss = mean * n, (std * std + mean * mean) * n
    a, b = (np.asarray(v, np.float64) for v in normalisation(spec))
    ends = np.stack([lo * a - b, hi * a - b])
    return (a * s - b * n, a * a * ss - 2 * a * b * s + b * b * n, ends.min(0), ends.max(0), int(n))


def _work(task):
    """(kind, path, indices, key, spec dict, positions, samples file, storage) -> [(position, stats or None,
    error)]; each sample is written into the shared samples file at its position."""
    kind, path, indices, key, spec_d, positions, samples_path, storage = task
    spec = PreprocessSpec.from_dict(spec_d)
    mm = _samples(samples_path)
    out = []
    for pos, (_i, arr, err) in zip(positions, _decode(kind, path, indices, key, spec, storage)):
        if arr is None:
            out.append((pos, None, err))
        else:
            mm[pos] = arr
            out.append((pos, pixel_stats(spec, arr) if storage == STORAGE_UINT8 else sample_stats(arr, spec.layout),
                        None))
    return out  # a shared mapping: the parent sees the pages without msync


def _decode(kind, path, indices, key, spec, storage=None):
    """[(index, array or None, error)] for the samples of one source: uint8 pixels
    (:func:`spec_pixels`) for ``storage == "uint8"``, else the model input."""
    convert = spec_pixels if storage == STORAGE_UINT8 else preprocess_image
    try:
        if kind == "image":
            cv2 = _cv2()
            flag = cv2.IMREAD_GRAYSCALE if spec.input_format == "gray8" else cv2.IMREAD_COLOR
            img = cv2.imread(path, flag)
            if img is None:
                return [(indices[0], None, "unreadable image")]
            return [(indices[0], convert(_file_spec(spec), img), None)]
        if kind == "video":
            cv2 = _cv2()
            cap = cv2.VideoCapture(path)
            want, out, frame_no = set(indices), {}, 0
            try:
                while want - set(out) and frame_no <= max(want):
                    if not cap.grab():
                        break
                    if frame_no in want:
                        ok, frame = cap.retrieve()
                        if ok:
                            if spec.input_format == "gray8":
                                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                            out[frame_no] = convert(_file_spec(spec), frame)
                    frame_no += 1
            finally:
                cap.release()
            return [(i, out.get(i), None if i in out else f"frame {i} could not be decoded") for i in indices]
        name, how = key.rsplit(":", 1)
        members = dict(_array_members(path))
        arr = members[name]
        res = []
        for i in indices:
            x = np.asarray(arr[i])
            res.append((i, np.ascontiguousarray(x, dtype=spec.dtype) if how == "pre" else convert(spec, x), None))
        return res
    except TegraAIError as exc:
        return [(i, None, exc.message) for i in indices]
    except Exception as exc:  # noqa: BLE001 - a broken source is reported and skipped, never fatal by itself
        return [(i, None, f"{type(exc).__name__}: {exc}") for i in indices]


def _tasks(chosen: list, spec: PreprocessSpec, samples_path: str, storage: str | None = None):
    """Group the chosen candidates into worker tasks (a video or an array is one task)."""
    spec_d = spec.to_dict()
    tasks, groups = [], {}
    for pos, c in enumerate(chosen):
        if c.kind == "image":
            tasks.append(("image", c.path, [c.index], "", spec_d, [pos], samples_path, storage))
        else:
            g = groups.get((c.kind, c.path, c.key))
            if g is None:
                g = groups[(c.kind, c.path, c.key)] = (c.kind, c.path, [], c.key, spec_d, [], samples_path,
                                                       storage)
                tasks.append(g)
            g[2].append(c.index)
            g[5].append(pos)
    return tasks


# --------------------------------------------------------------------------- output

def channel_stats(parts: list) -> dict:
    """Per-channel mean, std, min, max of the whole dataset from per-sample :func:`sample_stats`."""
    s = sum(p[0] for p in parts)
    ss = sum(p[1] for p in parts)
    n = sum(p[4] for p in parts)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    r = lambda v: [round(float(a), 6) for a in v]  # noqa: E731
    return {"mean": r(mean), "std": r(std), "min": r(np.min([p[2] for p in parts], axis=0)),
            "max": r(np.max([p[3] for p in parts], axis=0))}


def write_npz(path: str, arrays: dict) -> None:
    """np.savez with fixed zip timestamps (byte-identical output), written atomically."""
    with atomic_writer(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:  # streamed: no second copy in memory
                    np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


def read_manifest(path: str) -> dict | None:
    with np.load(path, allow_pickle=False) as data:
        if MANIFEST_KEY not in data.files:
            return None
        return json_loads(bytes(data[MANIFEST_KEY]))


def build_dataset(sources, output: str, spec: PreprocessSpec, input_name: str = "input", count: int | None = None,
                  seed: int = 0, class_balanced: bool = False, video_every: int | None = None,
                  video_frames: int | None = 16, workers: int | None = None, show_progress: bool = True,
                  arrays=None) -> dict:
    """Sources -> ``output`` (.npz); returns the manifest. Raises TegraAIError (exit 2) on
    bad input, exit 1 when no sample could be made."""
    if not sources:
        raise _usage("no sources given")
    if count is not None and count <= 0:
        raise _usage(f"--max-samples must be positive, got {count}")
    if video_every is not None and video_every <= 0:
        raise _usage(f"--every-nth-frame must be positive, got {video_every}")
    if video_frames is not None and video_frames <= 0:
        raise _usage(f"--frames-per-video must be positive, got {video_frames}")
    if not str(output).endswith(".npz"):
        raise _usage(f"output {output} must end in .npz")
    skipped = []
    candidates = enumerate_candidates(sources, spec, video_every, video_frames, skipped, arrays)
    if not candidates:
        raise TegraAIError("no samples: every source was unreadable", exit_code=EXIT_FAILURE)
    chosen = sample(candidates, count, seed, class_balanced)
    if any(c.kind in ("image", "video") for c in chosen):
        _cv2()   # missing OpenCV: one error naming the extra (exit 69), not every image "unreadable"
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise TegraAIError(f"output directory {out_dir} does not exist", exit_code=EXIT_USAGE)
    storage = sample_storage(spec, chosen)
    stored_dtype = np.dtype(np.uint8 if storage == STORAGE_UINT8 else spec.dtype)
    fd, samples_path = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", suffix=".samples.npy",
                                        dir=_scratch_dir(len(chosen) * int(np.prod(spec.output_shape))
                                                         * stored_dtype.itemsize, out_dir))
    os.close(fd)
    try:
        # Workers write straight into one memory-mapped file: no sample crosses a pipe.
        np.lib.format.open_memmap(samples_path, mode="w+", dtype=stored_dtype,
                                  shape=(len(chosen),) + spec.output_shape).flush()
        tasks = _tasks(chosen, spec, samples_path, storage)
        stats, errors = {}, {}
        workers = workers if workers is not None else min(len(tasks), os.cpu_count() or 1)
        with Progress(f"calibration-dataset ({len(chosen)} samples)", enabled=show_progress) as progress:
            done = 0
            if workers > 1 and len(tasks) > 1:
                # fork (spawn/forkserver re-import __main__, which hangs a pool started from a
                # notebook or stdin); OpenCV is set to one thread before forking, so no child
                # inherits a thread pool it cannot use, and the processes are the parallelism.
                ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                  else "spawn")
                with _single_threaded_opencv():
                    pool = start_pool(ctx, workers)
                    try:
                        for res in pool.imap(_work, tasks, chunksize=max(1, len(tasks) // (workers * 8))):
                            done = _collect(res, stats, errors, done, progress, len(chosen))
                    finally:
                        stop_pool(pool)
            else:
                for task in tasks:
                    done = _collect(_work(task), stats, errors, done, progress, len(chosen))
            _SAMPLES.pop(samples_path, None)
        for pos, msg in sorted(errors.items()):
            c = chosen[pos]
            where = f"{c.path}" + (f" frame {c.index}" if c.kind == "video" else f" [{c.index}]" if c.kind == "array" else "")
            skipped.append({"path": c.path, "reason": msg, **({"index": c.index} if c.kind != "image" else {})})
            log.warning("skipping %s: %s", where, msg)
        keep = sorted(stats)
        if not keep:
            raise TegraAIError(f"no samples: all {len(chosen)} selected source(s) were unreadable "
                               f"(first: {skipped[0]['path']}: {skipped[0]['reason']})", exit_code=EXIT_FAILURE)
        mm = np.load(samples_path, mmap_mode="r", allow_pickle=False)
        data = mm if len(keep) == len(chosen) else mm[keep]
        manifest = _manifest(input_name, data, spec, seed, class_balanced, candidates, video_every, video_frames,
                             chosen, keep, skipped, channel_stats([stats[i] for i in keep]))
        if storage == STORAGE_UINT8:
            manifest.update(version=2, storage=STORAGE_UINT8, dtype=spec.dtype)
        arrays = {input_name: data}
        labels = [chosen[i].label for i in keep]
        if all(chosen[i].kind == "image" for i in keep) and all(labels):
            # images in class sub-folders: their labels (index into the sorted class names)
            classes = sorted(set(labels))
            manifest["classes"] = classes
            arrays[LABELS_KEY] = np.array([classes.index(lab) for lab in labels], np.int64)
        blob = np.frombuffer(json.dumps(manifest, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        arrays[MANIFEST_KEY] = blob
        write_npz(output, arrays)
        del data, mm
    finally:
        _SAMPLES.pop(samples_path, None)
        with contextlib.suppress(OSError):
            os.unlink(samples_path)
    return manifest


def sample_storage(spec: PreprocessSpec, chosen: list) -> str | None:
    """``"uint8"`` when the samples can be stored as their resized pixels (the spec's values are
    uint8 before normalisation, OpenCV decodes, no source is already preprocessed), else None
    (stored as the model input, ``spec.dtype``)."""
    if not is_available("cv2") or not uint8_exact(spec):
        return None
    if any(c.kind == "array" and c.key.endswith(":pre") for c in chosen):
        return None
    return STORAGE_UINT8


def load_samples(path: str) -> dict:
    """Input name -> model input tensors (``spec.dtype``) of a calibration-dataset ``.npz``
    (either storage) or any calibration ``.npz``/folder of ``.npy``: the one loader behind
    ``tensorrt-optimize --calibration``, ``quantize`` and ``compare``."""
    from tegra_ai.trt.calibrator import load_calibration_arrays

    return load_calibration_arrays(path)


_POOL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def start_pool(ctx, workers: int):
    """A worker pool whose processes never run the parent's SIGTERM/SIGINT handlers: the
    signals are blocked while the workers are forked, so one that arrives before a worker
    has run :func:`_worker_signals` stays pending until the worker has reset its handlers
    (and the parent receives its own once the pool is up)."""
    if not hasattr(signal, "pthread_sigmask"):
        return ctx.Pool(workers, initializer=_worker_signals)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _POOL_SIGNALS)
    try:
        return ctx.Pool(workers, initializer=_worker_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_signals():
    """Pool initializer: a forked worker must not run the parent's handlers. SIGTERM (what
    ``Pool.terminate`` sends) gets its default action, so the CLI's handler, which raises to
    unwind the parent, never raises inside a worker (a traceback per worker, and a worker
    that survives termination); SIGINT is ignored: Ctrl-C reaches the whole process group
    and the parent alone unwinds and stops the pool. Then the signals blocked by
    :func:`start_pool` are let through."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _POOL_SIGNALS)


def stop_pool(pool, timeout: float = 10.0) -> None:
    """Terminate ``pool`` and join it within ``timeout`` seconds: ``Pool.terminate`` runs in a
    thread that is given up on (its workers SIGKILLed) when it does not finish in time, since
    it can block forever on a worker that died or on a full task pipe."""
    import threading

    t = threading.Thread(target=pool.terminate, name="calibration-pool-terminate", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for proc in list(getattr(pool, "_pool", [])):
            with contextlib.suppress(Exception):
                proc.kill()
        t.join(timeout)
        if t.is_alive():
            log.warning("the calibration worker pool did not stop within %.0f s; abandoned", 2 * timeout)


def _manifest(input_name, data, spec, seed, class_balanced, candidates, video_every, video_frames, chosen, keep,
              skipped, stats):
    used_files = sorted({chosen[i].path for i in keep})
    return {
        "format": FORMAT, "version": 1, "input": input_name, "count": int(data.shape[0]),
        "shape": list(data.shape), "dtype": str(data.dtype), "spec": spec.to_dict(), "seed": seed,
        "class_balanced": class_balanced, "candidates": len(candidates),
        "video": {"every_nth_frame": video_every} if video_every else {"frames_per_video": video_frames},
        "decoder": "opencv" if is_available("cv2") else "numpy-reference",
        "sources": [{"path": p, "sha256": sha256_file(p)} for p in used_files],
        "samples": [{"path": chosen[i].path, **({"index": chosen[i].index} if chosen[i].kind != "image" else {})}
                    for i in keep],
        "skipped": skipped,
        "stats": stats,
    }


def _scratch_dir(nbytes: int, fallback: str) -> str:
    """Where the shared samples file lives: RAM (/dev/shm) when it fits in half of what is
    free there, else beside the output."""
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if os.access(shm, os.W_OK) and nbytes < st.f_bavail * st.f_frsize // 2:
            return shm
    except OSError:
        pass
    return fallback


@contextlib.contextmanager
def _single_threaded_opencv():
    cv2 = _cv2() if is_available("cv2") else None
    previous = cv2.getNumThreads() if cv2 is not None else None
    if cv2 is not None:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if cv2 is not None:
            cv2.setNumThreads(previous)


def _collect(res, stats, errors, done, progress, total):
    for pos, st, err in res:
        if st is None:
            errors[pos] = err
        else:
            stats[pos] = st
    done += len(res)
    progress.update(f"{done}/{total}")
    return done


# --------------------------------------------------------------------------- model

def model_input(model_path: str, input_name: str | None = None):
    """(name, dims, numpy dtype name) of the model input to calibrate; dims hold None for dynamic."""
    onnx = require("onnx", extra="onnx", purpose="reading the model's input")
    from onnx import helper

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others
        raise _usage(f"cannot read {model_path} as ONNX ({type(exc).__name__})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if input_name is None:
        if len(inputs) != 1:
            raise _usage(f"{model_path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); choose one "
                         "with --input")
        inp = inputs[0]
    else:
        match = [i for i in inputs if i.name == input_name]
        if not match:
            raise _usage(f"{model_path} has no input {input_name!r} (it has {', '.join(i.name for i in inputs)})")
        inp = match[0]
    t = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
    dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name
    return inp.name, dims, dtype


def reconcile_spec(fields: dict, dims: tuple, dtype: str) -> PreprocessSpec:
    """Complete spec ``fields`` from the model input (size, dtype) and check they agree."""
    fields = dict(fields)
    if len(dims) != 4:
        raise _usage(f"the model input has rank {len(dims)}; calibration-dataset makes image batches (rank 4)")
    layout = fields.get("layout", "nchw")
    h, w = (dims[2], dims[3]) if layout == "nchw" else (dims[1], dims[2])
    if fields.get("height") is None and h:
        fields["height"] = h
    if fields.get("width") is None and w:
        fields["width"] = w
    if fields.get("dtype") is None and dtype in ("float32", "float16"):
        fields["dtype"] = dtype
    if fields.get("height") is None or fields.get("width") is None:
        raise _usage("the model's input size is dynamic; give --height and --width (or --spec)")
    spec = PreprocessSpec.from_dict({k: v for k, v in fields.items() if v is not None})
    want = (None,) + spec.output_shape
    for axis, (d, s) in enumerate(zip(dims, want)):
        if axis and d is not None and d != s:
            raise _usage(f"the preprocessing spec makes {spec.layout} samples of shape {list(spec.output_shape)}, "
                         f"the model input is {[x if x else '?' for x in dims]}")
    if dtype != spec.dtype:
        raise _usage(f"the preprocessing spec makes {spec.dtype}, the model input is {dtype}")
    return spec
