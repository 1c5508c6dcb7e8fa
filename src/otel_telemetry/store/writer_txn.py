"""What one store transaction writes: the rows (idempotent on ``uid``), the rollups and call edges
of exactly the rows it stored, and the publisher checkpoints they complete; and what a failed
transaction costs (only its own batch).

A mixin of ``StoreWriter`` (writer.py); these methods run on the writer thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apsw

from . import edges, in_progress, rollups
from . import retention as ret
from . import writer_remote as remote
from .schema import STORED_COLUMNS
from .writer_faults import _FATAL_ERRORS

log = logging.getLogger("otel_telemetry.store.writer")

# ON CONFLICT(uid) rather than INSERT OR IGNORE: OR IGNORE would also skip NOT NULL violations
# silently and count them as duplicates; this way only a repeated uid is skipped and a malformed
# row fails its transaction (then its batch alone is dropped and counted).
_INSERT = (
    f"INSERT INTO records({', '.join(STORED_COLUMNS)}) VALUES ({', '.join('?' * len(STORED_COLUMNS))}) "
    "ON CONFLICT(uid) DO NOTHING"
)
# The receiver is the authority on sequence numbers, so the latest checkpoint wins (no max()):
# a publisher that restarted its numbering must not be held to its old, higher sequence.
_UPSERT_CHECKPOINT = (
    "INSERT INTO publishers(publisher, topic, next_seq, last_seen) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(publisher, topic) DO UPDATE SET next_seq = excluded.next_seq, "
    "last_seen = excluded.last_seen"
)


@dataclass
class WriteBatch:
    """Rows (``schema.COLUMNS`` order; the writer adds ``instance``) plus the checkpoints they
    complete, committed atomically."""

    rows: list[tuple[Any, ...]]
    checkpoints: dict[tuple[bytes, str], int] = field(default_factory=dict)
    received: int = 0
    # Called on the writer thread once the batch is committed (OTLP receivers acknowledge then).
    on_commit: Callable[[], None] | None = None
    # Started spans (live spans, ``in_progress``), same columns: kept until their span is stored.
    started: list[tuple[Any, ...]] = field(default_factory=list)


class WriterTransactions:
    """Commits of coalesced batches; ``StoreWriter`` provides the attributes below."""

    _url: str | None
    _conn: Any
    _cond: threading.Condition
    _stats: dict[str, Any]
    _instance: tuple[str | None]
    _in_progress: in_progress.InProgress
    _clock: Callable[[], int]
    _bump: Callable[..., None]
    _write_remote: Callable[[list[WriteBatch]], None]
    _disk_full_now: Callable[[BaseException], None]
    _disk_ok_now: Callable[[], None]

    def _commit(self, group: list[WriteBatch]) -> list[WriteBatch]:
        """Commit a group; if it fails, retry batch by batch so one bad batch loses only itself.

        Returns the batches a full disk holds back (to be tried again; never dropped). Damaged-file
        errors propagate: they end the writer. On a server: while it is unreachable, keep the group
        and retry with backoff (the queue fills meanwhile: push-back); a row already stored there
        means a careful second attempt."""
        try:
            if self._url is None:
                self._write(group)
            else:
                self._write_remote(group)
        except apsw.FullError as exc:
            self._disk_full_now(exc)
            return group
        except _FATAL_ERRORS:
            raise
        except Exception:
            self._bump(errors=1)
            if len(group) > 1:
                log.warning("store transaction of %d batches failed; retrying one by one", len(group),
                            exc_info=True)
                for i, batch in enumerate(group):
                    if self._commit([batch]):
                        return group[i:]
            else:
                log.exception("store transaction failed; dropping %d rows", len(group[0].rows))
                self._bump(dropped_rows=len(group[0].rows))
            return []
        self._disk_ok_now()
        return []

    def _write(self, group: list[WriteBatch], careful: bool = False) -> None:
        conn = self._conn
        assert conn is not None
        n_rows = sum(len(b.rows) for b in group)
        checkpoints: dict[tuple[bytes, str], int] = {}
        for b in group:
            checkpoints.update(b.checkpoints)  # later batches carry later sequence numbers
        now_ns = self._clock()
        with ret.transaction(conn):
            rows = [r for b in group for r in b.rows]
            if self._url is not None:  # reads nothing unless careful: the whole of it is one request
                new = remote.insert(conn, _INSERT, rows, self._instance, careful) if n_rows else []
            else:
                new = self._insert_local(conn, rows)
            stored = len(new)
            evicted = 0
            if stored:
                rollups.update(conn, new, self._instance)
                if self._url is None:  # a server keeps no edges (see the module docstring)
                    evicted = edges.update(conn, new)
                self._in_progress.ended(conn, new)
            started = [r for b in group for r in b.started]
            if started:
                self._in_progress.add(conn, started, self._instance, now_ns)
            if checkpoints:
                conn.executemany(_UPSERT_CHECKPOINT,
                                 [(p, t, s, now_ns) for (p, t), s in checkpoints.items()])
        with self._cond:
            s = self._stats
            s["stored"] += stored
            s["duplicates"] += n_rows - stored
            s["received"] += sum(b.received for b in group)
            s["batches"] += len(group)
            s["commits"] += 1
            s["edge_children_evicted"] += evicted
            s["last_commit_ns"] = now_ns
        for b in group:
            if b.on_commit is not None:
                try:
                    b.on_commit()
                except Exception:
                    log.exception("on_commit callback failed")

    def _insert_local(self, conn: apsw.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (ON CONFLICT(uid) DO NOTHING); the ones actually stored."""
        if not rows:
            return []
        before = conn.total_changes()
        max_id = conn.execute("SELECT max(id) FROM records").fetchone()[0] or 0
        inst = self._instance
        conn.executemany(_INSERT, (r + inst for r in rows))
        stored = conn.total_changes() - before
        return rows if stored == len(rows) else rollups.inserted(conn, rows, max_id)
