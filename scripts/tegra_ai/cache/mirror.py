"""Engine mirrors: a fleet of identical devices builds each engine once.

A mirror has the engine cache's layout (``<name>/<name>-<key24>.engine`` + ``.engine.json``,
plus ``.engine.sig``, the publisher's Ed25519 signature of the sidecar's bytes), so it is a
plain directory (``file://``) or any static web server (``https://``; ``http://`` only when
asked for). :func:`mirror_sources` makes one :class:`MirrorSource` per URL for
``ensure(sources=...)``: on a cache miss each mirror is asked, in order, before building.

A fetched engine is used only when

* the signature verifies against a trusted public key (unless ``unsigned``),
* the sidecar's whole key material equals what this device computed (model, build options,
  TensorRT release and library, GPU, Jetson module, L4T release, plugins), and
* the engine's size and sha256 equal the (signed) sidecar's;

so a mirror can never make a device run an engine for another model, TensorRT release,
GPU or L4T. It is then committed to the local cache with :meth:`EngineCache.store`.

Rollback protection (signed mirrors): before any engine, the mirror's ``index.json``
(written by ``publish``, see there) must verify against a trusted key, not be expired,
and have a sequence number no older than the newest this device has seen from that
mirror (kept in the cache, ``.mirror-state.json``, written atomically); only engines it
lists, with the sha256 it lists, are fetched. An old copy of the mirror replayed by an
attacker is refused as a whole, so a withdrawn engine set cannot come back.

Network faults never block the local build for long: one time budget per model covers
every mirror and bounds each whole fetch (connect, TLS, headers, body, redirects: a
watchdog shuts the connection when it is spent, so a server that sends a byte just often
enough to keep each read alive cannot hold it), all mirror traffic of one run has a
total cap, each connect/read has its own timeout, transient faults are retried with
backoff inside the budget, downloads are held until verified (nothing is written before),
a body longer than the sidecar says is cut off, and redirects to another host (or from
https to http) are refused unless allowed. Proxies come from the environment
(``https_proxy``, ``no_proxy``), as urllib reads them."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from tegra_ai.cache.ensure import EngineSource
from tegra_ai.cache.store import engine_relpath
from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.spec import Sidecar, key_differences, sidecar_path
from tegra_ai.util.jsonfile import JSONFileError, read_json_file
from tegra_ai.util.jsonfile import loads as json_loads

LOG = logging.getLogger("tegra_ai.mirror")

__all__ = ["MirrorPolicy", "MirrorSource", "mirror_sources", "parse_mirror_url", "parse_mirror_list",
           "signature_path", "MIRROR_SCHEMES", "DEFAULT_TIMEOUT", "DEFAULT_IO_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT"]

MIRROR_SCHEMES = ("file", "https", "http")
MIRROR_INDEX = "index.json"
MIRROR_INDEX_FORMAT = "tegra-ai-mirror-index"
MIRROR_INDEX_VERSION = 2
MIRROR_STATE = ".mirror-state.json"     # in the device's cache: newest index sequence seen per mirror
MIRROR_STATE_FORMAT = "tegra-ai-mirror-state"
MAX_INDEX = 1 << 24
SIGNATURE_SUFFIX = ".sig"
DEFAULT_TIMEOUT = 30.0      # seconds per model, every mirror together
DEFAULT_IO_TIMEOUT = 10.0   # one connect or one read
DEFAULT_TOTAL_TIMEOUT = 300.0   # seconds per run, every mirror and model together
MAX_SIDECAR = 1 << 22       # what Sidecar.load reads at most
MAX_SIGNATURE = 4096
MAX_ENGINE = 16 << 30
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _usage(message, hint=None):
    return TegraAIError(message, hint=hint, exit_code=EXIT_USAGE)


def signature_path(engine_path: str) -> str:
    """``x.engine`` -> ``x.engine.sig`` (the signature of ``x.engine.json``'s bytes)."""
    return engine_path + SIGNATURE_SUFFIX


def parse_mirror_url(url, allow_http: bool = False) -> str:
    """Validate a mirror URL; returns it without a trailing '/'. file:// needs an absolute
    path; http(s):// a host and no user:password (it would end up in logs and JSON)."""
    if not isinstance(url, str) or not url.strip():
        raise _usage("empty mirror URL", hint="e.g. https://engines.example.com/fleet or file:///mnt/engines")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _usage(f"mirror URL {url!r} contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _usage(f"mirror URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in MIRROR_SCHEMES:
        raise _usage(f"mirror URL {url!r}: scheme {parts.scheme + ':' if parts.scheme else '(none)'} is not "
                     "supported", hint="use https://HOST/PATH or file:///DIR (http:// with --allow-http)")
    if scheme == "http" and not allow_http:
        raise _usage(f"mirror URL {url!r} is plain http (anyone on the path can see and delay traffic)",
                     hint="use https://, or pass --allow-http for a trusted network (signatures are still checked)")
    if parts.query or parts.fragment:
        raise _usage(f"mirror URL {url!r}: a query or fragment is not allowed (engines live under its path)")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _usage(f"mirror URL {url!r}: file:// URLs name a local directory (file:///DIR)")
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/"):
            raise _usage(f"mirror URL {url!r}: file:// needs an absolute path (file:///DIR)")
        return "file://" + path.rstrip("/") if path != "/" else "file:///"
    if not parts.hostname:
        raise _usage(f"mirror URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise _usage(f"mirror URL {url!r} holds a user name or password",
                     hint="credentials in URLs end up in logs; use a client certificate-free static server or a proxy")
    if port == 0:
        raise _usage(f"mirror URL {url!r}: port 0")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_mirror_list(text: str | None) -> list:
    """Whitespace-separated URLs (the ``TEGRA_AI_ENGINE_MIRRORS`` environment variable)."""
    return (text or "").split()


@dataclass
class MirrorPolicy:
    """How mirrors are trusted and waited for (shared by every mirror of one ``ensure``)."""
    keys: list = field(default_factory=list)     # tegra_ai.cache.signing.PublicKey
    unsigned: bool = False
    allow_http: bool = False
    allow_redirects: bool = False                # to another host
    timeout: float = DEFAULT_TIMEOUT             # per model, all mirrors together
    io_timeout: float = DEFAULT_IO_TIMEOUT       # one connect or read
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT  # one run, every model and mirror together
    retries: int = 2                             # per mirror and file, on transient faults
    backoff: float = 0.5                         # first retry delay, doubled each time
    ca_file: str | None = None                   # CA certificates trusted for https instead of the system's
    max_engine: int = MAX_ENGINE

    def __post_init__(self):
        for name in ("timeout", "io_timeout", "total_timeout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 24 * 3600:
                raise _usage(f"mirror {name.replace('_', ' ')} {v!r}: expected seconds > 0 (at most a day)")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 10:
            raise _usage(f"mirror retries {self.retries!r}: expected 0..10")
        if not self.unsigned and not self.keys:
            raise _usage("a mirror needs a trusted public key (--mirror-key) to check engine signatures",
                         hint="or --mirror-unsigned to trust the mirror's transport alone")
        self._deadlines = {}
        self._run_deadline = None   # set by the first fetch of the run
        self._ssl = None
        if self.ca_file is not None:
            if not os.path.isfile(self.ca_file):
                raise _usage(f"CA file {self.ca_file} does not exist")
            try:
                self.ssl_context()
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise _usage(f"CA file {self.ca_file}: no usable PEM certificates ({exc})") from None

    def start(self, name: str, key: str) -> float:
        """The deadline of one model's fetches: its own budget, within the run's total."""
        now = time.monotonic()
        if self._run_deadline is None:
            self._run_deadline = now + self.total_timeout
        self._deadlines[(name, key)] = min(now + self.timeout, self._run_deadline)
        return self._deadlines[(name, key)]

    def run_spent(self) -> bool:
        return self._run_deadline is not None and time.monotonic() >= self._run_deadline

    def deadline(self, name: str, key: str) -> float:
        return self._deadlines.get((name, key)) or self.start(name, key)

    def ssl_context(self):
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca_file)
        return self._ssl


# --------------------------------------------------------------------------- outcomes

class _Miss(Exception):
    """The mirror does not have this file (404, no such file)."""


class _Fault(Exception):
    """The mirror could not be read (down, slow, broken); ``retry`` when it may pass."""

    def __init__(self, message, retry=False):
        super().__init__(message)
        self.retry = retry


class _Rejected(Exception):
    """The mirror answered, but with something this device must not use."""


# --------------------------------------------------------------------------- transports

class _FileTransport:
    def __init__(self, url: str):
        self.root = url[len("file://"):] or "/"

    def get(self, rel: str, limit: int, deadline: float, exact: bool = False):
        if not os.path.isdir(self.root):
            raise _Fault(f"mirror directory {self.root} does not exist (not mounted?)")
        path = os.path.join(self.root, *rel.split("/"))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # a FIFO must not block the boot
        except FileNotFoundError:
            raise _Miss(rel) from None
        except OSError as exc:
            raise _Fault(f"cannot read {path}: {exc.strerror or exc}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _Rejected(f"{path} is not a regular file")
        with os.fdopen(fd, "rb") as f:
            # the file's own size, not the size a sidecar claims, sizes the first buffer
            data, n = _drain(f.readinto, limit, deadline, rel, exact, first=st.st_size + 1)
        if exact and n != limit:
            raise _Fault(f"{rel} truncated ({n} of {limit} bytes)")
        return data


class _RedirectGuard(urllib.request.HTTPRedirectHandler):
    def __init__(self, policy: MirrorPolicy):
        super().__init__()
        self.policy = policy

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new.scheme.lower() not in ("http", "https"):
            raise _Rejected(f"redirect to {newurl} refused (not http/https)")
        if new.scheme.lower() == "http" and not self.policy.allow_http:
            raise _Rejected(f"redirect to plain http {newurl} refused (--allow-http permits it)")
        if (new.scheme.lower(), new.netloc.lower()) != (old.scheme.lower(), old.netloc.lower()) \
                and not self.policy.allow_redirects:
            raise _Rejected(f"redirect to another host {new.netloc} refused (--mirror-allow-redirects permits it)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Watchdog:
    """Shuts the sockets of one fetch when its deadline passes. Socket timeouts bound each
    read; a server that trickles its headers one byte at a time passes every read and
    would hold the fetch for as long as it likes without this."""

    def __init__(self, deadline: float):
        self.expired = False
        self._socks = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def add(self, sock) -> None:
        # A duplicate of the descriptor: TLS wraps the socket into a new object and
        # detaches this one, but shutdown() acts on the connection behind every descriptor.
        dup = sock.dup()
        with self._lock:
            self._socks.append(dup)
            expired = self.expired
        if expired:
            self._shut(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            self._shut(sock)

    @staticmethod
    def _shut(sock) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)   # a blocked recv/send/handshake returns at once

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def _guarded_connection(base, transport):
    """``base`` (HTTPConnection or HTTPSConnection) whose sockets join the transport's
    current watchdog: TCP connect, proxy tunnel, TLS handshake, headers and body alike."""

    class Connection(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            watchdog, create = transport.watchdog, self._create_connection

            def guarded(*a, **kw):
                sock = create(*a, **kw)
                if watchdog is not None:
                    watchdog.add(sock)
                return sock

            self._create_connection = guarded

    return Connection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, transport):
        super().__init__()
        self._connection = _guarded_connection(http.client.HTTPConnection, transport)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, transport, context):
        super().__init__(context=context)
        self._connection = _guarded_connection(http.client.HTTPSConnection, transport)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def _set_read_timeout(resp, seconds: float) -> None:
    """Bound the next read by ``seconds`` (the socket under http.client's buffered reader)."""
    with contextlib.suppress(AttributeError, OSError):
        resp.fp.raw._sock.settimeout(max(0.05, seconds))


class _HttpTransport:
    def __init__(self, url: str, policy: MirrorPolicy):
        from tegra_ai import __version__

        self.base = url
        self.policy = policy
        self.watchdog = None    # of the fetch under way
        handlers = [urllib.request.ProxyHandler(), _RedirectGuard(policy), _GuardedHTTPHandler(self),
                    _GuardedHTTPSHandler(self, policy.ssl_context())]
        self.opener = urllib.request.build_opener(*handlers)
        self.headers = {"User-Agent": f"tegra-ai/{__version__}", "Accept-Encoding": "identity"}
        self._resolved = False

    def _resolve(self, deadline: float) -> None:
        """Bound name resolution by the budget: getaddrinfo ignores socket timeouts, and a
        resolver that does not answer would hold the boot for its own timeouts. Skipped
        where a proxy resolves names."""
        host = urllib.parse.urlsplit(self.base).hostname
        scheme = urllib.parse.urlsplit(self.base).scheme
        if self._resolved or (urllib.request.getproxies().get(scheme) and not urllib.request.proxy_bypass(host)):
            return
        result = {}

        def lookup():
            try:
                result["ok"] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                result["error"] = exc

        worker = threading.Thread(target=lookup, name="tegra-ai-mirror-dns", daemon=True)
        worker.start()
        wait = max(0.0, min(self.policy.io_timeout, deadline - time.monotonic()))
        worker.join(wait)
        if worker.is_alive():
            raise _Fault(f"cannot resolve {host} within {wait:.1f} s")
        if "error" in result:
            raise _Fault(f"cannot resolve {host}: {_reason(result['error'])}", retry=True)
        self._resolved = True

    def get(self, rel: str, limit: int, deadline: float, exact: bool = False):
        url = self.base + "/" + urllib.parse.quote(rel)
        self._resolve(deadline)
        delay = self.policy.backoff
        for attempt in range(self.policy.retries + 1):
            try:
                return self._get_once(url, rel, limit, deadline, exact)
            except _Fault as exc:
                remaining = deadline - time.monotonic()
                if not exc.retry or attempt == self.policy.retries or remaining <= delay:
                    raise
                LOG.debug("%s: %s; retrying in %.1f s", url, exc, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _get_once(self, url, rel, limit, deadline, exact):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Fault(f"mirror time budget ({self.policy.timeout:g} s) spent")
        self.watchdog = watchdog = _Watchdog(deadline)
        try:
            return self._get_guarded(url, rel, limit, deadline, exact, remaining)
        except (_Fault, _Miss, _Rejected, http.client.HTTPException, OSError, ValueError):
            if watchdog.expired:   # whatever the shut socket made of it
                raise _Fault(f"{url}: mirror time budget ({self.policy.timeout:g} s, or what was left of the "
                             f"run's {self.policy.total_timeout:g} s) spent before the fetch finished") from None
            raise
        finally:
            watchdog.cancel()
            self.watchdog = None

    def _get_guarded(self, url, rel, limit, deadline, exact, remaining):
        req = urllib.request.Request(url, headers=self.headers)
        try:
            resp = self.opener.open(req, timeout=min(self.policy.io_timeout, remaining))
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(Exception):
                exc.close()
            if exc.code in (404, 410):
                raise _Miss(rel) from None
            raise _Fault(f"HTTP {exc.code} {exc.reason} for {url}", retry=exc.code in (408, 429) or exc.code >= 500) \
                from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise _Fault(f"TLS certificate of {url} not trusted: {reason.verify_message}") from None
            raise _Fault(f"cannot reach {url}: {_reason(reason)}", retry=True) from None
        except (TimeoutError, socket.timeout):
            raise _Fault(f"{url}: no answer within {min(self.policy.io_timeout, remaining):.1f} s", retry=True) \
                from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Fault(f"{url}: {_reason(exc)}", retry=True) from None
        with resp:
            length = resp.headers.get("Content-Length")
            try:
                length = int(length) if length is not None else None
            except ValueError:
                length = None
            if length is not None and length > limit:
                raise _Rejected(f"{url} is {length} bytes, more than the {limit} expected; not downloaded")

            def readinto(b):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Fault(f"{url}: mirror time budget ({self.policy.timeout:g} s) spent mid-download")
                _set_read_timeout(resp, min(self.policy.io_timeout, left))
                try:
                    return resp.readinto(b)
                except (TimeoutError, socket.timeout):
                    raise _Fault(f"{url}: download stalled (no data for "
                                 f"{min(self.policy.io_timeout, left):.1f} s)", retry=True) from None
                except (http.client.HTTPException, OSError) as exc:
                    raise _Fault(f"{url}: download broken: {_reason(exc)}", retry=True) from None

            data, n = _drain(readinto, limit, deadline, url, exact)
            if (length is not None and n != length) or (exact and n != limit):
                raise _Fault(f"{url}: truncated ({n} of {length if length is not None else limit} bytes)", retry=True)
            return data


def _memory_bytes() -> int:
    """This device's physical memory (an engine is held whole in memory until it is stored)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return MAX_ENGINE


def _reason(exc) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _drain(readinto, limit: int, deadline: float, what: str, exact: bool = False, first: int = 1 << 16):
    """Read to the end, at most ``limit`` bytes (one more is the sign of an oversize body);
    returns (bytearray, bytes read). ``exact``: ``limit`` is the expected size (an engine:
    the size its sidecar claims).

    The buffer grows with the bytes actually received (doubling from ``first``: a file
    mirror passes its file's size), never to ``limit`` up front: the sidecar of an
    unsigned mirror can claim any size up to the cap, and a claim is not a reason to
    allocate gigabytes on an 8 GB Jetson before the first byte arrived."""
    buf = bytearray(max(1, min(limit, first)))
    view = memoryview(buf)
    n = 0
    while True:
        if time.monotonic() > deadline:
            raise _Fault(f"{what}: mirror time budget spent mid-download")
        if n == len(buf):
            if n >= limit:
                if readinto(bytearray(1)):
                    raise _Rejected(f"{what} is larger than the {limit} bytes expected; download cut off")
                break
            view.release()
            buf.extend(bytes(min(len(buf), limit - len(buf))))
            view = memoryview(buf)
        got = readinto(view[n:n + _CHUNK])
        if not got:
            break
        n += got
    view.release()
    if not exact:
        return bytes(buf[:n]), n
    return buf, n


# --------------------------------------------------------------------------- rollback state

def load_mirror_state(cache_root: str) -> dict:
    """{mirror URL: {"sequence": newest index sequence seen, "seen": ISO-8601}} of a cache."""
    path = os.path.join(cache_root, MIRROR_STATE)
    try:
        data = read_json_file(path)
    except JSONFileError as exc:
        if exc.missing:
            return {}
        LOG.warning("%s is unreadable (%s); starting without the mirrors' sequence numbers", path, exc)
        return {}
    mirrors = data.get("mirrors") if isinstance(data, dict) and data.get("format") == MIRROR_STATE_FORMAT else None
    if not isinstance(mirrors, dict):
        return {}
    return {url: v for url, v in mirrors.items()
            if isinstance(v, dict) and isinstance(v.get("sequence"), int) and not isinstance(v.get("sequence"), bool)}


MIRROR_STATE_LOCK = ".mirror-state.lock"
MIRROR_STATE_LOCK_TIMEOUT = 60.0    # seconds; the holder only reads and rewrites one small file


def _save_mirror_state(cache_root: str, url: str, sequence: int) -> None:
    """Record ``sequence`` as the newest index sequence of ``url``. A read-modify-write of the
    whole file: under its own lock (a leaf lock, taken with or without a model lock, nothing
    taken under it), or two ensures reading mirrors A and B at once would each write back the
    state they read and one mirror's sequence would be lost, reopening it to a rollback."""
    from tegra_ai.cache.store import file_lock
    from tegra_ai.util.atomic import atomic_write_json

    with file_lock(os.path.join(cache_root, MIRROR_STATE_LOCK), timeout=MIRROR_STATE_LOCK_TIMEOUT,
                   what=f"mirror state of engine cache {cache_root}"):
        state = load_mirror_state(cache_root)
        if state.get(url, {}).get("sequence", 0) >= sequence:     # a concurrent ensure got further
            return
        state[url] = {"sequence": sequence,
                      "seen": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_json(os.path.join(cache_root, MIRROR_STATE), {"format": MIRROR_STATE_FORMAT, "mirrors": state})


def _aware(text):
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when


# --------------------------------------------------------------------------- the source

class MirrorSource(EngineSource):
    """One mirror URL, for one ``ensure`` run. ``last_attempt`` (JSON) says what the last
    :meth:`fetch` did. A mirror that failed (after its retries) is not asked again in the
    same run: a mirror that is down costs one time budget per run, not one per model."""

    def __init__(self, url: str, policy: MirrorPolicy, first: bool = True):
        self.policy = policy
        self.url = parse_mirror_url(url, allow_http=policy.allow_http)
        self.label = f"mirror {self.url}"
        self.first = first
        self.last_attempt = None
        self.down = None            # why this mirror is skipped for the rest of the run
        self.index = None           # the engines of its verified index, once read in this run
        self.transport = _FileTransport(self.url) if self.url.startswith("file:") else _HttpTransport(self.url, policy)

    def fetch(self, entry, key, material, cache):
        t0 = time.monotonic()
        deadline = self.policy.start(entry.name, key) if self.first else self.policy.deadline(entry.name, key)
        attempt = {"mirror": self.url, "result": "miss", "bytes": 0}
        got = None
        if self.down is not None:
            self.last_attempt = dict(attempt, result="skipped", reason=f"failed earlier in this run: {self.down}",
                                     seconds=0.0)
            return None
        if self.policy.run_spent():
            self.last_attempt = dict(attempt, result="skipped", seconds=0.0,
                                     reason=f"the run's mirror time ({self.policy.total_timeout:g} s) is spent")
            return None
        try:
            got = self._fetch(entry, key, material, cache, deadline, attempt)
            attempt["result"] = "hit"
        except _Miss:
            attempt["result"] = "miss"
        except _Rejected as exc:
            attempt.update(result="rejected", reason=str(exc))
            LOG.warning("%s: engine from %s rejected: %s", entry.name, self.url, exc)
        except _Fault as exc:
            attempt.update(result="error", reason=str(exc))
            self.down = str(exc)
            LOG.warning("%s: mirror %s unavailable: %s (not asked again in this run)", entry.name, self.url, exc)
        except TegraAIError as exc:     # writing into the local cache
            attempt.update(result="error", reason=str(exc))
            LOG.warning("%s: engine from %s not stored: %s", entry.name, self.url, exc)
        except Exception as exc:        # whatever a mirror sends, the device still builds
            attempt.update(result="error", reason=f"unexpected {type(exc).__name__}: {exc}")
            LOG.warning("%s: mirror %s failed unexpectedly: %s: %s", entry.name, self.url, type(exc).__name__, exc,
                        exc_info=LOG.isEnabledFor(logging.DEBUG))
        attempt["seconds"] = round(time.monotonic() - t0, 3)
        self.last_attempt = attempt
        return got

    def _refuse_index(self, why: str) -> _Rejected:
        self.down = f"index refused: {why}"
        return _Rejected(f"the mirror's index is refused: {why}")

    def _signed_index(self, cache, deadline, attempt) -> dict:
        """The engines of the mirror's index after its rollback checks (once per run)."""
        if self.index is not None:
            return self.index
        from tegra_ai.cache.signing import canonical_json

        try:
            raw = self.transport.get(MIRROR_INDEX, MAX_INDEX, deadline)
        except _Miss:
            # Nothing published there (yet): every engine is a miss, as with no files at all.
            LOG.info("mirror %s has no %s: nothing is published there", self.url, MIRROR_INDEX)
            self.index = {}
            return self.index
        attempt["bytes"] += len(raw)
        try:
            doc = json_loads(raw)
        except JSONFileError as exc:
            raise self._refuse_index(f"{MIRROR_INDEX} is {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != MIRROR_INDEX_FORMAT \
                or doc.get("version") != MIRROR_INDEX_VERSION or not isinstance(doc.get("signed"), dict):
            raise self._refuse_index(f"{MIRROR_INDEX} is not a version {MIRROR_INDEX_VERSION} tegra-ai mirror index "
                                     "(publish again)")
        signed = doc["signed"]
        try:
            signature = base64.b64decode(doc.get("signature") or "", validate=True)
            body = canonical_json(signed)
        except (binascii.Error, ValueError, TypeError):
            raise self._refuse_index("its signature is not base64 (or the index holds non-JSON numbers)") from None
        if not any(k.verify(body, signature) for k in self.policy.keys):
            raise self._refuse_index("its signature does not verify with any trusted key ("
                                     + ", ".join(k.key_id for k in self.policy.keys) + ")")
        sequence, engines, expires = signed.get("sequence"), signed.get("engines"), signed.get("expires")
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1 or not isinstance(engines, dict):
            raise self._refuse_index("it has no sequence number or engine list")
        if expires is not None:
            try:
                when = _aware(expires)
            except (TypeError, ValueError):
                raise self._refuse_index(f"its expiry {expires!r} is not an ISO 8601 time with a zone") from None
            if datetime.datetime.now(datetime.timezone.utc) >= when:
                raise self._refuse_index(f"it expired at {expires} (the mirror is stale, or an old copy of it is "
                                         "served)")
        newest = load_mirror_state(cache.root).get(self.url, {}).get("sequence", 0)
        if sequence < newest:
            raise self._refuse_index(f"its sequence number {sequence} is older than {newest}, the newest this device "
                                     "has seen: an old copy of the mirror (rollback) is served")
        if sequence > newest:
            _save_mirror_state(cache.root, self.url, sequence)
        attempt["index_sequence"] = sequence
        self.index = engines
        return engines

    def _fetch(self, entry, key, material, cache, deadline, attempt):
        rel = engine_relpath(entry.name, key)
        listed = None
        if not self.policy.unsigned:
            listed = self._signed_index(cache, deadline, attempt).get(rel)
            if not isinstance(listed, dict):
                raise _Miss(rel)     # not in the signed index: not (or no longer) on the mirror
        raw_sidecar = self.transport.get(sidecar_path(rel), MAX_SIDECAR, deadline)
        attempt["bytes"] += len(raw_sidecar)
        key_id = None
        if not self.policy.unsigned:
            try:
                signature = self.transport.get(signature_path(rel), MAX_SIGNATURE, deadline)
            except _Miss:
                raise _Rejected(f"{signature_path(rel)} is missing: the engine is not signed") from None
            attempt["bytes"] += len(signature)
            key_id = next((k.key_id for k in self.policy.keys if k.verify(raw_sidecar, signature)), None)
            if key_id is None:
                raise _Rejected("the sidecar's signature does not verify with any trusted key ("
                                + ", ".join(k.key_id for k in self.policy.keys) + ")")
            attempt["key_id"] = key_id
        try:
            sidecar = Sidecar.from_dict(json_loads(raw_sidecar), where=self.url + "/" + sidecar_path(rel))
        except JSONFileError as exc:
            raise _Rejected(f"{sidecar_path(rel)} is {exc}") from None
        except TegraAIError as exc:
            raise _Rejected(exc.message) from None
        canonical = json_loads(json.dumps(material))   # the material as a JSON reader sees it
        if sidecar.cache_key != key or sidecar.key_material != canonical:
            diffs = key_differences(canonical, sidecar.key_material) or ["cache key"]
            raise _Rejected("the engine was built for something else: " + "; ".join(diffs[:4]))
        size, sha = sidecar.engine_size, sidecar.engine_sha256
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or not _HEX64.match(sha or ""):
            raise _Rejected(f"the sidecar's engine size/sha256 are not usable ({size!r:.40}, {sha!r:.80})")
        cap = min(self.policy.max_engine, _memory_bytes())
        if size > cap:
            raise _Rejected(f"the sidecar claims a {size}-byte engine, more than the {cap} bytes a fetch may hold "
                            "(at most MAX_ENGINE and this device's memory); not downloaded")
        if listed is not None and (listed.get("sha256") != sha or listed.get("key") != key):
            raise _Rejected("the engine is not the one the mirror's signed index lists (an old or withdrawn engine)")
        engine = self.transport.get(rel, size, deadline, exact=True)
        attempt["bytes"] += len(engine)
        if hashlib.sha256(engine).hexdigest() != sha:
            raise _Rejected("the engine's sha256 differs from its sidecar's (tampered or corrupt)")
        # ``sha`` is now the engine's verified digest: the store need not hash 50 MB again.
        origin = f"fetched from {self.url}" + (f", signed by key {key_id}" if key_id else ", unsigned mirror")
        sidecar.notes = [*list(sidecar.notes or []), origin]
        engine_path, stored = cache.store(entry.name, key, engine, sidecar, sha256=sha)   # a bytearray: no copy
        LOG.info("%s: engine fetched from %s (%.1f MB)", entry.name, self.url, size / 1e6)
        return engine_path, stored, "fetched"


def mirror_sources(urls, keys=(), *, unsigned: bool = False, allow_http: bool = False,
                   allow_redirects: bool = False, timeout: float = DEFAULT_TIMEOUT,
                   io_timeout: float = DEFAULT_IO_TIMEOUT, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
                   retries: int = 2, ca_file: str | None = None, key_backend: str | None = None) -> list:
    """:class:`MirrorSource` objects for ``ensure(sources=...)``; ``keys`` are public key
    files or directories of them. Every URL and key is checked here (exit code 2)."""
    urls = list(urls)
    if not urls:
        return []
    for u in urls:
        parse_mirror_url(u, allow_http=allow_http)
    pubkeys = []
    if keys:
        from tegra_ai.cache.signing import load_public_keys

        pubkeys = load_public_keys(keys, backend=key_backend)
    policy = MirrorPolicy(keys=pubkeys, unsigned=unsigned, allow_http=allow_http, allow_redirects=allow_redirects,
                          timeout=timeout, io_timeout=min(io_timeout, timeout), total_timeout=total_timeout,
                          retries=retries, ca_file=ca_file)
    if unsigned:
        LOG.warning("engine mirrors are trusted without signatures (--mirror-unsigned)")
    return [MirrorSource(u, policy, first=(i == 0)) for i, u in enumerate(urls)]
