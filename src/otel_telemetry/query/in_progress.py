"""Spans in progress (live spans), read side: what ``watch --in-progress``, the dashboard's live
view and its trace view show. The collector keeps them in ``store.in_progress``'s table until their
span is stored; each comes back as a record dict (``query --format json``'s keys) plus:

- ``state``: ``running``, or ``abandoned`` once the collector gave up on it (``live_spans.abandon_after``);
- ``elapsed_ms``: from its start to now (to when it was abandoned, for an abandoned one);
- ``received`` / ``abandoned_at``: ISO times on the collector's clock.

They are not records: ``id`` is None, and no count, export or statistic includes them.
"""

from __future__ import annotations

import time
from typing import Any

from ..store.db import has_table
from ..store.in_progress import TABLE
from .export import SELECT_COLUMNS, record
from .filters import iso_ns

STATES = ("running", "abandoned")
MAX_SPANS = 1000
_FILTERS = ("trace_id", "service", "instance")


def spans(conn: Any, *, trace_id: str | None = None, service: str | None = None, instance: str | None = None,
          state: str | None = None, limit: int = MAX_SPANS, now_ns: int | None = None) -> dict[str, Any]:
    """``{"now", "spans", "truncated"}``: spans in progress, oldest start first (filters are
    exact matches, bound as parameters)."""
    now = time.time_ns() if now_ns is None else now_ns
    out: dict[str, Any] = {"now": iso_ns(now), "spans": [], "truncated": False}
    if not has_table(conn, TABLE):  # no collector with live spans has written this store yet
        return out
    where, params = "", []
    for column, value in zip(_FILTERS, (trace_id, service, instance), strict=True):
        if value is not None:
            where += f" AND {column} = ?"  # column names from _FILTERS, never input
            params.append(value)
    if state == "running":
        where += " AND abandoned IS NULL"
    elif state == "abandoned":
        where += " AND abandoned IS NOT NULL"
    # A started row whose span is stored already is not shown: on a central server the span can
    # arrive (shipped) before the mirror of the spans in progress removes its row.
    rows = conn.execute(f"SELECT {SELECT_COLUMNS}, received, abandoned FROM {TABLE} t WHERE NOT EXISTS "
                        f"(SELECT 1 FROM records r WHERE r.uid = t.uid){where} ORDER BY timestamp, id LIMIT ?",
                        (*params, max(1, limit) + 1)).fetchall()
    out["truncated"] = len(rows) > limit
    for row in rows[:limit]:
        rec = record(row[:-2])
        received, abandoned = row[-2], row[-1]
        rec["id"] = None  # not a record: it has no row in records yet
        rec["state"] = "abandoned" if abandoned is not None else "running"
        rec["elapsed_ms"] = max(0.0, ((abandoned or now) - rec["timestamp"]) / 1e6)
        rec["received"] = iso_ns(received)
        rec["abandoned_at"] = iso_ns(abandoned) if abandoned is not None else None
        out["spans"].append(rec)
    return out


def of_trace(conn: Any, trace_id: str, records: list[dict[str, Any]],
             now_ns: int | None = None) -> list[dict[str, Any]]:
    """The spans of ``trace_id`` still in progress that ``records`` (the trace's stored records)
    does not hold yet: a trace view shows both."""
    stored = {r.get("span_id") for r in records if r.get("type") == "span"}
    return [s for s in spans(conn, trace_id=trace_id, now_ns=now_ns)["spans"] if s["span_id"] not in stored]
