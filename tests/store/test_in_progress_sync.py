"""Spans in progress reach the central server (``sync:``): the shipping thread mirrors a
collector's started rows to a real sqld, so the central ``watch --in-progress`` shows them; the
span replaces its started row there too; two instances' rows stay apart; started rows are never
counted as shipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import wait_for
from sqld import Sqld
from test_in_progress import T0, Clock, S, put, rows, span, writer

from otel_telemetry.collector.sync.config import SyncConfig
from otel_telemetry.collector.sync.shipper import SyncShipper
from otel_telemetry.query import in_progress as live
from otel_telemetry.store import libsql_conn
from otel_telemetry.store.writer import WriteBatch


def _server_spans(url: str, **kw: Any) -> list[tuple[str, str | None]]:
    conn = libsql_conn.Connection(url)
    try:
        return [(s["span_id"], s["instance"]) for s in live.spans(conn, now_ns=T0, **kw)["spans"]]
    finally:
        conn.close()


def test_spans_in_progress_are_mirrored_to_the_server_and_replaced_by_their_span(tmp_path: Path) -> None:
    server = Sqld(tmp_path).start()
    shippers: list[SyncShipper] = []
    clock = Clock()
    paths = {inst: str(tmp_path / f"{inst}.db") for inst in ("kiosk-a", "kiosk-b")}
    writers = {inst: writer(p, clock) for inst, p in paths.items()}
    try:
        put(writers["kiosk-a"], WriteBatch(rows=[], started=rows(span(1, None), span(2, None))))
        put(writers["kiosk-b"], WriteBatch(rows=[], started=rows(span(7, None))))
        for inst, p in paths.items():
            s = SyncShipper(p, SyncConfig(url=server.url, interval=0.02), inst)
            s.start()
            shippers.append(s)
        want = [(f"{1:016x}", "kiosk-a"), (f"{2:016x}", "kiosk-a"), (f"{7:016x}", "kiosk-b")]
        wait_for(lambda: sorted(_server_spans(server.url)) == want, 60, "both devices' spans in progress")
        assert _server_spans(server.url, instance="kiosk-b") == [(f"{7:016x}", "kiosk-b")]

        put(writers["kiosk-a"], WriteBatch(rows=rows(span(2, T0 + S))))  # span 2 ends and is stored
        wait_for(lambda: sorted(_server_spans(server.url)) == [want[0], want[2]], 60, "span 2's row replaced")

        def on_server(sql: str) -> int:
            conn = libsql_conn.Connection(server.url)
            try:
                return int(conn.execute(sql).fetchone()[0])
            finally:
                conn.close()

        # The read side hides span 2's started row as soon as its span is shipped; the next
        # mirror removes the row itself.
        wait_for(lambda: on_server("SELECT count(*) FROM spans_in_progress") == 2, 60, "span 2's row removed")
        assert on_server("SELECT count(*) FROM records") == 1
        wait_for(lambda: shippers[0].stats()["live_spans_mirrored"] == 1, 60, "kiosk-a's mirror counted")
        assert shippers[0].stats()["shipped"] == 1  # previews are not shipped records
    finally:
        for s in shippers:
            s.shutdown(10)
        for w in writers.values():
            w.shutdown(10)
        server.stop()
