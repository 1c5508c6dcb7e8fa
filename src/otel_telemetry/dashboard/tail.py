"""Live tail source for the dashboard's Server-Sent Events: new rows fanned out to subscribers.

:class:`DbTail` polls the database read-only for rows with an id above the last one seen, using the
same keyset reads as ``otel-telemetry watch`` (``records_export.max_id`` / ``fetch``), on one poller
thread, and offers each new record to every :class:`Subscription`. A subscription keeps at most
``buffer`` records; when its client is slower than ingest, newer records are dropped and counted
(the client is told how many), so one slow browser never holds memory or slows the poller.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Any

import apsw

from ..query import export as rx
from ..query.filters import RECORD_COLUMNS, iso_ns
from ..store import db as store_db

log = logging.getLogger("otel_telemetry.dashboard")

TAIL_FIELDS = ("id", "timestamp", "type", "category", "component", "event", "level", "name", "service",
               "duration_ms", "status", "trace_id", "session_id")
_IDX = {c: RECORD_COLUMNS.index(c) for c in TAIL_FIELDS}
_CAT, _LVL = _IDX["category"], _IDX["level"]
_INST = RECORD_COLUMNS.index("instance")


def tail_record(row: Sequence[Any]) -> dict[str, Any]:
    """The fields a live-tail line shows (no data/metadata), from a ``records_export`` row."""
    out = {c: row[i] for c, i in _IDX.items()}
    out["time"] = iso_ns(out["timestamp"])
    return out


class Subscription:
    """One SSE client's bounded buffer. ``offer`` runs on the poller thread, ``get`` on the client's
    handler thread; both under one condition variable."""

    def __init__(self, categories: Sequence[str], levels: Sequence[str], buffer: int,
                 instance: str | None = None) -> None:
        self.categories = frozenset(categories)
        self.levels = frozenset(levels)
        self.instance = instance  # one collector's rows (a central server), None: all
        self._buf: collections.deque[dict[str, Any]] = collections.deque()
        self._max = max(1, buffer)
        self._cond = threading.Condition()
        self.dropped = 0
        self._dropped_told = 0
        self.closed = False

    def matches(self, row: Sequence[Any]) -> bool:
        return ((not self.categories or row[_CAT] in self.categories)
                and (not self.levels or row[_LVL] in self.levels)
                and (self.instance is None or row[_INST] == self.instance))

    def offer(self, rec: dict[str, Any]) -> None:
        """Poller thread: queue ``rec``, or count it dropped when the buffer is full."""
        with self._cond:
            if len(self._buf) >= self._max:
                self.dropped += 1
            else:
                self._buf.append(rec)
            self._cond.notify()

    def get(self, timeout: float) -> tuple[list[dict[str, Any]], int]:
        """Handler thread: wait up to ``timeout`` s; returns (records, drops not yet reported)."""
        with self._cond:
            if not self._buf and not self.closed and self.dropped == self._dropped_told:
                self._cond.wait(timeout)
            out = list(self._buf)
            self._buf.clear()
            new_drops = self.dropped - self._dropped_told
            self._dropped_told = self.dropped
            return out, new_drops

    def close(self) -> None:
        """Any thread: wake the handler so it ends the stream."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class TooManyClients(RuntimeError):
    """More live-tail clients than ``max_clients``."""


class DbTail:
    """Polls the database for new rows every ``interval`` s on its own thread (start/shutdown from
    any thread). Subscribers get every row stored after they subscribed that passes their filters."""

    def __init__(self, db_path: str, interval: float = 0.5, buffer: int = 1000, max_clients: int = 16) -> None:
        self._path = db_path
        self._interval = interval
        self._buffer = buffer
        self._max_clients = max_clients
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: int | None = None
        self._ready = threading.Event()
        self.delivered = 0

    def start(self) -> None:
        """Caller's thread: start the poller and wait (briefly) until it knows the newest row id."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-tail", daemon=True)
            self._thread.start()
            self._ready.wait(5)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Any thread, idempotent: stop polling and end every subscriber's stream."""
        self._stop.set()
        with self._lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def subscribe(self, categories: Sequence[str], levels: Sequence[str],
                  instance: str | None = None) -> tuple[Subscription, int]:
        """Handler thread: a new subscription and the last row id already seen (records above it will
        arrive through the subscription; a backlog may be read up to it)."""
        with self._lock:
            if len(self._subs) >= self._max_clients:
                raise TooManyClients(f"at most {self._max_clients} live-tail clients")
            sub = Subscription(categories, levels, self._buffer, instance)
            self._subs.append(sub)
            return sub, self._seen or 0

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
        sub.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"clients": len(self._subs), "dropped": sum(s.dropped for s in self._subs),
                    "delivered": self.delivered}

    # ---- poller thread -------------------------------------------------------------------------

    def _run(self) -> None:
        conn: apsw.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = store_db.open_reader(self._path)
                    more = self._poll(conn)
                except apsw.Error as exc:
                    log.warning("live tail: reading the database failed (%s); retrying", type(exc).__name__)
                    if conn is not None:
                        conn.close()
                        conn = None
                    more = False
                self._ready.set()
                if not more:
                    self._stop.wait(self._interval)
        finally:
            self._ready.set()
            if conn is not None:
                conn.close()

    def _poll(self, conn: apsw.Connection) -> bool:
        """One read of new rows; True when a full chunk came back (more may be waiting)."""
        top = rx.max_id(conn)
        with self._lock:
            if self._seen is None or not self._subs or top < self._seen:
                # Without subscribers only the position moves: a new client starts at "now".
                self._seen = top
                return False
            seen, subs = self._seen, list(self._subs)
        if top == seen:
            return False
        rows = rx.fetch(conn, rx.Selection(), seen, top, rx.CHUNK_ROWS)
        for row in rows:
            rec: dict[str, Any] | None = None
            for sub in subs:
                if sub.matches(row):
                    rec = rec or tail_record(row)
                    sub.offer(rec)
                    self.delivered += 1
        with self._lock:
            self._seen = rows[-1][0] if len(rows) == rx.CHUNK_ROWS else top
        return len(rows) == rx.CHUNK_ROWS
