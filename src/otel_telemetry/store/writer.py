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

This module is the thread, its queue and the public methods; what one transaction writes is
``writer_txn``, the upkeep between transactions (retention, status row, WAL checkpoints)
``writer_upkeep``, and full disks and damaged files ``writer_faults``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import apsw

from . import in_progress, location, rollups
from . import retention as ret
from . import writer_remote as remote

# Connections are opened by ``db``; re-exported so callers need only the store's name.
from .db import _SYNCHRONOUS, BUSY_TIMEOUT_MS, open_admin, open_reader, open_remote_writer, open_writer
from .writer_faults import _FATAL_ERRORS, WriterFaults
from .writer_txn import _INSERT, WriteBatch, WriterTransactions
from .writer_upkeep import WriterUpkeep

# ``_INSERT`` too, for the benches that time the writer's statement.
__all__ = ["BUSY_TIMEOUT_MS", "StoreWriter", "WriteBatch", "_INSERT", "open_admin", "open_reader", "open_writer"]

log = logging.getLogger("otel_telemetry.store.writer")

_WAKE = object()  # queue sentinel: stop coalescing and commit now (flush, purge, shutdown)


class StoreWriter(WriterTransactions, WriterUpkeep, WriterFaults, remote.RemoteStore):
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
        live_spans: in_progress.Limits | None = None,
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
        self._in_progress = in_progress.InProgress(live_spans)  # spans in progress (live spans)
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
        out["live_spans"] = self._in_progress.stats()
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

    def _schema_ready_now(self) -> None:
        """A server's schema is in place (at start, or once a server down at start answers): the
        spans in progress this instance left there are ours to sweep again."""
        with contextlib.suppress(Exception):  # an old server's table: sweeps miss it
            self._in_progress.load(self._conn, self._instance[0])

    def _run(self) -> None:
        """Writer thread main loop."""
        try:
            if self._url is not None:
                self._conn = open_remote_writer(self._url)
                self._ensure_schema(at_start=True)  # unreachable: _schema_ready() loads them later
            else:
                self._conn = open_writer(self._path, self._synchronous)
                self._in_progress.load(self._conn)
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
                    self._sweep_in_progress()
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
