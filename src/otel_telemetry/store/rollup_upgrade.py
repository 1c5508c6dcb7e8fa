"""Upgrade rollup tables from before their ``instance`` key column (issue 14).

A ``WITHOUT ROWID`` table cannot change its primary key in place, so each table is renamed, made
again with the new key, and its rows are copied across with an instance. Rollups outlive their
raw rows (400 days against weeks), so they are copied, not rebuilt, wherever a rebuild would lose
figures. Each old row's instance is that of the records of its bucket:

* the bucket's records all have one instance (always so on a device's own file): that one;
* no record is left in the bucket (retention took them): the one instance of every record in the
  database if there is exactly one, else ``''`` (unattributed: the totals stay right, a
  per-instance view of that bucket does not see it);
* several instances (a central server): rebuilt per instance from the records when they are all
  still there (their count equals the bucket's), else ``''`` as above.

Records stored before instances existed have ``instance`` NULL; they count as ``''``.
Runs on the thread that owns ``conn``: on a file in :func:`ensure`'s transaction, before
``rollups.ensure``; on a server in the transaction ``db.ensure_remote_schema`` opens.
"""

from __future__ import annotations

from typing import Any

from . import rollups as ru

_OLD_KEYS = tuple(c for c in ru.KEY_COLUMNS if c != "instance")
_INST = "coalesce(instance, '')"


def ensure(conn: Any) -> bool:
    """On a file's read-write connection: upgrade its rollup tables if they are from before the
    instance key, in one ``BEGIN IMMEDIATE`` transaction. True if an upgrade ran."""
    ru.register(conn)  # a rebuilt bucket merges histograms with it
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = needed(conn)
        if done:
            upgrade(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done


def needed(conn: Any) -> bool:
    """True when ``rollup_hourly`` exists without the ``instance`` column."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(rollup_hourly)")}
    return bool(cols) and "instance" not in cols


def _bucket_instances(conn: Any) -> dict[int, list[Any]]:
    """Hour start -> [records, lowest instance, highest instance] (one scan of the records)."""
    h = ru.HOUR_NS
    # Floor modulo (SQLite's % truncates): the same buckets as the writer's ``ts - ts % size``.
    sql = (f"SELECT timestamp - ((timestamp % ?) + ?) % ? AS b, count(*), min({_INST}), max({_INST}) "
           "FROM records GROUP BY b")
    return {int(b): [int(n), lo, hi] for b, n, lo, hi in conn.execute(sql, (h, h, h))}


def upgrade(conn: Any) -> dict[str, int]:
    """Move both rollup tables to the instance key; returns old rows copied and buckets rebuilt."""
    hours = _bucket_instances(conn)
    days: dict[int, list[Any]] = {}
    for b, (n, lo, hi) in hours.items():
        d = days.setdefault(b - b % ru.DAY_NS, [0, lo, hi])
        d[0] += n
        d[1], d[2] = min(d[1], lo), max(d[2], hi)
    everyone = {x for _, lo, hi in hours.values() for x in (lo, hi)}
    fallback = next(iter(everyone)) if len(everyone) == 1 else ""
    copied = rebuilt = 0
    cols = ", ".join(("bucket_start_ns", *_OLD_KEYS, "instance", *ru.SUM_COLUMNS))
    old_cols = ", ".join(("bucket_start_ns", *_OLD_KEYS, "?", *ru.SUM_COLUMNS))
    for table in ru.TABLES:  # identifiers from the module's allow-list
        conn.execute(f"DROP TABLE IF EXISTS {table}_old")
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
    conn.execute(ru.DDL)
    for table, size in ru.TABLES.items():
        seen = hours if size == ru.HOUR_NS else days
        copy: list[tuple[str, int]] = []
        rebuild: list[int] = []
        for b, n_old in conn.execute(f"SELECT bucket_start_ns, sum(count) FROM {table}_old "
                                     "GROUP BY bucket_start_ns").fetchall():
            rec = seen.get(int(b))
            if rec is None:
                copy.append((fallback, b))
            elif rec[1] == rec[2]:
                copy.append((rec[1], b))
            elif rec[0] == n_old:
                rebuild.append(int(b))
            else:
                copy.append(("", b))
        if copy:
            conn.executemany(f"INSERT INTO {table}({cols}) SELECT {old_cols} FROM {table}_old "
                             "WHERE bucket_start_ns = ?", copy)
            copied += len(copy)
        for b in rebuild:
            hourly: dict[tuple[Any, ...], list[Any]] = {}
            for row in conn.execute(f"SELECT {ru.SELECT_INPUT} FROM records WHERE timestamp >= ? AND timestamp < ?",
                                    (b, b + size)).fetchall():
                ru.add_input(hourly, row, ru.HOUR_NS)
            ru._upsert(conn, table, hourly if size == ru.HOUR_NS else ru.roll_up(hourly, size))
        rebuilt += len(rebuild)
        conn.execute(f"DROP TABLE {table}_old")
    return {"buckets_copied": copied, "buckets_rebuilt": rebuilt}
