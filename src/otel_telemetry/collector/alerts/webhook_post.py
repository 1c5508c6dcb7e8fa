"""One webhook delivery attempt: an HTTP POST with a total deadline and a capped answer.

``urllib``'s timeout applies to each socket operation, so a server that dribbled its answer a byte
at a time held a delivery thread for as long as it liked (~45 s per attempt in the red-team
pass), and ``resp.read()`` took whatever it was sent (a 400 MB answer raised the collector's
peak memory to 465 MB). Here the whole attempt (connect, send, status line and headers) has one
deadline, enforced by a timer that shuts the socket down, and at most ``MAX_ANSWER_BYTES`` of
the answer's body are read and thrown away; then the connection is closed.

The outcome is decided by the status line alone: a complete 2xx answer within the deadline is a
delivery, however its body ends. Redirects are not followed (a 3xx is a failure, not retried), so
requests only go to URLs from the configuration. ``http_proxy``/``https_proxy``/``no_proxy`` from
the environment are honoured as ``urllib`` did.

Runs on a notification worker thread; never raises for network failures.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.request
from urllib.parse import urlsplit

MAX_ANSWER_BYTES = 64 * 1024
_CHUNK = 16 * 1024


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """The connection for ``url`` (through the environment's proxy, if any) and the request target."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    host, port = parts.hostname, parts.port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme == "http":  # a plain proxy takes the absolute URL
            return http.client.HTTPConnection(p.hostname or "", p.port or 80, timeout=timeout), url
        conn = http.client.HTTPSConnection(p.hostname or "", p.port or 80, timeout=timeout)
        conn.set_tunnel(host, port or 443)  # CONNECT, then TLS to the target through the tunnel
        return conn, path
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout), path
    return http.client.HTTPConnection(host, port, timeout=timeout), path


def _cut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """Timer thread: the deadline passed; wake the worker out of whatever read it is blocked in."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def post(url: str, body: bytes, headers: dict[str, str], deadline_s: float) -> tuple[bool, str | None]:
    """One attempt: (retryable, failure reason or None when delivered)."""
    try:
        conn, target = _connection(url, deadline_s)
    except ValueError as exc:
        return False, str(exc)
    expired = threading.Event()
    started = time.monotonic()
    timer = threading.Timer(deadline_s, _cut, (conn, expired))
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", target, body, headers)
        resp = conn.getresponse()
        if expired.is_set():  # the cut socket ended the headers early: they were never complete
            raise TimeoutError
        status = resp.status
        read = 0
        # Bounded by the same deadline (the timer) and by MAX_ANSWER_BYTES; its end never matters.
        with contextlib.suppress(OSError, http.client.HTTPException):
            while read < MAX_ANSWER_BYTES and not expired.is_set():
                chunk = resp.read(min(_CHUNK, MAX_ANSWER_BYTES - read))
                if not chunk:
                    break
                read += len(chunk)
    except (OSError, http.client.HTTPException) as exc:
        # A socket operation's own timeout (also deadline_s) can fire before the timer does when
        # this thread was descheduled: either way the deadline is what ran out.
        if expired.is_set() or time.monotonic() - started >= deadline_s:
            return True, f"no complete answer within the {deadline_s:g} s deadline"
        return True, f"{type(exc).__name__}: {exc}"
    finally:
        timer.cancel()
        conn.close()
    if 200 <= status < 300:
        return False, None
    return status >= 500 or status == 429, f"HTTP {status}"
