"""Where records are redacted (issue 13): in the collector when the endpoint stays on the device,
in the app when it leaves it; the frame flag that tells the collector; real sockets, no mocks."""

from __future__ import annotations

import pytest
import zmq

from otel_telemetry import wire
from otel_telemetry.auth import endpoint_stays_on_device
from otel_telemetry.sdk.exporter import redaction_site


@pytest.mark.parametrize(("endpoint", "local"), [
    ("ipc:///run/x.ipc", True), ("ipc://@abstract", True), ("inproc://x", True),
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.4.5:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("tcp://10.0.0.2:5555", False), ("tcp://collector.lan:5555", False),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://[::]:5555", False), ("tcp://:5555", False),
    ("udp://127.0.0.1:1", False),
])
def test_endpoint_stays_on_device(endpoint: str, local: bool) -> None:
    assert endpoint_stays_on_device(endpoint) is local


def test_redaction_site_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TELEMETRY_REDACT_IN_APP", raising=False)
    assert redaction_site("ipc:///x.ipc", True) == "collector"
    assert redaction_site("tcp://127.0.0.1:1", True) == "collector"
    assert redaction_site("tcp://10.1.2.3:1", True) == "app"
    assert redaction_site("ipc:///x.ipc", False) == "off"
    assert redaction_site("ipc:///x.ipc", True, "always") == "app"
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_IN_APP", "always")
    assert redaction_site("ipc:///x.ipc", True) == "app"
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_IN_APP", "sometimes")
    with pytest.raises(ValueError, match="redact_in_app"):
        redaction_site("ipc:///x.ipc", True)


def test_flag_round_trip_and_unknown_bits() -> None:
    packer = wire.new_packer()
    frames = wire.encode(packer, b"telemetry.ai_behavior.x", wire.KIND_SPANS, b"p" * 16, 0, {}, [])
    plain = wire.decode_header(frames)
    assert plain.kind == wire.KIND_SPANS and not plain.redact
    frames[1] = wire.restamp(frames[1], 7, wire.FLAG_REDACT)
    flagged = wire.decode_header(frames)
    assert flagged.kind == wire.KIND_SPANS and flagged.redact and flagged.seq == 7
    frames[1] = wire.restamp(frames[1], 8)  # restamping without flags clears them
    assert not wire.decode_header(frames).redact
    bye = wire.encode_bye(packer, b"p" * 16, {})
    bye[1] = bye[1][:3] + bytes([wire.KIND_BYE | wire.FLAG_REDACT]) + bye[1][4:]
    with pytest.raises(wire.WireError, match="malformed"):
        wire.decode_header(bye)
    frames[1] = frames[1][:3] + bytes([0x40 | wire.KIND_SPANS]) + frames[1][4:]
    with pytest.raises(wire.WireError, match="malformed"):
        wire.decode_header(frames)


@pytest.mark.parametrize(("site", "env"), [("collector", "auto"), ("app", "always")])
def test_frames_on_the_socket_carry_the_site(tmp_path, monkeypatch: pytest.MonkeyPatch, site: str, env: str) -> None:
    """A real transport on ipc: every data frame is flagged exactly when the collector redacts,
    and the records leave the app as the app made them (raw, or redacted)."""
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_IN_APP", env)
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY", "k" * 32)
    endpoint = f"ipc://{tmp_path}/s.ipc"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"telemetry.")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from otel_telemetry.sdk.exporter import ZmqSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "site"}))
        proc = ZmqSpanProcessor(endpoint=endpoint, join_timeout=10)
        provider.add_span_processor(proc)
        for i in range(20):
            provider.get_tracer("t").start_span("op", attributes={"mail": f"u{i}@example.com"}).end()
        assert proc.transport.counters()["redaction"] == site
        got = []  # the SUB passes its subscription on only while this thread polls it: no flush first
        while sum(len(r) for r in got) < 20 and sub.poll(10_000):
            frames = sub.recv_multipart()
            header = wire.decode_header(frames)
            assert header.redact is (site == "collector")
            got.append(wire.decode_payload(header, frames[2])[1])
        mails = [rec[9]["mail"] for recs in got for rec in recs]
        assert len(mails) == 20, proc.transport.counters()
        if site == "collector":
            assert mails == [f"u{i}@example.com" for i in range(20)]
        else:
            assert set(mails) == {"[REDACTED:email]"}
        provider.shutdown()
    finally:
        sub.close(0)
        ctx.term()
