"""Hourly and daily rollups of ``records``, maintained by the single writer in the rows' transaction.

Tables ``rollup_hourly`` and ``rollup_daily`` hold one row per (bucket_start_ns, category,
component, service, type, model, agent, call, error_type, instance) with counts, errors, duration
sum/min/max, token and cost sums and a sparse log-scale duration histogram. Text key columns store
``''`` for NULL (SQLite's UNIQUE treats NULLs as distinct, which would defeat the upsert).

``call`` is the GenAI call kind of a span (``model_call``/``tool_call``/``agent_call`` or the
producer's own ``telemetry.event``), ``''`` for everything else; ``error_type`` is the failed
span's ``error.type`` (else its exception event's ``exception.type``, else ``unknown``), ``''``
unless the span's status is error. ``instance`` is the row's collector instance (``''`` for rows
stored before instances existed), so one instance's figures and purges are exact on a central
server where several meet; files from before it are upgraded by ``rollup_upgrade.py``. See
docs/schema.md and docs/benchmarks.md.

Histogram (DDSketch-style): a duration ``d`` ms falls in bin ``i = ceil(log_g(d))`` with
``g = (1+ALPHA)/(1-ALPHA)``; bin ``i`` is reported as ``2 g^i / (g+1)``, which is within ``ALPHA``
(2 %) relative error of every value in the bin, so a nearest-rank percentile read from merged
histograms is within 2 % of the exact one. Durations below 1 ns (and negative ones) count as 0.
Stored as a JSON array ``[bin, count, bin, count, ...]`` sorted by bin.

Everything here runs on the thread that owns ``conn`` (the collector's writer thread, or the
CLI's admin connection when a database is upgraded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import apsw
import orjson

from .schema import COLUMNS, STORED_COLUMNS, ensure_derived

HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
TABLES: dict[str, int] = {"rollup_hourly": HOUR_NS, "rollup_daily": DAY_NS}  # identifier allow-list
DEFAULT_ROLLUP_DAYS = 400  # rollups outlive raw rows (longest default raw retention is 90-365 d)

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_MS = 1e-6
ZERO_BIN = -1_000_000
CALL_EVENTS = ("model_call", "tool_call", "agent_call")
_OPERATIONS = {"chat": "model_call", "text_completion": "model_call", "generate_content": "model_call",
               "embeddings": "model_call", "execute_tool": "tool_call", "invoke_agent": "agent_call",
               "create_agent": "agent_call"}
_MAX_TEXT = 200

KEY_COLUMNS = ("category", "component", "service", "type", "model", "agent", "call", "error_type", "instance")
SUM_COLUMNS = ("count", "errors", "dur_count", "dur_sum", "dur_min", "dur_max", "input_tokens",
               "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
               "total_tokens", "cost_usd", "cost_rows", "hist")
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "reasoning_tokens", "total_tokens")

_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    bucket_start_ns INTEGER NOT NULL,    -- UTC hour/day start, epoch ns
    category TEXT NOT NULL, component TEXT NOT NULL, service TEXT NOT NULL, type TEXT NOT NULL,
    model TEXT NOT NULL, agent TEXT NOT NULL, call TEXT NOT NULL, error_type TEXT NOT NULL,
    instance TEXT NOT NULL DEFAULT '',   -- the rows' collector instance
    count INTEGER NOT NULL, errors INTEGER NOT NULL,  -- errors: level error or critical
    dur_count INTEGER NOT NULL, dur_sum REAL NOT NULL, dur_min REAL, dur_max REAL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, cost_rows INTEGER NOT NULL,  -- cost_rows: rows with a known cost
    hist TEXT NOT NULL,                  -- JSON [bin, count, ...]
    PRIMARY KEY (bucket_start_ns, category, component, service, type, model, agent, call, error_type, instance)
) WITHOUT ROWID;
"""
DDL = "".join(_TABLE_DDL.format(t=t) for t in TABLES)

_ALL = ("bucket_start_ns", *KEY_COLUMNS, *SUM_COLUMNS)
_UPSERT = {t: (
    f"INSERT INTO {t}({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))}) "
    f"ON CONFLICT(bucket_start_ns, {', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUM_COLUMNS
                if c not in ("dur_min", "dur_max", "hist"))
    + ", dur_min = min(coalesce(dur_min, excluded.dur_min), coalesce(excluded.dur_min, dur_min))"
    + ", dur_max = max(coalesce(dur_max, excluded.dur_max), coalesce(excluded.dur_max, dur_max))"
    + ", hist = rollup_hist_merge(hist, excluded.hist)"
) for t in TABLES}

# The record fields the aggregator reads, in this order (writer tuples and SQL reads alike).
INPUT_FIELDS = ("timestamp", "type", "category", "component", "service", "model", "agent", "event",
                "name", "level", "status", "duration_ms", *TOKEN_COLUMNS, "cost_usd", "data", "instance")
_FROM_ROW = itemgetter(*(STORED_COLUMNS.index(f) for f in INPUT_FIELDS))
# SQL for the same fields; ``data`` only where ``_classify`` parses it: failed spans, and GenAI
# spans whose call kind is not their event. Most calls carry the kind in ``event``: their JSON stays
# on the server (a 24 h report's raw edges read ~1 000 of them at 1M rows / 30 days).
SELECT_INPUT = (", ".join(INPUT_FIELDS[:-2]) + ", CASE WHEN type = 'span' AND (status = 'error' OR "
                "((model IS NOT NULL OR agent IS NOT NULL) AND (event IS NULL OR event NOT IN ("
                + ", ".join(f"'{e}'" for e in CALL_EVENTS) + ")))) THEN data END, instance")


# ---- histogram ---------------------------------------------------------------------------------

def bin_of(ms: float) -> int:
    return ZERO_BIN if ms < MIN_MS else math.ceil(math.log(ms) / _LOG_GAMMA)


def bin_value(i: int) -> float:
    """The representative duration of bin ``i`` (within ALPHA of every value in it)."""
    return 0.0 if i == ZERO_BIN else 2 * GAMMA ** i / (GAMMA + 1)


def hist_dumps(hist: dict[int, int]) -> str:
    return orjson.dumps([x for k in sorted(hist) for x in (k, hist[k])]).decode()


def hist_add(into: dict[int, int], encoded: str | bytes | None) -> None:
    """Add a stored histogram into ``into`` (bin -> count)."""
    if not encoded:
        return
    flat = orjson.loads(encoded)
    for k, n in zip(flat[::2], flat[1::2], strict=True):
        into[k] = into.get(k, 0) + n


def _hist_merge(old: str | None, new: str | None) -> str:
    merged: dict[int, int] = {}
    hist_add(merged, old)
    hist_add(merged, new)
    return hist_dumps(merged)


def hist_percentile(hist: dict[int, int], p: int, lo: float | None, hi: float | None) -> float | None:
    """Nearest-rank percentile ``p`` from a histogram, clamped to the exact [lo, hi]."""
    n = sum(hist.values())
    if n == 0:
        return None
    rank = max(-(-p * n // 100), 1)
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            v = bin_value(k)
            if lo is not None:
                v = max(v, lo)
            if hi is not None:
                v = min(v, hi)
            return v
    return hi


# ---- aggregation (shared by the writer, the backfill and the read side's raw edges) ---------------

def _text(v: Any) -> str:
    return "" if v is None else str(v)[:_MAX_TEXT]


def _classify(type_: str, event: Any, name: Any, model: Any, agent: Any, status: Any,
              data: Any) -> tuple[str, str]:
    """(call kind, error type) of one record; ``''`` when not a call / not failed."""
    if type_ != "span":
        return "", ""
    failed = status == "error"
    genai = model is not None or agent is not None
    if not failed and not genai and event not in CALL_EVENTS:
        return "", ""
    attrs: dict[str, Any] = {}
    events: list[Any] = []
    if data is not None and (failed or (genai and event not in CALL_EVENTS)):
        try:
            parsed = orjson.loads(data)
            attrs = parsed.get("attributes") or {}
            events = parsed.get("events") or []
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            pass
    call = ""
    if event in CALL_EVENTS:
        call = str(event)
    elif genai:
        op = attrs.get("gen_ai.operation.name")
        if event is not None and event != name:  # the producer's own telemetry.event (traced)
            call = _text(event)
        elif op in _OPERATIONS:
            call = _OPERATIONS[op]
        else:
            call = "model_call" if model is not None else "agent_call"
    if not failed:
        return call, ""
    etype = attrs.get("error.type")
    if etype is None:
        for ev in events:
            if isinstance(ev, dict) and ev.get("name") == "exception":
                etype = (ev.get("attributes") or {}).get("exception.type")
                break
    return call, _text(etype) or "unknown"


def new_agg() -> list[Any]:
    """Accumulator in SUM_COLUMNS order; the hist slot is a dict bin -> count."""
    return [0, 0, 0, 0.0, None, None, 0, 0, 0, 0, 0, 0, 0.0, 0, {}]


def _k(v: Any) -> str:
    """A key column value: ``''`` for NULL, text capped at _MAX_TEXT characters."""
    if v is None:
        return ""
    if v.__class__ is not str:
        v = str(v)
    return v if len(v) <= _MAX_TEXT else v[:_MAX_TEXT]


def add_input(out: dict[tuple[Any, ...], list[Any]], r: Sequence[Any], bucket_ns: int | None,
              durations: list[tuple[tuple[Any, ...], float]] | None = None) -> None:
    """Aggregate one record given as INPUT_FIELDS into ``out[(bucket, *key)]``.

    ``bucket_ns`` None puts every record in bucket 0 (window totals). ``durations`` (optional)
    collects (key, duration) for exact percentiles. Hot path of the writer: keep it lean.
    """
    (ts, type_, cat, comp, svc, model, agent, event, name, level, status, dur, i_t, o_t, cr_t, cw_t,
     rs_t, tot_t, cost, data, inst) = r
    if type_ == "span" and (status == "error" or model is not None or agent is not None
                            or event in CALL_EVENTS):
        call, etype = _classify(type_, event, name, model, agent, status, data)
    else:
        call = etype = ""
    key = (_k(cat), _k(comp), _k(svc), _k(type_), _k(model), _k(agent), call, etype, _k(inst))
    full = (0 if bucket_ns is None else ts - ts % bucket_ns, *key)
    a = out.get(full)
    if a is None:
        a = out[full] = new_agg()
    a[0] += 1
    if level == "error" or level == "critical":
        a[1] += 1
    if dur is not None and (dur.__class__ is float or dur.__class__ is int) and math.isfinite(dur):
        d = float(dur)
        a[2] += 1
        a[3] += d
        if a[4] is None or d < a[4]:
            a[4] = d
        if a[5] is None or d > a[5]:
            a[5] = d
        b = ZERO_BIN if d < MIN_MS else math.ceil(math.log(d) / _LOG_GAMMA)
        h = a[14]
        h[b] = h.get(b, 0) + 1
        if durations is not None:
            durations.append((key, d))
    if model is not None or i_t is not None or tot_t is not None:
        for j, v in ((6, i_t), (7, o_t), (8, cr_t), (9, cw_t), (10, rs_t), (11, tot_t)):
            if v.__class__ is int:
                a[j] += v
    if cost is not None and (cost.__class__ is float or cost.__class__ is int) and math.isfinite(cost):
        a[12] += float(cost)
        a[13] += 1


def aggregate_rows(rows: Iterable[Sequence[Any]], bucket_ns: int) -> dict[tuple[Any, ...], list[Any]]:
    """Aggregate stored rows (``schema.STORED_COLUMNS`` order: the instance last) into ``bucket_ns`` buckets."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        add_input(out, _FROM_ROW(row), bucket_ns)
    return out


def _pairs(x: str) -> str:
    # (bin, count) pairs of a flat array; json_extract by index, since joining json_each to itself
    # on key + 1 is quadratic (10x slower at 100 bins).
    return f"SELECT value AS k, json_extract({x}, '$[' || (key + 1) || ']') AS n FROM json_each({x}) WHERE key % 2 = 0"


# A libSQL server cannot call ``rollup_hist_merge`` (a Python function of ours), so upserts sent to
# one merge the flat [bin, count, ...] histograms in SQL, to the same text as ``hist_dumps``.
HIST_MERGE_SQL = (
    "(WITH m AS (SELECT k, sum(n) AS n FROM (" + _pairs("coalesce(hist, '[]')") + " UNION ALL "
    + _pairs("coalesce(excluded.hist, '[]')") + ") GROUP BY k) "
    "SELECT json_group_array(v) FROM (SELECT k, 0 AS p, k AS v FROM m "
    "UNION ALL SELECT k, 1 AS p, n AS v FROM m ORDER BY k, p))"
)
REMOTE_UPSERT = {t: sql.replace("rollup_hist_merge(hist, excluded.hist)", HIST_MERGE_SQL)
                 for t, sql in _UPSERT.items()}


def upsert_args(aggs: dict[tuple[Any, ...], list[Any]]) -> list[tuple[Any, ...]]:
    """Bindings of ``_UPSERT``/``REMOTE_UPSERT`` for ``aggs``."""
    return [(*k, *a[:14], hist_dumps(a[14])) for k, a in aggs.items()]


def _upsert(conn: apsw.Connection, table: str, aggs: dict[tuple[Any, ...], list[Any]]) -> None:
    sql = REMOTE_UPSERT[table] if getattr(conn, "remote", False) else _UPSERT[table]
    conn.executemany(sql, upsert_args(aggs))


# ---- writer side -------------------------------------------------------------------------------

def register(conn: apsw.Connection) -> None:
    """Register ``rollup_hist_merge`` on a read-write connection (its owning thread)."""
    conn.create_scalar_function("rollup_hist_merge", _hist_merge, 2, deterministic=True)


def ensure(conn: apsw.Connection) -> bool:
    """Create the rollup tables and register the merge function; on a database that already has
    records but no rollups (written before rollups existed), rebuild them from every record, all in
    one transaction. Returns True if a rebuild ran. Call once after ``schema.apply_ddl`` and
    ``rollup_upgrade.ensure`` (tables from before the ``instance`` key)."""
    register(conn)
    return ensure_derived(conn, DDL, TABLES, _backfill)


def _backfill(conn: apsw.Connection, chunk: int = 100_000) -> bool:
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    last, any_rows = -(2**63), False
    while True:
        rows = conn.execute(f"SELECT id, {SELECT_INPUT} FROM records WHERE id > ? ORDER BY id LIMIT ?",
                            (last, chunk)).fetchall()
        if not rows:
            break
        any_rows = True
        last = rows[-1][0]
        for r in rows:
            add_input(hourly, r[1:], HOUR_NS)
    if any_rows:
        _upsert(conn, "rollup_hourly", hourly)
        _upsert(conn, "rollup_daily", roll_up(hourly, DAY_NS))
    return any_rows


def roll_up(aggs: dict[tuple[Any, ...], list[Any]], bucket_ns: int) -> dict[tuple[Any, ...], list[Any]]:
    """Re-bucket finer aggregates into ``bucket_ns`` buckets (hourly -> daily)."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (ts, *key), a in aggs.items():
        full = (ts - ts % bucket_ns, *key)
        b = out.get(full)
        if b is None:
            out[full] = b = new_agg()
        merge_agg(b, a)
    return out


def merge_agg(into: list[Any], a: Sequence[Any]) -> None:
    """Add accumulator ``a`` (hist slot a dict) into ``into``."""
    for j in (0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13):
        into[j] += a[j]
    if a[4] is not None and (into[4] is None or a[4] < into[4]):
        into[4] = a[4]
    if a[5] is not None and (into[5] is None or a[5] > into[5]):
        into[5] = a[5]
    h = into[14]
    for k, n in a[14].items():
        h[k] = h.get(k, 0) + n


def update(conn: apsw.Connection, rows: Sequence[tuple[Any, ...]], instance: tuple[str | None]) -> None:
    """Add newly inserted rows (``schema.COLUMNS`` order) stored under ``instance`` (a 1-tuple, as
    the writer appends it) to both rollup tables (writer thread, inside its transaction)."""
    if not rows:
        return
    hourly = aggregate_rows((r + instance for r in rows), HOUR_NS)
    _upsert(conn, "rollup_hourly", hourly)
    _upsert(conn, "rollup_daily", roll_up(hourly, DAY_NS))


def inserted(conn: apsw.Connection, rows: Sequence[Sequence[Any]], max_id_before: int) -> list[Sequence[Any]]:
    """The rows of ``rows`` that the last insert actually stored (``ON CONFLICT DO NOTHING`` skips
    repeated uids): new rows have ids above ``max_id_before``; a uid repeated inside ``rows`` was
    stored from its first occurrence."""
    uid_i = COLUMNS.index("uid")
    fresh = {bytes(u) for (u,) in conn.execute("SELECT uid FROM records WHERE id > ?", (max_id_before,))}
    out = []
    for row in rows:
        u = bytes(row[uid_i])
        if u in fresh:
            fresh.discard(u)
            out.append(row)
    return out


def purge(conn: apsw.Connection, now_ns: int, days: int = DEFAULT_ROLLUP_DAYS) -> int:
    """Delete rollup buckets that ended more than ``days`` ago; returns rows deleted (own transaction)."""
    cutoff = now_ns - days * DAY_NS
    before = conn.total_changes()
    with conn:
        for table, size in TABLES.items():
            conn.execute(f"DELETE FROM {table} WHERE bucket_start_ns < ?", (cutoff - size,))
    return conn.total_changes() - before
