"""calibration-dataset: generated images and video (written with OpenCV here), .npz
sources, determinism, the spec and the model's input, unreadable files, no pickle."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from tegra_ai.cli.calibration import main
from tegra_ai.dataset import calibration as ds
from tegra_ai.models import DEFAULT_MODEL, DEFAULT_PREPROCESS, DEFAULT_SAMPLES, load_preprocess_spec
from tegra_ai.preprocess.reference import preprocess_reference
from tegra_ai.preprocess.spec import PreprocessSpec

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'meta-tegra-ai[opencv]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(1)
    for cls, n in (("cats", 6), ("dogs", 2)):
        os.makedirs(d / "imgs" / cls)
        for i in range(n):
            img = rng.integers(0, 256, (48 + i, 64, 3), dtype=np.uint8)
            ext = (".png", ".jpg", ".bmp")[i % 3]
            assert cv2.imwrite(str(d / "imgs" / cls / f"{i}{ext}"), img)
    (d / "imgs" / "cats" / "broken.png").write_bytes(b"not a png")
    (d / "imgs" / "notes.txt").write_text("ignored")
    w = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        w.write(np.full((48, 64, 3), i * 12, np.uint8))
    w.release()
    return d


def run(argv, cwd):
    from badinput import invoke

    return invoke(main, argv, str(cwd))


def load(path):
    """Every member as stored, with the inputs as the model sees them (the public loader)."""
    with np.load(path, allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    return {**raw, **ds.load_samples(str(path))}


def test_images_and_video(media, tmp_path):
    r = run([str(media / "imgs"), str(media / "clip.avi"), "-o", "out.npz", "--height", "32", "--width", "32",
             "--resize", "letterbox", "--frames-per-video", "4", "--json", "--no-progress"], tmp_path)
    assert r.code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["count"] == 8 + 4 and summary["shape"] == [12, 3, 32, 32]
    assert [s["reason"] for s in summary["skipped"]] == ["unreadable image"]
    data = load(tmp_path / "out.npz")
    manifest = json.loads(bytes(data["_manifest"]).decode())
    assert manifest["spec"]["resize"] == "letterbox" and len(manifest["sources"]) == 9
    assert "_labels" not in data and "classes" not in manifest  # video frames have no class
    assert all(re.fullmatch(r"[0-9a-f]{64}", s["sha256"]) for s in manifest["sources"])
    # 4 evenly spaced frames of a 20-frame clip; frame i is gray level 12*i (JPEG-compressed)
    frames = [s["index"] for s in manifest["samples"] if s["path"].endswith("clip.avi")]
    assert frames == [0, 6, 13, 19]
    x = data["input"]
    # letterboxed 64x48 -> 32x24 image rows + 8 rows of pad value 114
    np.testing.assert_allclose(x[-4:].mean(axis=(1, 2, 3)), 0.75 * np.array(frames) * 12 / 255 + 0.25 * 114 / 255,
                               atol=0.02)
    assert manifest["stats"]["mean"] == pytest.approx(x.mean(axis=(0, 2, 3)).tolist(), abs=1e-5)


def test_every_nth_frame(media, tmp_path):
    m = ds.build_dataset([str(media / "clip.avi")], str(tmp_path / "v.npz"), PreprocessSpec(16, 16), video_every=5,
                         video_frames=None, show_progress=False)
    assert [s["index"] for s in m["samples"]] == [0, 5, 10, 15]


def test_opencv_path_matches_the_numpy_reference(media):
    img = cv2.imread(str(media / "imgs" / "cats" / "0.png"))
    for spec in (PreprocessSpec(32, 40, resize="letterbox", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)),
                 PreprocessSpec(24, 24, channel_order="bgr", layout="nhwc"),
                 PreprocessSpec(20, 20, channel_order="gray", mean=(0.0,), std=(1.0,), dtype="float16")):
        fast = ds.preprocess_opencv(spec, img)
        ref = preprocess_reference(spec, img, dtype=np.float64)
        assert fast.shape == spec.output_shape and fast.dtype == np.dtype(spec.dtype)
        # one pixel level of OpenCV's uint8 resize, through the normalisation
        tol = 1.01 * spec.scale / min(spec.std) + (2e-3 if spec.dtype == "float16" else 1e-5)
        assert np.abs(fast.astype(np.float64) - ref).max() <= tol


def test_deterministic_and_seed_dependent(media, tmp_path):
    args = [str(media / "imgs"), "--height", "16", "--width", "16", "--max-samples", "5", "--no-progress"]
    assert run(args + ["-o", "a.npz"], tmp_path).code == 0
    assert run(args + ["-o", "b.npz", "--workers", "1"], tmp_path).code == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert run(args + ["-o", "c.npz", "--seed", "7"], tmp_path).code == 0
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "c.npz").read_bytes()


def test_class_balanced(media, tmp_path):
    m = ds.build_dataset([str(media / "imgs")], str(tmp_path / "b.npz"), PreprocessSpec(8, 8), count=4,
                         class_balanced=True, show_progress=False)
    classes = [os.path.basename(os.path.dirname(s["path"])) for s in m["samples"]]
    assert sorted(classes) == ["cats", "cats", "dogs", "dogs"]
    # class sub-folders: labels (index into the sorted names) travel in the .npz
    assert m["classes"] == ["cats", "dogs"]
    assert load(tmp_path / "b.npz")["_labels"].tolist() == [["cats", "dogs"].index(c) for c in classes]
    m = ds.build_dataset([str(media / "imgs")], str(tmp_path / "u.npz"), PreprocessSpec(8, 8), count=4, seed=3,
                         show_progress=False)
    assert len(m["samples"]) == 4


def test_spec_round_trip_and_flags_override(media, tmp_path):
    spec = PreprocessSpec(20, 30, resize="letterbox", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5), layout="nhwc")
    (tmp_path / "s.json").write_text(spec.to_json())
    assert run([str(media / "imgs" / "dogs"), "-o", "s.npz", "--spec", "s.json", "--no-progress"], tmp_path).code == 0
    manifest = ds.read_manifest(str(tmp_path / "s.npz"))
    assert PreprocessSpec.from_dict(manifest["spec"]) == spec
    assert run([str(media / "imgs" / "dogs"), "-o", "t.npz", "--spec", "s.json", "--height", "10", "--no-progress"],
               tmp_path).code == 0
    assert load(tmp_path / "t.npz")["input"].shape == (2, 10, 30, 3)


def test_digits_from_the_model_and_its_samples(tmp_path):
    r = run([DEFAULT_SAMPLES, "--array", "calib_images", "--model", DEFAULT_MODEL, "--spec", DEFAULT_PREPROCESS,
             "-o", "d.npz", "--no-progress"], tmp_path)
    assert r.code == 0, r.stderr
    x = load(tmp_path / "d.npz")["input"]
    from tegra_ai import models

    imgs, _ = models.load_samples("calib")
    np.testing.assert_allclose(x, (imgs.astype(np.float32) / 255.0)[:, None], atol=1e-6)
    # the model gives the size: the gray spec flags alone are enough
    r = run([DEFAULT_SAMPLES, "--array", "val_images", "--model", DEFAULT_MODEL, "--input-format", "gray8",
             "-o", "v.npz", "--no-progress"], tmp_path)
    assert r.code == 0, r.stderr and load(tmp_path / "v.npz")["input"].shape[1:] == (1, 8, 8)


def test_preprocessed_arrays_pass_through(tmp_path):
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "pre.npy", x)
    m = ds.build_dataset([str(tmp_path / "pre.npy")], str(tmp_path / "o.npz"), load_preprocess_spec(),
                         show_progress=False)
    assert m["count"] == 6 and np.array_equal(load(tmp_path / "o.npz")["input"], x)


def test_nothing_readable_is_fatal(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    r = run([str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "-o", "o.npz", "--height", "8", "--width", "8",
             "--no-progress"], tmp_path)
    assert r.code == 1 and "no samples: all 2 selected source(s) were unreadable" in r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_no_pickle_anywhere_in_the_package():
    """Every np.load in the package refuses pickles explicitly."""
    offenders = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "scripts", "tegra_ai")):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f)).read()
                for m in re.finditer(r"np\.load\(([^()]*(\([^()]*\))?[^()]*)\)", text):
                    if "allow_pickle=False" not in m.group(1):
                        offenders.append(f"{f}: {m.group(0)}")
    assert not offenders, offenders


def test_pickled_source_refused(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    r = run([str(tmp_path / "evil.npy"), "-o", "o.npz", "--height", "8", "--width", "8"], tmp_path)
    assert r.code == 2 and "pickled data is never loaded" in r.stderr
