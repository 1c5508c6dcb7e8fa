"""An app exiting right after a busy collector took its records: it waits (within its shutdown
timeout) for the acknowledgements the collector promised when it subscribed, instead of leaving
everything reported unacknowledged because no acknowledgement had arrived yet.

The "collector" here is a real XSUB socket that subscribes the way ours does and acknowledges late,
so the delay is exact rather than a load we hope for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import zmq
from conftest import wait_for

import otel_telemetry
from otel_telemetry import wire

SPANS = 7


def _slow_collector(endpoint: str, promise: bool, delay: float, ready: threading.Event,
                    stop: threading.Event, got: list[int]) -> None:
    """Subscribe (with or without the acknowledgement promise), receive, and acknowledge
    records only from ``delay`` seconds after the first one arrived; from then on, each new
    message is acknowledged as it comes, however the app split its spans into messages."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XSUB)
    try:
        sock.bind(endpoint)
        sock.send(b"\x01telemetry.")
        if promise:
            sock.send(b"\x01" + wire.ACKS_SUBSCRIPTION)
        ready.set()
        next_seq: dict[bytes, int] = {}
        publisher = b""
        first: float | None = None
        acked: dict[bytes, int] = {}
        while not stop.is_set():
            if sock.poll(20):
                frames = sock.recv_multipart()
                header = wire.decode_header(frames)
                if header.kind in (wire.KIND_SPANS, wire.KIND_SPAN_SHAPES):
                    publisher = header.publisher
                    next_seq[frames[0]] = header.seq + header.count
                    got[0] += header.count
                    first = first or time.monotonic()
            if first is not None and acked != next_seq and time.monotonic() - first >= delay:
                sock.send(wire.encode_ack(publisher, next_seq))
                acked = dict(next_seq)
    finally:
        sock.close(0)
        ctx.term()


@pytest.mark.parametrize("promise", [True, False], ids=["acking collector", "older collector"])
def test_exit_waits_for_the_first_acknowledgement_a_collector_promised(tmp_path: Path, promise: bool) -> None:
    endpoint = f"ipc://{tmp_path}/c.ipc"
    ready, stop, got = threading.Event(), threading.Event(), [0]
    # The older collector acknowledges only after the test: were the app to wait for it,
    # shutdown(20) would run out and return False.
    delay = 1.5 if promise else 60.0
    t = threading.Thread(target=_slow_collector, args=(endpoint, promise, delay, ready, stop, got), daemon=True)
    t.start()
    assert ready.wait(10)
    tel = otel_telemetry.configure("exiting", endpoint=endpoint, metrics=False, logs=False, set_global=False,
                                   join_timeout=10)
    try:
        tracer = tel.tracer_provider.get_tracer("t")
        for i in range(SPANS):
            tracer.start_span(f"op{i}").end()
        assert tel.shutdown(20)
        c = tel.counters()
        assert c["sent"] == SPANS and c["dropped"] == {}
        # The app's exit only hands the frames to the socket: without an acknowledgement to wait
        # for, the "collector" thread may read them after shutdown has returned.
        wait_for(lambda: got[0] == SPANS, 10, "the collector to read every span")
        if promise:
            # Before: the exit did not wait for a first acknowledgement, and all 7 were unconfirmed.
            assert c["replay"]["acknowledged"] == SPANS and c["replay"]["unacknowledged"] == 0, c["replay"]
        else:
            # A collector that never said it acknowledges is not waited for: it may never do so.
            assert c["replay"]["acknowledged"] == 0 and c["replay"]["unacknowledged"] == SPANS, c["replay"]
    finally:
        tel.shutdown(5)
        stop.set()
        t.join(10)
