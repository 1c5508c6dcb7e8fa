"""What the store writer does differently when its store is a libSQL server ("direct to a server").

The writer runs the same transaction on either connection; on a server it is held by
:class:`libsql_batch.BufferedConnection` and sent as one request. Three things differ, here:

- **Inserting rows** reads nothing inside the transaction: the rows go as multi-row inserts,
  each guarded "every row was new", and the rollups are computed from all of them. A batch with
  a row already stored (a redelivery, or a commit whose answer was lost) fails its guard and is
  written again carefully: one more round trip first asks which uids the server already has.
- **Status** goes to ``sync_status`` under the instance name (many devices write one server;
  ``collector_status`` holds one row), as the sync shipper's does.
- **An unreachable server** (or a refused token) is not a failed batch: the writer keeps the
  batch and retries with backoff and jitter, so its queue fills and the receivers push back
  exactly as with a full store. Only at shutdown, past its deadline, are batches dropped and
  counted.

Everything here runs on the writer thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import libsql_http as lh
from .db import ensure_remote_schema
from .libsql_batch import BufferedConnection, NotAllNew
from .schema import COLUMNS

__all__ = ["STATS", "STATUS", "UNAVAILABLE", "Backoff", "NotAllNew", "RemoteStore", "insert", "load_checkpoints"]

log = logging.getLogger("otel_telemetry.store.writer")

# Worth waiting for: the server is down, overloaded, unreachable or refuses our token for now.
UNAVAILABLE: tuple[type[BaseException], ...] = (lh.ServerUnavailable, lh.AuthError)
STATUS = ("INSERT INTO sync_status(instance, updated, body) VALUES (?, ?, ?) ON CONFLICT(instance) "
          "DO UPDATE SET updated = excluded.updated, body = excluded.body")
_UID = COLUMNS.index("uid")
# store_retries: attempts that found the server unreachable (the batch was kept); store_unavailable:
# 1 while it is; dropped_unavailable: rows given up at shutdown because it still was (in dropped_rows).
STATS: dict[str, Any] = {"store_retries": 0, "store_unavailable": 0, "dropped_unavailable": 0,
                         "last_store_error": None}
_IN_CHUNK = 900  # uids per "which of these are stored" query


class Backoff:
    """Exponential backoff with full jitter between ``low`` and ``high`` seconds."""

    def __init__(self, low: float = 0.2, high: float = 10.0) -> None:
        self.low, self.high = low, high
        self._next = low

    def reset(self) -> None:
        self._next = self.low

    def delay(self) -> float:
        d = self._next * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
        self._next = min(self._next * 2, self.high)
        return d


def insert(conn: BufferedConnection, sql: str, rows: Sequence[tuple[Any, ...]], instance: tuple[Any, ...],
           careful: bool) -> list[tuple[Any, ...]]:
    """Hold the insert of ``rows`` (+ ``instance``) in ``conn``'s transaction; the rows that will
    be stored. Not ``careful``: all of them, guarded (:class:`NotAllNew` at COMMIT otherwise).
    ``careful``: first reads (one round trip) which uids the server has, and keeps the others,
    each uid once."""
    if careful:
        uids = [bytes(r[_UID]) for r in rows]
        cursors = [conn.execute(f"SELECT uid FROM records WHERE uid IN ({', '.join('?' * len(c))})", c)
                   for c in (uids[k:k + _IN_CHUNK] for k in range(0, len(uids), _IN_CHUNK))]
        have = {bytes(u) for cur in cursors for (u,) in cur.fetchall()}  # the first read flushes all
        fresh = []
        for r, u in zip(rows, uids, strict=True):
            if u not in have:
                have.add(u)
                fresh.append(r)
        rows = fresh
    if rows:
        conn.insert_new(sql, [r + instance for r in rows])
    return list(rows)


def load_checkpoints(url: str) -> dict[tuple[bytes, str], int]:
    """The server's publisher checkpoints; {} while it is unreachable (a refused token raises)."""
    from .db import open_remote

    try:
        conn = open_remote(url)
    except lh.ServerUnavailable as exc:
        log.warning(
            "store %s unreachable at start-up (%s); sequence checks start afresh", url, exc)
        return {}
    try:
        rows = conn.execute("SELECT publisher, topic, next_seq FROM publishers").fetchall()
    except lh.StatementError:  # no schema there yet
        return {}
    finally:
        conn.close()
    return {(bytes(p), str(t)): int(s) for p, t, s in rows}


class RemoteStore:
    """The part of ``StoreWriter`` that exists for a server URL (writer thread, except where
    said). A mixin: it uses the writer's ``_url``, ``_conn``, ``_cond``, ``_stats``, ``_bump``
    and ``_write``."""

    _url: str | None
    _conn: Any
    _cond: threading.Condition
    _stats: dict[str, Any]

    def _bump(self, **deltas: int) -> None: ...  # noqa: D102 - StoreWriter's
    def _write(self, group: list[Any], careful: bool = False) -> None: ...  # noqa: D102
    def _schema_ready_now(self) -> None: ...  # noqa: D102

    def _init_remote(self) -> None:
        self._schema_ready = self._url is None  # on a server: created once it first answers
        self._unavailable = False  # the server did not answer the last attempt
        self._stop_deadline = float("inf")  # monotonic; past it at shutdown, unwritable batches go
        self._retry_wake = threading.Event()  # ends a retry's backoff early (shutdown)

    def _stop_remote(self, timeout: float) -> None:
        """Shutdown (caller's thread): batches a down server cannot take are given up (counted)
        a little before the caller's timeout, so the writer thread still ends within it."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout) * 0.8
        self._retry_wake.set()

    def _write_remote(self, group: list[Any]) -> None:
        """``_write`` to a server: an unreachable one is retried with backoff and jitter (the
        group is kept; batches queue up behind it) until it answers, or the shutdown deadline."""
        backoff = Backoff()
        careful = False
        while not self._down_and_past_deadline():
            try:
                self._ensure_schema()
                self._write(group, careful)
            except NotAllNew:
                if careful:
                    raise
                careful = True  # a row the server already has: ask it which, and write the rest
                continue
            except UNAVAILABLE as exc:
                self._unreachable(exc)
                delay = backoff.delay()
                if self._retry_wake.is_set():  # stopping: keep trying until the deadline, not faster
                    time.sleep(min(delay, max(0.0, self._stop_deadline - time.monotonic())))
                else:
                    self._retry_wake.wait(delay)
                continue
            self._available()
            return
        n = sum(len(b.rows) for b in group)
        self._bump(dropped_rows=n, dropped_unavailable=n)

    def _ensure_schema(self, at_start: bool = False) -> None:
        """Create or upgrade the server's tables once it answers. At start-up only a refused
        token fails (the collector does not start); an unreachable server is retried later."""
        if self._schema_ready:
            return
        try:
            ensure_remote_schema(self._conn)
        except UNAVAILABLE as exc:
            if not at_start:
                raise
            if not isinstance(exc, lh.ServerUnavailable):
                raise  # a refused token at start-up: the collector does not start
            log.warning("store %s unreachable at start-up; batches wait for it: %s", self._url, exc)
            return
        self._schema_ready = True
        self._schema_ready_now()

    def _unreachable(self, exc: BaseException) -> None:
        line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        with self._cond:
            self._stats["store_retries"] += 1
            self._stats["store_unavailable"] = 1
            self._stats["last_store_error"] = line
        if not self._unavailable:
            log.warning("store %s unreachable, holding batches and retrying: %s", self._url, line)
        self._unavailable = True

    def _available(self) -> None:
        if self._unavailable:
            log.info("store %s reachable again", self._url)
            self._unavailable = False
            with self._cond:
                self._stats["store_unavailable"] = 0

    def _down_and_past_deadline(self) -> bool:
        return self._unavailable and time.monotonic() >= self._stop_deadline
