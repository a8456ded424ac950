"""Hostile inputs to the engine service (issue #19 part 6): a FIFO given as a manifest,
JSON nested thousands deep, model names with a trailing newline or control characters."""

from __future__ import annotations

import os
import signal

import pytest

from tegra_ai.cache.manifest import load_manifest
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import check_model_name


@pytest.mark.parametrize("name", ["resnet\n", "res\nnet", "res\x1bnet", "resnet\t", "\x00"])
def test_names_with_control_characters_are_refused(name):
    with pytest.raises(TegraAIError):
        check_model_name(name)


def test_manifest_nested_thousands_deep(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(TegraAIError, match="nested too deep"):
        load_manifest(str(path))


def test_fifo_manifest_is_refused_without_hanging(tmp_path):
    path = tmp_path / "manifest.json"
    os.mkfifo(path)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading a FIFO manifest hung"))
    signal.alarm(5)
    try:
        with pytest.raises(TegraAIError, match="not a regular file"):
            load_manifest(str(path))
    finally:
        signal.alarm(0)


def test_external_data_symlink_out_of_the_model_folder(model_factory, tmp_path_factory):
    from tegra_ai.onnx_files import model_files

    path = model_factory("ext.onnx", external=True)
    outside = tmp_path_factory.mktemp("elsewhere")
    secret = outside / "secret"
    os.replace(path + ".data", secret)
    os.symlink(secret, path + ".data")
    with pytest.raises(TegraAIError, match="symbolic link out of the model's directory"):
        model_files(path)
