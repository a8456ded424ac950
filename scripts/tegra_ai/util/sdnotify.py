"""systemd's sd_notify protocol without libsystemd: one datagram to ``$NOTIFY_SOCKET``.

Under ``tegra-ai-engines.service`` (``NotifyAccess=all``) progress lines become the
unit's STATUS, shown by ``systemctl status tegra-ai-engines``. Elsewhere a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, environ=None) -> bool:
    """Send ``message`` (e.g. ``"STATUS=building digits"``); False when not under systemd or on error."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8", "replace"))
        return True
    except OSError:
        return False


def status(text: str, environ=None) -> bool:
    """The unit's one-line status (newlines would end the field)."""
    return notify("STATUS=" + " ".join(text.split())[:200], environ)
