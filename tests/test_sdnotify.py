"""sd_notify STATUS from the progress display (what `systemctl status tegra-ai-engines` shows)."""

import io
import socket

from tegra_ai.util import sdnotify
from tegra_ai.util.progress import Progress


def _listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    return sock, path


def test_status_reaches_notify_socket(tmp_path):
    sock, path = _listener(tmp_path)
    with sock:
        assert sdnotify.status("digits:\n building 3/5", environ={"NOTIFY_SOCKET": path})
        assert sock.recv(4096) == b"STATUS=digits: building 3/5"


def test_no_socket_is_a_no_op(tmp_path):
    assert not sdnotify.status("x", environ={})
    assert not sdnotify.status("x", environ={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})


def test_progress_sends_status(tmp_path, monkeypatch):
    sock, path = _listener(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with sock:
        with Progress("digits", stream=io.StringIO(), enabled=True):
            pass
        assert sock.recv(4096).startswith(b"STATUS=digits: done in ")
