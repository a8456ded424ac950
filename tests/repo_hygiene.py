"""What a test run leaves in the repository: the files and folders that were not there when
it started (the session check in conftest.py fails the run when there are any)."""

import os

# made by Python and pytest themselves, or by people beside a run (git-ignored work copies)
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".venv"}


def snapshot(root):
    """Every path (relative to ``root``, folders with a trailing '/') in the tree."""
    found = set()
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (rel == "." and d.startswith(".wt-"))]
        for d in dirs:
            found.add(os.path.normpath(os.path.join(rel, d)) + "/")
        for f in files:
            if not f.endswith((".pyc", ".pyo")):
                found.add(os.path.normpath(os.path.join(rel, f)))
    return found


def left_behind(before, root):
    """Paths in ``root`` now that were not in the ``before`` snapshot, sorted."""
    return sorted(snapshot(root) - before)
