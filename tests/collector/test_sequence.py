"""Sequence numbers in the ZeroMQ receiver (issue 15 items 2 and 11): gaps counted when seen and
taken back when a resend fills them; checkpoints and acknowledgements never pass a missing range;
a publisher this store has never seen is numbered from 0."""

from __future__ import annotations

from pathlib import Path

from otel_telemetry import wire
from otel_telemetry.collector.receivers.sequence import MAX_GAP, MAX_MISSING, Acks, Sequences

K = (b"p" * 16, "telemetry.ai_behavior.app")


def test_a_gap_is_counted_then_recovered_by_a_resend() -> None:
    s = Sequences({K: 100})
    assert s.observe(K, "ai_behavior", 100, 10) == 110
    assert s.observe(K, "ai_behavior", 150, 10) == 110  # 110..150 missing: not acknowledged past it
    assert s.counters()["gaps"] == {"ai_behavior": 40}
    assert s.observe(K, "ai_behavior", 110, 20) == 130  # part of it comes again
    assert s.observe(K, "ai_behavior", 100, 50) == 160  # a resend from before the gap fills the rest
    c = s.counters()
    assert c["gaps_total"] == 0 and c["recovered"] == 40 and c["replayed"] == 2


def test_an_unknown_publishers_first_message_past_zero_is_a_gap() -> None:
    """Item 11: a collector that never stored this publisher counts what came before as missing."""
    s = Sequences({})
    assert s.observe(K, "ai_behavior", 500, 10) == 0
    assert s.counters()["gaps_total"] == 500
    assert s.observe(K, "ai_behavior", 0, 500) == 510
    assert s.counters()["gaps_total"] == 0 and s.counters()["recovered"] == 500


def test_impossible_numbers_are_refused_and_old_ranges_stay_counted() -> None:
    s = Sequences({K: 10})
    assert s.observe(K, "ai_behavior", 10 + MAX_GAP + 1, 1) is None
    assert s.counters()["gaps_total"] == 0
    far = Sequences({})
    assert far.observe(K, "ai_behavior", MAX_GAP + 5, 1) == MAX_GAP + 6  # a long-lived publisher, new store
    s = Sequences({K: 0})
    seq = 0
    for _ in range(MAX_MISSING + 1):
        seq += 2
        s.observe(K, "ai_behavior", seq, 1)
        seq += 1
    assert s.counters()["gaps_total"] == 2 + 2 * MAX_MISSING
    assert s.observe(K, "ai_behavior", 0, 2) == 3  # the forgotten first range: stays a gap
    assert s.counters()["gaps_total"] == 2 + 2 * MAX_MISSING and s.counters()["recovered"] == 0


def test_a_range_nobody_resends_stops_holding_the_acknowledgements_back() -> None:
    now = [100.0]
    s = Sequences({K: 0}, clock=lambda: now[0])
    assert s.observe(K, "ai_behavior", 10, 5) == 0  # 0..10 missing
    now[0] += 5
    assert s.observe(K, "ai_behavior", 15, 5) == 0
    now[0] += 6  # past MISSING_WAIT: given up, still counted as a gap
    assert s.observe(K, "ai_behavior", 20, 5) == 25
    assert s.counters()["gaps_total"] == 10


def test_a_range_waits_on_while_its_publisher_is_still_resending() -> None:
    """A loaded collector can take longer than MISSING_WAIT to reach the part of a resend that
    fills a range: while replayed messages keep coming on that key, the range still holds the
    acknowledgements back; once they stop for MISSING_WAIT, it is given up as before."""
    now = [100.0]
    s = Sequences({K: 50}, clock=lambda: now[0])
    assert s.observe(K, "ai_behavior", 60, 5) == 50  # 50..60 missing
    for k in range(6):  # the app's resend: records it held from before, 4 s apart, for 24 s
        now[0] += 4
        assert s.observe(K, "ai_behavior", k, 1) == 50
    now[0] += 4
    assert s.observe(K, "ai_behavior", 50, 10) == 65  # 28 s after the range was seen: it came
    assert s.counters()["gaps_total"] == 0 and s.counters()["recovered"] == 10
    assert s.observe(K, "ai_behavior", 70, 5) == 65  # 65..70 missing now
    now[0] += 4
    assert s.observe(K, "ai_behavior", 6, 1) == 65  # a replay, then silence
    now[0] += 11
    assert s.observe(K, "ai_behavior", 75, 5) == 80  # no resend for MISSING_WAIT: given up, a gap
    assert s.counters()["gaps_total"] == 5


def test_goodbye_counts_the_tail_and_acks_keep_the_highest() -> None:
    s = Sequences({K: 10})
    assert s.bye(K, "ai_behavior", 25) and s.counters()["gaps_total"] == 15
    assert not s.bye(K, "ai_behavior", 25 + MAX_GAP + 1)
    acks = Acks()
    acks.committed({K: 5})
    acks.committed({K: 9})
    acks.committed({K: 7})
    assert acks.take() == {K[0]: {K[1].encode(): 9}} and acks.take() == {}


def test_ack_frames_round_trip_and_garbage_is_ignored() -> None:
    msg = wire.encode_ack(b"x" * 16, {b"telemetry.a.b": 42})
    assert msg[:1] not in (b"\x00", b"\x01")  # never read as a (un)subscription by XPUB
    assert wire.decode_ack(msg) == (b"x" * 16, {b"telemetry.a.b": 42})
    for bad in (b"", b"OA", msg[:-1], b"OA\x02" + msg[3:], b"OA\x01" + b"x" * 16 + b"\xc1",
                wire.ACK_MAGIC + b"\x01" + b"x" * 16 + b"\x81\xa1a\xa1b", b"\x01telemetry."):
        assert wire.decode_ack(bad) is None


def test_a_batch_dropped_at_shutdown_is_never_passed_by_a_later_checkpoint(tmp_path: Path) -> None:
    """At shutdown a batch the store cannot take in time is dropped (counted) and not acknowledged,
    so the app sends it again to the next collector. Nothing after it may be committed then: its
    checkpoint, and the acknowledgement, would pass the dropped records, and the app would let
    them go (seen with two CPU hogs: 33 spans lost over a SIGTERM restart)."""
    from otel_telemetry.collector.pipeline import Pipeline
    from otel_telemetry.collector.receivers.zmq import ZmqReceiver
    from otel_telemetry.store.writer import StoreWriter

    writer = StoreWriter(str(tmp_path / "t.db"), queue_batches=1, flush_interval=0.01)  # started below
    rx = ZmqReceiver("ipc:///nonexistent/never-bound", Pipeline(writer), checkpoints={})
    packer, pub, topic = wire.new_packer(), b"S" * 16, b"telemetry.ai_behavior.x"

    def message(seq: int) -> list[bytes]:
        span = ("op", b"\x01" * 16, (seq + 1).to_bytes(8, "big"), None, 1_000, 2_000, 0, 0, None, {}, None, None,
                "scope", None)
        return wire.encode(packer, topic, wire.KIND_SPANS, pub, seq, {}, [span])

    rx._handle(message(0))  # takes the queue's one place (the writer is not running yet)
    rx._stop.set()  # shutting down
    rx._handle(message(1))  # the store's queue stays full: dropped at shutdown, not acknowledged
    writer.start()
    assert writer.flush(10)  # the queue has room again...
    rx._handle(message(2))  # ...but this one must not be committed past record 1
    assert writer.flush(10)
    assert rx.counters()["dropped"] == {"shutdown": 2}
    assert rx._acks.take() == {pub: {topic: 1}}  # record 0 only
    assert writer.load_checkpoints() == {(pub, topic.decode()): 1}
    assert writer.shutdown(10)
