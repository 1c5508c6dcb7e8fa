"""The store writer's upkeep between ingest transactions: retention in small steps, the status row,
the sweep of spans in progress and WAL checkpoints.

A mixin of ``StoreWriter`` (writer.py); these methods run on the writer thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import apsw
import orjson

from . import edges, in_progress, rollups
from . import retention as ret
from . import writer_remote as remote
from .writer_faults import _FATAL_ERRORS

log = logging.getLogger("otel_telemetry.store.writer")

_STATUS = "INSERT OR REPLACE INTO collector_status(id, updated, body) VALUES (1, ?, ?)"


class WriterUpkeep:
    """Retention, status and checkpoints; ``StoreWriter`` provides the attributes below."""

    failure: str | None
    _conn: Any
    _url: str | None
    _instance: tuple[str | None]
    _clock: Callable[[], int]
    _retention: ret.RetentionPolicy | None
    _rollup_days: int
    _status_source: Callable[[], dict[str, Any]] | None
    _disk_full: bool
    _unavailable: bool
    _schema_ready: bool
    _bump: Callable[..., None]
    _unreachable: Callable[[BaseException], None]
    _disk_full_now: Callable[[BaseException], None]
    _in_progress: in_progress.InProgress
    stats: Callable[[], dict[str, Any]]

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

    def _sweep_in_progress(self) -> None:
        """Spans in progress: mark the abandoned, drop the expired (writer thread, own transaction)."""
        if self._conn is None or self._unavailable or not self._schema_ready or self._disk_full:
            return
        try:
            self._in_progress.sweep(self._conn, self._clock())
        except remote.UNAVAILABLE as exc:
            self._unreachable(exc)
        except apsw.Error:
            log.exception("sweeping spans in progress failed")
            self._bump(errors=1)

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
