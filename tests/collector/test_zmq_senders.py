"""ZeroMQ senders the collector cannot take at their word (issue 15 item 17, the rest), each against
a real collector process over real sockets.

- A frame over the size limit: libzmq (ZMQ_MAXMSGSIZE) dropped its sender's connection and said
  nothing. Up to twice ``max_message_bytes`` the frame is now taken and rejected (``too_large``) and
  the sender stays connected; past that, the disconnect is counted from the socket monitor
  (``disconnects_without_goodbye``: a connection that closed without its publisher's goodbye).
- With CURVE, a publisher id belongs to the client key that first used it: another key's frames
  with that id (forged sequences and goodbyes made 1.4e13 gaps) are rejected, counted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import yaml
import zmq
import zmq.auth
from conftest import CollectorProc, run_producer, wait_for
from test_collector_input import GOOD_SPAN, _publisher
from test_curve import TcpCollector, _free_port, _keys, _produce

from otel_telemetry import wire

LIMIT = 64 * 1024


def _spans(first: int, n: int, pad: int = 0) -> list[tuple[Any, ...]]:
    out = []
    for i in range(first, first + n):
        r = list(GOOD_SPAN)
        r[1], r[2] = (0xC000 + i).to_bytes(16, "big"), (0xC000 + i).to_bytes(8, "big")
        r[9] = {"pad": "x" * pad} if pad else {"k": i}
        out.append(tuple(r))
    return out


def _zmq(c: CollectorProc) -> dict[str, Any]:
    return c.status().get("zmq", {})


def test_oversize_frames_are_counted(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "alerts": {"default_rules": False},
                                        "receivers": {"zmq": {"max_message_bytes": LIMIT}}}))
    c.start()
    try:
        ctx, pub = _publisher(c.endpoint)  # cut off below, it connects again: closed only at the end
        topic, me = b"telemetry.ai_behavior.big", b"B" * 16
        packer = wire.new_packer()
        try:
            pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, me, 0, {}, _spans(0, 3)))
            # Over the limit, under twice it: rejected, counted, and this sender stays connected.
            pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, me, 3, {}, _spans(3, 1, pad=LIMIT)))
            pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, me, 4, {}, _spans(4, 2)))
            wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == 5, what="both good messages stored")
            wait_for(lambda: _zmq(c).get("rejected") == {"too_large": 1}, what="too_large counted")
            assert _zmq(c)["disconnects"] == 0 and _zmq(c)["gaps_total"] == 0  # not counted twice
            # Past twice the limit: libzmq cuts the connection; the monitor counts it.
            pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, me, 6, {}, _spans(6, 1, pad=3 * LIMIT)))
            wait_for(lambda: _zmq(c).get("disconnects_without_goodbye") == 1, what="the cut connection counted")
            # An app that says goodbye before it goes is a disconnect, not an unexplained one.
            out = run_producer(c.endpoint, "--spans", "20")
            assert out["counters"]["sent"] == sum(out["emitted"].values())  # type: ignore[index]
            wait_for(lambda: _zmq(c).get("disconnects") == 2, what="the app's disconnect")
            z = _zmq(c)
            assert z["disconnects_without_goodbye"] == 1 and z["byes"] == 1, z
        finally:
            pub.close(0)
            ctx.term()
    finally:
        assert c.stop() == 0, c.log.read_text()[-3000:]


def test_curve_publisher_id_is_tied_to_its_key(tmp_path: Path) -> None:
    server_pub, server_secret = _keys(tmp_path / "server", "collector")
    allowed = tmp_path / "allowed"
    _, victim_secret = _keys(allowed, "victim")
    _, mallory_secret = _keys(allowed, "mallory")  # also allowed: a key of its own, not the victim's
    c = TcpCollector(tmp_path, f"tcp://127.0.0.1:{_free_port()}",
                     {"curve": {"secret_key_file": str(server_secret), "allowed_clients_dir": str(allowed)}})
    c.start()
    try:
        env = {"OTEL_TELEMETRY_CURVE_SERVER_KEY": str(server_pub)}
        out = _produce(c.endpoint, spans=30, OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(victim_secret), **env)
        total = sum(out["emitted"].values())
        wait_for(lambda: sum(c.counts_by_category().values()) == total, what="the victim's records stored")
        con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
        try:
            (victim, topic), = con.execute("SELECT publisher, topic FROM publishers LIMIT 1").fetchall()
        finally:
            con.close()

        # Mallory, with an allowed key of her own, forges the victim's publisher id.
        ctx = zmq.Context()
        pub = ctx.socket(zmq.XPUB)
        public, secret = zmq.auth.load_certificate(mallory_secret)
        pub.setsockopt(zmq.CURVE_SERVERKEY, zmq.auth.load_certificate(server_pub)[0])
        pub.setsockopt(zmq.CURVE_PUBLICKEY, public)
        pub.setsockopt(zmq.CURVE_SECRETKEY, secret)
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        pub.connect(c.endpoint)
        try:
            assert pub.poll(10000) and pub.recv() == b"\x01telemetry."
            packer = wire.new_packer()
            pub.send_multipart(wire.encode(packer, topic.encode(), wire.KIND_SPANS, bytes(victim), 10**6, {},
                                           _spans(0, 3)))
            pub.send_multipart(wire.encode_bye(packer, bytes(victim), {topic: 10**7}))
            # Her own publisher id is hers: stored.
            pub.send_multipart(wire.encode(packer, b"telemetry.ai_behavior.m", wire.KIND_SPANS, b"M" * 16, 0, {},
                                           _spans(100, 2)))
            wait_for(lambda: sum(c.counts_by_category().values()) == total + 2, what="mallory's own records")
            wait_for(lambda: _zmq(c).get("rejected") == {"publisher_key_mismatch": 4}, what="the forgeries counted")
        finally:
            pub.close(0)
            ctx.term()
        z = _zmq(c)
        assert z["gaps_total"] == 0 and z["replayed"] == 0, z
        # The victim carries on unharmed: its numbering was not moved by the forged frames.
        out = _produce(c.endpoint, spans=10, OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(victim_secret), **env)
        more = sum(out["emitted"].values())
        wait_for(lambda: sum(c.counts_by_category().values()) == total + 2 + more, what="the victim's later records")
        assert _zmq(c)["gaps_total"] == 0
    finally:
        if c.proc is not None:
            assert c.stop() == 0, c.log.read_text()[-3000:]
