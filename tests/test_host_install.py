"""The documented host install works for every host command (issue #16 part 1).

``test_readme_host_workflow_in_a_fresh_venv`` does what README tells a new user: a fresh
virtual environment (no system site-packages, which would hide a missing dependency),
``pip install '.[host]'`` from a copy of the tree, then README's quick start
(``tensorrt-optimize example``) and README's "INT8 and FP16 on the host" block verbatim
(PNG folders, calibration-dataset, quantize, compare, convert-fp16). Needs the package
index (skipped with the reason when it is unreachable); pip's cache makes reruns cheap."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block(heading: str) -> str:
    """The first ```sh block after ``heading`` in README.md."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(re.escape(heading) + r".*?```sh\n(.*?)```", text, re.S)
    assert m, f"README has no sh block under {heading!r}"
    return m.group(1)


def test_host_extra_is_what_readme_installs():
    quick = readme_block("## Quick start")
    assert "pip install '.[host]'" in quick
    tomllib = pytest.importorskip("tomllib")

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        host = tomllib.load(f)["project"]["optional-dependencies"]["host"]
    # calibration-dataset decodes images with OpenCV
    assert any(r.startswith("opencv-python") for r in host), host


def _calls(tree, names):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in names:
                yield node


def test_every_missing_module_message_names_the_extra():
    """Every require()/MissingDependencyError of the library names a pip extra (the message
    then says pip install 'meta-tegra-ai[EXTRA]')."""
    missing = []
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, "scripts", "tegra_ai")):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            tree = ast.parse(open(path, encoding="utf-8").read())
            for call in _calls(tree, {"require", "MissingDependencyError"}):
                if os.path.basename(path) == "lazy.py":
                    continue    # require() itself and LazyModule pass their caller's extra on
                kw = {k.arg: k.value for k in call.keywords}
                extra = kw.get("extra", call.args[1] if len(call.args) > 1 else None)
                if extra is None or (isinstance(extra, ast.Constant) and not extra.value):
                    missing.append(f"{os.path.relpath(path, ROOT)}:{call.lineno}")
    assert not missing, "no pip extra named: " + ", ".join(missing)


def test_calibration_dataset_without_opencv_fails_once_naming_the_extra(tmp_path, monkeypatch, capsys):
    cv2 = pytest.importorskip("cv2")
    from tegra_ai.cli.calibration import main

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), 40 * i, np.uint8))
    monkeypatch.setitem(sys.modules, "cv2", None)     # import cv2 -> ImportError, as without OpenCV
    code = main([str(tmp_path), "-o", str(tmp_path / "o.npz"), "--height", "8", "--width", "8",
                 "--input-format", "gray8", "--no-progress", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 69, err
    assert "meta-tegra-ai[opencv]" in err and "unreadable" not in err, err
    assert not (tmp_path / "o.npz").exists()


def _pip_index_reachable(venv_pip, tmp_path):
    probe = subprocess.run([venv_pip, "download", "--no-deps", "--dest", str(tmp_path / "probe"), "tqdm"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=180)
    return probe.returncode == 0, (probe.stdout.strip().splitlines() or [""])[-1]


def test_readme_host_workflow_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / "bin"
    ok, why = _pip_index_reachable(str(bindir / "pip"), tmp_path)
    if not ok:
        pytest.skip(f"the package index is unreachable (pip download: {why})")
    # a copy of what the package is built from (building in the repository would leave build/ there)
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, f), src / f)
    shutil.copytree(os.path.join(ROOT, "scripts"), src / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    inst = subprocess.run([str(bindir / "pip"), "install", "--disable-pip-version-check", f"{src}[host]"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900)
    assert inst.returncode == 0, inst.stdout[-4000:]

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    def sh(script):
        res = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=900)
        assert res.returncode == 0, res.stdout[-6000:]
        return res.stdout

    # README's quick start, step 1 (the install above, then example)
    quick = readme_block("## Quick start")
    assert ".venv/bin/tensorrt-optimize example" in quick
    out = sh("tensorrt-optimize example --json --no-progress")
    result = json.loads(out[out.index("{"):])
    assert result["steps"]["preflight"].get("skipped") is None, result["steps"]["preflight"]
    assert "skipped" not in result["steps"]["reference_accuracy"], result["steps"]["reference_accuracy"]
    # what the quick start says example prints: the accuracy on N held-out digits
    acc = result["steps"]["reference_accuracy"]
    prose = open(os.path.join(ROOT, "README.md")).read()
    assert f"accuracy on {acc['samples']}\nheld-out digits" in prose or f"accuracy on {acc['samples']} held-out" in prose
    assert f"({100 * acc['top1']:.1f} %)" in prose, acc

    # README's INT8 and FP16 block, verbatim: image folders -> calibration-dataset -> quantize -> compare -> fp16
    log = sh(readme_block("## INT8 and FP16 on the host"))
    assert "unreadable" not in log, log[-3000:]
    for f in ("calib.npz", "val.npz", "digits.int8.onnx", "int8-report.md", "digits.fp16.onnx"):
        assert (work / f).is_file(), (f, log[-3000:])
    with np.load(work / "calib.npz") as d:
        assert max(d[k].shape[0] for k in d.files if not k.startswith("_")) == 256
