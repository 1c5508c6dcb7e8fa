"""The store writer's faults: a full disk (hold the batch, push back, resume by itself) and a
damaged file or a bug (stop for good and say why, so the collector exits instead of running on).

A mixin of ``StoreWriter`` (writer.py): these methods run on the writer thread unless noted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import apsw

WriteBatch = Any  # writer.WriteBatch (not imported: writer.py imports this module)

log = logging.getLogger("otel_telemetry.store.writer")

# Errors that say the file itself is unusable, not one batch: the writer stops and says why
# (``failure``), and the collector exits non-zero instead of dropping every batch after it.
_FATAL_ERRORS = (apsw.CorruptError, apsw.NotADBError)
_DISK_RETRY_S = 1.0  # how often a batch held back by a full disk is tried again
_FULL_STATUS_S = 5.0  # how often the status row is written meanwhile (each write takes a little space)
# Kept beside the database and given back when the disk fills, so the status row can still say
# ``disk_full`` (else it went stale at its last healthy value); made again once writes succeed.
RESERVE_BYTES = 1024 * 1024


class WriterFaults:
    """State and handling of the writer's faults; ``StoreWriter`` provides the attributes below."""

    failure: str | None  # set once, on the writer thread, when it stops for good
    _disk_full: bool  # SQLITE_FULL seen and not yet written past
    _full_status_at = 0.0  # monotonic time of the next status row while the disk is full
    _path: str
    _cond: threading.Condition
    _queue: queue.Queue[Any]
    _stats: dict[str, int]
    _processed: int
    _stopping: bool
    _commit: Callable[[list[WriteBatch]], list[WriteBatch]]
    _checkpoint: Callable[[int], None]
    _write_status: Callable[[], None]

    @property
    def state(self) -> str:
        """``running``, ``disk_full`` (ingest paused until space returns) or ``failed`` (any thread)."""
        return "failed" if self.failure is not None else "disk_full" if self._disk_full else "running"

    def _fail(self, reason: str) -> None:
        """Writer thread: stop for good; what is queued is counted as dropped, never silently lost."""
        log.debug("store writer stopped: %s", reason)  # the collector says it, once
        with self._cond:
            self.failure = reason
            self._stats["errors"] += 1
        self._drop_unstored([], "the writer stopped")

    def _drop_unstored(self, held: list[WriteBatch], why: str) -> None:
        """Writer thread, on the way out: count the rows of ``held`` and of the queue as dropped."""
        batches, rows = list(held), 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if hasattr(item, "rows"):  # not the wake-up sentinel
                batches.append(item)
        rows = sum(len(b.rows) for b in batches)
        if rows:
            log.error("%d rows not stored (%s)", rows, why)
        with self._cond:
            self._stats["dropped_rows"] += rows
            self._processed += len(batches)
            self._cond.notify_all()

    def _reserve(self) -> None:
        """Writer thread: (re)make the reserve file; quietly skipped when there is no room for it, and
        for a server (no disk of ours to fill)."""
        if "://" in self._path:
            return
        path = self._path + "-reserve"
        with contextlib.suppress(OSError):  # no reserve yet: made below
            if os.path.getsize(path) >= RESERVE_BYTES:
                return
        try:
            with open(path, "wb") as f:  # real bytes (a sparse file would free nothing); no fsync needed
                f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _retry_held(self, held: list[WriteBatch], stopping: bool) -> list[WriteBatch]:
        """Writer thread, disk full: wait a little, free the WAL if we can, try the held batches
        again. Nothing new is taken off the queue meanwhile, so it fills and ingest pushes back
        (OTLP 429/503, the ZeroMQ socket's high-water mark) like a store that is behind."""
        if not stopping:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, _DISK_RETRY_S)
            if time.monotonic() >= self._full_status_at:
                self._full_status_at = time.monotonic() + _FULL_STATUS_S
                self._write_status()
        if not stopping and self._free_bytes() < 2 * RESERVE_BYTES:
            return held  # the reserve given back is for the status row, not for ingest
        # A TRUNCATE checkpoint moves the WAL into the file and gives the WAL's space back: without
        # it, space freed by the operator is eaten by the WAL again before a batch fits.
        self._checkpoint(apsw.SQLITE_CHECKPOINT_TRUNCATE)
        still = self._commit(held)
        with self._cond:
            self._processed += len(held) - len(still)
            self._cond.notify_all()
        return still

    def _free_bytes(self) -> int:
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self._path)))
        except OSError:
            return 1 << 62  # cannot tell: just try
        return st.f_bavail * st.f_frsize

    def _disk_full_now(self, exc: BaseException) -> None:
        """One log line per change of condition, not a traceback per batch."""
        if not self._disk_full:
            self._disk_full = True
            log.error("store disk full (%s): ingest paused, pushing back; free space beside %s and it "
                      "resumes by itself", exc, self._path)
            with contextlib.suppress(OSError):
                os.unlink(self._path + "-reserve")  # room for the status row that says so
            self._full_status_at = time.monotonic() + _FULL_STATUS_S
            self._write_status()

    def _disk_ok_now(self) -> None:
        if self._disk_full:
            self._disk_full = False
            log.warning("store disk space available again: ingest resumed")
            self._reserve()

