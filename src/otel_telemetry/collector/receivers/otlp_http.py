"""OTLP/HTTP receiver: POST /v1/traces, /v1/metrics, /v1/logs (protobuf or JSON, optionally gzip).

Answers, following the OTLP/HTTP spec: 200 with an Export*ServiceResponse in the request's
encoding (``partial_success`` when items were rejected); 400 for a malformed body, with a
google.rpc.Status body; 404 / 405 / 411 / 415 for wrong path, method, missing length, content
type or encoding; 413 when the body is larger than ``max_body_bytes`` AFTER decompression
(decompressed incrementally, never beyond the cap, so a gzip bomb costs at most the cap); 408
when the body is not all in within ``body_timeout`` (one deadline for the whole body, not per
read: a client that trickles a byte every few seconds cannot hold a concurrency slot longer).
An answer sent before the whole body was read (413 on a declared length, 408, 415, ...) closes
the connection after reading and throwing away up to ``discard_bytes`` more of the body within
``body_timeout``, so a client still sending reads the answer instead of EPIPE;
429 (store queue full) or 503 (commit not in time, shutting down, too many concurrent requests)
with ``Retry-After`` when the store cannot keep up. Never 500 for overload. 200 is sent only after
the store committed every row of the request.

With a ``bearer_token``, every request must carry ``Authorization: Bearer <token>`` (compared in
constant time); otherwise 401 with ``WWW-Authenticate: Bearer`` and a Status body, counted as
rejected ``unauthenticated``, before anything of the body is read, decoded or stored. With ``tls``
the listening socket is wrapped in a TLS server context; the handshake runs on the connection's
own thread (bounded by ``read_timeout``), never on the accept thread.

Threads: one accept thread (``serve_forever``) and one thread per connection (stdlib
``ThreadingHTTPServer``); a connection thread blocks on the store commit for at most
``submit_timeout + commit_timeout``. At most ``max_concurrent`` requests hold a body in memory,
each for at most ``body_timeout`` while it arrives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from google.protobuf import json_format

from ...auth import UNAUTHENTICATED, bearer_matches, server_ssl_context
from ...otlp import decode as otlp
from ..config import OtlpTlsConfig, join_endpoint, split_endpoint
from ..pipeline import Pipeline
from . import otlp_ingest as oi
from .otlp_http_body import (
    CHUNK,
    DISCARD_BYTES,
    INVALID_ARGUMENT,
    NOT_FOUND,
    UNAUTHENTICATED_CODE,
    UNAVAILABLE,
    UNIMPLEMENTED,
    Body,
    Reject,
    read_body,
)

log = logging.getLogger("otel_telemetry.collector.receivers.otlp_http")

_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_LINGER_BYTES = 1024 * 1024  # after an early answer, read at most this much of an unread body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # TIME_WAIT only; on Linux a live listener still makes bind fail
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], receiver: OtlpHttpReceiver) -> None:
        self.receiver = receiver
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)
        if receiver.ssl_context is not None:
            self.socket = receiver.ssl_context.wrap_socket(self.socket, server_side=True,
                                                           do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Connection thread: TLS handshake (bounded by the read timeout) before any HTTP."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(self.receiver.read_timeout)
                request.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError, timeout, reset
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Runs on the connection's own thread; must not touch the database or block without bound."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporters expect
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.receiver.read_timeout  # a stalled client cannot hold a thread forever
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.server.receiver._handle(self)

    def _wrong_method(self) -> None:
        self.server.receiver._wrong_method(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _wrong_method  # noqa: N815


class OtlpHttpReceiver:
    """Lifecycle: ``start()`` binds and raises OSError at start-up if it cannot; ``shutdown(timeout)``
    is idempotent and safe before ``start()``. ``counters()`` may be called from any thread."""

    def __init__(self, endpoint: str, pipeline: Pipeline, *, max_body_bytes: int = oi.DEFAULT_MAX_BODY_BYTES,
                 submit_timeout: float = 0.25, commit_timeout: float = 5.0, max_concurrent: int = 32,
                 read_timeout: float = 30.0, body_timeout: float = 30.0, discard_bytes: int = DISCARD_BYTES,
                 bearer_token: str | None = None, tls: OtlpTlsConfig | None = None) -> None:
        self.host, self.port = split_endpoint(endpoint)
        self._token = bearer_token
        # Built here so an unusable cert/key fails at start-up, not on the first connection.
        self.ssl_context = server_ssl_context(tls.cert_file, tls.key_file) if tls is not None else None
        self.ingest = oi.Ingest("otlp_http", pipeline, max_body_bytes=max_body_bytes,
                                submit_timeout=submit_timeout, commit_timeout=commit_timeout)
        self.read_timeout = read_timeout  # per read while idle or reading headers
        self.body_timeout = body_timeout  # for the whole body
        self.discard_bytes = discard_bytes
        self._slots = threading.BoundedSemaphore(max(1, max_concurrent))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.listening = False  # bound and serving: only then is ``endpoint`` the real port

    @property
    def endpoint(self) -> str:
        """host:port actually bound (the real port when configured with port 0)."""
        return join_endpoint(self.host, self.port)

    def start(self) -> None:
        """Caller's thread: bind and start serving; raises OSError if the address cannot be bound."""
        if self._server is not None or self._stopped:
            return
        cls = _Server6 if ":" in self.host else _Server
        try:
            self._server = cls((self.host, self.port), self)
        except OSError as exc:
            raise OSError(exc.errno, f"OTLP/HTTP cannot bind {self.endpoint}: {exc.strerror or exc}") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="otel-otlp-http", daemon=True)
        self._thread.start()
        self.listening = True
        log.info("OTLP/HTTP listening on %s", self.endpoint)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Caller's thread: refuse new requests, stop accepting, let in-flight ones be answered
        within ``timeout``, close idle keep-alive connections. Idempotent; True if all finished."""
        if self._stopped:
            return True
        self._stopped = True
        self.ingest.stopping = True
        server = self._server
        if server is None:
            return True
        server.shutdown()
        server.server_close()
        ok = self.ingest.drain(timeout)
        with server.conns_lock:
            conns = list(server.conns)
        for conn in conns:  # wakes connection threads waiting for a next request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
        return ok

    def counters(self) -> dict[str, Any]:
        return self.ingest.counters(endpoint=self.endpoint, max_body_bytes=self.ingest.max_body_bytes)

    # -- connection threads -----------------------------------------------------------------------
    def _authenticated(self, h: _Handler) -> bool:
        """False (after answering 401) when a token is configured and the request lacks it."""
        if self._token is None or bearer_matches(h.headers.get("Authorization"), self._token):
            return True
        self.ingest.count_rejected(UNAUTHENTICATED)
        err = Reject(401, UNAUTHENTICATED_CODE, UNAUTHENTICATED, "missing or invalid bearer token",
                     close=self._has_body(h))
        ctype = (h.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        self._send_status(h, err, json=ctype != _PROTOBUF, extra={"WWW-Authenticate": "Bearer"})
        return False

    def _wrong_method(self, h: _Handler) -> None:
        path = h.path.split("?", 1)[0]
        self.ingest.count_request(_PATHS.get(path))
        if not self._authenticated(h):
            return
        if path in _PATHS:
            self.ingest.count_rejected("method_not_allowed")
            err = Reject(405, UNIMPLEMENTED, "method_not_allowed", f"{h.command} not allowed on {path}; use POST")
        else:
            self.ingest.count_rejected("not_found")
            err = Reject(404, NOT_FOUND, "not_found", f"no OTLP endpoint at {path}")
        err.close = self._has_body(h)
        self._send_status(h, err, json=True, extra={"Allow": "POST"} if err.status == 405 else None)

    def _handle(self, h: _Handler) -> None:
        path = h.path.split("?", 1)[0]
        signal = _PATHS.get(path)
        self.ingest.count_request(signal)
        if not self._authenticated(h):
            return
        ctype = (h.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        as_json = ctype == _JSON
        try:
            if signal is None:
                raise Reject(404, NOT_FOUND, "not_found", f"no OTLP endpoint at {path}", close=True)
            if ctype not in (_PROTOBUF, _JSON):
                raise Reject(415, INVALID_ARGUMENT, "unsupported_media_type",
                             f"Content-Type {ctype or '(none)'!r} not supported; use {_PROTOBUF} or {_JSON}",
                             close=True)
            if not self._slots.acquire(timeout=0.5):
                raise Reject(503, UNAVAILABLE, "busy", "too many concurrent requests", close=True, retry=True)
            try:
                self._handle_body(h, signal, as_json)
            finally:
                self._slots.release()
        except Reject as err:
            if not err.retry:
                self.ingest.count_rejected(err.reason)
            else:
                self.ingest.count_overload(err.reason)
            self._send_status(h, err, json=as_json or ctype != _PROTOBUF)

    def _handle_body(self, h: _Handler, signal: str, as_json: bool) -> None:
        if not self.ingest.enter():
            raise Reject(503, UNAVAILABLE, "shutting_down", "collector is shutting down", close=True, retry=True)
        try:
            try:
                body = read_body(h.headers, Body(h.connection, h.rfile, self.body_timeout),  # type: ignore[arg-type]
                                 self.ingest.max_body_bytes)
            finally:
                with contextlib.suppress(OSError):
                    h.connection.settimeout(self.read_timeout)  # back to the idle keep-alive timeout
            try:
                outcome = self.ingest.ingest(signal, body, json=as_json)
            except otlp.OtlpDecodeError as exc:
                raise Reject(400, INVALID_ARGUMENT, "malformed", str(exc)) from None
        finally:
            self.ingest.leave()
        if outcome.status == oi.OK:
            msg = oi.response(signal, outcome)
            if as_json:
                payload = orjson.dumps(json_format.MessageToDict(msg)) if outcome.rejected else b"{}"
            else:
                payload = msg.SerializeToString()
            self._send(h, 200, payload, _JSON if as_json else _PROTOBUF)
            return
        if outcome.status == oi.OVERLOADED:  # counted by Ingest
            err = Reject(429, UNAVAILABLE, "", "store queue full; retry later", retry=True)
        else:
            err = Reject(503, UNAVAILABLE, "", f"not stored in time ({outcome.status}); retry later", retry=True)
        self._send_status(h, err, json=as_json)

    @staticmethod
    def _has_body(h: _Handler) -> bool:
        return bool(h.headers.get("Transfer-Encoding")) or (h.headers.get("Content-Length") or "0") != "0"

    def _send_status(self, h: _Handler, err: Reject, *, json: bool, extra: dict[str, str] | None = None) -> None:
        msg = str(err)
        if json:
            payload, ctype = orjson.dumps({"code": err.code, "message": msg}), _JSON
        else:
            payload, ctype = oi.status_pb(err.code, msg), _PROTOBUF
        headers = dict(extra or {})
        if err.retry:
            headers["Retry-After"] = str(oi.RETRY_AFTER_S)
        # An answer before the end of the body is followed by reading (and throwing away) the rest,
        # so the client reads it instead of a reset (EPIPE) mid-send; less of it for a stranger.
        drain = _LINGER_BYTES if err.reason == UNAUTHENTICATED else self.discard_bytes
        self._send(h, err.status, payload, ctype, headers, close=err.close, drain=drain)

    def _send(self, h: _Handler, status: int, payload: bytes, ctype: str,
              headers: dict[str, str] | None = None, *, close: bool = False, drain: int = _LINGER_BYTES) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            if close:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
            h.wfile.flush()
            if close:
                self._linger(h.connection, drain)
        except OSError as exc:  # the client went away; nothing more to tell it
            log.debug("cannot answer %s: %s", h.address_string(), exc)
            h.close_connection = True

    def _linger(self, conn: socket.socket, limit: int) -> None:
        """Half-close, then read up to ``limit`` bytes of the unread body within ``body_timeout``, so
        closing the socket does not send an RST that would destroy the answer before the client
        reads it."""
        end = time.monotonic() + self.body_timeout
        try:
            conn.shutdown(socket.SHUT_WR)
            seen = 0
            while seen < limit and (left := end - time.monotonic()) > 0:
                conn.settimeout(left)
                data = conn.recv(CHUNK)
                if not data:
                    break
                seen += len(data)
        except OSError:
            pass
