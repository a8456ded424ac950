"""A static engine-mirror web server for tests: 127.0.0.1 only, port 0, with misbehaviours
(stall, truncate, oversize, redirect, errors, a trickle of one byte at a time) chosen per test. It stops by itself after
``lifetime`` seconds even if a test forgets to close it, and a stalled response waits at
most ``stall_s`` seconds."""

from __future__ import annotations

import os
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MirrorServer:
    def __init__(self, root: str, *, lifetime: float = 120.0, stall_s: float = 10.0, tls: tuple | None = None):
        self.root = root
        self.requests = []            # paths asked for, in order
        self.behaviour = None         # None or (kind, arg); applies to *.engine requests
        self.fail_first = 0           # answer the first N requests of any file with 503
        self.trickle = None           # seconds between bytes: every response (headers first) one byte at a time
        self.delay = 0.0              # seconds before answering any request
        self.stall_s = stall_s
        self.strip_prefix = ""        # e.g. "fleet/": the mirror's URL path when playing a proxy
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):   # quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if server.delay and server._stop.wait(server.delay):
                    return
                if server.trickle:
                    self._trickle()
                    return
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self.send_error(503, "busy")
                    return
                # (a proxy request names the whole URL: its path is the file, under the URL's prefix)
                rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                if server.strip_prefix and rel.startswith(server.strip_prefix):
                    rel = rel[len(server.strip_prefix):]
                full = os.path.realpath(os.path.join(server.root, rel))
                if not full.startswith(os.path.realpath(server.root) + os.sep) or not os.path.isfile(full):
                    self.send_error(404)
                    return
                with open(full, "rb") as f:
                    data = f.read()
                kind, arg = server.behaviour if (server.behaviour and rel.endswith(".engine")) else (None, None)
                if kind == "status":
                    self.send_error(arg)
                    return
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", arg + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "oversize":
                    data += b"\0" * arg
                self.send_response(200)
                if kind != "no-length":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if kind == "no-length":   # body delimited by closing the connection
                    self.wfile.write(data + b"\0" * arg)
                    return
                if kind in ("stall", "truncate"):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if kind == "stall":
                        server._stop.wait(server.stall_s)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def _trickle(self):
                """A 200 whose status line and headers (2 KiB of them) come one byte at a time:
                each byte well inside any read timeout, the whole far beyond it."""
                head = ("HTTP/1.1 200 OK\r\n" + "".join(f"X-Pad-{i}: {'x' * 40}\r\n" for i in range(48))
                        + "Content-Length: 1\r\n\r\n0").encode()
                for i in range(len(head)):
                    if server._stop.wait(server.trickle):
                        break
                    try:
                        self.wfile.write(head[i:i + 1])
                        self.wfile.flush()
                    except OSError:   # the client gave up
                        break
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()
        self._closed = False

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def self_signed_cert(directory: str) -> tuple:
    """(cert.pem, key.pem) for 127.0.0.1, made with cryptography."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path
