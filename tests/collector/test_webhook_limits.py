"""Webhook answers are bounded (issue 15 item 16): real HTTP servers on 127.0.0.1 that answer a
huge body or dribble their answer a byte at a time.

Before: ``resp.read()`` took a 400 MB answer whole (the collector's peak memory went to 465 MB) and
the per-read timeout let a dribbling server hold a delivery thread ~45 s per attempt. Now at most
64 KiB of an answer are read, and each attempt has one deadline (``timeout``) for all of it.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from conftest import wait_for

from otel_telemetry.collector.alerts import webhook_post
from otel_telemetry.collector.alerts.notify import AlertEvent, Notifier, NotifyTarget

HUGE = 400 * 1024 * 1024


class RawServer:
    """A TCP server on 127.0.0.1 whose every connection reads one request, then runs ``answer``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed_by_client = 0  # connections the client hung up on before the answer ended
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += conn.recv(65536)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._read_request(conn)
            if self.answer == "silent":  # never answers
                self._stop.wait(30)
                return
            if self.answer == "dribble":  # one byte of the status line and headers at a time
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + b"X-Slow: " + b"." * 10_000 + b"\r\n\r\n"
                for i in range(len(head)):
                    if self._stop.wait(0.05):
                        return
                    conn.sendall(head[i:i + 1])
                    self.bytes_sent += 1
                return
            status = b"500 Internal Server Error" if self.answer == "huge500" else b"200 OK"
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % HUGE)
            chunk = b"x" * 65536
            for _ in range(HUGE // len(chunk)):
                conn.sendall(chunk)
                self.bytes_sent += len(chunk)
        except OSError:  # the client hung up (reset / broken pipe)
            self.closed_by_client += 1
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(10)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    s = RawServer(request.param)
    yield s
    s.close()


def _event() -> AlertEvent:
    return AlertEvent("alert.triggered", "r", "warning", time.time_ns(), "m", 1.0, 0.5, ">", "msg")


def _deliver(url: str, *, timeout: float, retries: int) -> dict[str, int]:
    n = Notifier([NotifyTarget(type="webhook", url=url, timeout=timeout, retries=retries, backoff=0.01)],
                 rand=lambda: 0.5)
    n.start()
    try:
        assert n.submit(_event())
        assert n.flush(120), "delivery did not end"
        return n.stats()
    finally:
        n.shutdown(5)


@pytest.mark.parametrize("server", ["huge500"], indirect=True)
def test_huge_error_answer_is_read_only_up_to_the_cap(server: RawServer) -> None:
    tracemalloc.start()
    try:
        stats = _deliver(server.url, timeout=30, retries=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (stats["failed"], stats["retries"], stats["sent"]) == (1, 1, 0), stats  # a failed attempt, retried
    assert server.connections == 2
    wait_for(lambda: server.closed_by_client == 2, what="the client hanging up on both answers")
    assert peak < 4 * 1024 * 1024, peak  # bounded by the 64 KiB cap, not by the 400 MB answer
    assert server.bytes_sent < HUGE // 4, server.bytes_sent  # only what the socket buffers held


@pytest.mark.parametrize("server", ["huge200"], indirect=True)
def test_huge_ok_answer_is_a_delivery_read_up_to_the_cap(server: RawServer) -> None:
    reason = webhook_post.post(server.url, b"{}", {"Content-Type": "application/json"}, 30)
    assert reason == (False, None)
    wait_for(lambda: server.closed_by_client == 1, what="the client hanging up on the answer")
    assert server.bytes_sent < HUGE // 4, server.bytes_sent


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_a_read_timing_out_before_the_deadline_timer_is_still_the_deadline(
        server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket's own timeout equals the deadline, so on a loaded machine it can fire before the
    timer thread runs: the reason is still the deadline, not "TimeoutError: timed out"."""
    real = threading.Timer
    monkeypatch.setattr(webhook_post.threading, "Timer", lambda s, f, a: real(s * 20, f, a))
    assert webhook_post.post(server.url, b"{}", {"Content-Type": "application/json"}, 0.3) == (
        True, "no complete answer within the 0.3 s deadline")


@pytest.mark.parametrize("server", ["dribble"], indirect=True)
def test_dribbling_server_gets_one_deadline_per_attempt(server: RawServer) -> None:
    # The whole answer would take ~500 s at one byte per 50 ms; each attempt ends at its deadline.
    retryable, reason = webhook_post.post(server.url, b"{}", {"Content-Type": "application/json"}, 1.0)
    assert retryable and reason == "no complete answer within the 1 s deadline", reason
    stats = _deliver(server.url, timeout=1.0, retries=1)
    assert (stats["failed"], stats["retries"], stats["sent"]) == (1, 1, 0), stats
    assert server.connections == 3
    assert server.bytes_sent < 10_000  # no attempt lasted until the answer's end
