"""OTLP/HTTP against hostile clients on real sockets: bodies that trickle in (one deadline per body,
not per read) and oversized plain bodies (the client reads a 413, not EPIPE)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_telemetry.collector.pipeline import Pipeline
from otel_telemetry.collector.receivers.otlp_http import OtlpHttpReceiver
from otel_telemetry.store.writer import StoreWriter

MIB = 1024 * 1024
SLOW_CLIENTS = 40  # more than the 32 concurrency slots
HEADERS = "Content-Type: application/x-protobuf\r\nHost: 127.0.0.1\r\n"


def _spans(service: str, n: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = bytes([7] * 15 + [i + 1]), bytes([9] * 7 + [i + 1])
        sp.name, sp.start_time_unix_nano = "op", 1_700_000_000_000_000_000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1_000_000
    return req.SerializeToString()


def _post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OtlpHttpReceiver]:
    writer = StoreWriter(str(tmp_path / "h.db"), flush_interval=0.01, status_interval=3600)
    writer.start()
    # A short body deadline keeps the test short; the per-read timeout stays the default 30 s.
    rx = OtlpHttpReceiver("127.0.0.1:0", Pipeline(writer), body_timeout=1.0, max_body_bytes=MIB)
    rx.start()
    yield rx
    assert rx.shutdown(10)
    assert writer.shutdown(10)


def _status_line(sock: socket.socket) -> int:
    """The status code of the answer on ``sock`` (read until the server closes), 0 if none came."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def test_slow_bodies_cannot_hold_the_slots(receiver: OtlpHttpReceiver) -> None:
    port = receiver.port
    slow = []
    for _ in range(SLOW_CLIENTS):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(f"POST /v1/traces HTTP/1.1\r\n{HEADERS}Content-Length: 100000\r\n\r\n".encode() + b"\x0a")
        slow.append(s)
    stop = threading.Event()

    def trickle() -> None:
        # One body byte per socket every 0.2 s (well inside the 30 s per-read timeout), bounded.
        for _ in range(300):
            for s in slow:
                try:
                    s.send(b"\x00")
                except OSError:
                    pass  # answered and closed
            if stop.wait(0.2):
                return

    dribbler = threading.Thread(target=trickle, daemon=True)
    dribbler.start()
    try:
        body = _spans("normal", 3)
        # Each slow body is cut off at its deadline, so a normal request gets through while the
        # slow clients are still trickling (before: 503 for as long as they kept sending).
        wait_for(lambda: _post(port, body) == 200, timeout=60, what="a normal request to be accepted")
        answers = [_status_line(s) for s in slow]
    finally:
        stop.set()
        dribbler.join(10)
        for s in slow:
            s.close()
    c = receiver.counters()
    timed_out, busy = answers.count(408), answers.count(503)
    assert timed_out + busy == SLOW_CLIENTS, answers  # every slow client got an answer
    assert timed_out >= 1 and c["rejected"].get("body_timeout") == timed_out
    assert c["overload_by_reason"].get("busy", 0) >= busy


def test_trickled_chunked_body_hits_the_same_deadline(receiver: OtlpHttpReceiver) -> None:
    s = socket.create_connection(("127.0.0.1", receiver.port), timeout=60)
    stop = threading.Event()
    try:
        s.sendall(f"POST /v1/traces HTTP/1.1\r\n{HEADERS}Transfer-Encoding: chunked\r\n\r\n".encode())

        def trickle() -> None:  # a chunk-size line that never ends, one digit at a time
            for _ in range(300):
                try:
                    s.send(b"1")
                except OSError:
                    return
                if stop.wait(0.2):
                    return

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        assert _status_line(s) == 408
    finally:
        stop.set()
        s.close()
    assert receiver.counters()["rejected"].get("body_timeout") == 1


def test_oversized_plain_body_gets_413_not_epipe(receiver: OtlpHttpReceiver) -> None:
    big = b"\x00" * (50 * MIB)  # 50 MiB against a 1 MiB cap, sent whole by a plain client
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", big, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        assert resp.status == 413
        resp.read()
    finally:
        conn.close()
    assert receiver.counters()["rejected"] == {"too_large": 1}
    assert _post(receiver.port, _spans("after", 2)) == 200  # and still serving
