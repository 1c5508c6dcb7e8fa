"""An apsw-like connection to a libSQL server, over :mod:`store.libsql_http`.

:class:`Connection` is the subset of ``apsw.Connection`` the read side and the CLI's admin commands
use (``execute``/``executemany`` returning a cursor, ``changes``, ``total_changes``,
``in_transaction``, ``with conn:``), so ``query/``, ``store/retention.py`` and ``store/purge.py``
run unchanged against a server. Its stream (the server-side connection) is kept with the baton
the server returns, so ``BEGIN ... COMMIT`` across calls is one transaction there. A statement
whose answer the server refuses as too large is run again through a cursor, which has no such
limit (:meth:`Client.cursor`): a month of spans, a node's 20,000 latest or every duration of a
window read the same from a server as from a file. Every method runs on the caller's thread; a
Connection belongs to one thread at a time.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .libsql_http import (
    DECODERS,
    AuthError,
    Client,
    LibsqlError,
    ServerUnavailable,
    StatementError,
    error_line,
    ok_result,
    stmt,
)

_TOO_LARGE = "RESPONSE_TOO_LARGE"

_NO_OP_PRAGMA = re.compile(r"^\s*PRAGMA\s+incremental_vacuum\b", re.IGNORECASE)


class Cursor:
    """Rows of one statement, already fetched (apsw's cursor subset)."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        self._cols = [(c.get("name"), c.get("decltype")) for c in result.get("cols") or ()]
        dec = DECODERS
        try:
            self._rows = [tuple([dec[v["type"]](v) for v in row]) for row in result.get("rows") or ()]
        except (KeyError, TypeError, ValueError):
            raise ServerUnavailable("malformed rows in the server's answer") from None
        self._i = 0

    def getdescription(self) -> tuple[tuple[str | None, str | None], ...]:
        return tuple(self._cols)

    @property
    def description(self) -> tuple[tuple[Any, ...], ...]:
        return tuple((n, t, None, None, None, None, None) for n, t in self._cols)

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._i >= len(self._rows):
            return None
        self._i += 1
        return self._rows[self._i - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest, self._i = self._rows[self._i:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class Connection:
    """An apsw-like connection to a server (see the module docstring); one thread at a time."""

    remote = True  # callers that manage the file itself (purge's scrubbing) skip that on a server
    tables: frozenset[str] | None = None  # the server's tables when opened (``db.open_remote``)

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.client = Client(url, token, timeout)
        self.url = url
        self._baton: str | None = None
        self._in_tx = False
        self._changes = 0
        self._total = 0
        self._savepoints = 0
        self._outer_savepoint: str | None = None
        self.cursor_reruns = 0  # statements answered through the cursor (tests count them)

    def _run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # One stream (server-side connection) for the connection's life, closed by ``close``:
        # sqld opens a connection per stream, ~1-3 ms more per request than reusing one.
        try:
            results, self._baton = self.client.pipeline(requests, self._baton)
        except LibsqlError:
            self._baton, self._in_tx = None, False  # the stream is gone with its transaction
            raise
        return results

    def _answered(self, answer: dict[str, Any], sql: str, bindings: Sequence[Any] | Mapping[str, Any]
                ) -> dict[str, Any]:
        """The statement's result; one too large for a pipeline's answer is run again through the
        cursor, on the same stream (a failed statement leaves the stream and its transaction)."""
        if answer.get("type") != "ok" and (answer.get("error") or {}).get("code") == _TOO_LARGE:
            try:
                result, self._baton = self.client.cursor(stmt(sql, bindings), self._baton)
            except (ServerUnavailable, AuthError, StatementError):
                self._baton, self._in_tx = None, False
                raise
            except LibsqlError as exc:  # an HTTP 404 from a server without Hrana v3's cursor
                self._baton, self._in_tx = None, False
                raise StatementError(
                    f"{self.url}: the answer is larger than the server's response limit ({_TOO_LARGE}) "
                    f"and the server has no cursor to send it otherwise ({exc}): narrow the window, "
                    "or raise the server's limit (sqld --max-response-size)") from None
            self.cursor_reruns += 1
            return result
        return ok_result(answer)["result"]

    def _track(self, sql: str) -> None:
        # Hrana v2 has no autocommit query (v3's get_autocommit), so follow the statements that
        # open and close transactions; the read side only ever uses these plain forms.
        words = sql.split(None, 2)
        first = words[0].upper() if words else ""
        second = words[1].upper() if len(words) > 1 else ""
        if first == "BEGIN" or (first == "SAVEPOINT" and not self._in_tx):
            self._in_tx = True
            self._outer_savepoint = second if first == "SAVEPOINT" else None
        elif first in ("COMMIT", "END") or (first == "ROLLBACK" and second != "TO"):
            self._in_tx = False
        elif first == "RELEASE" and self._outer_savepoint is not None and \
                (words[-1].upper() == self._outer_savepoint):
            self._in_tx = False

    def execute(self, sql: str, bindings: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        bindings = bindings if bindings is not None else ()
        if _NO_OP_PRAGMA.match(sql):
            # sqld refuses this statement ("unsupported statement"); the server owns its file's
            # size like its WAL (see wal_checkpoint), so freeing pages is a no-op from here.
            return Cursor({})
        # Hrana's execute runs one statement; a script without parameters (DDL) goes as a sequence.
        if not bindings and ";" in sql.strip().rstrip(";"):
            ok_result(self._run([{"type": "sequence", "sql": sql}])[0])
            return Cursor({})
        result = self._answered(self._run([{"type": "execute", "stmt": stmt(sql, bindings)}])[0], sql, bindings)
        self._track(sql)
        self._changes = int(result.get("affected_row_count") or 0)
        self._total += self._changes
        return Cursor(result)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Cursor:
        """Every set of bindings in one request (stops at the first error, like apsw)."""
        reqs = [{"type": "execute", "stmt": stmt(sql, b, want_rows=False)} for b in seq]
        if not reqs:
            return Cursor({})
        self._changes = 0
        for r in self._run(reqs):
            if r.get("type") != "ok":
                raise StatementError(f"{self.url}: {error_line(r.get('error'))}")
            self._changes += int(r["response"]["result"].get("affected_row_count") or 0)
        self._total += self._changes
        return Cursor({})

    def execute_all(self, stmts: Sequence[tuple[str, Sequence[Any]]]) -> list[Cursor]:
        """Several statements in one request (one round trip), each run as if by ``execute``; their
        cursors. The read side batches a panel's queries this way (``query.filters.fetch_all``)."""
        if not stmts:
            return []
        results = self._run([{"type": "execute", "stmt": stmt(sql, args)} for sql, args in stmts])
        return [Cursor(self._answered(r, sql, args)) for r, (sql, args) in zip(results, stmts, strict=True)]

    def changes(self) -> int:
        return self._changes

    def total_changes(self) -> int:
        return self._total

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def wal_checkpoint(self, dbname: str | None = None, mode: int = 0) -> tuple[int, int]:
        """The server owns its WAL and checkpoints it; nothing to do from a client."""
        return (0, 0)

    def __enter__(self) -> Connection:
        self._savepoints += 1
        self.execute(f"SAVEPOINT otel_{self._savepoints}")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        name = f"otel_{self._savepoints}"
        self._savepoints -= 1
        if exc_type is None:
            self.execute(f"RELEASE {name}")
        elif self._baton is not None:
            self.execute(f"ROLLBACK TO {name}")
            self.execute(f"RELEASE {name}")
        return False

    def close(self) -> None:
        if self._baton is not None:
            # If this fails the server drops the stream (and any open transaction) on its own.
            with contextlib.suppress(LibsqlError):
                self.client.pipeline([{"type": "close"}], self._baton)
            self._baton = None
        self.client.close()


class ReaderPool:
    """Read connections to a server kept between requests (the dashboard's), with their stream
    and keep-alive socket: a request then costs its own queries, not an opening probe and a
    closing round trip too. A connection idle for ``idle_s`` is closed, well before sqld expires
    its stream (10 s of inactivity), and one older than ``max_age_s`` too (what it learnt when
    opened, e.g. its ``tables``, is renewed). Any thread; a connection serves one request at a time."""

    def __init__(self, opener: Callable[[], Connection], idle_s: float = 5.0, max_age_s: float = 60.0,
                 size: int = 8) -> None:
        self._opener = opener
        self._idle_s = idle_s
        self._max_age_s = max_age_s
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[tuple[float, float, Connection]] = []  # (last used, opened, connection)
        self._born: dict[int, float] = {}

    def get(self) -> Connection:
        stale: list[Connection] = []
        conn = None
        with self._lock:
            now = time.monotonic()
            while self._idle:
                since, born, c = self._idle.pop()
                if now - since < self._idle_s and now - born < self._max_age_s:
                    conn = c
                    self._born[id(c)] = born
                    break
                stale.append(c)
        for c in stale:
            c.close()
        if conn is None:
            conn = self._opener()
            with self._lock:
                self._born[id(conn)] = time.monotonic()
        return conn

    def put(self, conn: Connection, ok: bool = True) -> None:
        """Give ``conn`` back after a request; ``ok`` False (the request failed) closes it."""
        with self._lock:
            born = self._born.pop(id(conn), 0.0)
            if ok and not conn.in_transaction and len(self._idle) < self._size:
                self._idle.append((time.monotonic(), born, conn))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, _, c in idle:
            c.close()
