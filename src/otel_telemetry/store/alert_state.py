"""Alert state and history: the ``<db>.alerts.db`` file the alert engine writes (its only writer)
and the CLI and the dashboard read (``list_alerts``). Its own file, so the collector's single writer
of the main database is untouched."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import apsw

from .db import open_sqlite
from .writer import open_reader

_NS = 1_000_000_000
LIST_STATES = ("firing", "resolved", "pending", "all")

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


def list_alerts(path: str, state: str = "all", limit: int = 100, rule: str | None = None) -> list[dict[str, Any]]:
    """Alerts from the state file at ``path``, newest first (caller's thread, read-only).

    ``state``: firing | resolved | all (history, one row per firing episode) or pending (rules whose
    condition holds but which are not firing yet).
    """
    if state not in LIST_STATES:
        raise ValueError(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    conn = open_reader(path)
    try:
        params: list[Any] = []
        if state == "pending":
            sql = ("SELECT rule, state, pending_since, value, updated FROM alert_state WHERE state = 'pending'"
                   + (" AND rule = ?" if rule else "") + " ORDER BY pending_since DESC LIMIT ?")
            params = [rule] if rule else []
            return [{"rule": r, "state": s, "pending_since": _iso(p), "value": v, "evaluated": _iso(u)}
                    for r, s, p, v, u in conn.execute(sql, [*params, limit])]
        clauses = []
        if state != "all":
            clauses.append("state = ?")
            params.append(state)
        if rule:
            clauses.append("rule = ?")
            params.append(rule)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cols = ("id", "rule", "severity", "state", "fired", "resolved", "value", "last_value", "op",
                "threshold", "metric", "kind", "notified", "message")
        sql = f"SELECT {', '.join(cols)} FROM alert_history {where} ORDER BY fired DESC, id DESC LIMIT ?"
        out = []
        for row in conn.execute(sql, [*params, limit]):
            item = dict(zip(cols, row, strict=True))
            item["fired"], item["resolved"] = _iso(item["fired"]), _iso(item["resolved"])
            out.append(item)
        return out
    finally:
        conn.close()
