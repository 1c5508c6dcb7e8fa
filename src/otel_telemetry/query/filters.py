"""The read side: time parsing, validated filters, record queries, statistics and collector status.

Everything here takes an open ``apsw.Connection`` and never writes. Errors in user input are raised
as :class:`QueryError` (a ``ValueError``) so the CLI can turn them into usage errors at its boundary.
SQL values are always bound parameters; column names come only from ``schema.QUERY_COLUMNS``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import apsw
import orjson

from ..categories import CATEGORIES
from ..store.schema import INSTANCE, QUERY_COLUMNS, STORED_COLUMNS

LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
TYPES: tuple[str, ...] = ("span", "metric", "log", "event")
ORDERS: tuple[str, ...] = ("asc", "desc")
MAX_LIMIT = 1_000_000
ERROR_LEVELS: tuple[str, ...] = ("error", "critical")
PERCENTILES: tuple[int, ...] = (50, 95, 99)

# Output columns of a record: the schema's columns without the internal uid, with the row id first
# (``instance`` last: on a central server it says which collector stored the row).
RECORD_COLUMNS: tuple[str, ...] = ("id",) + tuple(c for c in STORED_COLUMNS if c != "uid")
# ``time`` is derived from ``timestamp`` for people; it is not a stored column.
OUTPUT_COLUMNS: tuple[str, ...] = ("id", "timestamp", "time") + RECORD_COLUMNS[2:]
_JSON_COLUMNS = ("data", "metadata")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_EPOCH_RE = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_HEX32_RE = re.compile(r"^[0-9a-f]{32}$")
_NS = 1_000_000_000
# SQLite integers are signed 64-bit; larger Python ints would fail at bind time with OverflowError.
_INT64 = range(-(2**63), 2**63)
MAX_DURATION_S = 200 * 365 * 86400  # now minus this still fits in int64 ns


class QueryError(ValueError):
    """Bad input to the read side (a duration, a time, a filter value)."""


class Clause(Protocol):
    """An extra condition, e.g. an attribute filter (``attr_search.AttrFilter``)."""

    def clause(self) -> tuple[str, list[Any]]: ...


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a positive number and one unit of s, m, h, d or w, e.g. ``24h``, ``1.5d``."""
    m = _DURATION_RE.match(text or "")
    if not m:
        raise QueryError(f"{text!r} is not a duration; use a number and a unit s, m, h, d or w (e.g. 24h)")
    seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds <= 0:
        raise QueryError(f"{text!r} is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise QueryError(f"duration {text!r} is longer than 200 years")
    return int(seconds) if seconds.is_integer() else seconds


def parse_time(text: str, now_ns: int | None = None) -> int:
    """Unix-epoch nanoseconds for ``text``.

    Accepts an ISO-8601 datetime (``2026-01-01T00:00:00Z``, any offset; no offset means UTC), an
    ISO date (midnight UTC), epoch seconds (``1767225600`` or with a fraction), or a duration
    (``2h``) meaning that long before ``now_ns`` (default: the current time).
    """
    raw = (text or "").strip()
    if not raw:
        raise QueryError("empty time; use an ISO-8601 time, a date, epoch seconds or a duration like 2h")
    if _DURATION_RE.match(raw):
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(parse_duration(raw) * _NS)
    if _EPOCH_RE.match(raw):
        whole, _, frac = raw.partition(".")
        # Integer arithmetic keeps nanosecond precision that float seconds would lose.
        ns = int(whole) * _NS + int((frac + "0" * 9)[:9])
        if ns not in _INT64:
            raise QueryError(f"{text!r} is too far in the future to be epoch seconds")
        return ns
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(
            f"{text!r} is not a time; use ISO-8601 (2026-01-01T00:00:00Z), a date (2026-01-01), "
            "epoch seconds or a duration before now (2h)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000
    if ns not in _INT64:
        raise QueryError(f"{text!r} is outside the years 1678..2261 that nanosecond timestamps cover")
    return ns


def instance_clause(instance: str | None) -> tuple[str, tuple[str, ...]]:
    """`` AND instance = ?`` and its parameter for a collector-instance filter ("" and () without one)."""
    return ("", ()) if instance is None else (" AND instance = ?", (instance,))


def iso_ns(ns: int | None) -> str | None:
    """``2026-01-01T00:00:00.123Z`` (UTC, millisecond precision) for epoch nanoseconds."""
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns // _NS, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % _NS) // 1_000_000:03d}Z"


@dataclass
class Filters:
    """What to select from ``records``; ``None`` means no constraint. Validated on creation.

    ``since_ns`` is inclusive and ``until_ns`` exclusive, so adjacent windows never overlap.
    """

    category: str | None = None
    component: str | None = None
    event: str | None = None
    level: str | None = None
    type: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    service: str | None = None
    instance: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 100
    order: str = "desc"
    attrs: tuple[Clause, ...] = ()  # attribute filters (query/attr_search.py), all must hold

    def __post_init__(self) -> None:
        _check_choice("category", self.category, CATEGORIES)
        _check_choice("level", self.level, LEVELS)
        _check_choice("type", self.type, TYPES)
        _check_choice("order", self.order, ORDERS)
        if self.trace_id is not None:
            self.trace_id = self.trace_id.strip().lower()
            if not _HEX32_RE.match(self.trace_id):
                raise QueryError(f"trace id {self.trace_id!r} is not 32 hex characters")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) \
                or not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(f"limit {self.limit!r} is not an integer from 1 to {MAX_LIMIT}")
        for name in ("since_ns", "until_ns"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value not in _INT64):
                raise QueryError(f"{name} must be 64-bit integer nanoseconds, not {value!r}")

    def equality(self) -> dict[str, str]:
        """The exact-match constraints, keyed by column name."""
        names = ("category", "component", "event", "level", "type", "trace_id", "session_id", "service",
                 INSTANCE)
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def _check_choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise QueryError(f"{name} {value!r} is not one of {', '.join(allowed)}")


def _where(equal: dict[str, Any], since_ns: int | None, until_ns: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in equal.items():
        if column not in QUERY_COLUMNS:  # identifiers are never taken from input
            raise QueryError(f"cannot filter on {column!r}")
        clauses.append(f'"{column}" = ?')
        params.append(value)
    if since_ns is not None:
        clauses.append("timestamp >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append("timestamp < ?")
        params.append(until_ns)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _record(row: Sequence[Any]) -> dict[str, Any]:
    rec = dict(zip(RECORD_COLUMNS, row, strict=True))
    for key in _JSON_COLUMNS:
        try:
            rec[key] = orjson.loads(rec[key]) if rec[key] is not None else None
        except orjson.JSONDecodeError:
            pass  # keep the raw text rather than hide a record behind a decode error
    out = {"id": rec["id"], "timestamp": rec["timestamp"], "time": iso_ns(rec["timestamp"])}
    out.update((k, rec[k]) for k in RECORD_COLUMNS[2:])
    return out


def query_records(conn: apsw.Connection, filters: Filters) -> list[dict[str, Any]]:
    """Records matching ``filters``, newest first unless ``order='asc'``, at most ``limit``.

    Each dict has the keys of :data:`OUTPUT_COLUMNS`; ``data`` and ``metadata`` are parsed JSON.
    """
    where, params = _where(filters.equality(), filters.since_ns, filters.until_ns)
    for extra in filters.attrs:
        sql, values = extra.clause()
        where += f" AND {sql}" if where else f" WHERE {sql}"
        params += values
    direction = "ASC" if filters.order == "asc" else "DESC"
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    sql = f"SELECT {columns} FROM records{where} ORDER BY timestamp {direction}, id {direction} LIMIT ?"
    return [_record(row) for row in conn.execute(sql, (*params, filters.limit))]


def nearest_rank(sorted_values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile: the value at 1-based rank ``ceil(p/100 * n)`` of the sorted values.

    Always one of the observed values (no interpolation); ``p=100`` is the maximum, and for
    ``p`` in 1..100 the rank is at least 1. ``None`` when there are no values.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0 < p <= 100:
        raise QueryError(f"percentile {p!r} is not in 1..100")
    return sorted_values[_rank(p, n) - 1]


def _rank(p: int, n: int) -> int:
    """The 1-based nearest rank of percentile ``p`` among ``n`` values (``_RANKS`` is its SQL)."""
    return max(-(-p * n // 100), 1)  # ceil in integers: float p/100*n can land just above a whole number


def _latency(values: list[float]) -> dict[str, Any]:
    values.sort()
    out: dict[str, Any] = {"count": len(values)}
    for p in PERCENTILES:
        out[f"p{p}"] = nearest_rank(values, p)
    out["max"] = values[-1] if values else None
    return out


# Nearest ranks computed where the durations are (a server): ceil(p * n / 100), at least 1, and n
# for the maximum; typeof drops text and NULL (SQLite keeps a NaN as NULL) as the Python path does.
_RANKS = " OR ".join(f"rn = max(1, ({p} * n + 99) / 100)" for p in PERCENTILES) + " OR rn = n"
_LATENCY_SQL = (
    "SELECT grp, rn, n, v FROM (SELECT grp, v, row_number() OVER (PARTITION BY grp ORDER BY v) AS rn, "
    "count(*) OVER (PARTITION BY grp) AS n FROM (SELECT category AS grp, duration_ms AS v FROM records{where} "
    "AND typeof(duration_ms) IN ('integer', 'real') UNION ALL SELECT NULL, duration_ms FROM records{where} "
    "AND typeof(duration_ms) IN ('integer', 'real'))) WHERE " + _RANKS)


def _latency_on_server(conn: apsw.Connection, span_where: str, params: Sequence[Any]
                       ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall, by category) as :func:`_latency` gives them, ranked by the server: fetching
    every duration costs one row each over HTTP (9.4 s against 1.2 s on the file at 300,000
    records, bench/bench_libsql.py)."""
    ranked: dict[Any, tuple[int, dict[int, float]]] = {}
    for grp, rn, n, v in conn.execute(_LATENCY_SQL.format(where=span_where), (*params, *params)):
        ranked.setdefault(grp, (n, {}))[1][rn] = float(v)

    def block(n: int, at: dict[int, float]) -> dict[str, Any]:
        out: dict[str, Any] = {"count": n}
        for p in PERCENTILES:
            out[f"p{p}"] = at[_rank(p, n)]
        out["max"] = at[n]
        return out

    overall = ranked.pop(None, None)
    return (block(*overall) if overall else _latency([]),
            {str(cat): block(*ranked[cat]) for cat in sorted(ranked, key=str)})


def _counts(conn: apsw.Connection, column: str, where: str, params: Iterable[Any]) -> dict[str, int]:
    if column not in QUERY_COLUMNS:
        raise QueryError(f"cannot group on {column!r}")
    sql = f'SELECT "{column}", count(*) FROM records{where} GROUP BY "{column}" ORDER BY "{column}"'
    return {str(k): n for k, n in conn.execute(sql, tuple(params))}


def stats(
    conn: apsw.Connection, since_ns: int | None, until_ns: int | None, category: str | None = None,
    instance: str | None = None, by_instance: bool = False,
) -> dict[str, Any]:
    """Counts and span latency over ``[since_ns, until_ns)``, optionally for one category and/or
    one collector instance; ``by_instance`` adds counts per instance (a central server's view).

    ``errors`` counts records whose level is error or critical (failed spans get level error).
    Latency is over spans with a duration, as nearest-rank percentiles (see :func:`nearest_rank`),
    computed over every duration in the window, so the figures are exact, not estimated.
    """
    _check_choice("category", category, CATEGORIES)
    equal = {k: v for k, v in (("category", category), (INSTANCE, instance)) if v is not None}
    where, params = _where(equal, since_ns, until_ns)
    by_category = _counts(conn, "category", where, params)
    by_level = _counts(conn, "level", where, params)
    by_type = _counts(conn, "type", where, params)
    span_where = (where + " AND" if where else " WHERE") + " type = 'span' AND duration_ms IS NOT NULL"
    if getattr(conn, "remote", False):
        overall, by_cat = _latency_on_server(conn, span_where, params)
    else:  # a file: every duration read and sorted here, faster than the SQL ranking on a file
        durations: dict[str, list[float]] = {}
        for cat, duration in conn.execute(f"SELECT category, duration_ms FROM records{span_where}", params):
            if isinstance(duration, int | float) and not math.isnan(duration):
                durations.setdefault(cat, []).append(float(duration))
        overall = _latency([d for values in durations.values() for d in values])
        by_cat = {cat: _latency(durations[cat]) for cat in sorted(durations)}
    out: dict[str, Any] = {
        "since_ns": since_ns,
        "until_ns": until_ns,
        "since": iso_ns(since_ns),
        "until": iso_ns(until_ns),
        "category": category,
        "total": sum(by_category.values()),
        "errors": sum(n for lvl, n in by_level.items() if lvl in ERROR_LEVELS),
        "by_category": by_category,
        "by_level": by_level,
        "by_type": by_type,
        "latency_ms": {"overall": overall, "by_category": by_cat},
    }
    if instance is not None:
        out["instance"] = instance
    if by_instance:
        out["by_instance"] = _counts(conn, INSTANCE, where, params)
    return out


def _updated_ns(updated: int) -> int:
    # The column is an epoch integer; accept s, ms, us or ns so a unit change cannot break status.
    for threshold, factor in ((1e17, 1), (1e14, 1_000), (1e11, 1_000_000)):
        if updated >= threshold:
            return int(updated * factor)
    return int(updated * _NS)


def status(conn: apsw.Connection, now_ns: int | None = None) -> dict[str, Any] | None:
    """The collector's last status body plus ``updated`` (ISO time) and ``age_s``; ``None`` if none.

    On a central server (no collector writes there) the last status each shipping collector sent,
    under ``instances``, and ``updated``/``age_s`` of the newest.
    """
    tables = getattr(conn, "tables", None)  # a server's (db.open_remote): both tables in one request
    if tables is not None and {"collector_status", "sync_status"} <= tables:
        own, shipped = conn.execute_all([(_OWN_STATUS, ()), (_SHIPPED_STATUS, ())])  # type: ignore[attr-defined]
        row = own.fetchone()
        return _status_body(row, now_ns) if row is not None else _instances_status(shipped.fetchall(), now_ns)
    try:
        row = conn.execute(_OWN_STATUS).fetchone()
    except apsw.SQLError:
        row = None  # a database from before status existed has no such table
    if row is None:
        try:
            rows = conn.execute(_SHIPPED_STATUS).fetchall()
        except apsw.SQLError:
            return None  # not a central server either
        return _instances_status(rows, now_ns)
    return _status_body(row, now_ns)


_OWN_STATUS = "SELECT updated, body FROM collector_status WHERE id = 1"
_SHIPPED_STATUS = "SELECT instance, updated, body FROM sync_status ORDER BY instance"


def _instances_status(rows: list[Any], now_ns: int | None) -> dict[str, Any] | None:
    if not rows:
        return None
    instances = {str(name): _status_body((updated, body), now_ns) for name, updated, body in rows}
    newest = max(instances.values(), key=lambda s: s["updated_ns"])
    return {"updated": newest["updated"], "updated_ns": newest["updated_ns"], "age_s": newest["age_s"],
            "instances": instances}


def _status_body(row: Sequence[Any], now_ns: int | None) -> dict[str, Any]:
    updated, body = row
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = {"body": body}
    out: dict[str, Any] = parsed if isinstance(parsed, dict) else {"body": parsed}
    ns = _updated_ns(int(updated))
    now = time.time_ns() if now_ns is None else now_ns
    out["updated"] = iso_ns(ns)
    out["updated_ns"] = ns
    out["age_s"] = round((now - ns) / _NS, 3)
    return out
