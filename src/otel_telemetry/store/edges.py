"""Who calls whom: hourly and daily call edges between services and components, maintained by the
single writer in the rows' transaction (like ``rollups.py``), read by ``query/service_map.py``.

An edge is a parent span and its child span in different services (``by = 'service'``) or
components (``by = 'component'``): a client span and the server span it caused, a producer and
its consumer, any parent/child pair that crosses the boundary. Rows with ``by = 'entry'`` count
the spans where work enters a service (kind server or consumer, a root span, or a span whose
parent is in another service), ``source = ''``: the services page reads them. Every row is keyed
by (bucket_start_ns, by, category, source, target) where the category is the child's, and holds
the child spans' calls, errors (status error), duration count/sum and a log-scale duration
histogram (``rollups``' DDSketch bins: percentiles within 2 %, clamped to the exact min/max).

A child whose parent is not in the same batch is looked up among the stored spans of its trace
(``records`` by ``trace_id``); if the parent has not arrived yet the child waits in
``edge_waiting`` until it does (children usually end, and are exported, before their parents, and
the services of one trace export from different processes). The table is bounded: past the last
``MAX_WAITING`` waiting children the oldest are evicted and counted (a parent that never comes:
an uninstrumented caller, a lost batch). Only rows the writer actually stored are counted, so the
edges agree with ``records``.

Everything here runs on the thread that owns ``conn`` (the collector's writer thread, or the CLI's
admin connection when an older database is upgraded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import apsw

from .rollups import _LOG_GAMMA, DAY_NS, HOUR_NS, MIN_MS, ZERO_BIN, hist_dumps, register
from .schema import COLUMNS, ensure_derived

TABLES: dict[str, int] = {"edge_hourly": HOUR_NS, "edge_daily": DAY_NS}  # identifier allow-list
BYS = ("service", "component")
ENTRY = "entry"
MAX_WAITING = 50_000
ENTRY_KINDS = ("server", "consumer")
_CHUNK = 400  # (trace, span) pairs per lookup statement: 800 bound parameters

_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    bucket_start_ns INTEGER NOT NULL,    -- UTC hour/day start of the child span, epoch ns
    by TEXT NOT NULL,                    -- service | component | entry
    category TEXT NOT NULL,              -- the child span's category
    source TEXT NOT NULL,                -- the parent's service/component ('' for entry rows)
    target TEXT NOT NULL,                -- the child's service/component
    calls INTEGER NOT NULL, errors INTEGER NOT NULL,  -- child spans, those with status error
    dur_count INTEGER NOT NULL, dur_sum REAL NOT NULL, dur_min REAL, dur_max REAL,
    hist TEXT NOT NULL,                  -- JSON [bin, count, ...] of child durations (rollups' bins)
    PRIMARY KEY (bucket_start_ns, by, category, source, target)
) WITHOUT ROWID;
"""
DDL = "".join(_TABLE_DDL.format(t=t) for t in TABLES) + """
CREATE TABLE IF NOT EXISTS edge_waiting (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL, category TEXT NOT NULL, service TEXT NOT NULL, component TEXT NOT NULL,
    kind TEXT NOT NULL, duration_ms REAL, error INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS edge_waiting_parent ON edge_waiting(trace_id, parent_span_id);
"""
_KEY = "bucket_start_ns, by, category, source, target"
_UPSERT = {t: (
    f"INSERT INTO {t}({_KEY}, calls, errors, dur_count, dur_sum, hist, dur_min, dur_max) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT({_KEY}) DO UPDATE SET calls = calls + excluded.calls, errors = errors + excluded.errors, "
    "dur_count = dur_count + excluded.dur_count, dur_sum = dur_sum + excluded.dur_sum, "
    "dur_min = min(coalesce(dur_min, excluded.dur_min), coalesce(excluded.dur_min, dur_min)), "
    "dur_max = max(coalesce(dur_max, excluded.dur_max), coalesce(excluded.dur_max, dur_max)), "
    "hist = rollup_hist_merge(hist, excluded.hist)"
) for t in TABLES}
_WAIT_COLS = "trace_id, parent_span_id, timestamp, category, service, component, kind, duration_ms, error"

_TYPE = COLUMNS.index("type")

# A child as the aggregator sees it: (bucket start, category, service, component, kind, duration
# (None unless a finite number), error 0/1, histogram bin of the duration).
Child = tuple[int, str, str, str, str, Any, int, Any]
# (bucket, by, category, source, target) -> [calls, errors, dur count, dur sum, hist, dur min, dur max]
Aggs = dict[tuple[Any, ...], list[Any]]


def make_child(ts: int, cat: Any, svc: Any, comp: Any, kind: Any, dur: Any, err: Any, bucket_ns: int | None) -> Child:
    if dur is not None and (dur.__class__ is float or dur.__class__ is int) and math.isfinite(dur):
        b = ZERO_BIN if dur < MIN_MS else math.ceil(math.log(dur) / _LOG_GAMMA)
    else:
        dur = b = None
    return (0 if bucket_ns is None else ts - ts % bucket_ns, cat or "", svc or "", comp or "", kind or "", dur,
            1 if err else 0, b)


def new_acc() -> list[Any]:
    return [0, 0, 0, 0.0, {}, None, None]


def merge_acc(into: list[Any], calls: int, errors: int, n: int, total: float, hist: dict[int, int],
              lo: float | None, hi: float | None) -> None:
    """Add one accumulator's figures into ``into`` (the read side merges stored rows this way too)."""
    into[0] += calls
    into[1] += errors
    into[2] += n
    into[3] += total
    h = into[4]
    for k, c in hist.items():
        h[k] = h.get(k, 0) + c
    if lo is not None and (into[5] is None or lo < into[5]):
        into[5] = lo
    if hi is not None and (into[6] is None or hi > into[6]):
        into[6] = hi


def add(aggs: Aggs, by: str, source: str, child: Child) -> None:
    """Count ``child`` on the edge ``source -> child's service/component`` (``by``). Hot path."""
    key = (child[0], by, child[1], source, child[3] if by == "component" else child[2])
    a = aggs.get(key)
    if a is None:
        a = aggs[key] = new_acc()
    a[0] += 1
    a[1] += child[6]
    b = child[7]
    if b is not None:
        d = child[5]
        a[2] += 1
        a[3] += d
        h = a[4]
        h[b] = h.get(b, 0) + 1
        if a[5] is None or d < a[5]:
            a[5] = d
        if a[6] is None or d > a[6]:
            a[6] = d


def pair(aggs: Aggs, parent: tuple[str, str], child: Child) -> None:
    """Count the edges of one parent (service, component) -> child pair, and the child as an entry
    span when its parent is in another service."""
    psvc, pcomp = parent
    if psvc != child[2]:
        add(aggs, "service", psvc, child)
        if child[4] not in ENTRY_KINDS:  # server/consumer spans were counted as entries already
            add(aggs, ENTRY, "", child)
    if pcomp != child[3]:
        add(aggs, "component", pcomp, child)


def own(aggs: Aggs, child: Child, has_parent: bool) -> None:
    """What one span counts before its parent is known: an entry if server/consumer kind or a root."""
    if child[4] in ENTRY_KINDS or not has_parent:
        add(aggs, ENTRY, "", child)


_FIELDS = itemgetter(*(COLUMNS.index(c) for c in (
    "timestamp", "category", "service", "component", "kind", "duration_ms", "status", "trace_id", "span_id",
    "parent_span_id")))


def roll_up(aggs: Aggs, bucket_ns: int) -> Aggs:
    out: Aggs = {}
    for (ts, *key), a in aggs.items():
        full = (ts - ts % bucket_ns, *key)
        b = out.get(full)
        if b is None:
            out[full] = b = new_acc()
        merge_acc(b, *a)
    return out


def _upsert(conn: apsw.Connection, hourly: Aggs) -> None:
    for table, aggs in (("edge_hourly", hourly), ("edge_daily", roll_up(hourly, DAY_NS))):
        conn.executemany(_UPSERT[table], upsert_args(aggs))


def upsert_args(aggs: Aggs) -> list[tuple[Any, ...]]:
    """Bindings of ``_UPSERT`` for ``aggs``."""
    return [(*k, *a[:4], hist_dumps(a[4]), a[5], a[6]) for k, a in aggs.items()]


# ---- writer side -------------------------------------------------------------------------------

def _stored_parents(conn: apsw.Connection, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(trace, span) -> (service, component) of already stored spans: the spans of the wanted
    traces, read through the trace index a chunk of traces per statement."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    traces = sorted({t for t, _ in wanted})
    for k in range(0, len(traces), _CHUNK):
        chunk = traces[k:k + _CHUNK]
        sql = (f"SELECT trace_id, span_id, service, component FROM records WHERE trace_id IN "
               f"({', '.join('?' * len(chunk))}) AND type = 'span'")
        for trace, span, svc, comp in conn.execute(sql, chunk):
            if (trace, span) in wanted:
                out[(trace, span)] = (svc or "", comp or "")
    return out


def _waiting_for(conn: apsw.Connection, keys: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """Waiting children of the spans ``keys`` (trace, span): (id, trace, parent, *Child)."""
    if conn.execute("SELECT 1 FROM edge_waiting LIMIT 1").fetchone() is None:
        return []
    out: list[tuple[Any, ...]] = []
    for k in range(0, len(keys), _CHUNK):
        chunk = keys[k:k + _CHUNK]
        values = ", ".join("(?, ?)" for _ in chunk)
        out += conn.execute(f"SELECT id, {_WAIT_COLS} FROM edge_waiting WHERE (trace_id, parent_span_id) IN "
                            f"(VALUES {values})", [x for key in chunk for x in key]).fetchall()
    return out


def update(conn: apsw.Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Add the edges of newly stored rows (writer thread, inside its transaction); returns the
    number of waiting children evicted to keep ``edge_waiting`` bounded."""
    ti = _TYPE
    spans = [_FIELDS(r) for r in rows if r[ti] == "span"]
    if not spans:
        return 0
    local: dict[tuple[str, str], tuple[str, str]] = {}
    for f in spans:
        if f[8] and f[7]:
            local[(f[7], f[8])] = (f[2] or "", f[3] or "")
    hourly: Aggs = {}
    unresolved: list[tuple[str, str, Child, tuple[Any, ...]]] = []
    for f in spans:
        trace, sid, parent_id = f[7], f[8], f[9]
        if not (trace and sid):
            continue
        child = make_child(f[0], f[1], f[2], f[3], f[4], f[5], f[6] == "error", HOUR_NS)
        own(hourly, child, bool(parent_id))
        if parent_id:
            parent = local.get((trace, parent_id))
            if parent is not None:
                pair(hourly, parent, child)
            else:
                unresolved.append((trace, parent_id, child, f))
    # Children that waited for a span of this batch.
    resolved = _waiting_for(conn, list(local))
    for _id, trace, parent_id, ts, cat, svc, comp, kind, dur, err in resolved:
        pair(hourly, local[(trace, parent_id)], make_child(ts, cat, svc, comp, kind, dur, err, HOUR_NS))
    if resolved:
        conn.executemany("DELETE FROM edge_waiting WHERE id = ?", [(r[0],) for r in resolved])
    evicted = 0
    if unresolved:
        stored = _stored_parents(conn, {(t, p) for t, p, _, _ in unresolved})
        waiting = []
        for trace, parent_id, child, f in unresolved:
            parent = stored.get((trace, parent_id))
            if parent is not None:
                pair(hourly, parent, child)
            else:
                waiting.append((trace, parent_id, f[0], child[1], child[2], child[3], child[4], child[5], child[6]))
        if waiting:
            conn.executemany(f"INSERT INTO edge_waiting({_WAIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", waiting)
            top = conn.execute("SELECT max(id) FROM edge_waiting").fetchone()[0]
            before = conn.total_changes()
            conn.execute("DELETE FROM edge_waiting WHERE id <= ?", (top - MAX_WAITING,))
            evicted = conn.total_changes() - before
    _upsert(conn, hourly)
    return evicted


def edges_of_trace(aggs: Aggs, bucket_ns: int | None, spans: Sequence[Sequence[Any]]) -> None:
    """All edges and entries of one trace's spans (``(span_id, parent_span_id, *Child)`` tuples):
    the backfill of an older database and the read side's raw path share this."""
    by_id = {s[0]: (s[4], s[5]) for s in spans}
    for s in spans:
        child = make_child(*s[2:9], bucket_ns)
        own(aggs, child, bool(s[1]))
        parent = by_id.get(s[1]) if s[1] else None
        if parent is not None:
            pair(aggs, parent, child)


# Spans grouped by trace, through the trace index: the backfill's and the raw read path's input.
TRACE_SPANS_SQL = ("SELECT trace_id, span_id, parent_span_id, timestamp, coalesce(category, ''), "
                   "coalesce(service, ''), coalesce(component, ''), coalesce(kind, ''), duration_ms, "
                   "coalesce(status = 'error', 0) FROM records WHERE trace_id IS NOT NULL AND type = 'span' "
                   "AND span_id IS NOT NULL {where} ORDER BY trace_id")


def by_trace(rows: Iterable[Sequence[Any]], aggs: Aggs, bucket_ns: int | None) -> None:
    """Aggregate ``TRACE_SPANS_SQL`` rows (ordered by trace) one trace at a time."""
    trace: Any = None
    group: list[Sequence[Any]] = []
    for r in rows:
        if r[0] != trace:
            if group:
                edges_of_trace(aggs, bucket_ns, group)
            trace, group = r[0], []
        group.append(r[1:])
    if group:
        edges_of_trace(aggs, bucket_ns, group)


def ensure(conn: apsw.Connection) -> bool:
    """Create the edge tables; on a database that has records but no edge tables (written before
    they existed), build them from every stored span, in one transaction. Returns True if a
    rebuild ran. Call after ``rollups.ensure`` (which registers the histogram merge function)."""
    register(conn)
    return ensure_derived(conn, DDL, TABLES, _backfill)


def _backfill(conn: apsw.Connection) -> bool:
    hourly: Aggs = {}
    by_trace(conn.execute(TRACE_SPANS_SQL.format(where="")), hourly, HOUR_NS)
    _upsert(conn, hourly)
    return True


def purge(conn: apsw.Connection, cutoff_ns: int) -> None:
    """Delete edge buckets that ended before ``cutoff_ns`` (writer thread, own transaction)."""
    with conn:
        for table, size in TABLES.items():
            conn.execute(f"DELETE FROM {table} WHERE bucket_start_ns < ?", (cutoff_ns - size,))
