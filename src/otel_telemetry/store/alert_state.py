"""Alert state and history: the ``<db>.alerts.db`` file the alert engine writes (its only writer)
and the CLI and the dashboard read (``list_alerts``). Its own file, so the collector's single writer
of the main database is untouched."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import apsw

from .. import settings
from . import location
from .db import open_reader, open_sqlite

_NS = 1_000_000_000


def default_path(db: str) -> str:
    """The alert state file of a collector whose store is ``db``: ``<db>.alerts.db`` beside a
    file; for a server URL (direct mode, no database file here) one per server in the runtime
    directory, where the ZeroMQ socket lives too (tmpfs on most systems)."""
    loc = location.parse(db)
    if loc.url is None:
        return f"{db}.alerts.db"
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in loc.url.split("://", 1)[1])
    return str(settings.runtime_dir() / f"alerts-{name}.db")


LIST_STATES = ("firing", "resolved", "pending", "all", "rules")

STATE_DDL = """
CREATE TABLE IF NOT EXISTS alert_state (
    rule TEXT PRIMARY KEY,
    state TEXT NOT NULL,                 -- ok | pending | firing
    pending_since INTEGER,               -- ns; when the condition started to hold
    episode INTEGER,                     -- alert_history.id while firing
    last_resolved INTEGER,               -- ns; start of the cooldown
    value REAL,                          -- value at the last evaluation
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY,              -- one row per firing episode
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    metric TEXT NOT NULL,
    state TEXT NOT NULL,                 -- firing | resolved
    pending_since INTEGER NOT NULL,
    fired INTEGER NOT NULL,
    resolved INTEGER,
    value REAL,                          -- value when it fired
    last_value REAL,                     -- latest value while firing / value at resolve
    op TEXT NOT NULL,
    threshold REAL NOT NULL,
    message TEXT NOT NULL,
    notified INTEGER NOT NULL DEFAULT 0  -- notifications queued for this episode
);
CREATE INDEX IF NOT EXISTS alert_history_state ON alert_history(state, fired);
CREATE TABLE IF NOT EXISTS alert_rules (  -- the configured rules, rewritten at every engine start
    rule TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    op TEXT NOT NULL,
    threshold REAL NOT NULL,
    window_s REAL NOT NULL,
    channels TEXT NOT NULL,              -- JSON list; [] = every target
    is_default INTEGER NOT NULL,         -- one of the built-in default AI rules
    message TEXT
);
CREATE TABLE IF NOT EXISTS daily_summaries (
    day TEXT PRIMARY KEY,                -- UTC date
    sent INTEGER NOT NULL,               -- ns
    body TEXT NOT NULL                   -- JSON figures
);
"""
# Acknowledgements live in their own file, written by the CLI (``alerts ack``): the engine stays the
# only writer of the state file.
ACK_DDL = """
CREATE TABLE IF NOT EXISTS acks (
    episode INTEGER PRIMARY KEY,         -- alert_history.id
    rule TEXT NOT NULL,
    acked INTEGER NOT NULL,              -- ns
    by TEXT,
    note TEXT
);
"""


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / _NS, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def open_state(path: str) -> apsw.Connection:
    """The state file for writing (the engine's thread), created with its tables when missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Keyed like the main database when encryption at rest is on: it holds alert values/messages.
    conn = open_sqlite(path, apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(STATE_DDL)
    except BaseException:
        conn.close()
        raise
    return conn


def ack_path(path: str) -> str:
    """The acknowledgements file beside the state file at ``path``."""
    return f"{path}.acks"


def _rule_names(conn: apsw.Connection, rule: str) -> list[str]:
    """A rule given by name or id → the names it may be stored under."""
    names = [rule]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alert_rules'").fetchone():
        names += [r for (r,) in conn.execute("SELECT rule FROM alert_rules WHERE id = ?", (rule,))]
    return names


def _acks(path: str) -> dict[int, tuple[int, str | None, str | None]]:
    if not os.path.isfile(ack_path(path)):
        return {}
    conn = open_reader(ack_path(path))
    try:
        return {e: (t, by, note) for e, t, by, note in conn.execute("SELECT episode, acked, by, note FROM acks")}
    finally:
        conn.close()


def ack(path: str, rule: str, now_ns: int, by: str | None = None, note: str | None = None) -> dict[str, Any]:
    """Acknowledge the firing alert of ``rule`` (name or id) in the state file at ``path``; written
    to the acknowledgements file (caller's thread). ValueError when that rule is not firing."""
    conn = open_reader(path)
    try:
        names = _rule_names(conn, rule)
        row = conn.execute(
            f"SELECT id, rule FROM alert_history WHERE state = 'firing' AND rule IN ({', '.join('?' * len(names))}) "
            "ORDER BY fired DESC LIMIT 1", names).fetchone()
    finally:
        conn.close()
    if row is None:
        raise ValueError(f"no firing alert for rule {rule!r} (see: otel-telemetry alerts list --state firing)")
    acks = open_sqlite(ack_path(path), apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        acks.execute("PRAGMA journal_mode=WAL").fetchall()
        acks.execute(ACK_DDL)
        with acks:
            acks.execute("INSERT OR REPLACE INTO acks(episode, rule, acked, by, note) VALUES (?, ?, ?, ?, ?)",
                         (row[0], row[1], now_ns, by, note))
    finally:
        acks.close()
    return {"id": row[0], "rule": row[1], "acked": _iso(now_ns), "acked_by": by, "note": note}


def _list_rules(conn: apsw.Connection, rule: str | None, limit: int) -> list[dict[str, Any]]:
    cols = ("rule", "id", "kind", "severity", "op", "threshold", "window_s", "channels", "is_default", "state",
            "value", "evaluated")
    where = "WHERE r.rule = ? OR r.id = ?" if rule else ""
    sql = (f"SELECT r.rule, r.id, r.kind, r.severity, r.op, r.threshold, r.window_s, r.channels, r.is_default, "
           f"coalesce(s.state, 'ok'), s.value, s.updated FROM alert_rules r "
           f"LEFT JOIN alert_state s ON s.rule = r.rule {where} ORDER BY r.is_default, r.rule LIMIT ?")
    out = []
    for row in conn.execute(sql, [*([rule, rule] if rule else []), limit]):
        item = dict(zip(cols, row, strict=True))
        item["is_default"] = bool(item["is_default"])
        item["evaluated"] = _iso(item["evaluated"])
        out.append(item)
    return out


def list_alerts(path: str, state: str = "all", limit: int = 100, rule: str | None = None) -> list[dict[str, Any]]:
    """Alerts from the state file at ``path``, newest first (caller's thread, read-only).

    ``state``: firing | resolved | all (history, one row per firing episode, with its
    acknowledgement), pending (rules whose condition holds but which are not firing yet) or rules
    (every configured rule, the default ones included, with its state and last value). ``rule``: a
    rule's name or id.
    """
    if state not in LIST_STATES:
        raise ValueError(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    conn = open_reader(path)
    try:
        if state == "rules":
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alert_rules'").fetchone()
            return _list_rules(conn, rule, limit) if has else []
        names = _rule_names(conn, rule) if rule else []
        params: list[Any] = []
        if state == "pending":
            sql = ("SELECT rule, state, pending_since, value, updated FROM alert_state WHERE state = 'pending'"
                   + (f" AND rule IN ({', '.join('?' * len(names))})" if rule else "")
                   + " ORDER BY pending_since DESC LIMIT ?")
            params = names
            return [{"rule": r, "state": s, "pending_since": _iso(p), "value": v, "evaluated": _iso(u)}
                    for r, s, p, v, u in conn.execute(sql, [*params, limit])]
        clauses = []
        if state != "all":
            clauses.append("state = ?")
            params.append(state)
        if rule:
            clauses.append(f"rule IN ({', '.join('?' * len(names))})")
            params += names
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cols = ("id", "rule", "severity", "state", "fired", "resolved", "value", "last_value", "op",
                "threshold", "metric", "kind", "notified", "message")
        sql = f"SELECT {', '.join(cols)} FROM alert_history {where} ORDER BY fired DESC, id DESC LIMIT ?"
        out = []
        acks = _acks(path)
        for row in conn.execute(sql, [*params, limit]):
            item = dict(zip(cols, row, strict=True))
            item["fired"], item["resolved"] = _iso(item["fired"]), _iso(item["resolved"])
            acked = acks.get(item["id"])
            item["acked"], item["acked_by"] = (_iso(acked[0]), acked[1]) if acked else (None, None)
            out.append(item)
        return out
    finally:
        conn.close()
