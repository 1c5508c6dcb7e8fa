"""Spans in progress: started records (``wire.KIND_SPAN_STARTED``) kept until their span is stored.

The table ``spans_in_progress`` has the records' columns (so the read side decodes its rows like
records) plus ``received`` (the collector's clock when the start arrived) and ``abandoned`` (when
the collector gave up on it). It is bounded:

- in number (``max_spans``): past it the oldest start is evicted, counted ``evicted``;
- in time: a span not ended ``abandon_after`` seconds after its start arrived is marked abandoned
  (counted; an app killed mid-span never ends it), and dropped ``max_age`` seconds after arrival
  (counted ``expired``).

When a span is stored, its started row goes in the same transaction (``ended``); a start that
arrives after its span was stored is not kept. Started rows are not records: never counted as
stored, never in rollups, edges, exports or retention.

Everything here runs on the store writer's thread, inside its transactions (``writer.py``); the
state in memory mirrors the table so that the usual batch with no started span costs one check.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from .retention import transaction
from .schema import STORED_COLUMNS

TABLE = "spans_in_progress"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY,
    {", ".join(STORED_COLUMNS)},
    received INTEGER NOT NULL,           -- unix ns, the collector's clock
    abandoned INTEGER                    -- unix ns when given up on, NULL while running
);
CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_uid ON {TABLE}(uid);
CREATE INDEX IF NOT EXISTS {TABLE}_trace ON {TABLE}(trace_id);
"""
_N = len(STORED_COLUMNS)
_UID = STORED_COLUMNS.index("uid")
_TRACE = STORED_COLUMNS.index("trace_id")
_TYPE = STORED_COLUMNS.index("type")
# A start whose span is already stored (it went out first: another thread of the app sent its
# batch before the sender announced the start) is not kept.
_INSERT = (f"INSERT INTO {TABLE}({', '.join(STORED_COLUMNS)}, received) "
           f"SELECT {', '.join(f'?{i + 1}' for i in range(_N + 1))} "
           f"WHERE NOT EXISTS (SELECT 1 FROM records WHERE uid = ?{_UID + 1}) ON CONFLICT(uid) DO NOTHING")
_DELETE = f"DELETE FROM {TABLE} WHERE uid = ?"
_ABANDON = f"UPDATE {TABLE} SET abandoned = ? WHERE uid = ?"


@dataclass(frozen=True)
class Limits:
    """``collector.yaml``'s ``live_spans:`` section (seconds)."""

    max_spans: int = 10_000
    abandon_after: float = 900.0
    max_age: float = 86_400.0


class InProgress:
    """The writer thread's view of the table: uid -> [received ns, abandoned]."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._open: OrderedDict[bytes, list[Any]] = OrderedDict()  # in arrival order
        self.counts = dict.fromkeys(("started", "ended", "evicted", "abandoned", "expired"), 0)

    def load(self, conn: Any, instance: str | None = None) -> None:
        """What a previous run left (writer thread, at open). ``instance``: only that collector
        instance's rows (a server that several collectors write to: each sweeps its own)."""
        self._open.clear()
        where, params = ("", ()) if instance is None else (" WHERE instance = ?", (instance,))
        for uid, received, abandoned in conn.execute(
                f"SELECT uid, received, abandoned FROM {TABLE}{where} ORDER BY received, id", params):
            self._open[bytes(uid)] = [received, abandoned is not None]

    def size(self) -> int:
        return len(self._open)

    def add(self, conn: Any, rows: Sequence[tuple[Any, ...]], instance: tuple[Any, ...], now_ns: int) -> None:
        """Started rows (``schema.COLUMNS`` order) arrived: keep them (inside the writer's transaction)."""
        fresh = [r for r in rows if r[_UID] not in self._open]
        if not fresh:
            return
        if isinstance(conn, apsw.Connection):  # a file: keep only what was inserted (few rows)
            kept = []
            for r in fresh:
                conn.execute(_INSERT, (*r, *instance, now_ns))
                if conn.changes():
                    kept.append(r)
        else:
            # A server: part of the batch's one request, no reads. A start whose span was stored
            # first is remembered here though not kept there, until it expires: harmless.
            conn.executemany(_INSERT, [(*r, *instance, now_ns) for r in fresh])
            kept = fresh
        for r in kept:
            self._open[r[_UID]] = [now_ns, False]
        self.counts["started"] += len(kept)
        over = len(self._open) - max(1, self.limits.max_spans)
        if over > 0:
            gone = [self._open.popitem(last=False)[0] for _ in range(over)]
            conn.executemany(_DELETE, [(u,) for u in gone])
            self.counts["evicted"] += over

    def ended(self, conn: Any, stored: Sequence[tuple[Any, ...]]) -> None:
        """Rows just stored: the spans among them are no longer in progress (same transaction)."""
        open_ = self._open
        if not open_:
            return
        gone = [r[_UID] for r in stored if r[_UID] in open_ and r[_TYPE] == "span"]
        if gone:
            conn.executemany(_DELETE, [(u,) for u in gone])
            for u in gone:
                del open_[u]
            self.counts["ended"] += len(gone)

    def sweep(self, conn: Any, now_ns: int) -> None:
        """Mark the overdue abandoned and drop the expired (writer thread, its own transaction)."""
        if not self._open:
            return
        abandon_before = now_ns - int(self.limits.abandon_after * 1e9)
        expire_before = now_ns - int(self.limits.max_age * 1e9)
        expired: list[bytes] = []
        abandoned: list[bytes] = []
        for uid, state in self._open.items():  # oldest first
            if state[0] >= abandon_before:
                break
            if state[0] < expire_before:
                expired.append(uid)
            elif not state[1]:
                abandoned.append(uid)
        if not expired and not abandoned:
            return
        with transaction(conn):
            if expired:
                conn.executemany(_DELETE, [(u,) for u in expired])
            if abandoned:
                conn.executemany(_ABANDON, [(now_ns, u) for u in abandoned])
        for u in expired:
            del self._open[u]
        for u in abandoned:
            self._open[u][1] = True
        self.counts["expired"] += len(expired)
        self.counts["abandoned"] += len(abandoned)

    def stats(self) -> dict[str, int]:
        return {**self.counts, "open": len(self._open)}
