"""Connections to the store file: the writer's, read-only readers, and the CLI's admin one.

The store's single-writer rule lives in ``store.StoreWriter``; this module only opens
connections with the right flags and pragmas and creates or upgrades the schema.

Encryption at rest (optional, off by default): with a key from ``$OTEL_TELEMETRY_DB_KEY``, else
the file named by ``$OTEL_TELEMETRY_DB_KEY_FILE``, else ``store.key_file`` in collector.yaml
(:func:`set_key_file`), every connection opened here (and by :func:`open_sqlite` for the side
files: alert state, forward queue) is keyed with SQLite3 Multiple Ciphers (``apsw-sqlite3mc``,
default cipher ChaCha20-Poly1305; the WAL is encrypted too). Without a key the files are plain
SQLite. A wrong or missing key is a :class:`DatabaseKeyError` with a one-line message.
"""

from __future__ import annotations

import functools
import os
import stat
from typing import TYPE_CHECKING, Any

import apsw

from . import edges, in_progress, location, preflight, rollup_upgrade, rollups
from .schema import CENTRAL_DDL, apply_ddl

if TYPE_CHECKING:
    from .libsql_batch import BufferedConnection
    from .libsql_conn import Connection as RemoteConnection

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
BUSY_TIMEOUT_MS = 5000
KEY_ENV = "OTEL_TELEMETRY_DB_KEY"
KEY_FILE_ENV = "OTEL_TELEMETRY_DB_KEY_FILE"
_PLAIN_HEADER = b"SQLite format 3\x00"
_config_key_file: str | None = None


class DatabaseKeyError(apsw.NotADBError):
    """Missing, wrong or unreadable database key (an apsw.Error, so existing handlers catch it)."""


def set_key_file(path: str | None) -> None:
    """The collector's ``store.key_file`` (lowest precedence: the two env variables win)."""
    global _config_key_file
    _config_key_file = path or None


def _read_key_file(path: str, where: str) -> bytes:
    try:
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise DatabaseKeyError(
                f"key file {path} ({where}) is accessible by group/others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        with open(path, "rb") as f:
            key = f.read().rstrip(b"\r\n")
    except OSError as exc:
        raise DatabaseKeyError(f"cannot read key file {path} ({where}): {exc.strerror}") from None
    if not key:
        raise DatabaseKeyError(f"key file {path} ({where}) is empty")
    return key


def resolve_key() -> bytes | None:
    """The database key, or None for plain files. Raises DatabaseKeyError for a bad key file."""
    env_key = os.environ.get(KEY_ENV)
    if env_key:
        return env_key.encode()
    env_file = os.environ.get(KEY_FILE_ENV)
    if env_file:
        return _read_key_file(env_file, f"${KEY_FILE_ENV}")
    if _config_key_file:
        return _read_key_file(_config_key_file, "store.key_file")
    return None


def _is_plain(path: str) -> bool | None:
    """True for a plain SQLite file, False for another non-empty file, None if missing/empty."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    return None if not head else head == _PLAIN_HEADER


@functools.cache
def has_cipher() -> bool:
    """True if this SQLite is SQLite3 Multiple Ciphers (plain SQLite ignores ``PRAGMA key``)."""
    conn = apsw.Connection(":memory:")  # asked apart: any statement on a keyless encrypted file fails
    try:
        conn.execute("SELECT sqlite3mc_version()").fetchall()
        return True
    except apsw.SQLError:
        return False
    finally:
        conn.close()


def _keyed(conn: apsw.Connection, path: str, key: bytes | None) -> None:
    """Apply ``key`` (hex, so no quoting issues) and prove it by reading the schema."""
    if key is not None:
        if not has_cipher():  # never write plaintext while the user believes it is encrypted
            raise DatabaseKeyError(f"a database key is set but this SQLite has no encryption: install "
                                   f"apsw-sqlite3mc instead of apsw (database {path})")
        conn.execute(f"PRAGMA hexkey='{key.hex()}'")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except apsw.NotADBError:
        plain = _is_plain(path)
        if key is None:
            raise DatabaseKeyError(
                f"database {path} is encrypted (or not an SQLite file): set {KEY_ENV} or "
                f"{KEY_FILE_ENV} (collector: store.key_file) to its key") from None
        if plain:
            raise DatabaseKeyError(
                f"database {path} is not encrypted but a key is set: unset {KEY_ENV}/{KEY_FILE_ENV}/"
                "store.key_file for this file") from None
        raise DatabaseKeyError(f"database {path} is encrypted: wrong key in {KEY_ENV}/{KEY_FILE_ENV}/"
                               "store.key_file") from None


def open_sqlite(path: str, flags: int, name: str | None = None) -> apsw.Connection:
    """apsw connection keyed like the store (used for the side files too) with the busy timeout;
    ``name`` (a ``file:`` URI for ``path``) is what SQLite opens when given."""
    key = resolve_key()
    conn = apsw.Connection(name or path, flags=flags | (apsw.SQLITE_OPEN_URI if name else 0))
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        _keyed(conn, path, key)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_rw(path: str, extra_pragma: str) -> apsw.Connection:
    preflight.check_regular(path)
    preflight.check_writable(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = open_sqlite(path, apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        # Must precede the first CREATE TABLE; on an existing database it is a no-op.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        # Deleted cells (retention, size cap) are zeroed where that costs no extra I/O; freed pages
        # go back to the file system by incremental vacuum. ``purge`` switches this to ON.
        conn.execute("PRAGMA secure_delete=FAST").fetchall()
        apply_ddl(conn)  # creates, or upgrades an older records table
        rollup_upgrade.ensure(conn)  # rollup tables from before their instance key
        rollups.ensure(conn)  # rollup tables; rebuilt from the records of an older database
        edges.ensure(conn)  # call edges (the component map); likewise rebuilt
        conn.execute(in_progress.DDL)  # spans in progress (live spans)
        conn.execute(extra_pragma).fetchall()  # callers pass literals / allow-listed values only
    except BaseException:
        conn.close()
        raise
    return conn


WAL_AUTOCHECKPOINT_PAGES = 10_000
WRITER_CACHE_KIB = 64 * 1024


def open_writer(path: str, synchronous: str = "normal") -> apsw.Connection:
    """Open (creating if needed) the collector's read-write connection. Call on the writer thread."""
    mode = _SYNCHRONOUS.get(str(synchronous).lower())
    if mode is None:
        raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
    conn = _open_rw(path, f"PRAGMA synchronous={mode}")
    # SQLite's default (1000 pages, ~4 MB) checkpoints inside COMMIT so often that a third of the
    # writer's time went there; 10000 pages (~40 MB of WAL) stored ~45 % more spans/s (bench
    # figures in docs/benchmarks.md). The writer's own PASSIVE checkpoint every few seconds and
    # the TRUNCATE at shutdown keep the WAL near that size.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}").fetchall()
    # The uid and trace-id indexes take random keys: with SQLite's default 2 MB page cache, a
    # store of a few hundred MB reads index pages back from the file for most inserts.
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}").fetchall()
    return conn


def open_remote(url: str) -> RemoteConnection:
    """A connection to a libSQL server (``location.parse`` gave ``url``), token from the
    environment; proves the server answers and accepts the token, so errors surface here, and
    notes its tables (``conn.tables``)."""
    from .libsql_conn import Connection as RemoteConnection  # only a server URL needs the HTTP client

    conn = RemoteConnection(url, location.read_token())
    try:
        # The proof doubles as the list of tables, which the read side asks for (has the server
        # rollups?): a round trip less per report or dashboard panel.
        conn.tables = frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    except BaseException:
        conn.close()
        raise
    return conn


def open_remote_writer(url: str, timeout: float = 10.0) -> BufferedConnection:
    """The store writer's connection to a server (``location.parse`` gave ``url``): statements
    between BEGIN and COMMIT go as one request. Nothing is sent here: the writer creates the schema
    (:func:`ensure_remote_schema`) when the server first answers, so a server that is down at
    start-up delays writes instead of failing the collector."""
    from .libsql_batch import BufferedConnection

    return BufferedConnection(url, location.read_token(), timeout)


def open_reader(path: str) -> apsw.Connection:
    """Read-only connection for the query side; raises apsw.CantOpenError if the file is missing.

    For a server URL, a :class:`libsql_http.Connection` (the server enforces nothing read-only;
    the read side never writes).
    """
    loc = location.parse(path)
    if loc.is_remote:
        return open_remote(loc.url)  # type: ignore[return-value]  # apsw's subset, duck-typed
    preflight.check_regular(path)  # a FIFO would block the open forever
    # On read-only media a WAL file's -shm cannot be created: immutable where that is safe.
    return open_sqlite(path, apsw.SQLITE_OPEN_READONLY, preflight.reader_name(path))


def open_admin(path: str) -> apsw.Connection:
    """Short-lived read-write connection for CLI writes (retention set / purge), any one thread.

    Auto-checkpoint is off so only the collector's writer checkpoints during normal operation;
    callers that need a checkpoint (``retention.purge_all``) ask for one explicitly. For a server
    URL, a connection to the server, with the schema created or upgraded there.
    """
    loc = location.parse(path)
    if loc.is_remote:
        conn = open_remote(loc.url)  # type: ignore[arg-type]
        try:
            ensure_remote_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn  # type: ignore[return-value]
    return _open_rw(path, "PRAGMA wal_autocheckpoint=0")


SYNC_DDL = """
CREATE TABLE IF NOT EXISTS sync_cursors (
    instance TEXT PRIMARY KEY,       -- the shipping collector's instance name
    last_id INTEGER NOT NULL,        -- highest local row id committed here
    updated INTEGER NOT NULL         -- unix epoch nanoseconds
);
CREATE TABLE IF NOT EXISTS sync_status (
    instance TEXT PRIMARY KEY,       -- each shipping collector's last status row (``status --db URL``)
    updated INTEGER NOT NULL,
    body TEXT NOT NULL               -- JSON, as in collector_status
);
"""


def ensure_remote_schema(conn: RemoteConnection) -> None:
    """Create or upgrade the records, rollup and sync tables on a server (idempotent).

    No ``rollups.ensure`` there: a server cannot call our Python merge function, so the rollup
    upserts sent to it merge histograms in SQL (``collector/sync``), and there is nothing older
    on a server to backfill from.
    """
    apply_ddl(conn)
    conn.execute(CENTRAL_DDL)
    if rollup_upgrade.needed(conn):  # a server's rollups from before the instance key
        with conn:
            if rollup_upgrade.needed(conn):  # another collector may have just done it
                rollup_upgrade.upgrade(conn)
    conn.execute(rollups.DDL)
    conn.execute(SYNC_DDL)
    conn.execute(in_progress.DDL)


def has_table(conn: Any, name: str) -> bool:
    """Whether the store holds table ``name``: a server connection knows its tables from when it
    opened (no round trip), a file is asked."""
    tables = getattr(conn, "tables", None)
    if tables is not None:
        return name in tables
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None
