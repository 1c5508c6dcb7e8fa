"""Connections to the store file: the writer's, read-only readers, and the CLI's admin one.

The store's single-writer rule lives in ``store.StoreWriter``; this module only opens
connections with the right flags and pragmas and creates or upgrades the schema.
"""

from __future__ import annotations

import os

import apsw

from . import rollups
from .schema import apply_ddl

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
BUSY_TIMEOUT_MS = 5000


def _open_rw(path: str, extra_pragma: str) -> apsw.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # Must precede the first CREATE TABLE; on an existing database it is a no-op.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        apply_ddl(conn)  # creates, or upgrades an older records table
        rollups.ensure(conn)  # rollup tables; rebuilt from the records of an older database
        conn.execute(extra_pragma).fetchall()  # callers pass literals / allow-listed values only
    except BaseException:
        conn.close()
        raise
    return conn


def open_writer(path: str, synchronous: str = "normal") -> apsw.Connection:
    """Open (creating if needed) the collector's read-write connection. Call on the writer thread."""
    mode = _SYNCHRONOUS.get(str(synchronous).lower())
    if mode is None:
        raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
    return _open_rw(path, f"PRAGMA synchronous={mode}")


def open_reader(path: str) -> apsw.Connection:
    """Read-only connection for the query side; raises apsw.CantOpenError if the file is missing."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    return conn


def open_admin(path: str) -> apsw.Connection:
    """Short-lived read-write connection for CLI writes (retention set / purge), any one thread.

    Auto-checkpoint is off so only the collector's writer checkpoints during normal operation;
    callers that need a checkpoint (``retention.purge_all``) ask for one explicitly.
    """
    return _open_rw(path, "PRAGMA wal_autocheckpoint=0")
