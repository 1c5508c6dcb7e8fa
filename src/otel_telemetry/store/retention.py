"""Retention per category and record type: purge in small batches, incremental vacuum, optional size cap.

Pure functions over an apsw connection and an explicit ``now_ns`` so the collector's writer thread
and the CLI (``retention purge`` / ``retention set``) share one implementation, and tests control
the clock. Every function runs on whichever thread owns ``conn``.

Days are set per *key*: a category (``ai_behavior``), a record type (``span``, ``metric``, ``log``,
``event``) or a pair (``ai_behavior.span``). A row of category ``c`` and type ``t`` is kept
``days(c, t)`` = the pair's days, else the type's, else the category's (every category has a
default; 001's "events 90 d, metrics 180 d, traces 30 d" is three type keys). Overrides stored in
the ``retention`` table (``retention set``) win over the configuration key for key.

Expiry rule: such a row is expired iff ``timestamp < now_ns - days(c, t) * 86_400 * 10**9`` (exact
integer nanoseconds). A row exactly at the cutoff is kept.

Deletes go in batches (``batch_rows``, default 5000) each in its own short transaction, because one
large DELETE holds the write lock long enough to stall ingest for most of a second (FINDINGS §3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import apsw

from ..categories import CATEGORIES, DEFAULT_RETENTION_DAYS

NS_PER_DAY = 86_400 * 10**9
TYPES: tuple[str, ...] = ("span", "metric", "log", "event")
PAIRS: tuple[str, ...] = tuple(f"{c}.{t}" for c in CATEGORIES for t in TYPES)
KEYS = frozenset((*CATEGORIES, *TYPES, *PAIRS))  # every valid retention key
# The most days a key may keep (~273 years). Cutoffs are ``now_ns - days * NS_PER_DAY`` in int64
# nanoseconds (SQLite's integers): past ~127,000 days that overflows, which once killed the writer.
MAX_DAYS = 100_000


def resolve(days: Mapping[str, int], category: str, rtype: str) -> tuple[int, str] | None:
    """(days, the key that decided) for rows of ``category`` and ``rtype``: pair, type, category."""
    for key in (f"{category}.{rtype}", rtype, category):
        if key in days:
            return days[key], key
    return None


def _plan(days: Mapping[str, int]) -> list[tuple[str, tuple[str, ...] | None, int]]:
    """(category, types or None for all of them, days) groups to purge: one statement per category
    when its types share their days (no type predicate), else one per distinct number of days."""
    out = []
    for c in CATEGORIES:
        groups: dict[int, list[str]] = {}
        for t in TYPES:
            r = resolve(days, c, t)
            if r is not None:
                groups.setdefault(r[0], []).append(t)
        if len(groups) == 1 and len(next(iter(groups.values()))) == len(TYPES):
            out.append((c, None, next(iter(groups))))
        else:
            out += [(c, tuple(ts), d) for d, ts in groups.items()]
    return out


def _where(types: tuple[str, ...] | None) -> str:
    # Only "?" placeholders are built here; the type values are bound parameters.
    return "" if types is None else f" AND type IN ({', '.join('?' * len(types))})"


@dataclass
class RetentionPolicy:
    """Configured retention: ``days`` by key (category, type or category.type; the built-in
    category defaults unless replaced), overridden key by key by rows of the ``retention`` table."""

    days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    max_size_bytes: int | None = None
    batch_rows: int = 5000
    vacuum_pages: int = 1000

    def __post_init__(self) -> None:
        for category, days in self.days.items():
            _validate(category, days)
        if self.max_size_bytes is not None and self.max_size_bytes < 1:
            raise ValueError(f"retention max_size_bytes must be >= 1, got {self.max_size_bytes!r}")
        if self.batch_rows < 1 or self.vacuum_pages < 1:
            raise ValueError("retention batch_rows and vacuum_pages must be >= 1")


def _validate(key: str, days: Any) -> None:
    if key not in KEYS:
        raise ValueError(f"unknown category or type {key!r}; expected a category ({', '.join(CATEGORIES)}), "
                         f"a type ({', '.join(TYPES)}) or category.type")
    # bool is an int subclass; "True days" is a config mistake, not 1 day.
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"retention days for {key} must be an integer from 1 to {MAX_DAYS}, got {days!r}")


@contextmanager
def transaction(conn: apsw.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception.

    IMMEDIATE takes the write lock up front so the busy timeout applies, instead of a deferred
    read→write upgrade failing with SQLITE_BUSY_SNAPSHOT.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def effective_days(conn: apsw.Connection, policy: RetentionPolicy) -> dict[str, int]:
    """Policy days by key, overridden by the ``retention`` table (whose ``category`` column holds
    the key); unknown/invalid table rows (written by an older version or by hand) are ignored."""
    days = dict(policy.days)
    for key, value in conn.execute("SELECT category, days FROM retention"):
        if key in KEYS and isinstance(value, int) and 1 <= value <= MAX_DAYS:
            days[key] = value
    return days


def effective_table(conn: apsw.Connection, policy: RetentionPolicy) -> list[dict[str, Any]]:
    """Every category × type: days kept, the key that decided, and whether that key is an
    ``override`` (the table), ``config`` (set in the policy) or ``default`` (built in)."""
    overrides = effective_days(conn, RetentionPolicy(days={}))
    days = effective_days(conn, policy)
    out = []
    for c in CATEGORIES:
        for t in TYPES:
            r = resolve(days, c, t)
            if r is None:
                continue
            origin = ("override" if r[1] in overrides else
                      "default" if DEFAULT_RETENTION_DAYS.get(r[1]) == policy.days.get(r[1]) else "config")
            out.append({"category": c, "type": t, "days": r[0], "key": r[1], "source": origin})
    return out


def set_days(conn: apsw.Connection, category: str, days: int) -> None:
    """Persist an override (CLI ``retention set``) for a key: a category, a type or
    ``category.type``; ValueError for an unknown key or days outside 1..MAX_DAYS."""
    _validate(category, days)
    with transaction(conn):
        conn.execute(
            "INSERT INTO retention(category, days) VALUES (?, ?) "
            "ON CONFLICT(category) DO UPDATE SET days = excluded.days",
            (category, days),
        )


def cutoffs(days: Mapping[str, int], now_ns: int) -> dict[str, int]:
    """Key -> cutoff ns. Rows with ``timestamp < cutoff`` are expired; ``== cutoff`` is kept."""
    return {key: now_ns - d * NS_PER_DAY for key, d in days.items()}


def _inst(instance: str | None) -> tuple[str, tuple[str, ...]]:
    """SQL and binding for an optional instance filter (a central server's one collector)."""
    return ("", ()) if instance is None else (" AND instance = ?", (instance,))


def count_expired(conn: apsw.Connection, days: Mapping[str, int], now_ns: int,
                  instance: str | None = None) -> dict[str, int]:
    """How many rows a purge would delete per category (for ``--dry-run``), of ``instance`` if given."""
    out: dict[str, int] = {}
    inst_sql, inst = _inst(instance)
    for category, types, d in _plan(days):
        row = conn.execute(
            f"SELECT count(*) FROM records WHERE category = ? AND timestamp < ?{_where(types)}{inst_sql}",
            (category, now_ns - d * NS_PER_DAY, *(types or ()), *inst)).fetchone()
        out[category] = out.get(category, 0) + (int(row[0]) if row else 0)
    return out


def count_expired_cells(conn: apsw.Connection, days: Mapping[str, int], now_ns: int,
                        instance: str | None = None) -> dict[tuple[str, str], int]:
    """Rows a purge would delete per (category, type), for ``retention show``."""
    out: dict[tuple[str, str], int] = {}
    inst_sql, inst = _inst(instance)
    for c in CATEGORIES:
        for t in TYPES:
            r = resolve(days, c, t)
            if r is not None:
                out[(c, t)] = int(conn.execute(
                    f"SELECT count(*) FROM records WHERE category = ? AND type = ? AND timestamp < ?{inst_sql}",
                    (c, t, now_ns - r[0] * NS_PER_DAY, *inst)).fetchone()[0])
    return out


class Purge:
    """One pass over the rows of ``days`` expired at ``now_ns``, in steps of bounded work.

    A category whose types all keep the same days is a plain ``DELETE ... LIMIT``. A category
    whose types differ would make such a DELETE walk, inside the write transaction, over every older
    row of the types kept longer (001's metrics kept 180 days behind spans kept 30: ~0.5 s per
    100 000 rows, bench/bench_retention_types.py). Instead it pages through the category's rows
    older than the cutoff in ``batch_rows``-sized pages, in (timestamp, id) order, remembering
    where it stopped, and deletes the expired ones of each page; a step examines at most
    ``batch_rows`` rows whichever way.
    """

    def __init__(self, days: Mapping[str, int], now_ns: int, instance: str | None = None) -> None:
        self.now_ns = now_ns
        # Only this collector instance's rows (a central server). Rollups stay, as they do for
        # every expired row: they outlive raw rows, and now carry the instance in their key.
        self._inst_sql, self._inst = _inst(instance)
        self.plan = _plan(days)
        self._after: dict[int, tuple[int, int]] = {}  # plan index -> (timestamp, id) last examined
        self._finished: set[int] = set()

    @property
    def done(self) -> bool:
        return len(self._finished) == len(self.plan)

    def step(self, conn: apsw.Connection, batch_rows: int) -> dict[str, int]:
        """One transaction on ``conn``'s thread; rows deleted per category (``done`` says when the
        pass is over: a step of only kept rows deletes nothing without being the last)."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        deleted = {category: 0 for category, _, _ in self.plan}
        budget = batch_rows
        with transaction(conn):
            for i, (category, types, d) in enumerate(self.plan):
                if budget <= 0:
                    break
                if i in self._finished:
                    continue
                cutoff = self.now_ns - d * NS_PER_DAY
                if types is None:
                    before = conn.total_changes()
                    conn.execute("DELETE FROM records WHERE id IN (SELECT id FROM records WHERE "
                                 f"category = ? AND timestamp < ?{self._inst_sql} LIMIT ?)",
                                 (category, cutoff, *self._inst, budget))
                    n = conn.total_changes() - before
                    deleted[category] += n
                    if n < budget:
                        self._finished.add(i)
                    budget -= n
                    continue
                ts, rid = self._after.get(i, (-(2**63), -1))
                page = list(conn.execute(
                    "SELECT timestamp, id, type FROM records WHERE category = ? AND timestamp < ? "
                    f"AND (timestamp, id) > (?, ?){self._inst_sql} ORDER BY timestamp, id LIMIT ?",
                    (category, cutoff, ts, rid, *self._inst, budget)))
                if len(page) < budget:
                    self._finished.add(i)
                if page:
                    self._after[i] = (page[-1][0], page[-1][1])
                ids = [r[1] for r in page if r[2] in types]
                for k in range(0, len(ids), 500):
                    chunk = ids[k:k + 500]
                    conn.execute(f"DELETE FROM records WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
                deleted[category] += len(ids)
                budget -= max(1, len(page))
        return deleted


def purge_step(
    conn: apsw.Connection, days: Mapping[str, int], now_ns: int, batch_rows: int
) -> dict[str, int]:
    """Delete at most ``batch_rows`` expired rows in total, in one transaction.

    Returns rows deleted per category; with category-only ``days`` all zeros means nothing
    expired is left (with type settings use :class:`Purge`, whose ``done`` says so).
    """
    return Purge(days, now_ns).step(conn, batch_rows)


def _pragma_int(conn: apsw.Connection, name: str) -> int:
    # ``name`` comes only from the literals in this module, never from callers.
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0]) if row else 0


def used_bytes(conn: apsw.Connection) -> int:
    """Bytes in pages that hold data: (page_count - freelist_count) * page_size."""
    pages = _pragma_int(conn, "page_count") - _pragma_int(conn, "freelist_count")
    return pages * _pragma_int(conn, "page_size")


def vacuum_step(conn: apsw.Connection, pages: int) -> int:
    """Return up to ``pages`` free pages to the file system; returns pages freed.

    The pragma frees one page per step, so the cursor is iterated to completion.
    """
    if pages < 1:
        raise ValueError("pages must be >= 1")
    before = _pragma_int(conn, "freelist_count")
    if before == 0:
        return 0
    for _ in conn.execute(f"PRAGMA incremental_vacuum({int(pages)})"):
        pass
    return before - _pragma_int(conn, "freelist_count")


def size_cap_step(conn: apsw.Connection, max_bytes: int, batch_rows: int) -> int:
    """If used bytes exceed ``max_bytes``, delete up to ``batch_rows`` oldest rows (any category).

    Returns rows deleted; 0 when under the cap or the table is empty.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    if used_bytes(conn) <= max_bytes:
        return 0
    with transaction(conn):
        before = conn.total_changes()
        conn.execute(
            "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY timestamp LIMIT ?)",
            (batch_rows,),
        )
        return conn.total_changes() - before


@dataclass
class RetentionRun:
    """One retention pass cut into small steps so the collector's writer can interleave ingest.

    Phases: purge (expired rows) -> cap (size limit, if set) -> vacuum -> done.
    """

    policy: RetentionPolicy
    days: dict[str, int]
    now_ns: int
    phase: str = "purge"
    purge: Purge | None = None

    @classmethod
    def begin(cls, conn: apsw.Connection, policy: RetentionPolicy, now_ns: int) -> RetentionRun:
        return cls(policy, effective_days(conn, policy), now_ns)

    def step(self, conn: apsw.Connection) -> tuple[int, int]:
        """Run one step on ``conn``'s thread; returns (rows deleted, pages vacuumed)."""
        policy = self.policy
        if self.phase == "purge":
            if self.purge is None:
                self.purge = Purge(self.days, self.now_ns)
            n = sum(self.purge.step(conn, policy.batch_rows).values())
            if self.purge.done:
                self.phase = "cap" if policy.max_size_bytes is not None else "vacuum"
            return n, 0
        if self.phase == "cap":
            n = size_cap_step(conn, policy.max_size_bytes or 0, policy.batch_rows)
            if n == 0:
                self.phase = "vacuum"
            return n, 0
        if self.phase == "vacuum":
            pages = vacuum_step(conn, policy.vacuum_pages)
            if pages == 0:
                self.phase = "done"
            return 0, pages
        return 0, 0

    @property
    def done(self) -> bool:
        return self.phase == "done"


def purge_all(conn: apsw.Connection, policy: RetentionPolicy, now_ns: int,
              instance: str | None = None) -> dict[str, Any]:
    """Run every step to completion, vacuum, and truncate the WAL (CLI ``retention purge``).
    With ``instance``, only that collector instance's expired rows (and no size cap, which is the
    whole store's).

    Returns ``{"deleted": {category: rows}, "capped": rows, "pages_freed": pages}``.
    An explicit checkpoint is used because the CLI's admin connection disables auto-checkpoint.
    """
    days = effective_days(conn, policy)
    purge = Purge(days, now_ns, instance)
    deleted = {category: 0 for category, _, _ in purge.plan}
    while not purge.done:
        for category, n in purge.step(conn, policy.batch_rows).items():
            deleted[category] += n
    capped = 0
    if policy.max_size_bytes is not None and instance is None:
        while n := size_cap_step(conn, policy.max_size_bytes, policy.batch_rows):
            capped += n
    freed = 0
    while n := vacuum_step(conn, policy.vacuum_pages):
        freed += n
    # Busy: a running collector's readers hold the WAL; its writer checkpoints later.
    with contextlib.suppress(apsw.BusyError):
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    return {"deleted": deleted, "capped": capped, "pages_freed": freed}
