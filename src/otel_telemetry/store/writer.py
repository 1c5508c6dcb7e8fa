"""The single SQLite writer: coalesced batches, one transaction each, idempotent inserts, checkpoints.

One connection, owned by one thread, does every write and every WAL checkpoint; the query side
uses read-only connections and the CLI a short-lived admin connection with auto-checkpoint off.
That keeps the store out of SQLite's two-writers/checkpointers races (FINDINGS §3) and means
``total_changes()`` deltas on the writer connection count exactly what this thread inserted.

Rows and their publisher checkpoints commit in the same transaction, so after a crash a stored
checkpoint always has all of its rows and no row outlives the checkpoint that covers it. The hourly
and daily rollups (``rollups.py``) and call edges (``edges.py``) are updated in that same transaction
from exactly the rows it stored (not from duplicates), so they always agree with what was committed.

The store may be a libSQL server URL ("direct to a server"): the same transaction then goes as
one request, and an unreachable server holds batches back instead of dropping them (the queue
fills and the receivers push back as with a full store); see ``writer_remote``. A server keeps no
call edges (their upkeep reads, which would cost round trips): its map is read from raw spans.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apsw
import orjson

from . import edges, location, rollups
from . import retention as ret
from . import writer_remote as remote

# Connections are opened by ``db``; re-exported so callers need only the store's name.
from .db import _SYNCHRONOUS, BUSY_TIMEOUT_MS, open_admin, open_reader, open_remote_writer, open_writer
from .schema import STORED_COLUMNS
from .writer_faults import _FATAL_ERRORS, WriterFaults

__all__ = ["BUSY_TIMEOUT_MS", "StoreWriter", "WriteBatch", "open_admin", "open_reader", "open_writer"]

log = logging.getLogger("otel_telemetry.store.writer")

# ON CONFLICT(uid) rather than INSERT OR IGNORE: OR IGNORE would also skip NOT NULL violations
# silently and count them as duplicates; this way only a repeated uid is skipped and a malformed
# row fails its transaction (then its batch alone is dropped and counted).
_INSERT = (
    f"INSERT INTO records({', '.join(STORED_COLUMNS)}) VALUES ({', '.join('?' * len(STORED_COLUMNS))}) "
    "ON CONFLICT(uid) DO NOTHING"
)
# The receiver is the authority on sequence numbers, so the latest checkpoint wins (no max()):
# a publisher that restarted its numbering must not be held to its old, higher sequence.
_UPSERT_CHECKPOINT = (
    "INSERT INTO publishers(publisher, topic, next_seq, last_seen) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(publisher, topic) DO UPDATE SET next_seq = excluded.next_seq, "
    "last_seen = excluded.last_seen"
)
_STATUS = "INSERT OR REPLACE INTO collector_status(id, updated, body) VALUES (1, ?, ?)"


@dataclass
class WriteBatch:
    """Rows (``schema.COLUMNS`` order; the writer adds ``instance``) plus the checkpoints they
    complete, committed atomically."""

    rows: list[tuple[Any, ...]]
    checkpoints: dict[tuple[bytes, str], int] = field(default_factory=dict)
    received: int = 0
    # Called on the writer thread once the batch is committed (OTLP receivers acknowledge then).
    on_commit: Callable[[], None] | None = None


_WAKE = object()  # queue sentinel: stop coalescing and commit now (flush, purge, shutdown)


class StoreWriter(WriterFaults, remote.RemoteStore):
    """Owns the database connection on its own thread; other threads only ``submit``."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        batch_rows: int = 1000,
        flush_interval: float = 0.2,
        queue_batches: int = 64,
        retention: ret.RetentionPolicy | None = None,
        retention_interval: float = 60.0,
        clock: Callable[[], int] = time.time_ns,
        status_source: Callable[[], dict[str, Any]] | None = None,
        status_interval: float = 1.0,
        checkpoint_interval: float = 5.0,
        rollup_days: int = rollups.DEFAULT_ROLLUP_DAYS,
        instance: str | None = None,
    ) -> None:
        if str(synchronous).lower() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        self._path = path
        self._url = location.parse(path).url  # None: a local file
        self._synchronous = synchronous
        self._batch_rows = max(1, batch_rows)
        self._flush_interval = flush_interval
        self._retention = retention
        self._retention_interval = retention_interval
        self._clock = clock
        self._status_source = status_source
        self._status_interval = status_interval
        self._checkpoint_interval = checkpoint_interval
        self._rollup_days = max(1, rollup_days)
        self._instance = (instance,)  # appended to every row: the ``instance`` column
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_batches))
        self._cond = threading.Condition()
        self._accepted = 0  # batches accepted by submit
        self._processed = 0  # batches committed or dropped by the writer
        self._submitting = 0  # submit calls between their stopping check and their put
        self._stopping = False
        self._purge_requested = threading.Event()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self.failure: str | None = None  # why the writer stopped for good (writer_faults)
        self._disk_full = False
        self._thread: threading.Thread | None = None
        self._conn: Any = None  # apsw.Connection, or libsql_batch.BufferedConnection for a URL
        self._init_remote()
        self._stats: dict[str, Any] = dict.fromkeys(
            ("stored", "duplicates", "received", "batches", "commits", "errors", "dropped_rows",
             "rejected", "purged", "vacuumed_pages", "retention_runs", "edge_children_evicted",
             "last_commit_ns"), 0)
        if self._url is not None:
            self._stats.update(remote.STATS)

    # ---- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread and wait for it to open the database (caller's thread).

        Re-raises the error if the database cannot be opened.
        """
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="otel-store-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit(self, batch: WriteBatch, timeout: float) -> bool:
        """Queue a batch (receiver threads). False if full after ``timeout`` or shutting down.

        On False nothing was queued and the caller still owns the batch.
        """
        with self._cond:
            if self._stopping or self.failure is not None:
                self._stats["rejected"] += 1
                return False
            self._submitting += 1
        try:
            self._queue.put(batch, timeout=max(0.0, timeout))
            ok = True
        except queue.Full:
            ok = False
        with self._cond:
            self._submitting -= 1
            if ok:
                self._accepted += 1
            else:
                self._stats["rejected"] += 1
            self._cond.notify_all()
        return ok

    def flush(self, timeout: float) -> bool:
        """Wait until every batch accepted so far is committed (or dropped after an error)."""
        with self._cond:
            target = self._accepted
            if self._processed >= target:
                return True
            alive = self._thread is not None and self._thread.is_alive()
        if not alive:
            return False
        self._wake()
        with self._cond:
            return self._cond.wait_for(lambda: self._processed >= target, timeout)

    def request_purge(self) -> None:
        """Ask the writer to run retention now instead of at the next interval (any thread)."""
        self._purge_requested.set()
        self._wake()

    def stats(self) -> dict[str, Any]:
        """Snapshot of exact counters (any thread)."""
        with self._cond:
            out = dict(self._stats)
        out["queue_depth"] = self._queue.qsize()
        out["disk_full"] = int(self._disk_full)
        return out

    def load_checkpoints(self) -> dict[tuple[bytes, str], int]:
        """Committed (publisher, topic) -> next_seq, via its own read-only connection (any thread)."""
        if self._url is not None:
            return remote.load_checkpoints(self._url)
        if not os.path.exists(self._path):
            return {}
        conn = open_reader(self._path)
        try:
            rows = conn.execute("SELECT publisher, topic, next_seq FROM publishers").fetchall()
        except apsw.SQLError:  # database created but schema not yet written
            return {}
        finally:
            conn.close()
        return {(bytes(p), str(t)): int(s) for p, t, s in rows}

    def shutdown(self, timeout: float) -> bool:
        """Drain, commit, checkpoint(TRUNCATE), close and join (caller's thread). Idempotent.

        Before ``start()`` nothing can be written: returns True only if nothing was queued.
        """
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()  # a writer waiting out a full disk stops waiting
        self._stop_remote(timeout)
        if thread is None:
            with self._cond:
                pending = self._accepted - self._processed
            if pending:
                log.warning("store writer shut down before start with %d batches queued", pending)
            return pending == 0
        self._wake()
        thread.join(timeout)
        return not thread.is_alive()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # a full queue means the writer is not waiting for more anyway

    def _bump(self, **deltas: int) -> None:
        with self._cond:
            for key, n in deltas.items():
                self._stats[key] += n

    # ---- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        """Writer thread main loop."""
        try:
            if self._url is not None:
                self._conn = open_remote_writer(self._url)
                self._ensure_schema(at_start=True)
            else:
                self._conn = open_writer(self._path, self._synchronous)
        except BaseException as exc:  # reported to start() instead of dying silently
            log.exception("cannot open store %s", self._path)
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._reserve()  # writer_faults: space given back when the disk fills
        now = time.monotonic()
        next_status = now
        next_checkpoint = now + self._checkpoint_interval
        next_retention = now if self._retention is not None else float("inf")
        run: ret.RetentionRun | None = None
        held: list[WriteBatch] = []  # batches the full disk holds back, tried again first
        damaged = False
        try:
            while True:
                with self._cond:
                    stopping = self._stopping
                if held or self._disk_full:  # nothing new is taken until the disk has room
                    held = self._retry_held(held, stopping)
                    if held and stopping:  # shutting down with the disk still full: say what is lost
                        self._drop_unstored(held, "shutdown with the disk full")
                        break
                    if self._disk_full and not stopping:
                        continue
                now = time.monotonic()
                if stopping:
                    wait = 0.01  # short, so a submit still in flight is not busy-waited on
                elif run is not None:
                    wait = 0.0
                else:
                    wait = min(next_status, next_checkpoint, next_retention) - now
                    wait = min(max(wait, 0.0), 1.0)
                group = self._collect(wait, hurry=stopping or run is not None)
                if group:
                    held = self._commit(group)
                    with self._cond:
                        self._processed += len(group) - len(held)
                        self._cond.notify_all()
                if stopping and self._drained():
                    break
                now = time.monotonic()
                if run is None and self._retention is not None and (
                        now >= next_retention or self._purge_requested.is_set()):
                    self._purge_requested.clear()
                    next_retention = now + self._retention_interval
                    run = self._begin_retention()
                if run is not None and not stopping:
                    run = self._retention_step(run)
                if now >= next_status:
                    next_status = now + self._status_interval
                    self._write_status()
                if now >= next_checkpoint and not self._disk_full:
                    next_checkpoint = now + self._checkpoint_interval
                    self._checkpoint(apsw.SQLITE_CHECKPOINT_PASSIVE)
        except _FATAL_ERRORS as exc:  # the file is damaged: every later batch would fail the same way
            damaged = True
            self._fail(f"the database is damaged ({exc}); stop the collector and restore or move the file")
        except BaseException as exc:  # a bug; keep the database consistent on the way out
            log.exception("store writer loop failed")
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._write_status()
            if not damaged:  # never copy more pages into a damaged file
                self._checkpoint(apsw.SQLITE_CHECKPOINT_TRUNCATE)
            if self._url is not None and self.stats()["dropped_unavailable"]:
                log.error("store %s unreachable at shutdown: %d rows could not be written (counted "
                          "as dropped_unavailable)", self._url, self.stats()["dropped_unavailable"])
            try:
                self._conn.close()
            except apsw.Error:
                log.exception("closing store")
            self._conn = None
            with self._cond:
                self._cond.notify_all()

    def _drained(self) -> bool:
        with self._cond:
            return self._submitting == 0 and self._queue.empty()

    def _collect(self, wait: float, hurry: bool) -> list[WriteBatch]:
        """Coalesce queued batches up to batch_rows rows or flush_interval (writer thread)."""
        group: list[WriteBatch] = []
        rows = 0
        try:
            item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return group
        deadline = time.monotonic() + self._flush_interval
        while True:
            if item is _WAKE:
                hurry = True
            else:
                group.append(item)
                rows += len(item.rows)
                if rows >= self._batch_rows:
                    return group
                if item.on_commit is not None:
                    # A client waits for this commit (OTLP acknowledges after it): take what is
                    # already queued, but do not sit out the flush interval.
                    hurry = True
            remaining = 0.0 if hurry else deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return group

    def _commit(self, group: list[WriteBatch]) -> list[WriteBatch]:
        """Commit a group; if it fails, retry batch by batch so one bad batch loses only itself.

        Returns the batches a full disk holds back (to be tried again; never dropped). Damaged-file
        errors propagate: they end the writer. On a server: while it is unreachable, keep the group
        and retry with backoff (the queue fills meanwhile: push-back); a row already stored there
        means a careful second attempt."""
        try:
            if self._url is None:
                self._write(group)
            else:
                self._write_remote(group)
        except apsw.FullError as exc:
            self._disk_full_now(exc)
            return group
        except _FATAL_ERRORS:
            raise
        except Exception:
            self._bump(errors=1)
            if len(group) > 1:
                log.warning("store transaction of %d batches failed; retrying one by one", len(group),
                            exc_info=True)
                for i, batch in enumerate(group):
                    if self._commit([batch]):
                        return group[i:]
            else:
                log.exception("store transaction failed; dropping %d rows", len(group[0].rows))
                self._bump(dropped_rows=len(group[0].rows))
            return []
        self._disk_ok_now()
        return []

    def _write(self, group: list[WriteBatch], careful: bool = False) -> None:
        conn = self._conn
        assert conn is not None
        n_rows = sum(len(b.rows) for b in group)
        checkpoints: dict[tuple[bytes, str], int] = {}
        for b in group:
            checkpoints.update(b.checkpoints)  # later batches carry later sequence numbers
        now_ns = self._clock()
        with ret.transaction(conn):
            rows = [r for b in group for r in b.rows]
            if self._url is not None:  # reads nothing unless careful: the whole of it is one request
                new = remote.insert(conn, _INSERT, rows, self._instance, careful) if n_rows else []
            else:
                new = self._insert_local(conn, rows)
            stored = len(new)
            evicted = 0
            if stored:
                rollups.update(conn, new, self._instance)
                if self._url is None:  # a server keeps no edges (see the module docstring)
                    evicted = edges.update(conn, new)
            if checkpoints:
                conn.executemany(_UPSERT_CHECKPOINT,
                                 [(p, t, s, now_ns) for (p, t), s in checkpoints.items()])
        with self._cond:
            s = self._stats
            s["stored"] += stored
            s["duplicates"] += n_rows - stored
            s["received"] += sum(b.received for b in group)
            s["batches"] += len(group)
            s["commits"] += 1
            s["edge_children_evicted"] += evicted
            s["last_commit_ns"] = now_ns
        for b in group:
            if b.on_commit is not None:
                try:
                    b.on_commit()
                except Exception:
                    log.exception("on_commit callback failed")

    def _insert_local(self, conn: apsw.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (ON CONFLICT(uid) DO NOTHING); the ones actually stored."""
        if not rows:
            return []
        before = conn.total_changes()
        max_id = conn.execute("SELECT max(id) FROM records").fetchone()[0] or 0
        inst = self._instance
        conn.executemany(_INSERT, (r + inst for r in rows))
        stored = conn.total_changes() - before
        return rows if stored == len(rows) else rollups.inserted(conn, rows, max_id)

    def _begin_retention(self) -> ret.RetentionRun | None:
        assert self._conn is not None and self._retention is not None
        if self._unavailable or not self._schema_ready:
            return None
        try:
            now = self._clock()
            rollups.purge(self._conn, now, self._rollup_days)  # small: one row per key and bucket
            if self._url is None:  # a server keeps no edges
                edges.purge(self._conn, now - self._rollup_days * rollups.DAY_NS)  # edges live as long
            return ret.RetentionRun.begin(self._conn, self._retention, now)
        except remote.UNAVAILABLE as exc:
            self._unreachable(exc)
            return None
        except apsw.Error:
            log.exception("reading retention settings failed")
            self._bump(errors=1)
            return None

    def _retention_step(self, run: ret.RetentionRun) -> ret.RetentionRun | None:
        """One small retention step between ingest transactions; None when the run is over."""
        assert self._conn is not None
        if self._unavailable:
            return None
        try:
            rows, pages = run.step(self._conn)
        except remote.UNAVAILABLE as exc:
            self._unreachable(exc)
            return None
        except apsw.FullError as exc:
            self._disk_full_now(exc)
            return None
        except _FATAL_ERRORS:
            raise
        except apsw.Error:
            log.exception("retention step (%s) failed", run.phase)
            self._bump(errors=1)
            return None
        self._bump(purged=rows, vacuumed_pages=pages, retention_runs=int(run.done))
        return None if run.done else run

    def _write_status(self) -> None:
        conn = self._conn
        if conn is None or self._unavailable or not self._schema_ready:
            return
        body: dict[str, Any] = {}
        if self._status_source is not None:
            try:
                body.update(self._status_source())
            except Exception:
                log.exception("status source failed")
        body.update(self.stats())
        if self._instance[0] is not None:
            body.setdefault("instance", self._instance[0])  # ``status --instance`` finds it by this
        body["store_state"] = self.state
        if self.failure is not None:
            body["store_failure"] = self.failure
        try:
            with ret.transaction(conn):
                text = orjson.dumps(body, default=str).decode()
                if self._url is not None:  # many collectors may write one server: a row each
                    conn.execute(remote.STATUS, (self._instance[0] or "", self._clock(), text))
                else:
                    conn.execute(_STATUS, (self._clock(), text))
        except remote.UNAVAILABLE as exc:
            self._unreachable(exc)
        except apsw.Error:
            if self._disk_full or self.failure is not None:
                return  # already said once; the status row catches up when it can be written
            log.exception("writing collector status failed")
            self._bump(errors=1)

    def _checkpoint(self, mode: int) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.wal_checkpoint(mode=mode)
        except apsw.BusyError:
            pass  # readers are in the way; the next periodic checkpoint catches up
        except apsw.FullError as exc:
            self._disk_full_now(exc)
        except apsw.Error:
            if self.failure is not None:
                return  # already reported: the writer is stopping on a damaged file
            log.exception("WAL checkpoint failed")
            self._bump(errors=1)
