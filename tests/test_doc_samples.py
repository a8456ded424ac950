"""README's sample outputs come from the commands they show: each sample block is compared,
line by line with numbers and machine-specific values masked, with what the command prints
here. A change of the report format that README does not follow fails this test."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?%?")
# values that differ per machine or run: the label is kept, the value masked
MACHINE_LINES = ("model:", "device:", "software:")
OPTIONAL = ("warning:",)   # noise warnings come and go with the machine's load


def skeleton(text: str) -> list:
    out = []
    for line in text.strip("\n").splitlines():
        if line.startswith(OPTIONAL):
            continue
        if line.startswith(MACHINE_LINES):
            line = line.split(":", 1)[0] + ": *"
        out.append(" ".join(NUMBER.sub("#", line).split()))
    return out


def readme_block(after: str) -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    i = text.index(after)
    start = text.index("```\n", i) + 4
    return text[start:text.index("```", start)]


def test_model_benchmark_sample_report_matches_the_command():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model = os.path.join(ROOT, "scripts", "tegra_ai", "models", "digits.onnx")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"))
    proc = subprocess.run([sys.executable, "-m", "tegra_ai.cli.benchmark", model, "--shapes", "input:1x1x8x8",
                           "--duration", "0.3", "--warmup", "50", "--power", "none", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sample = readme_block("Sample report: the embedded digits model on ONNX Runtime")
    assert skeleton(sample) == skeleton(proc.stdout)


def test_skeleton_catches_a_changed_row():
    a = "metric (ms)  min\nlatency  0.5  1.2%\n"
    assert skeleton(a) == skeleton("metric (ms) min\nlatency 7 3%\n")
    assert skeleton(a) != skeleton("metric (ms) min\nlatency (host) 7 3%\n")


def readme_command_and_output(prefix: str):
    """The command in README that starts with ``prefix`` (with its continuation lines) and the
    comment lines right after it (``#   output``), as README shows a command's output."""
    lines = open(os.path.join(ROOT, "README.md")).read().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(prefix))
    cmd = lines[i]
    while cmd.endswith("\\"):
        i += 1
        cmd = cmd[:-1] + " " + lines[i].strip()
    out = []
    for line in lines[i + 1:]:
        if not line.startswith("#   "):
            break
        out.append(line[4:])
    return shlex.split(cmd), "\n".join(out)


def test_model_ensemble_sample_output_matches_the_command():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    argv, sample = readme_command_and_output("model-ensemble scripts/tegra_ai/models/digits-ensemble.json")
    assert argv[0] == "model-ensemble" and sample
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"))
    proc = subprocess.run([sys.executable, "-m", "tegra_ai.cli.ensemble", *argv[1:], "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert skeleton(sample) == skeleton(proc.stdout)
    # the accuracy is deterministic (ONNX Runtime on the CPU, fixed samples): shown as printed
    acc = re.compile(r"accuracy \S+")
    assert acc.findall(sample) == acc.findall(proc.stdout)
