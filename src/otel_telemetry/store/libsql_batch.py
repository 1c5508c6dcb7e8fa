"""The store writer's connection to a libSQL server: a transaction is held and sent as ONE request.

:class:`BufferedConnection` is :class:`libsql_conn.Connection` (apsw's subset) except between
``BEGIN`` and ``COMMIT``: there, ``execute``/``executemany`` only append their statements, and
``COMMIT`` sends ``BEGIN IMMEDIATE``, every statement and ``COMMIT`` in one Hrana batch, in one
HTTP request (one network round trip per transaction). So the writer runs the same statements
whatever its connection, and statements other modules add to its transaction ride along.

What cannot wait for ``COMMIT`` forces a flush: reading a cursor of a statement inside the
transaction, ``changes()`` or ``total_changes()``. A flush sends what is held so far on the same
stream (the transaction stays open there, the server keeps it with the baton) and costs one more
round trip; the writer's usual transaction reads nothing (see ``StoreWriter``'s remote insert).

``executemany`` of ``INSERT ... VALUES (?, ...)`` becomes multi-row statements
(``VALUES (...), (...)``), which sqld runs several times faster than one statement per row
(docs/benchmarks.md). :meth:`insert_new` adds a guard after each of them that fails the
transaction unless every row was new; it surfaces as :class:`NotAllNew` at the flush.

Every method runs on the caller's thread; one thread at a time (the store writer's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import libsql_http as lh
from .libsql_conn import Connection, Cursor

# Rows per multi-row statement: sqld spends ~0.1 ms per statement whatever it does, and SQLite
# binds at most 32 766 variables per statement (records have 35 columns: 936 rows at most).
ROWS_PER_STATEMENT = 200
MAX_VARIABLES = 32_766
_MULTI_ROW = re.compile(r"^\s*INSERT\b.*\bVALUES\s*\((\s*\?\s*,)*\s*\?\s*\)", re.IGNORECASE | re.DOTALL)
# Fails the statement (json() of a non-JSON text raises) unless the INSERT before it changed
# exactly ? rows: ON CONFLICT DO NOTHING skipped none of them.
_GUARD = "SELECT CASE WHEN changes() = ? THEN 1 ELSE json('not every row is new') END"


class NotAllNew(lh.StatementError):
    """An :meth:`BufferedConnection.insert_new` guard failed: some row was already stored (or
    repeated in the batch). Nothing of the transaction was committed."""


def _words(sql: str) -> tuple[str, str]:
    w = sql.split(None, 2)
    return (w[0].upper() if w else "", w[1].upper() if len(w) > 1 else "")


class _Lazy(Cursor):
    """The cursor of a held statement: reading it flushes the transaction so far."""

    def __init__(self, conn: BufferedConnection, index: int) -> None:
        super().__init__({})
        self._conn: BufferedConnection | None = conn
        self._index = index

    def _load(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            Cursor.__init__(self, conn._result(self._index))

    def getdescription(self) -> tuple[tuple[str | None, str | None], ...]:
        self._load()
        return super().getdescription()

    def fetchone(self) -> tuple[Any, ...] | None:
        self._load()
        return super().fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._load()
        return super().fetchall()


class BufferedConnection(Connection):
    """See the module docstring. ``requests`` counts HTTP requests (round trips) sent."""

    buffered = True

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, token, timeout)
        self._held: list[dict[str, Any]] | None = None  # None: not in a held transaction
        self._guards: set[int] = set()  # indexes (in the transaction) of insert_new guards
        self._results: list[dict[str, Any]] = []  # results of the statements flushed so far
        self._sent = 0  # statements of the transaction already on the server
        self._opened = False  # BEGIN sent on the stream
        self._sql_id = 1  # next store_sql id on this stream
        self._last: tuple[int, int] = (0, 0)  # statements of the last execute/executemany

    # ---- apsw's subset ----------------------------------------------------------------------

    def execute(self, sql: str, bindings: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        first, second = _words(sql)
        if self._held is None:
            if first == "BEGIN":
                self._begin()
                return Cursor({})
            return super().execute(sql, bindings)
        if first in ("COMMIT", "END"):
            self._flush("commit")
            return Cursor({})
        if first == "ROLLBACK" and second != "TO":
            self._flush("rollback")
            return Cursor({})
        index = self._hold(lh.stmt(sql, bindings if bindings is not None else ()))
        self._last = (index, index + 1)
        return _Lazy(self, index)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Cursor:
        if self._held is None:
            return super().executemany(sql, seq)
        rows = list(seq)
        start = len(self._held)
        if rows and _MULTI_ROW.match(sql) and not isinstance(rows[0], Mapping):
            per = max(1, min(ROWS_PER_STATEMENT, MAX_VARIABLES // max(1, len(rows[0]))))
            for s in lh.multi_row(sql, rows, per):  # type: ignore[arg-type]
                self._hold(s)
        else:
            for b in rows:
                self._hold(lh.stmt(sql, b, want_rows=False))
        self._last = (start, len(self._held))
        return Cursor({})

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Hold ``INSERT ... VALUES (?, ...) ON CONFLICT DO NOTHING`` for ``rows``, each statement
        followed by a guard: the flush raises :class:`NotAllNew` unless every row was inserted."""
        assert self._held is not None, "insert_new outside a transaction"
        per = max(1, min(ROWS_PER_STATEMENT, MAX_VARIABLES // max(1, len(rows[0]) if rows else 1)))
        for s in lh.multi_row(sql, rows, per):
            n = len(s["args"]) // len(rows[0])
            self._hold(s)
            self._guards.add(self._hold(lh.stmt(_GUARD, (n,), want_rows=False)))

    def changes(self) -> int:
        if self._held is not None:
            start, end = self._last
            if end > self._sent:
                self._flush(None)
            return sum(_affected(r) for r in self._results[start:end])
        return super().changes()

    def total_changes(self) -> int:
        if self._held is not None:
            if len(self._held) > self._sent:
                self._flush(None)
            return self._total + sum(_affected(r) for r in self._results)
        return super().total_changes()

    @property
    def in_transaction(self) -> bool:
        return self._held is not None or self._in_tx

    def close(self) -> None:
        self._reset()
        super().close()

    # ---- the held transaction -----------------------------------------------------------------

    def _begin(self) -> None:
        self._held, self._guards, self._results = [], set(), []
        self._sent, self._opened = 0, False

    def _hold(self, s: dict[str, Any]) -> int:
        assert self._held is not None
        self._held.append(s)
        return len(self._held) - 1

    def _reset(self) -> None:
        self._held, self._opened, self._baton, self._in_tx = None, False, None, False
        self._sql_id = 1

    def _result(self, index: int) -> dict[str, Any]:
        if index >= self._sent:
            self._flush(None)
        return self._results[index]

    def _flush(self, end: str | None) -> None:
        """Send the statements held since the last flush; ``end`` "commit"/"rollback" closes
        the transaction (and the stream), None keeps it open. Raises like the server answered."""
        assert self._held is not None
        todo = self._held[self._sent:]
        if end == "rollback" and not self._opened:
            self._reset()  # nothing reached the server: nothing to undo there
            return
        begin = not self._opened
        requests, n_stored = lh.batch_requests(todo, begin=begin, end=end, first_sql_id=self._sql_id)
        self._sql_id += n_stored
        if end is not None:
            requests.append({"type": "close"})
        try:
            results, baton = self.client.pipeline(requests, self._baton)
        except lh.LibsqlError:
            self._reset()  # the stream is gone with its transaction
            raise
        self._baton = baton if end is None else None
        try:
            for r in results[:n_stored]:
                lh.ok_result(r)
            out = lh.ok_result(results[n_stored])["result"]
        except lh.LibsqlError:
            self._abort()
            raise
        step_results = out.get("step_results") or []
        errors = out.get("step_errors") or []
        offset = int(begin)
        first_error = next(((i, e) for i, e in enumerate(errors) if e), None)
        if first_error is None or end == "rollback":
            self._results += [r or {} for r in step_results[offset:offset + len(todo)]]
            self._sent = len(self._held)
            self._opened = True
            if end is not None:
                self._total += sum(_affected(r) for r in self._results)
                self._reset()
            return
        i, err = first_error
        index = self._sent + i - offset  # the statement's index in the transaction
        if end is None:
            self._abort()  # the transaction is still open on the stream: undo it there
        else:
            self._reset()  # the batch's own ROLLBACK step ran
        line = lh.error_line(err)
        if i < offset:
            exc: lh.StatementError = lh.StatementError(f"{self.url}: BEGIN failed: {line}")
        elif i >= offset + len(todo):
            exc = lh.StatementError(f"{self.url}: COMMIT failed: {line}")
        elif index in self._guards:
            exc = NotAllNew(f"{self.url}: a row of the batch was already stored")
        else:
            exc = lh.StatementError(f"{self.url}: statement {index} failed: {line}")
        exc.step = index if offset <= i < offset + len(todo) else -1
        raise exc

    def _abort(self) -> None:
        baton = self._baton
        self._reset()
        if baton is not None:
            try:
                self.client.pipeline([{"type": "execute", "stmt": lh.stmt("ROLLBACK", want_rows=False)},
                                      {"type": "close"}], baton)
            except lh.LibsqlError:
                pass  # the server drops the stream, and its transaction, on its own


def _affected(result: Mapping[str, Any]) -> int:
    return int(result.get("affected_row_count") or 0)
