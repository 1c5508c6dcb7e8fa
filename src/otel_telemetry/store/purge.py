"""Emergency purge (``otel-telemetry purge``): delete records by category, by time, or all of them,
and leave no readable remnant of them in the database file or its WAL.

How the bytes go away:

* the deleting connection runs with ``PRAGMA secure_delete=ON``: SQLite overwrites deleted cells
  (table and every index: category, trace/session ids ...) and freed pages with zeros;
* rows go in batches (``batch_rows``, one short ``BEGIN IMMEDIATE`` transaction each), so a running
  collector's writer interleaves its own transactions instead of stalling (same rule as retention);
* the rollup rows and call edges of the purged records are deleted too (a bucket only partly
  purged is rebuilt from the records that remain in it), and so are children waiting for a parent
  and the spans in progress (live spans) of the same scope;
* ``PRAGMA incremental_vacuum`` returns the freed (zeroed) pages to the file system, then
  ``wal_checkpoint(TRUNCATE)`` copies the zeroed pages into the database file and cuts the WAL to
  zero bytes, so the old page images with the purged data in them are gone from the WAL too.
  The checkpoint needs a moment with no reader inside a transaction; it is retried until
  ``checkpoint_timeout_s``, and the result says whether it happened (``wal_truncated``).

Works on the CLI's admin connection while a collector is running: the collector stays the only
writer of record rows; the purge only deletes, in short transactions, behind the busy timeout.
The forwarder's disk queue and the alert state file are not touched (they hold no record rows of
this database; see README, Security).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from ..categories import CATEGORIES, CATEGORY_SET
from . import edges, in_progress, rollups
from .db import has_table
from .retention import transaction, vacuum_step


@dataclass(frozen=True)
class PurgeSpec:
    """What to purge: records of ``categories`` (empty: every category) with ``timestamp <
    before_ns`` (None: any time), stored by ``instance`` (None: any; alone: every record of it).
    ``everything`` must be set to purge with no constraint."""

    categories: tuple[str, ...] = ()
    before_ns: int | None = None
    everything: bool = False
    instance: str | None = None

    def __post_init__(self) -> None:
        for c in self.categories:
            if c not in CATEGORY_SET:
                raise ValueError(f"unknown category {c!r}; expected one of {', '.join(CATEGORIES)}")
        if self.everything and (self.categories or self.before_ns is not None):
            raise ValueError("--all purges everything: do not combine it with --category or a time")
        if not self.everything and not self.categories and self.before_ns is None and self.instance is None:
            raise ValueError("say what to purge: --category, --before/--older-than, --instance, or --all")
        if self.instance is not None and not self.instance.strip():
            raise ValueError("--instance must not be empty")
        if self.before_ns is not None and not -(2**63) <= self.before_ns < 2**63:
            raise ValueError("the purge time is out of range")

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition over ``records`` with bound parameters (no user text in the SQL)."""
        parts, params = [], []
        if self.categories:
            parts.append(f"category IN ({', '.join('?' * len(self.categories))})")
            params += list(self.categories)
        if self.before_ns is not None:
            parts.append("timestamp < ?")
            params.append(self.before_ns)
        if self.instance is not None:
            parts.append("instance = ?")
            params.append(self.instance)
        return (" AND ".join(parts) or "1"), params


def count(conn: apsw.Connection, spec: PurgeSpec) -> dict[str, int]:
    """Rows a purge would delete, per category (``--dry-run``; read-only)."""
    where, params = spec.where()
    out = dict.fromkeys(spec.categories or CATEGORIES, 0)
    for category, n in conn.execute(f"SELECT category, count(*) FROM records WHERE {where} GROUP BY category",
                                    params):
        out[str(category)] = int(n)
    return out


def _rollup_where(spec: PurgeSpec, table: str) -> tuple[str, list[Any], int | None]:
    """Condition for rollup (or edge) rows wholly covered by the purge, and the partial bucket start (if any)."""
    parts, params = [], []
    partial = None
    if spec.categories:
        parts.append(f"category IN ({', '.join('?' * len(spec.categories))})")
        params += list(spec.categories)
    if spec.before_ns is not None:
        size = {**rollups.TABLES, **edges.TABLES}[table]
        partial = spec.before_ns - spec.before_ns % size
        parts.append("bucket_start_ns < ?")
        params.append(partial)  # buckets ending at or before the cutoff
        if partial == spec.before_ns:
            partial = None  # the cutoff is on a bucket edge: nothing partial
    if spec.instance is not None and table in rollups.TABLES:  # edges have no instance (see below)
        parts.append("instance = ?")
        params.append(spec.instance)
    return (" AND ".join(parts) or "1"), params, partial


def _purge_rollups(conn: apsw.Connection, spec: PurgeSpec) -> int:
    """Delete the purged records' rollup rows; rebuild a bucket the cutoff cuts through from the
    records left in it. One transaction (after the records are gone)."""
    deleted = 0
    with transaction(conn):
        for table in rollups.TABLES:  # identifiers from the module's allow-list
            where, params, partial = _rollup_where(spec, table)
            before = conn.total_changes()
            conn.execute(f"DELETE FROM {table} WHERE {where}", params)
            deleted += conn.total_changes() - before
            if partial is None:
                continue
            size = rollups.TABLES[table]
            cat_sql, cat_params = "", []
            if spec.categories:
                cat_sql = f" AND category IN ({', '.join('?' * len(spec.categories))})"
                cat_params = list(spec.categories)
            if spec.instance is not None:
                cat_sql += " AND instance = ?"
                cat_params.append(spec.instance)
            conn.execute(f"DELETE FROM {table} WHERE bucket_start_ns = ?{cat_sql}", [partial, *cat_params])
            hourly: dict[tuple[Any, ...], list[Any]] = {}
            for row in conn.execute(f"SELECT {rollups.SELECT_INPUT} FROM records WHERE timestamp >= ? "
                                    f"AND timestamp < ?{cat_sql}", [partial, partial + size, *cat_params]):
                rollups.add_input(hourly, row, rollups.HOUR_NS)
            if hourly:
                aggs = hourly if size == rollups.HOUR_NS else rollups.roll_up(hourly, size)
                rollups._upsert(conn, table, aggs)
    return deleted


def _rebuild_edges(conn: apsw.Connection, table: str, start: int, size: int) -> None:
    """Delete one edge bucket and count it again from the spans left in it."""
    conn.execute(f"DELETE FROM {table} WHERE bucket_start_ns = ?", (start,))
    aggs: edges.Aggs = {}
    rows = conn.execute(edges.TRACE_SPANS_SQL.format(where="AND timestamp >= ? AND timestamp < ?"),
                        (start, start + size))
    edges.by_trace(rows, aggs, size)
    conn.executemany(edges._UPSERT[table], edges.upsert_args(aggs))


def _purge_instance_edges(conn: apsw.Connection, spans: set[tuple[str, int]]) -> int:
    """Edges keep no instance: the buckets that held the purged spans (trace id, start) are counted
    again from the spans left in them (edges of spans retention already took from those buckets are
    not recounted), and the purged spans' waiting rows go."""
    deleted = 0
    hours = {ts - ts % edges.HOUR_NS for _, ts in spans}
    with transaction(conn):
        before = conn.total_changes()
        conn.executemany("DELETE FROM edge_waiting WHERE trace_id = ? AND timestamp = ?", sorted(spans))
        for table, size in edges.TABLES.items():  # identifiers from the module's allow-list
            for start in sorted({h - h % size for h in hours}):
                _rebuild_edges(conn, table, start, size)
        deleted = conn.total_changes() - before
    return deleted


def _purge_edges(conn: apsw.Connection, spec: PurgeSpec, spans: set[tuple[str, int]]) -> int:
    """Delete the purged spans' call edges and waiting children; a bucket the cutoff cuts through
    is rebuilt from the spans left in it (an edge whose parent lies outside that bucket is not
    counted again). One transaction; nothing on a server, which has no edge tables. With an
    instance, ``spans`` (trace id, start) are the purged spans (:func:`_purge_instance_edges`)."""
    if not all(has_table(conn, t) for t in edges.TABLES):
        return 0
    if spec.instance is not None:
        return _purge_instance_edges(conn, spans)
    deleted = 0
    cat_sql, cat_params = "", list(spec.categories)
    if spec.categories:
        cat_sql = f" AND category IN ({', '.join('?' * len(spec.categories))})"
    with transaction(conn):
        before = conn.total_changes()
        if spec.before_ns is None:
            conn.execute(f"DELETE FROM edge_waiting WHERE 1{cat_sql}", cat_params)
        else:
            conn.execute(f"DELETE FROM edge_waiting WHERE timestamp < ?{cat_sql}", [spec.before_ns, *cat_params])
        for table, size in edges.TABLES.items():  # identifiers from the module's allow-list
            where, params, partial = _rollup_where(spec, table)
            conn.execute(f"DELETE FROM {table} WHERE {where}", params)
            if partial is None:
                continue
            conn.execute(f"DELETE FROM {table} WHERE bucket_start_ns = ?{cat_sql}", [partial, *cat_params])
            aggs: edges.Aggs = {}
            rows = conn.execute(edges.TRACE_SPANS_SQL.format(where="AND timestamp >= ? AND timestamp < ?"),
                                (partial, partial + size))
            edges.by_trace(rows, aggs, size)
            if spec.categories:  # only the purged categories' rows were deleted above
                aggs = {k: a for k, a in aggs.items() if k[2] in spec.categories}
            conn.executemany(edges._UPSERT[table], edges.upsert_args(aggs))
        deleted = conn.total_changes() - before
    return deleted


def _purge_in_progress(conn: apsw.Connection, where: str, params: list[Any]) -> None:
    """Spans in progress of the purged scope (their table has the records' columns): their names
    and attributes go too. A running collector forgets them when their span arrives or they expire."""
    if has_table(conn, in_progress.TABLE):
        with transaction(conn):
            conn.execute(f"DELETE FROM {in_progress.TABLE} WHERE {where}", params)


def truncate_wal(conn: apsw.Connection, timeout_s: float) -> bool:
    """``wal_checkpoint(TRUNCATE)`` until it completes or ``timeout_s`` passes; True if it did."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(apsw.BusyError):  # a reader holds the WAL: try again shortly
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)  # BusyError unless complete
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def purge(conn: apsw.Connection, spec: PurgeSpec, *, batch_rows: int = 5000, vacuum_pages: int = 1000,
          checkpoint_timeout_s: float = 10.0) -> dict[str, Any]:
    """Delete, scrub, vacuum and truncate the WAL on ``conn`` (a read-write connection; its thread).

    Returns ``{"deleted": {category: rows}, "total", "rollup_rows", "edge_rows", "pages_freed",
    "wal_truncated"}``.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    # A libSQL server refuses this pragma and owns its files: there the rows and rollups go, but
    # scrubbing is the server's business ("wal_truncated" None; the CLI says so).
    remote = getattr(conn, "remote", False)
    if not remote:
        conn.execute("PRAGMA secure_delete=ON").fetchall()
    where, params = spec.where()
    deleted = dict.fromkeys(spec.categories or CATEGORIES, 0)
    spans: set[tuple[str, int]] = set()  # with an instance: the purged spans, for the edges
    keep_spans = spec.instance is not None and not remote
    while True:
        with transaction(conn):
            ids = conn.execute(f"SELECT id, category, trace_id, timestamp, type = 'span' FROM records "
                               f"WHERE {where} LIMIT ?", [*params, batch_rows]).fetchall()
            if not ids:
                break
            conn.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in ids])
        for _, category, trace_id, ts, is_span in ids:
            deleted[str(category)] = deleted.get(str(category), 0) + 1
            if keep_spans and is_span and trace_id is not None:
                spans.add((trace_id, ts))
    rollup_rows = _purge_rollups(conn, spec)
    edge_rows = _purge_edges(conn, spec, spans)
    _purge_in_progress(conn, where, params)
    freed = 0
    while n := vacuum_step(conn, vacuum_pages):
        freed += n
    truncated = None if remote else truncate_wal(conn, checkpoint_timeout_s)
    return {"deleted": deleted, "total": sum(deleted.values()), "rollup_rows": rollup_rows,
            "edge_rows": edge_rows, "pages_freed": freed, "wal_truncated": truncated}


def parse_categories(values: Sequence[str]) -> tuple[str, ...]:
    """Unique categories in the order given (``--category`` repeated)."""
    return tuple(dict.fromkeys(values))
