"""Checks of a store file before anything opens it, and how to read one on read-only media.

- A FIFO (or a device, a directory, a socket) given as the database made ``open()`` block forever,
  deaf to SIGTERM: anything but a regular file (or a file yet to be created) is refused by
  ``stat`` alone, before any open.
- A read-only file system gave "unable to open database file" and no hint: it is named.
- A damaged file was accepted, the collector said "running" and dropped every row: ``PRAGMA
  quick_check`` at start refuses it (its cost on a 1M-row file: docs/benchmarks.md).
- Reading a WAL database on read-only media (a backup disk, a read-only mount) needs its ``-shm``
  beside it, which SQLite cannot create there. With no ``-wal`` file either, nothing is pending and
  no writer is using the file, so it is opened ``immutable=1`` (SQLite then takes no locks and
  needs no ``-shm``); with a ``-wal`` and its ``-shm`` SQLite reads them as usual.

Every function runs on the caller's thread and opens nothing but what it says.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

import apsw

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}


class StoreFileError(apsw.CantOpenError):
    """The store file cannot be used; the message is one line for the operator (an apsw.Error, so
    the CLI's and dashboard's existing handlers report it)."""


def _existing(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows links: a link to a FIFO is a FIFO
    except FileNotFoundError:
        return None


def check_regular(path: str) -> None:
    """Refuse a database path (or its -wal/-shm) that exists and is not a regular file; stat only."""
    for p in (path, f"{path}-wal", f"{path}-shm"):
        st = _existing(p)
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise StoreFileError(f"{p} is {kind}, not a database file: give --db a regular file "
                                 "(or a path where one can be created)")


def read_only_fs(path: str) -> bool:
    """True if the file system holding ``path`` (or its nearest existing parent) is mounted read-only."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_writable(path: str) -> None:
    """A writer needs the file, its -wal and -shm beside it: refuse a read-only file system."""
    if read_only_fs(path):
        raise StoreFileError(
            f"{path} is on a read-only file system: writing it (and its -wal, -shm beside it) needs a "
            "writable place; reading works as it is (the CLI opens it read-only)")


def quick_check(conn: apsw.Connection, path: str, budget_s: float) -> bool:
    """``PRAGMA quick_check`` on an open connection, given up after ``budget_s`` seconds (it reads
    every page: ~3 s per 1M rows); StoreFileError naming the first problem. False if cut short."""
    deadline = time.monotonic() + budget_s
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        first = conn.execute("PRAGMA quick_check(1)").fetchone()
    except apsw.InterruptError:
        return False
    except apsw.Error as exc:  # not a database at all, or damaged beyond what the check walks
        first = (str(exc),)
    finally:
        conn.set_progress_handler(None)
    if first is None or first[0] != "ok":
        what = " ".join(str(first[0]).replace("*** in database main ***", "").split()) if first else "no answer"
        raise StoreFileError(
            f"{path} is damaged ({what}): move it aside (the collector starts a "
            "new file) or restore a copy; `sqlite3 FILE .recover` may save its rows")
    return True


def reader_name(path: str) -> str | None:
    """An ``immutable=1`` URI for a database on a read-only file system with no -wal beside it
    (nothing pending, no live writer); None to open ``path`` as usual."""
    if not read_only_fs(path) or os.path.exists(f"{path}-wal"):
        return None
    return f"file:{quote(os.path.abspath(path))}?immutable=1"
