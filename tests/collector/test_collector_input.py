"""Hostile and odd input at the collector: counted rejections, never a crash, no collateral loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import zmq
from conftest import CollectorProc, run_producer, wait_for

from otel_telemetry import wire
from otel_telemetry.collector.config import ConfigError, load
from otel_telemetry.collector.receivers.zmq import EndpointInUse, ZmqReceiver


def _publisher(endpoint: str) -> tuple[zmq.Context, zmq.Socket]:
    """A raw XPUB that waits (by handshake, not sleep) until the collector has subscribed."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.connect(endpoint)
    assert sock.poll(10000), "collector never subscribed"
    assert sock.recv() == b"\x01telemetry."
    return ctx, sock


GOOD_SPAN = ("op", b"\x01" * 16, b"\x02" * 8, None, 1_000, 2_000_000, 0, 0, None, {"k": 1}, None, None,
             "scope", None)


def test_malformed_frames_are_counted_and_good_data_still_lands(collector: CollectorProc) -> None:
    ctx, sock = _publisher(collector.endpoint)
    pub = b"P" * 16
    packer = wire.new_packer()
    bad = [
        [b"telemetry.ai_behavior.x"],                                             # too few frames
        [b"telemetry.ai_behavior.x", b"short", b""],                             # header size
        [b"telemetry.ai_behavior.x", b"XX" + b"\0" * (wire.HEADER_SIZE - 2), b""],  # magic
        [b"telemetry.ai_behavior.x", b"OT\x07\x01" + pub + b"\0" * 12, b""],    # version 7
        [b"telemetry.ai_behavior.x", wire.encode(packer, b"t", 1, pub, 0, {}, [GOOD_SPAN])[1], b"\xc1garbage"],
        [b"telemetry.ai_behavior.x", wire.encode(packer, b"t", 1, pub, 0, {}, [GOOD_SPAN, GOOD_SPAN])[1],
         packer.pack([{}, [GOOD_SPAN]])],                                       # count mismatch
        [b"telemetry.nope.x", *wire.encode(packer, b"t", 1, pub, 0, {}, [GOOD_SPAN])[1:]],  # bad category
        [b"telemetry.ai_behavior.x", *wire.encode(packer, b"t", 1, pub, 0, {}, [("too", "short")])[1:]],
    ]
    for frames in bad:
        sock.send_multipart(frames)
    good = wire.encode(packer, b"telemetry.ai_behavior.x", wire.KIND_SPANS, b"Q" * 16, 0,
                       {"service.name": "raw"}, [GOOD_SPAN])
    sock.send_multipart(good)
    sock.close(linger=2000)
    ctx.term()
    wait_for(lambda: collector.rows("SELECT count(*) FROM records")[0][0] == 1, what="good span stored")
    r = run_producer(collector.endpoint, "--spans", "300")
    assert collector.stop() == 0
    rejected = collector.status()["zmq"]["rejected"]
    assert rejected == {"malformed": 4 + 2, "unsupported_version": 1, "bad_topic": 1, "invalid_record": 1}
    assert collector.rows("SELECT count(*) FROM records")[0][0] == 1 + 301
    assert r["counters"]["sent"] == 301  # type: ignore[index]
    row = collector.rows("SELECT trace_id, span_id, service, duration_ms FROM records WHERE service='raw'")
    assert row == [("01" * 16, "02" * 8, "raw", pytest.approx(2.0 - 0.001))]


def test_oversized_message_rejected(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    c.config.write_text("receivers:\n  zmq:\n    max_message_bytes: 2000\nstore:\n  flush_interval: 0.05\n")
    c.start()
    ctx, sock = _publisher(c.endpoint)
    big = ("op", b"\x01" * 16, b"\x03" * 8, None, 1, 2, 0, 0, None, {"blob": "x" * 5000}, None, None, "s", None)
    sock.send_multipart(wire.encode(wire.new_packer(), b"telemetry.ai_behavior.x", 1, b"R" * 16, 0, {}, [big]))
    small = ("op", b"\x01" * 16, b"\x04" * 8, None, 1, 2, 0, 0, None, {}, None, None, "s", None)
    sock.send_multipart(wire.encode(wire.new_packer(), b"telemetry.ai_behavior.x", 1, b"R" * 16, 1, {}, [small]))
    sock.close(linger=2000)
    ctx.term()
    wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == 1, what="small span stored")
    assert c.stop() == 0
    zs = c.status()["zmq"]
    # libzmq refuses the oversized message outright (MAXMSGSIZE), so the collector sees a gap of one record
    assert zs["rejected"].get("too_large", 0) + zs["gaps"].get("ai_behavior", 0) == 1


def test_second_collector_on_same_endpoint_is_refused(collector: CollectorProc, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "otel_telemetry", "collector", "run", "--db", str(tmp_path / "other.db"),
         "--endpoint", collector.endpoint], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "held by another running collector" in proc.stderr
    r = run_producer(collector.endpoint, "--spans", "60")
    assert r["counters"]["sent"] == 61  # type: ignore[index]  # the first collector still gets everything


def test_receiver_refuses_bind_in_process(tmp_path: Path) -> None:
    from otel_telemetry.store.writer import StoreWriter

    w = StoreWriter(str(tmp_path / "a.db"))
    ep = f"ipc://{tmp_path}/x.ipc"
    a = ZmqReceiver(ep, w, checkpoints={})
    a.start()
    try:
        with pytest.raises(EndpointInUse):
            ZmqReceiver(ep, w, checkpoints={}).start()
    finally:
        a.shutdown(2)
        w.shutdown(2)
    assert a.shutdown(1)  # idempotent


@pytest.mark.parametrize("text, needle", [
    ("bogus: 1\n", "unknown key 'bogus'"),
    ("store:\n  synchronus: full\n", "unknown key 'synchronus'"),
    ("store:\n  synchronous: sometimes\n", "store.synchronous"),
    ("retention:\n  days:\n    ai_behaviour: 3\n", "unknown key 'ai_behaviour'"),
    ("retention:\n  days:\n    ai_behavior: 0\n", "retention.days.ai_behavior"),
    ("categories:\n  rules:\n    - {category: nope}\n", "categories.rules[0].category"),
    ("store: [1, 2]\n", "expected a mapping"),
    ("a: [unclosed\n", "not valid YAML"),
    ("nice: -5\n", "nice must be an integer from 0 to 19"),
    ("nice: 20\n", "nice must be an integer from 0 to 19"),
    ("nice: low\n", "nice must be an integer from 0 to 19"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(str(p))
    assert needle in str(err.value)


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("bogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(p)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown key 'bogus'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unpackable_payload_types_do_not_crash() -> None:
    header = wire.decode_header([b"t", wire.encode(wire.new_packer(), b"t", 1, b"P" * 16, 0, {}, [])[1], b""])
    for payload in (b"", b"\x00", msgpack.packb([1, 2]), msgpack.packb({"a": 1}), b"\xff" * 100):
        with pytest.raises(wire.WireError):
            wire.decode_payload(header, payload)


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_collector_lowers_its_cpu_priority_by_default(tmp_path: Path) -> None:
    """``nice: 10`` by default (the apps it observes come first); ``nice: 0`` leaves it alone."""
    own = _niceness(os.getpid())
    for text, expected in (("", min(19, own + 10)), ("nice: 0\n", own)):
        c = CollectorProc(tmp_path, name=f"n{expected}")
        c.config.write_text(c.config.read_text() + text)
        c.start()
        try:
            assert _niceness(c.proc.pid) == expected  # type: ignore[union-attr]
        finally:
            assert c.stop() == 0


def test_otlp_port_taken_fails_before_any_subscription(tmp_path: Path) -> None:
    """Issue 15 item 1: a collector whose OTLP port is taken exits before its ZeroMQ socket binds
    and subscribes, so an app never hands records to a subscription that is about to vanish: they
    stay in the app and are counted there (no_collector), never 'sent' into a dying collector."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        c = CollectorProc(tmp_path)
        c.config.write_text(f"receivers:\n  otlp_http:\n    endpoint: 127.0.0.1:{port}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(c.config),
             "--db", c.db, "--endpoint", c.endpoint], stderr=open(c.log, "wb"), stdout=subprocess.DEVNULL)
        assert proc.wait(60) != 0
    finally:
        holder.close()
    log = c.log.read_text()
    assert "listening on ipc" not in log, log
    assert not Path(c.endpoint[len("ipc://"):]).exists()
    # No collector will come: the shutdown holds the records for its whole timeout, then counts them.
    out = run_producer(c.endpoint, "--spans", "30", "--join-timeout", "0.2", "--shutdown-timeout", "1")
    assert out["counters"]["sent"] == 0 and out["counters"]["dropped"] == {"no_collector": 31}, out  # type: ignore[index]


def test_forged_counts_and_sequences_are_bounded(collector: CollectorProc) -> None:
    """Issue 15 item 17: a header's record count is a claim (bounded by the payload's size), and a
    sequence jump or goodbye beyond what any pipe can hold is rejected, not counted as a gap."""
    ctx, pub = _publisher(collector.endpoint)
    try:
        packer = wire.new_packer()
        pubid = b"F" * 16
        topic = b"telemetry.ai_behavior.forge"
        # 1. a 100-byte garbage payload whose header claims four billion records
        frames = wire.encode(packer, topic, wire.KIND_SPANS, pubid, 0, {}, [])
        frames[1] = frames[1][:-4] + (4_000_000_000).to_bytes(4, "big")
        frames[2] = b"\xc1" * 100
        pub.send_multipart(frames)
        # 2. a real message, then one whose sequence number jumps by 2**40
        pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, pubid, 0, {}, [GOOD_SPAN]))
        pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, pubid, 1 << 40, {}, [GOOD_SPAN]))
        # 3. a goodbye claiming the same
        pub.send_multipart(wire.encode_bye(packer, pubid, {topic.decode(): 1 << 40}))
        # 4. and an honest message after all that: still stored, with no gap
        honest = list(GOOD_SPAN)
        honest[2] = b"\x03" * 8
        pub.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, pubid, 1, {}, [tuple(honest)]))
        wait_for(lambda: collector.status().get("zmq", {}).get("rejected", {}).get("bad_sequence", 0) >= 2
                 and sum(collector.counts_by_category().values()) >= 2, what="forged frames handled")
    finally:
        pub.close(0)
        ctx.term()
    assert collector.stop() == 0
    z = collector.status()["zmq"]
    assert z["rejected"]["malformed"] <= 100
    assert z["rejected"]["bad_sequence"] == 2
    assert z["gaps"] == {} and z["gaps_total"] == 0
    assert sum(collector.counts_by_category().values()) == 2


def test_one_bad_timestamp_rejects_only_its_record(collector: CollectorProc) -> None:
    """Issue 15 item 13, ZeroMQ: a span starting at 2**64-1 ns (msgpack carries it) is rejected alone
    and counted; the other records of its message are stored and no gap is left."""
    ctx, pub = _publisher(collector.endpoint)
    try:
        topic = b"telemetry.ai_behavior.timecheck"
        recs = []
        for i in range(9):
            r = list(GOOD_SPAN)
            r[2] = bytes([i + 1]) * 8
            if i == 4:
                r[4] = 2**64 - 1
            recs.append(tuple(r))
        pub.send_multipart(wire.encode(wire.new_packer(), topic, wire.KIND_SPANS, b"T" * 16, 0, {}, recs))
        wait_for(lambda: sum(collector.counts_by_category().values()) >= 8, what="the good records stored")
    finally:
        pub.close(0)
        ctx.term()
    assert collector.stop() == 0
    z = collector.status()["zmq"]
    assert sum(collector.counts_by_category().values()) == 8
    assert z["rejected"] == {"invalid_record": 1} and z["gaps_total"] == 0
