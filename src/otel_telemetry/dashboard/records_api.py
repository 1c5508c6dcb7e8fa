"""The dashboard's record-level endpoints: trace search and waterfall, sessions, alerts, retention.

Same shape as ``api``: functions ``(conn, params, ctx) -> dict`` on the request's handler thread,
read-only connections, bound parameters only (filters go through ``records_export.Selection`` and
``query.Filters``, whose column names come from allow-lists). The one write, a retention change,
goes through ``retention.set_days`` on an admin connection, exactly as ``retention set`` does.
"""

from __future__ import annotations

import os
import time
from typing import Any

import apsw
import orjson

from ..categories import CATEGORIES
from ..query import export as rx
from ..query import filters as query
from ..query import in_progress as live
from ..store import db as store_db
from ..store import retention as ret
from ..store.alert_state import LIST_STATES, list_alerts
from .api import Context, Endpoint
from .explore_api import attr_filters
from .params import WINDOW, ApiError, Params

STATUSES = ("unset", "ok", "error")
MAX_PAGE = 200
MAX_TRACE_RECORDS = 5000
MAX_SESSION_RECORDS = 1000
_SUMMARY = ("id", "time", "timestamp", "type", "category", "component", "event", "level", "name", "service",
            "trace_id", "span_id", "parent_span_id", "session_id", "kind", "duration_ms", "status",
            "status_message", "model", "agent")
# The per-session health record of the original design (Hi Stranger telemetry), as keys of an event's
# data or a span/log's attributes, with or without a ``telemetry.`` prefix.
HEALTH_FIELDS = ("telemetry_id", "timestamp", "app_version", "env", "latency_ms", "frontend_fps", "network_status",
                 "active_users_count", "token_usage", "model_latency_ms", "errors", "warnings", "event_name",
                 "event_context", "cpu_load_pct", "memory_usage_mb", "network_rtt_ms", "uptime_seconds",
                 "is_rate_limited", "queue_depth", "notes", "version")
# Object and list fields; an OTel attribute can only carry them as JSON text, which is parsed.
_HEALTH_JSON = {"token_usage": dict, "errors": list, "warnings": list, "event_context": dict}
_HEALTH_CORE = {"latency_ms", "frontend_fps", "network_status", "token_usage", "queue_depth", "is_rate_limited"}


_ERR, _WARN = "'error', 'critical'", "'warning'"
_SESSIONS_SQL = ("SELECT session_id, count(*), min(timestamp), max(timestamp), "
                 f"sum(level IN ({_ERR})), sum(level IN ({_WARN})) FROM records "
                 "WHERE session_id IS NOT NULL AND timestamp >= ? AND timestamp < ?{inst} "
                 "GROUP BY session_id ORDER BY max(timestamp) DESC LIMIT ?")


def _list_len_sql(key: str) -> str:
    """SQL: the length of the ``errors[]`` (``warnings[]``) list a row carries — Hi Stranger's
    health record: event data, or an attribute holding JSON; with or without the ``telemetry.``
    prefix, as ``_issues`` reads it — else NULL."""
    paths = [f"$.{key}", f'$."telemetry.{key}"', f"$.attributes.{key}", f'$.attributes."telemetry.{key}"']
    arms = " ".join(
        f"WHEN json_type(data, '{path}') = 'array' THEN json_array_length(data, '{path}') "
        f"WHEN json_type(data, '{path}') = 'text' AND json_valid(json_extract(data, '{path}')) "
        f"AND json_type(json_extract(data, '{path}')) = 'array' THEN json_array_length(json_extract(data, '{path}'))"
        for path in paths)
    return f"CASE WHEN instr(data, '{key}') > 0 AND json_valid(data) THEN CASE {arms} END END"


# The rows of the listed sessions that carry such lists: their lengths, and how many of those
# rows the level counts above already counted. Read only for the sessions on the page, so the
# list query itself never has to read the data column. Keys and levels are constants, never input.
_LISTS_SQL = ("SELECT session_id, sum(coalesce(e, 0)), sum(e IS NOT NULL AND level IN ({err})), "
              "sum(coalesce(w, 0)), sum(w IS NOT NULL AND level IN ({warn})) FROM ("
              "SELECT session_id, level, {e} AS e, {w} AS w FROM records "
              "WHERE session_id IN ({{marks}}) AND timestamp >= ? AND timestamp < ?{{inst}} "
              "AND (instr(data, 'errors') > 0 OR instr(data, 'warnings') > 0)) GROUP BY session_id"
              ).format(err=_ERR, warn=_WARN, e=_list_len_sql("errors"), w=_list_len_sql("warnings"))


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in _SUMMARY}


def _text_filter(p: Params, name: str) -> tuple[str, ...]:
    value = p.text(name)
    return () if value is None else (value,)


# ---- traces --------------------------------------------------------------------------------------

def _cursor(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    ts, _, rid = text.partition(":")
    try:
        out = int(ts, 10), int(rid, 10)
    except ValueError:
        raise ApiError(f"cursor {text!r} is not TIMESTAMP:ID") from None
    if not all(-(2**63) <= v < 2**63 for v in out):
        raise ApiError("cursor is out of range")
    return out


def traces(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Spans matching service/category/component/name/status/min duration/attributes in the window, newest first,
    ``limit`` per page (≤ 200); ``next`` is the keyset cursor (``timestamp:id``) of the next page."""
    since, until = p.window("24h")
    limit = p.integer("limit", 50, 1, MAX_PAGE)
    equal: dict[str, tuple[str, ...]] = {"type": ("span",)}
    category = p.choice("category", CATEGORIES)
    if category:
        equal["category"] = (category,)
    for name in ("service", "component", "event", "instance"):
        values = _text_filter(p, name)
        if values:
            equal[name] = values
    where, params = rx.Selection(equal, since, until).clauses()
    status = p.choice("status", STATUSES)
    if status:
        where += " AND status = ?"
        params.append(status)
    min_ms = p.number("min_duration_ms", 0, 1e12)
    if min_ms is not None:
        where += " AND duration_ms >= ?"
        params.append(min_ms)
    for flt in attr_filters(p):  # key=value, key!=value, key>n on attributes and resource attributes
        sql, values = flt.clause()
        where += f" AND {sql}"
        params += values
    cur = _cursor(p.text("cursor"))
    if cur is not None:
        where += " AND (timestamp < ? OR (timestamp = ? AND id < ?))"
        params += [cur[0], cur[0], cur[1]]
    sql = (f"SELECT {rx.SELECT_COLUMNS} FROM records WHERE 1{where} "
           "ORDER BY timestamp DESC, id DESC LIMIT ?")
    rows = [summary(rx.record(r)) for r in conn.execute(sql, (*params, limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = f"{rows[-1]['timestamp']}:{rows[-1]['id']}" if more and rows else None
    return {"spans": rows, "next": nxt, "limit": limit}


def trace(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Every record of one trace: spans in waterfall order (depth-first by parent_span_id, siblings by
    start time) with ``depth`` and ``offset_ms`` from the trace start; logs/events under ``others``."""
    trace_id = p.text("trace_id")
    if trace_id is None:
        raise ApiError("trace_id is required")
    try:
        flt = query.Filters(trace_id=trace_id, limit=MAX_TRACE_RECORDS + 1, order="asc")
    except query.QueryError as exc:
        raise ApiError(str(exc)) from None
    records = query.query_records(conn, flt)
    truncated = len(records) > MAX_TRACE_RECORDS
    records = records[:MAX_TRACE_RECORDS]
    spans = [r for r in records if r["type"] == "span"]
    others = [r for r in records if r["type"] != "span"]
    ids = {s["span_id"] for s in spans}
    # Spans still running (live spans): drawn up to now, with their state; ids below 0 (not records).
    now = time.time_ns()
    running = live.of_trace(conn, flt.trace_id, spans, now)
    for i, s in enumerate(running):
        s["id"] = -(i + 1)
        spans.append(s)
        ids.add(s["span_id"])
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s["parent_span_id"] if s["parent_span_id"] in ids and s["parent_span_id"] != s["span_id"] else None
        children.setdefault(parent, []).append(s)
    start = min((s["timestamp"] for s in spans), default=0)
    ordered: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        s, depth = stack.pop()
        if s["id"] in seen:  # a parent cycle cannot loop forever
            continue
        seen.add(s["id"])
        ordered.append({**s, "depth": depth, "offset_ms": (s["timestamp"] - start) / 1e6})
        stack += [(c, depth + 1) for c in reversed(children.get(s["span_id"], []))]
    for s in spans:  # members of a cycle with no root: shown flat rather than lost
        if s["id"] not in seen:
            ordered.append({**s, "depth": 0, "offset_ms": (s["timestamp"] - start) / 1e6})
    end = max((s["timestamp"] + int((s["duration_ms"] or s.get("elapsed_ms") or 0) * 1e6) for s in spans),
              default=start)
    return {"trace_id": flt.trace_id, "spans": ordered, "others": others, "start": query.iso_ns(start),
            "duration_ms": (end - start) / 1e6, "truncated": truncated, "in_progress": len(running)}


def in_progress(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """``otel-telemetry watch --in-progress --format json``: spans started and not yet ended
    (live spans), oldest first, with their state and elapsed time."""
    return live.spans(conn, service=p.text("service"), instance=p.text("instance"),
                      state=p.choice("state", live.STATES), limit=p.integer("limit", 200, 1, live.MAX_SPANS))


# ---- sessions ------------------------------------------------------------------------------------

def sessions(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """The most recently active sessions in the window with record, error and warning counts
    (counted as in :func:`session`)."""
    since, until = p.window("24h")
    limit = p.integer("limit", 50, 1, MAX_PAGE)
    instance = p.text("instance")  # the sessions one collector instance stored (a central server)
    clause, args = (" AND instance = ?", (instance,)) if instance is not None else ("", ())
    rows = conn.execute(_SESSIONS_SQL.format(inst=clause), (since, until, *args, limit)).fetchall()
    lists: dict[str, tuple[int, int, int, int]] = {}
    if rows:
        sql = _LISTS_SQL.replace("{marks}", ", ".join("?" * len(rows))).replace("{inst}", clause)
        for sid, e_len, e_seen, w_len, w_seen in conn.execute(sql, (*(r[0] for r in rows), since, until, *args)):
            lists[sid] = (e_len or 0, e_seen or 0, w_len or 0, w_seen or 0)
    out = []
    for sid, n, a, b, e, w in rows:
        e_len, e_seen, w_len, w_seen = lists.get(sid, (0, 0, 0, 0))
        out.append({"session_id": sid, "records": n, "first": query.iso_ns(a), "last": query.iso_ns(b),
                    "errors": (e or 0) - e_seen + e_len, "warnings": (w or 0) - w_seen + w_len})
    return {"sessions": out}


def health_of(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The health-record fields of one record (event data, else attributes), None if it is not one."""
    data = rec.get("data")
    if not isinstance(data, dict):
        return None
    source = data.get("attributes") if rec["type"] != "event" and isinstance(data.get("attributes"), dict) else data
    found = {}
    for key, value in source.items():
        name = key.removeprefix("telemetry.") if isinstance(key, str) else key
        if name in HEALTH_FIELDS:
            kind = _HEALTH_JSON.get(name)
            if kind is not None and isinstance(value, str):
                try:
                    parsed = orjson.loads(value)
                except orjson.JSONDecodeError:
                    parsed = None
                value = parsed if isinstance(parsed, kind) else value
            found[name] = value
    return found if len(_HEALTH_CORE & set(found)) >= 2 else None


def _issues(rec: dict[str, Any], key: str, levels: tuple[str, ...]) -> int:
    """What one record adds to its session's errors (warnings): the length of the list it carries
    (``_list_len_sql``, the same places), else 1 if its level is one of ``levels``."""
    data = rec.get("data")
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        places: tuple[dict[str, Any], ...] = (data, data["attributes"])
    else:
        places = (data,) if isinstance(data, dict) else ()
    for place in places:
        for name in (key, f"telemetry.{key}"):
            items = place.get(name)
            if isinstance(items, str):
                try:
                    items = orjson.loads(items)
                except orjson.JSONDecodeError:
                    items = None
            if isinstance(items, list):
                return len(items)
    return int(rec["level"] in levels)


def session(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """All records of one session (oldest first, at most 1000) and its health records: the latest in
    full and a compact history (latency, fps, queue depth) for charts. ``counts.errors`` adds up
    the health records' ``errors[]`` and the other records at error level (warnings alike)."""
    sid = p.text("session_id")
    if sid is None:
        raise ApiError("session_id is required")
    records = query.query_records(conn, query.Filters(session_id=sid, limit=MAX_SESSION_RECORDS + 1, order="asc"))
    truncated = len(records) > MAX_SESSION_RECORDS
    records = records[:MAX_SESSION_RECORDS]
    history = []
    latest: dict[str, Any] | None = None
    errors = warnings = 0
    for r in records:
        h = health_of(r)
        errors += _issues(r, "errors", query.ERROR_LEVELS)
        warnings += _issues(r, "warnings", ("warning",))
        if h is not None:
            latest = {"record_id": r["id"], "time": r["time"], "fields": h}
            history.append({"time": r["time"], "timestamp": r["timestamp"], "latency_ms": h.get("latency_ms"),
                            "frontend_fps": h.get("frontend_fps"), "queue_depth": h.get("queue_depth")})
    return {"session_id": sid, "records": [summary(r) for r in records], "truncated": truncated,
            "health": latest, "health_history": history,
            "counts": {"records": len(records), "errors": errors, "warnings": warnings}}


def record(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """One record in full (attributes, events, links, resource) by row id."""
    rid = p.integer("id", 0, 1, 2**63 - 1)
    if not rid:
        raise ApiError("id is required")
    rows = conn.execute(f"SELECT {rx.SELECT_COLUMNS} FROM records WHERE id = ?", (rid,)).fetchall()
    if not rows:
        raise ApiError(f"no record with id {rid}", 404)
    return {"record": rx.record(rows[0])}


# ---- alerts and retention ------------------------------------------------------------------------

def alerts(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Alert history from the ``<db>.alerts.db`` state file (``alerts list``), newest first."""
    state = p.choice("state", LIST_STATES, "all") or "all"
    limit = p.integer("limit", 100, 1, 500)
    rule = p.text("rule")
    if not os.path.isfile(ctx.alerts_path):
        return {"state_file": None, "alerts": []}
    return {"state_file": ctx.alerts_path, "alerts": list_alerts(ctx.alerts_path, state, limit, rule)}


def retention(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Days kept per category (default or override) and rows expired now; ``cells``: the effective
    days of every category × record type and the key that decides (``retention show``)."""
    overrides = ret.effective_days(conn, ret.RetentionPolicy(days={}))
    days = ret.effective_days(conn, ctx.policy)
    now = time.time_ns()
    expired = ret.count_expired(conn, days, now)
    cells = ret.effective_table(conn, ctx.policy)
    cell_expired = ret.count_expired_cells(conn, days, now)
    for cell in cells:
        cell["expired"] = cell_expired[(cell["category"], cell["type"])]
    return {"categories": [{"category": c, "days": days[c], "source": "override" if c in overrides else "default",
                            "expired": expired.get(c, 0)} for c in CATEGORIES if c in days],
            "cells": cells}


def set_retention(body: Any, ctx: Context) -> dict[str, Any]:
    """POST body ``{"category", "days", "confirm"}``; ``confirm`` must repeat the category. Writes through
    ``retention.set_days`` on a short-lived admin connection (the handler thread's own)."""
    if not isinstance(body, dict) or set(body) - {"category", "days", "confirm"}:
        raise ApiError('body must be a JSON object with "category", "days" and "confirm"')
    category, days, confirm = body.get("category"), body.get("days"), body.get("confirm")
    if category not in CATEGORIES:
        raise ApiError(f"category must be one of {', '.join(CATEGORIES)}")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= ret.MAX_DAYS:
        raise ApiError(f"days must be an integer from 1 to {ret.MAX_DAYS}")
    if confirm != category:
        raise ApiError('"confirm" must repeat the category to change')
    conn = store_db.open_admin(ctx.db_path)
    try:
        ret.set_days(conn, category, days)
    finally:
        conn.close()
    return {"ok": True, "category": category, "days": days}


RECORDS: dict[str, tuple[Endpoint, tuple[str, ...]]] = {
    "traces": (traces, (*WINDOW, "service", "category", "component", "event", "status", "min_duration_ms",
                        "attr", "limit", "cursor", "instance")),
    "trace": (trace, ("trace_id",)),
    "in_progress": (in_progress, ("service", "instance", "state", "limit")),
    "sessions": (sessions, (*WINDOW, "limit", "instance")),
    "session": (session, ("session_id",)),
    "record": (record, ("id",)),
    "alerts": (alerts, ("state", "limit", "rule")),
    "retention": (retention, ()),
}
