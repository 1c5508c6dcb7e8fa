"""The forwarder's queue of encoded OTLP requests: in memory, or persisted in ``queue_dir``.

The disk queue is one SQLite file (``queue_dir/queue.sqlite``, WAL, synchronous=NORMAL: survives
a process crash, not necessarily a power loss) with one row per encoded request: kind, item and
batch counts, protobuf body. Rows are appended by the encoder thread and deleted by the sender
thread only after the downstream acknowledged (or permanently refused) them, so a restart re-sends
exactly what was not acknowledged. A crash between the acknowledgement and the delete re-sends
that one request: delivery is at-least-once, exactly-once whenever the process stops normally.
With encryption at rest on (a database key is set, see ``db.resolve_key``) the queue file is
keyed like the store, since it holds the same records.

An exclusive ``flock`` on ``queue_dir/queue.lock`` keeps two forwarders (e.g. two collectors with
the same config) from draining the same queue twice.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import apsw

from ...store.db import open_sqlite


@dataclass(frozen=True, slots=True)
class Request:
    """One encoded request. ``batches`` is how many consumed batches it completes (queue bound)."""

    kind: str
    body: bytes
    items: int
    batches: int
    id: int = 0


class RequestQueue(Protocol):
    persistent: bool

    def put(self, requests: list[Request]) -> None: ...
    def peek(self) -> Request | None: ...
    def remove(self, request: Request) -> None: ...
    def totals(self) -> tuple[int, int]: ...
    def drain(self) -> list[Request]: ...
    def close(self) -> None: ...


class MemoryQueue:
    """Thread-safe FIFO; everything in it is lost when the process stops."""

    persistent = False

    def __init__(self) -> None:
        self._q: deque[Request] = deque()
        self._lock = threading.Lock()
        self._next = 1

    def put(self, requests: list[Request]) -> None:
        with self._lock:
            for r in requests:
                self._q.append(Request(r.kind, r.body, r.items, r.batches, self._next))
                self._next += 1

    def peek(self) -> Request | None:
        with self._lock:
            return self._q[0] if self._q else None

    def remove(self, request: Request) -> None:
        with self._lock:
            if self._q and self._q[0].id == request.id:
                self._q.popleft()

    def totals(self) -> tuple[int, int]:
        with self._lock:
            return sum(r.items for r in self._q), sum(r.batches for r in self._q)

    def drain(self) -> list[Request]:
        with self._lock:
            out = list(self._q)
            self._q.clear()
            return out

    def close(self) -> None:
        pass


class QueueLocked(RuntimeError):
    """Another forwarder (in this or another process) holds the queue directory."""


class DiskQueue:
    """SQLite-backed FIFO shared by the encoder thread (put) and the sender thread (peek/remove)."""

    persistent = True

    def __init__(self, directory: str) -> None:
        path = Path(directory).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "queue.sqlite"
        self._lockfile: IO[str] | None = open(path / "queue.lock", "a+")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            self._lockfile = None
            raise QueueLocked(f"forward queue {path} is in use by another forwarder") from None
        self._lock = threading.Lock()
        try:
            self._db = open_sqlite(str(self.path), apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
            self._db.execute("PRAGMA journal_mode=WAL").fetchall()
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
                " items INTEGER NOT NULL, batches INTEGER NOT NULL, body BLOB NOT NULL)")
        except BaseException:
            self._lockfile.close()
            self._lockfile = None
            raise
        os.chmod(self.path, 0o600)

    def put(self, requests: list[Request]) -> None:
        """Encoder thread: append in one transaction; raises apsw.Error (e.g. disk full)."""
        if not requests:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO requests (kind, items, batches, body) VALUES (?, ?, ?, ?)",
                                     [(r.kind, r.items, r.batches, r.body) for r in requests])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def peek(self) -> Request | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, items, batches, body FROM requests ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return Request(row[1], bytes(row[4]), row[2], row[3], row[0])

    def remove(self, request: Request) -> None:
        with self._lock:
            self._db.execute("DELETE FROM requests WHERE id = ?", (request.id,))

    def totals(self) -> tuple[int, int]:
        """(items, batches) waiting on disk."""
        with self._lock:
            items, batches = self._db.execute(
                "SELECT coalesce(sum(items), 0), coalesce(sum(batches), 0) FROM requests").fetchone()
        return int(items), int(batches)

    def drain(self) -> list[Request]:
        return []  # persisted requests stay for the next start

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._lockfile is not None:
            self._lockfile.close()  # releases the flock
            self._lockfile = None
