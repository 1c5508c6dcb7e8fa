"""The unified record's table: columns, DDL and upgrades of older files.

The mapping from wire tuples to rows is ``collector/mapping.py``. Documented for users in
``docs/schema.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# The GenAI columns, filled by collector/genai/normalise.py on GenAI spans and NULL on other rows.
GENAI_COLUMNS: tuple[str, ...] = (
    "model", "provider", "agent", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "total_tokens", "cost_usd",
)

COLUMNS: tuple[str, ...] = (
    "uid", "timestamp", "type", "category", "subcategory", "component", "event", "level", "name",
    "service", "trace_id", "span_id", "parent_span_id", "session_id", "kind", "duration_ms",
    "status", "status_message", "metric_type", "metric_value", "metric_unit", "data", "metadata",
) + GENAI_COLUMNS
# The collector instance that stored a row (host name by default): stamped by the store writer,
# not by the mapping, so local and central copies of a row agree. NULL on rows from before it.
INSTANCE = "instance"
STORED_COLUMNS: tuple[str, ...] = COLUMNS + (INSTANCE,)
# Columns a query may filter or sort on (identifier allow-list for the read side).
QUERY_COLUMNS = frozenset(STORED_COLUMNS) - {"uid"} | {"id"}

DDL = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    uid BLOB NOT NULL,
    timestamp INTEGER NOT NULL,          -- unix epoch nanoseconds (span start / point time)
    type TEXT NOT NULL,                  -- span | metric | log | event
    category TEXT NOT NULL,
    subcategory TEXT,
    component TEXT,
    event TEXT,
    level TEXT NOT NULL,                 -- debug | info | warning | error | critical
    name TEXT,
    service TEXT,
    trace_id TEXT,                       -- 32 lowercase hex chars
    span_id TEXT,                        -- 16 lowercase hex chars
    parent_span_id TEXT,
    session_id TEXT,
    kind TEXT,                           -- internal | server | client | producer | consumer
    duration_ms REAL,
    status TEXT,                         -- unset | ok | error
    status_message TEXT,
    metric_type TEXT,                    -- gauge | sum | histogram | exponential_histogram
    metric_value REAL,
    metric_unit TEXT,
    data TEXT NOT NULL,                  -- JSON
    metadata TEXT NOT NULL,              -- JSON
    -- GenAI spans (collector/genai/normalise.py); NULL on every other row
    model TEXT,
    provider TEXT,
    agent TEXT,                          -- gen_ai.agent.name
    input_tokens INTEGER,                -- includes cache read + cache write tokens
    output_tokens INTEGER,               -- includes reasoning tokens
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    total_tokens INTEGER,
    cost_usd REAL,                       -- NULL when unknown (never a silent 0)
    instance TEXT                        -- collector instance that stored the row
);
CREATE UNIQUE INDEX IF NOT EXISTS records_uid ON records(uid);
CREATE INDEX IF NOT EXISTS records_cat_ts ON records(category, timestamp);
CREATE INDEX IF NOT EXISTS records_ts ON records(timestamp);
CREATE INDEX IF NOT EXISTS records_trace ON records(trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_session ON records(session_id) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_model ON records(model, timestamp) WHERE model IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_agent ON records(agent, timestamp) WHERE agent IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_component ON records(component, timestamp);
CREATE TABLE IF NOT EXISTS publishers (
    publisher BLOB NOT NULL,
    topic TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (publisher, topic)
);
CREATE TABLE IF NOT EXISTS retention (
    category TEXT PRIMARY KEY,
    days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS collector_status (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    updated INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""

# Only on a central libSQL server, where many instances meet (per-instance views): on a device's
# own file every row has the same instance, and a sixth index cost ingest throughput there.
CENTRAL_DDL = """
CREATE INDEX IF NOT EXISTS records_instance ON records(instance, timestamp) WHERE instance IS NOT NULL;
"""

# Columns added after the first release: ``apply_ddl`` adds them to an older database.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (c, "REAL" if c == "cost_usd" else "INTEGER" if c.endswith("_tokens") else "TEXT") for c in GENAI_COLUMNS
) + ((INSTANCE, "TEXT"),)


def apply_ddl(conn: Any) -> None:
    """Create the schema, first upgrading an older ``records`` table (``ALTER TABLE ADD COLUMN``).

    Call on the connection that owns writes, before using it; idempotent. (Plain ``DDL`` is enough
    for a new file, but fails on an old one at the first index over a new column.)
    """
    have = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if have:
        for name, sqltype in ADDED_COLUMNS:
            if name not in have:  # identifiers from the constant above, never from input
                conn.execute(f"ALTER TABLE records ADD COLUMN {name} {sqltype}")
    conn.execute(DDL)


def ensure_derived(conn: Any, ddl: str, tables: Iterable[str], backfill: Callable[[Any], bool]) -> bool:
    """Create tables derived from ``records`` (``ddl``); on a database that has records but lacks
    any of ``tables`` (written before they existed), fill them with ``backfill`` in the same
    transaction. Returns what ``backfill`` returned, False when none ran. The connection's owning
    thread (the writer, or the CLI's admin connection)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rebuild = not set(tables) <= have and "records" in have
        conn.execute(ddl)
        if rebuild:
            rebuild = backfill(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return rebuild


def component_of(attrs: Mapping[str, Any], scope: str | None, service: str | None) -> str:
    comp = attrs.get("telemetry.component")
    if comp:
        return str(comp)
    return scope or service or "unknown"
