"""The store's spans in progress (``store.in_progress``) through the real writer on a real file,
with a deterministic clock: bounded in number and age (each eviction counted), replaced by their
span, never kept when their span came first, reloaded after a restart; and hostile started frames
at a real collector are counted apart from the records' books."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq
from conftest import CollectorProc, wait_for

from otel_telemetry import wire
from otel_telemetry.collector.mapping import rows_from_batch
from otel_telemetry.query import in_progress as live
from otel_telemetry.store import db as store_db
from otel_telemetry.store import libsql_conn
from otel_telemetry.store.in_progress import Limits
from otel_telemetry.store.writer import StoreWriter, WriteBatch

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def span(i: int, end: int | None) -> tuple[Any, ...]:
    return (f"op{i}", b"\x0a" * 16, i.to_bytes(8, "big"), None, T0 + i, end, 0, 0, None, {"i": i}, None, None,
            "scope", None)


def rows(*recs: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(rows_from_batch("span", {"service.name": "svc"}, list(recs), ("ai_behavior", "c"), b""))


def writer(path: str, clock: Clock, **limits: Any) -> StoreWriter:
    w = StoreWriter(path, flush_interval=0.01, status_interval=0.02, clock=clock, live_spans=Limits(**limits))
    w.start()
    return w


def put(w: StoreWriter, batch: WriteBatch) -> None:
    assert w.submit(batch, timeout=5)
    assert w.flush(10)


def open_ids(path: str) -> list[str]:
    conn = store_db.open_reader(path)
    try:
        return [s["span_id"] for s in live.spans(conn, now_ns=T0)["spans"]]
    finally:
        conn.close()


def test_bounded_in_number_replaced_by_its_span_and_never_kept_after_it(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    clock = Clock()
    w = writer(path, clock, max_spans=3)
    try:
        put(w, WriteBatch(rows=[], started=rows(*(span(i, None) for i in range(1, 6)))))
        assert open_ids(path) == [f"{i:016x}" for i in (3, 4, 5)]  # the oldest two evicted
        put(w, WriteBatch(rows=rows(span(4, T0 + 9 * S))))  # span 4 ends: its started row goes
        assert open_ids(path) == [f"{i:016x}" for i in (3, 5)]
        # A start that arrives after its span was stored is not kept.
        put(w, WriteBatch(rows=rows(span(7, T0 + S))))
        put(w, WriteBatch(rows=[], started=rows(span(7, None))))
        assert open_ids(path) == [f"{i:016x}" for i in (3, 5)]
        stats = w.stats()
        assert stats["stored"] == 2  # started rows are never records
        assert stats["live_spans"] == {"started": 5, "ended": 1, "evicted": 2, "abandoned": 0, "expired": 0,
                                       "open": 2}
    finally:
        assert w.shutdown(10)


def test_abandoned_after_the_timeout_then_expired_and_reloaded_after_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    clock = Clock()
    w = writer(path, clock, abandon_after=10, max_age=100)
    try:
        put(w, WriteBatch(rows=[], started=rows(span(1, None))))
        clock.now = T0 + 5 * S
        put(w, WriteBatch(rows=[], started=rows(span(2, None))))
        clock.now = T0 + 11 * S  # span 1 is overdue, span 2 is not
        wait_for(lambda: w.stats()["live_spans"]["abandoned"] == 1, what="span 1 abandoned")
        conn = store_db.open_reader(path)
        try:
            states = {s["span_id"]: (s["state"], s["elapsed_ms"]) for s in live.spans(conn, now_ns=clock.now)["spans"]}
            assert states[f"{1:016x}"][0] == "abandoned"
            assert states[f"{2:016x}"][0] == "running"
            assert [s["span_id"] for s in live.spans(conn, state="abandoned")["spans"]] == [f"{1:016x}"]
        finally:
            conn.close()
    finally:
        assert w.shutdown(10)
    # A restart reads what is open back, so its span still replaces it and the sweep still sees it.
    w = writer(path, clock, abandon_after=10, max_age=100)
    try:
        assert w.stats()["live_spans"]["open"] == 2
        put(w, WriteBatch(rows=rows(span(2, T0 + 12 * S))))
        assert open_ids(path) == [f"{1:016x}"]
        clock.now = T0 + 101 * S  # span 1's start arrived more than max_age ago
        wait_for(lambda: w.stats()["live_spans"]["expired"] == 1, what="span 1 expired")
        assert open_ids(path) == []
    finally:
        assert w.shutdown(10)


def test_hostile_started_frames_are_counted_apart_from_the_records(collector: CollectorProc) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.connect(collector.endpoint)
    assert sock.poll(10000) and sock.recv() == b"\x01telemetry."
    packer = wire.new_packer()
    pub = b"L" * 16
    topic = b"telemetry.ai_behavior.x"
    good = span(1, None)
    started = wire.KIND_SPAN_STARTED
    sock.send_multipart([topic, wire.encode(packer, topic, started, pub, 0, {}, [good])[1], b"\xc1junk"])
    sock.send_multipart([b"telemetry.nope.x", *wire.encode(packer, topic, started, pub, 0, {}, [good])[1:]])
    sock.send_multipart(wire.encode(packer, topic, started, pub, 0, {}, [("too", "short")]))
    sock.send_multipart(wire.encode(packer, topic, started, pub, 0, {"service.name": "raw"}, [good]))
    # A started record takes no sequence number: this span, numbered 0 on its topic, is no gap.
    sock.send_multipart(wire.encode(packer, topic, wire.KIND_SPANS, pub, 0, {"service.name": "raw"}, [span(2, T0 + S)]))
    sock.close(linger=2000)
    ctx.term()
    wait_for(lambda: collector.rows("SELECT count(*) FROM records")[0][0] == 1, what="the span stored")
    wait_for(lambda: open_ids(collector.db) == [f"{1:016x}"], what="the good started record kept")
    assert collector.stop() == 0
    z = collector.status()["zmq"]
    assert z["live_spans"] == {"received": 2, "rejected": 3, "dropped": 0}
    assert z["rejected"] == {} and z["gaps"] == {} and z["received"] == 1


def test_on_a_server_direct_mode(tmp_path: Path) -> None:
    """Direct to a libSQL server (a real sqld): the same table, kept in the batch's one request,
    and the read side answers from the server as from a file."""
    from sqld import Sqld

    from otel_telemetry.store import libsql_conn

    server = Sqld(tmp_path).start()
    try:
        clock = Clock()
        w = writer(server.url, clock, max_spans=2)
        try:
            put(w, WriteBatch(rows=[], started=rows(*(span(i, None) for i in range(1, 4)))))
            put(w, WriteBatch(rows=rows(span(3, T0 + S))))
        finally:
            assert w.shutdown(10)
        conn = libsql_conn.Connection(server.url)
        try:
            assert [s["span_id"] for s in live.spans(conn, now_ns=T0)["spans"]] == [f"{2:016x}"]
            assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 1
        finally:
            conn.close()
        assert w.stats()["live_spans"]["evicted"] == 1 and w.stats()["live_spans"]["ended"] == 1
    finally:
        server.stop()


def test_emergency_purge_takes_the_spans_in_progress_of_its_scope(tmp_path: Path) -> None:
    from otel_telemetry.store.purge import PurgeSpec, purge

    path = str(tmp_path / "t.db")
    w = writer(path, Clock())
    try:
        other = list(rows_from_batch("span", {"service.name": "svc"}, [span(9, None)], ("user_interaction", "c"), b""))
        put(w, WriteBatch(rows=[], started=rows(span(1, None)) + other))
    finally:
        assert w.shutdown(10)
    conn = store_db.open_admin(path)
    try:
        purge(conn, PurgeSpec(categories=("ai_behavior",)))
        assert [s["span_id"] for s in live.spans(conn)["spans"]] == [f"{9:016x}"]
        purge(conn, PurgeSpec(everything=True))
        assert live.spans(conn)["spans"] == []
    finally:
        conn.close()


def test_direct_to_a_server_down_at_start_and_shared_by_two_instances(tmp_path: Path) -> None:
    """Direct to a real sqld that two collector instances write to: each reloads (and sweeps) only
    its own spans in progress; and one that starts while the server is down reloads them once it
    answers, so its spans still replace their rows and its sweep still abandons the rest."""
    from sqld import Sqld

    server = Sqld(tmp_path).start()
    clock = Clock()

    def direct(instance: str) -> StoreWriter:
        w = StoreWriter(server.url, flush_interval=0.01, status_interval=0.02, clock=clock, instance=instance,
                        live_spans=Limits(abandon_after=10, max_age=100))
        w.start()
        return w

    try:
        a = direct("kiosk-a")
        put(a, WriteBatch(rows=[], started=rows(span(1, None), span(2, None))))
        assert a.shutdown(10)
        b = direct("kiosk-b")
        try:
            put(b, WriteBatch(rows=[], started=rows(span(7, None))))
            assert b.stats()["live_spans"]["open"] == 1  # kiosk-a's two rows are kiosk-a's to sweep
        finally:
            assert b.shutdown(10)
        server.stop()
        a = direct("kiosk-a")  # the server is down: nothing to reload yet
        try:
            assert a.stats()["live_spans"]["open"] == 0
            server.start()
            assert a.submit(WriteBatch(rows=rows(span(1, T0 + S))), timeout=5) and a.flush(60)
            assert a.stats()["live_spans"]["open"] == 1 and a.stats()["live_spans"]["ended"] == 1
            clock.now = T0 + 11 * S
            wait_for(lambda: a.stats()["live_spans"]["abandoned"] == 1, what="span 2 abandoned")
        finally:
            assert a.shutdown(10)
        conn = libsql_conn.Connection(server.url)
        try:
            states = {s["span_id"]: s["state"] for s in live.spans(conn, now_ns=clock.now)["spans"]}
        finally:
            conn.close()
        assert states == {f"{2:016x}": "abandoned", f"{7:016x}": "running"}
    finally:
        server.stop()
