"""Per-category retention: purge in small batches, incremental vacuum, and an optional size cap.

Pure functions over an apsw connection and an explicit ``now_ns`` so the collector's writer thread
and the CLI (``retention purge`` / ``retention set``) share one implementation, and tests control
the clock. Every function runs on whichever thread owns ``conn``.

Expiry rule: a row of category ``c`` is expired iff ``timestamp < now_ns - days[c] * 86_400 * 10**9``
(exact integer nanoseconds). A row exactly at the cutoff is kept.

Deletes go in batches (``batch_rows``, default 5000) each in its own short transaction, because one
large DELETE holds the write lock long enough to stall ingest for most of a second (FINDINGS §3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import apsw

from ..categories import CATEGORIES, CATEGORY_SET, DEFAULT_RETENTION_DAYS

NS_PER_DAY = 86_400 * 10**9


@dataclass
class RetentionPolicy:
    """Configured retention. ``days`` is overridden per category by rows of the ``retention`` table."""

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


def _validate(category: str, days: Any) -> None:
    if category not in CATEGORY_SET:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    # bool is an int subclass; "True days" is a config mistake, not 1 day.
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"retention days for {category} must be an integer >= 1, got {days!r}")


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
    """Policy days, overridden by the ``retention`` table; unknown/invalid table rows are ignored."""
    days = dict(policy.days)
    for category, value in conn.execute("SELECT category, days FROM retention"):
        if category in CATEGORY_SET and isinstance(value, int) and value >= 1:
            days[category] = value
    return days


def set_days(conn: apsw.Connection, category: str, days: int) -> None:
    """Persist an override (CLI ``retention set``); ValueError for an unknown category or days < 1."""
    _validate(category, days)
    with transaction(conn):
        conn.execute(
            "INSERT INTO retention(category, days) VALUES (?, ?) "
            "ON CONFLICT(category) DO UPDATE SET days = excluded.days",
            (category, days),
        )


def cutoffs(days: Mapping[str, int], now_ns: int) -> dict[str, int]:
    """Category -> cutoff ns. Rows with ``timestamp < cutoff`` are expired; ``== cutoff`` is kept."""
    return {category: now_ns - d * NS_PER_DAY for category, d in days.items()}


def count_expired(conn: apsw.Connection, days: Mapping[str, int], now_ns: int) -> dict[str, int]:
    """How many rows a purge would delete per category (for ``--dry-run``)."""
    out: dict[str, int] = {}
    for category, cutoff in cutoffs(days, now_ns).items():
        row = conn.execute(
            "SELECT count(*) FROM records WHERE category = ? AND timestamp < ?", (category, cutoff)
        ).fetchone()
        out[category] = int(row[0]) if row else 0
    return out


def purge_step(
    conn: apsw.Connection, days: Mapping[str, int], now_ns: int, batch_rows: int
) -> dict[str, int]:
    """Delete at most ``batch_rows`` expired rows in total, in one transaction.

    Returns rows deleted per category; all zeros means nothing expired is left.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    deleted = {category: 0 for category in days}
    budget = batch_rows
    with transaction(conn):
        for category, cutoff in cutoffs(days, now_ns).items():
            if budget <= 0:
                break
            before = conn.total_changes()
            conn.execute(
                "DELETE FROM records WHERE id IN "
                "(SELECT id FROM records WHERE category = ? AND timestamp < ? LIMIT ?)",
                (category, cutoff, budget),
            )
            n = conn.total_changes() - before
            deleted[category] = n
            budget -= n
    return deleted


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

    @classmethod
    def begin(cls, conn: apsw.Connection, policy: RetentionPolicy, now_ns: int) -> RetentionRun:
        return cls(policy, effective_days(conn, policy), now_ns)

    def step(self, conn: apsw.Connection) -> tuple[int, int]:
        """Run one step on ``conn``'s thread; returns (rows deleted, pages vacuumed)."""
        policy = self.policy
        if self.phase == "purge":
            n = sum(purge_step(conn, self.days, self.now_ns, policy.batch_rows).values())
            if n == 0:
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


def purge_all(conn: apsw.Connection, policy: RetentionPolicy, now_ns: int) -> dict[str, Any]:
    """Run every step to completion, vacuum, and truncate the WAL (CLI ``retention purge``).

    Returns ``{"deleted": {category: rows}, "capped": rows, "pages_freed": pages}``.
    An explicit checkpoint is used because the CLI's admin connection disables auto-checkpoint.
    """
    days = effective_days(conn, policy)
    deleted = {category: 0 for category in days}
    while True:
        step = purge_step(conn, days, now_ns, policy.batch_rows)
        for category, n in step.items():
            deleted[category] += n
        if not any(step.values()):
            break
    capped = 0
    if policy.max_size_bytes is not None:
        while n := size_cap_step(conn, policy.max_size_bytes, policy.batch_rows):
            capped += n
    freed = 0
    while n := vacuum_step(conn, policy.vacuum_pages):
        freed += n
    try:
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    except apsw.BusyError:
        pass  # a running collector's readers hold the WAL; its writer checkpoints later
    return {"deleted": deleted, "capped": capped, "pages_freed": freed}
