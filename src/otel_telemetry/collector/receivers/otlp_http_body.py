"""Reading an OTLP/HTTP request body: one deadline for the whole body, Content-Length or chunked,
the size cap before and after decompression, and the ``Reject`` answers that come of it.

Used by ``otlp_http`` on a connection's own thread.
"""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Iterator
from email.message import Message
from io import BufferedReader

CHUNK = 64 * 1024
DISCARD_BYTES = 64 * 1024 * 1024  # after a refusal, read and throw away at most this much of the body
# google.rpc.Code values used in Status bodies.
INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE = 3, 4, 5, 8, 12, 14
UNAUTHENTICATED_CODE = 16


class Reject(Exception):
    """Answer ``status`` with a google.rpc.Status body; ``close`` when the body was not all read."""

    def __init__(self, status: int, code: int, reason: str, message: str, *, close: bool = False,
                 retry: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.reason, self.close, self.retry = status, code, reason, close, retry


class Body:
    """Reads a request body against one deadline: every read waits at most for what is left of it
    and takes at most one ``recv``, so a trickling client cannot stretch the deadline."""

    def __init__(self, conn: socket.socket, rfile: BufferedReader, seconds: float) -> None:
        self.conn, self.rfile = conn, rfile
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def _arm(self) -> None:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self._late()
        self.conn.settimeout(left)

    def _late(self) -> Reject:
        return Reject(408, DEADLINE_EXCEEDED, "body_timeout",
                      f"request body not received within {self.seconds:g} s", close=True)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer when fewer are there); b"" at end of stream."""
        self._arm()
        try:
            return self.rfile.read1(n)
        except TimeoutError:
            raise self._late() from None

    def readline(self, limit: int) -> bytes:
        out = bytearray()
        while len(out) < limit:
            self._arm()
            try:
                buffered = self.rfile.peek(1)[: limit - len(out)]  # one recv at most
            except TimeoutError:
                raise self._late() from None
            if not buffered:
                break
            end = buffered.find(b"\n")
            out += self.rfile.read(len(buffered) if end < 0 else end + 1)  # already buffered
            if end >= 0:
                break
        return bytes(out)


def read_body(headers: Message, body: Body, cap: int) -> bytes:
    """Read (and decompress) the body, never holding more than ``max_body_bytes`` of output."""
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise Reject(415, INVALID_ARGUMENT, "unsupported_encoding",
                     f"Content-Encoding {encoding!r} not supported; use gzip or none", close=True)
    chunks = _raw_chunks(headers, body, cap)
    out = bytearray()
    if encoding == "identity":
        for chunk in chunks:
            out += chunk
        return bytes(out)
    d = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out += d.decompress(data, cap + 1 - len(out))
                if len(out) > cap:
                    raise Reject(413, RESOURCE_EXHAUSTED, "too_large",
                                 f"body exceeds {cap} bytes after decompression", close=True)
                data = d.unconsumed_tail
                if d.eof and d.unused_data:  # concatenated gzip members
                    data = d.unused_data
                    d = zlib.decompressobj(32 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise Reject(400, INVALID_ARGUMENT, "malformed", f"bad {encoding} body: {exc}", close=True) from None
    if not d.eof:
        raise Reject(400, INVALID_ARGUMENT, "malformed", f"truncated {encoding} body")
    return bytes(out)


def _raw_chunks(headers: Message, body: Body, cap: int) -> Iterator[bytes]:
    """Body bytes as sent (before decompression); at most ``cap`` of them are accepted."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        yield from _chunked(body, cap)
        return
    length_header = headers.get("Content-Length")
    if length_header is None:
        raise Reject(411, INVALID_ARGUMENT, "length_required", "Content-Length required", close=True)
    try:
        length = int(length_header)
        if length < 0:
            raise ValueError
    except ValueError:
        raise Reject(400, INVALID_ARGUMENT, "malformed", "bad Content-Length", close=True) from None
    if length > cap:  # refused before reading any of it; the answer then drains it (otlp_http._linger)
        raise Reject(413, RESOURCE_EXHAUSTED, "too_large", f"Content-Length {length} exceeds {cap} bytes", close=True)
    yield from _exactly(body, length, "body shorter than Content-Length")


def _exactly(body: Body, n: int, short: str) -> Iterator[bytes]:
    """``n`` bytes of ``body`` in chunks; a 400 saying ``short`` if it ends first."""
    while n:
        chunk = body.read(min(CHUNK, n))
        if not chunk:
            raise Reject(400, INVALID_ARGUMENT, "malformed", short, close=True)
        n -= len(chunk)
        yield chunk


def _chunked(body: Body, cap: int) -> Iterator[bytes]:
    total = 0
    while True:
        line = body.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Reject(400, INVALID_ARGUMENT, "malformed", "bad chunked encoding", close=True) from None
        if size == 0:
            while body.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        total += size
        if total > cap:
            raise Reject(413, RESOURCE_EXHAUSTED, "too_large", f"body exceeds {cap} bytes", close=True)
        yield from _exactly(body, size, "truncated chunk")
        body.readline(16)
