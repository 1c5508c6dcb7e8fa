"""The shipping consumer: committed local rows → a central libSQL server, from a durable cursor.

The local file stays the primary store. This thread reads rows the writer has committed (its own
read-only connection, so ingest never waits for it) in id order and sends each chunk as ONE request
holding one transaction: a guard that the server's cursor is where we think it is, the rows, their
rollups, and the new cursor. The cursor lives on the server, in ``sync_cursors``, committed with the
rows it covers, so:

- a restart, or any time offline, resumes exactly after the last committed chunk;
- a chunk whose answer was lost (server committed, connection died) is not sent twice: the guard
  fails, we read the cursor again and carry on from there (the uid stays unique anyway);
- a refused token or a down server moves nothing: the rows stay local, the cursor stays put.

Rollups on the server are upserted by the same SQL as locally, except that histograms are merged
by SQL (``rollups.REMOTE_UPSERT``): a server cannot call our Python merge function.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from ...store import db as dbmod
from ...store import libsql_conn as lc
from ...store import libsql_http as lh
from ...store import location, rollups
from ...store import retention as ret
from ...store.schema import STORED_COLUMNS
from .config import SyncConfig
from .live import LiveMirror

log = logging.getLogger("otel_telemetry.collector.sync")

_SELECT = f"SELECT id, {', '.join(STORED_COLUMNS)} FROM records WHERE id > ? ORDER BY id LIMIT ?"
_INSERT = (f"INSERT INTO records({', '.join(STORED_COLUMNS)}) VALUES ({', '.join('?' * len(STORED_COLUMNS))}) "
           "ON CONFLICT(uid) DO NOTHING")
# sqld spends ~0.1 ms per statement of a batch whatever it does: rows go 100 to a statement
# (2 000 rows: 165 ms one per statement, 90 ms this way; docs/benchmarks.md).
ROWS_PER_STATEMENT = 100
# Fails the transaction (json() of a non-JSON text raises) unless the server's cursor is ours.
_GUARD = ("SELECT CASE WHEN coalesce((SELECT last_id FROM sync_cursors WHERE instance = ?), 0) = ? "
          "THEN 1 ELSE json('sync cursor moved') END")
_STATUS = ("INSERT INTO sync_status(instance, updated, body) VALUES (?, ?, ?) ON CONFLICT(instance) "
           "DO UPDATE SET updated = excluded.updated, body = excluded.body")
_CURSOR = ("INSERT INTO sync_cursors(instance, last_id, updated) VALUES (?, ?, ?) ON CONFLICT(instance) "
           "DO UPDATE SET last_id = excluded.last_id, updated = excluded.updated")


BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 10.0


def ship_statements(rows: Sequence[Sequence[Any]], instance: str, expected_cursor: int,
                    now_ns: int, status: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The one transaction for ``rows`` (local ``_SELECT`` rows: id first, then STORED_COLUMNS),
    with the local collector's last ``(updated, body)`` status row when there is one."""
    out = [lh.stmt(_GUARD, (instance, expected_cursor), want_rows=False)]
    stored = [(*r[1:-1], r[-1] or instance) for r in rows]  # rows from before ``instance`` get ours
    out += multi_row(_INSERT, stored)
    hourly = rollups.aggregate_rows(stored, rollups.HOUR_NS)
    for table, aggs in (("rollup_hourly", hourly), ("rollup_daily", rollups.roll_up(hourly, rollups.DAY_NS))):
        out += multi_row(rollups.REMOTE_UPSERT[table], rollups.upsert_args(aggs))  # keys unique per table
    if status is not None:
        out.append(lh.stmt(_STATUS, (instance, *status), want_rows=False))
    out.append(lh.stmt(_CURSOR, (instance, rows[-1][0], now_ns), want_rows=False))
    return out


def multi_row(sql: str, rows: Sequence[Sequence[Any]], per: int = ROWS_PER_STATEMENT) -> list[dict[str, Any]]:
    return lh.multi_row(sql, rows, per)


@dataclass
class _Chunk:
    """One shipping transaction, encoded."""

    rows: int
    last_id: int  # the local id the server's cursor moves to
    pending_after: int  # committed local rows after this chunk
    now: int
    stmts: list[dict[str, Any]]


class SyncShipper:
    """One shipping thread. ``start``/``shutdown`` on the collector's thread, ``consume`` on
    receiver threads (a nudge, never blocks), ``stats`` on any thread."""

    def __init__(self, db_path: str, cfg: SyncConfig, instance: str, *,
                 retention: ret.RetentionPolicy | None = None, retention_interval: float = 60.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._path = db_path
        self.cfg = cfg
        self.instance = instance
        self._token = location.read_token(cfg.auth_token_file, "sync.auth_token_file")
        self._retention = retention if cfg.retention else None
        self._retention_interval = retention_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._client: lh.Client | None = None
        self._reader: apsw.Connection | None = None
        self._cursor: int | None = None  # the server's, once read
        self._acked: int | None = None  # the last cursor the server confirmed to us
        self._inflight: _Chunk | None = None  # sent, answer not read yet
        self._live = LiveMirror(instance)  # spans in progress, mirrored once caught up
        self._stats: dict[str, Any] = {
            "url": cfg.url, "instance": instance, "shipped": 0, "pending": None, "cursor": None,
            "batches": 0, "errors": 0, "retries": 0, "cursor_rereads": 0, "confirmed_late": 0, "last_success_ns": None,
            "last_error": None, "retention_purged": 0, "live_spans_mirrored": 0,
        }

    # ---- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="otel-sync", daemon=True)
        self._thread.start()

    def consume(self, kind: str, resource: dict[str, Any], records: list[Any]) -> None:
        self._wake.set()  # new rows are on their way into the store: look soon

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._stats)

    def shutdown(self, timeout: float) -> bool:
        """Ship what is committed (within ``timeout``), then stop. Idempotent; rows not shipped
        stay in the local file and go at the next start."""
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout) + 1.0)
            return not thread.is_alive()
        return True

    def _set(self, **values: Any) -> None:
        with self._lock:
            self._stats.update(values)

    # ---- shipping thread ----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        next_retention = time.monotonic() if self._retention is not None else float("inf")
        try:
            while True:
                try:
                    more = self._step()
                    if not more:
                        self._mirror_live()
                    backoff = BACKOFF_MIN_S
                    if time.monotonic() >= next_retention and not self._stop.is_set():
                        next_retention = time.monotonic() + self._retention_interval
                        self._central_retention()
                except (lh.LibsqlError, apsw.Error) as exc:
                    self._failed(exc)
                    if self._stop.is_set():
                        return  # the rows stay local; the next start ships them
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                if self._stop.is_set() and (not more or time.monotonic() >= self._deadline):
                    return
                if not more:
                    self._wake.wait(self.cfg.interval)
                    self._wake.clear()
        finally:
            for closer in (self._client, self._reader):
                if closer is not None:
                    closer.close()

    def _failed(self, exc: BaseException) -> None:
        line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        self._inflight = None
        self._live.forget()
        if self._client is not None:
            self._client.close()  # a request may still be on the socket: start afresh
        if isinstance(exc, lh.StatementError) and exc.step == 0:
            self._cursor = None  # the server's cursor moved (a lost answer): read it again
            with self._lock:
                self._stats["cursor_rereads"] += 1
            return
        if isinstance(exc, lh.ServerUnavailable | lh.AuthError):
            self._cursor = None  # a new server, or a restored one, may hold another cursor
        pending = self._pending_since_ack()
        with self._lock:
            self._stats["errors"] += 1
            self._stats["retries"] += 1
            self._stats["last_error"] = line
            if pending is not None:
                self._stats["pending"] = pending
        log.warning("sync to %s failed, will retry: %s", self.cfg.url, line)

    def _pending_since_ack(self) -> int | None:
        """Committed local rows the server has not confirmed (all of them before a first answer)."""
        try:
            reader = self._local()
            if reader is None:
                return None
            return int(reader.execute("SELECT count(*) FROM records WHERE id > ?",
                                      (self._acked or 0,)).fetchone()[0])
        except apsw.Error:
            return None  # the status shows the last known figure

    def _connect(self) -> int:
        """Create/upgrade the server's schema and read our cursor there (a few round trips)."""
        conn = lc.Connection(self.cfg.url, self._token, self.cfg.timeout)
        try:
            dbmod.ensure_remote_schema(conn)
            row = conn.execute("SELECT last_id FROM sync_cursors WHERE instance = ?", (self.instance,)).fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    def _local(self) -> apsw.Connection | None:
        if self._reader is None:
            try:
                self._reader = dbmod.open_reader(self._path)
            except apsw.CantOpenError:
                return None  # the writer has not created the file yet
        return self._reader

    def _step(self) -> bool:
        """Finish the chunk in flight (sending one first if none is) and send the next; True if
        there may be more right away. Reading and encoding chunk N+1 happens while the server
        works on chunk N: one request in flight, never more."""
        reader = self._local()
        if self._cursor is None:
            server = self._connect()
            if self._acked is not None and server > self._acked and reader is not None:
                # Chunks whose answer was lost (connection closed after the server committed):
                # the server's cursor confirms them, so they count as shipped now.
                late = reader.execute("SELECT count(*) FROM records WHERE id > ? AND id <= ?",
                                      (self._acked, server)).fetchone()[0]
                with self._lock:
                    self._stats["shipped"] += late
                    self._stats["confirmed_late"] += late
            self._cursor = self._acked = server
            self._set(cursor=self._cursor)
        if reader is None:
            return False
        if self._inflight is None:
            first = self._prepare(reader, self._cursor)
            if first is None:
                self._set(pending=0)
                return False
            self._send(first)
        sent = self._inflight
        assert sent is not None and self._client is not None
        after = self._prepare(reader, sent.last_id)
        self._inflight = None  # answered or failed: either way no longer in flight
        self._client.finish_transaction()
        self._cursor = self._acked = sent.last_id
        with self._lock:
            s = self._stats
            s["shipped"] += sent.rows
            s["batches"] += 1
            s["cursor"] = self._cursor
            s["pending"] = sent.pending_after
            s["last_success_ns"] = sent.now
            s["last_error"] = None
        if after is None:
            return False
        self._send(after)
        return True

    def _prepare(self, reader: apsw.Connection, after: int) -> _Chunk | None:
        """The committed rows after local id ``after``, encoded as one transaction that expects
        the server's cursor at ``after``; None when there are none."""
        start = after
        max_id = reader.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0]
        if max_id < start:
            # The local file was purged or replaced and ids start again: ship it from its start
            # (uids already on the server are skipped there).
            log.warning("local store ids restart below the sync cursor (%d < %d); shipping from 0",
                        max_id, start)
            start = 0
        rows = reader.execute(_SELECT, (start, self.cfg.batch_rows)).fetchall()
        if not rows:
            return None
        pending = reader.execute("SELECT count(*) FROM records WHERE id > ?", (rows[-1][0],)).fetchone()[0]
        try:
            status = reader.execute("SELECT updated, body FROM collector_status WHERE id = 1").fetchone()
        except apsw.SQLError:
            status = None  # a file from before the status row
        now = self._clock()
        return _Chunk(rows=len(rows), last_id=rows[-1][0], pending_after=pending, now=now,
                      stmts=ship_statements(rows, self.instance, after, now, status))

    def _server(self) -> lh.Client:
        """The client to the server, created on first use."""
        if self._client is None:
            self._client = lh.Client(self.cfg.url, self._token, self.cfg.timeout)
        return self._client

    def _send(self, chunk: _Chunk) -> None:
        self._set(pending=chunk.pending_after + chunk.rows)
        self._server().send_transaction(chunk.stmts)
        self._inflight = chunk

    def _mirror_live(self) -> None:
        """Caught up (nothing in flight): bring the server's spans in progress of this instance
        up to date, in one transaction of its own (``sync/live.py``)."""
        reader = self._local()
        if reader is None or self._cursor is None:
            return
        got = self._live.statements(reader)
        if got is None:
            return
        stmts, signature = got
        self._server().transaction(stmts)
        self._live.done(signature)
        self._set(live_spans_mirrored=self._live.mirrored)

    def _central_retention(self) -> None:
        """``sync.retention``: this collector's retention days applied on the server too."""
        assert self._retention is not None
        conn = lc.Connection(self.cfg.url, self._token, self.cfg.timeout)
        try:
            purged = ret.purge_all(conn, self._retention, self._clock())  # type: ignore[arg-type]
        finally:
            conn.close()
        with self._lock:
            self._stats["retention_purged"] += sum(purged["deleted"].values())
