"""The session check that a test run leaves nothing in the repository."""

import os

import repo_hygiene


def test_new_files_and_folders_are_reported(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.py").write_text("")
    before = repo_hygiene.snapshot(str(tmp_path))
    (tmp_path / "${S}").mkdir()
    (tmp_path / "scripts" / "left.onnx").write_bytes(b"x")
    assert repo_hygiene.left_behind(before, str(tmp_path)) == ["${S}/", os.path.join("scripts", "left.onnx")]


def test_caches_and_work_copies_are_not_reported(tmp_path):
    before = repo_hygiene.snapshot(str(tmp_path))
    for d in ("__pycache__", ".pytest_cache", ".git", ".wt-other"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text("")
    (tmp_path / "x.pyc").write_bytes(b"")
    assert repo_hygiene.left_behind(before, str(tmp_path)) == []
