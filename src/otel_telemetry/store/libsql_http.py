"""A small client for a libSQL server (sqld): Hrana over HTTP, ``POST /v2/pipeline`` (and
``/v3/cursor`` for an answer over the server's response limit, see :meth:`Client.cursor`).

Why our own (README, "A libSQL server: many devices into one"): ``libsql`` 0.1.11 binds integers through a
float (nanosecond timestamps come back changed) and ``executemany`` costs one round trip per row;
``turso-serverless`` 0.1.0 is exact but also sends one request per row; ``libsql-client`` is
archived and pulls Sphinx in at run time. This client is stdlib only (``http.client`` with
keep-alive): integers travel as decimal strings, so int64 is exact, and :meth:`Client.transaction`
sends a whole batch of statements as one transaction in one request.

The apsw-like connection the read side uses on a server is :mod:`store.libsql_conn`.

Errors subclass ``apsw.Error`` so the existing handlers report them in one line; transport
failures, 5xx answers and refused tokens have their own classes so shipping can tell "retry later"
(:class:`ServerUnavailable`) from "fix the token" (:class:`AuthError`). Every method runs on the
caller's thread; a Client belongs to one thread at a time.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import operator
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import apsw
import orjson

_INT64 = range(-(2**63), 2**63)
MAX_STORED_SQL = 5000  # sqld refuses to store a longer statement ("SQL_STORE_TOO_LARGE": 5.0 KB)
# sqld closes idle keep-alive sockets; a request that fails on a reused socket before any byte of
# an answer arrived is sent again once on a fresh one (see Client._post).
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class LibsqlError(apsw.Error):
    """Any failure talking to a libSQL server (one line)."""


class ServerUnavailable(LibsqlError):
    """Not reachable, timed out, closed the connection, answered 5xx or garbage: retry later."""


class AuthError(LibsqlError):
    """The server refused the token (HTTP 401/403): retrying will not help until it is fixed."""


class StatementError(LibsqlError, apsw.SQLError):
    """The server ran a statement and reported an SQL error (bad SQL, constraint, no such table).

    ``step`` is the index of the failing statement in :meth:`Client.transaction`'s list (-1 for
    BEGIN or COMMIT, None outside a transaction).
    """

    step: int | None = None


_NULL: dict[str, Any] = {"type": "null"}


def _int(v: int) -> dict[str, Any]:
    if v not in _INT64:
        raise OverflowError(f"integer {v} does not fit in 64 bits")
    return {"type": "integer", "value": str(int(v))}  # a decimal string: int64 stays exact


def _float(v: float) -> dict[str, Any]:
    # NaN: SQLite stores NULL for it, as apsw does
    return _NULL if v != v else {"type": "float", "value": v}


def _blob(v: bytes | bytearray | memoryview) -> dict[str, Any]:
    return {"type": "blob", "base64": base64.b64encode(bytes(v)).decode()}


# By exact type first: shipping encodes ~70 000 values per 2 000-row batch.
_ENCODE: dict[type, Any] = {
    str: lambda v: {"type": "text", "value": v}, type(None): lambda v: _NULL, int: _int, float: _float,
    bytes: _blob, bool: _int, bytearray: _blob, memoryview: _blob,
}


def encode_value(v: Any) -> dict[str, Any]:
    """A Python value as a Hrana value; integers as decimal strings so int64 stays exact."""
    enc = _ENCODE.get(v.__class__)
    if enc is not None:
        return enc(v)  # type: ignore[no-any-return]
    for kind in (int, float, str):  # subclasses (IntEnum, numpy scalars are not accepted)
        if isinstance(v, kind):
            return _ENCODE[kind](kind(v))  # type: ignore[no-any-return]
    if isinstance(v, bytes | bytearray | memoryview):
        return _blob(v)
    raise TypeError(f"cannot bind a {type(v).__name__} value")


_TEXT: dict[str, dict[str, Any]] = {}  # short texts repeat (category, service, level): one dict each
_TEXT_CACHED, _TEXT_CACHE_SIZE = 64, 4096
_LO, _HI = -(2**63), 2**63 - 1


def encode_args(args: Sequence[Any]) -> list[dict[str, Any]]:
    """``encode_value`` of each of ``args``, inlined for the common types: shipping and direct
    writes encode ~35 values per row (this halved the client's CPU per row)."""
    out: list[dict[str, Any]] = []
    app = out.append
    cache = _TEXT
    for a in args:
        c = a.__class__
        if c is str:
            d = cache.get(a)
            if d is None:
                d = {"type": "text", "value": a}
                if len(a) <= _TEXT_CACHED:
                    if len(cache) >= _TEXT_CACHE_SIZE:
                        cache.clear()
                    cache[a] = d
            app(d)
        elif a is None:
            app(_NULL)
        elif c is int:
            if not _LO <= a <= _HI:
                raise OverflowError(f"integer {a} does not fit in 64 bits")
            app({"type": "integer", "value": str(a)})  # a decimal string: int64 stays exact
        elif c is float:
            app(_NULL if a != a else {"type": "float", "value": a})
        else:
            app(encode_value(a))
    return out


def _blob_value(v: Mapping[str, Any]) -> bytes:
    raw = v.get("base64") or ""
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


# By the value's type tag; reads decode every cell of every row (~130 000 per ``stats --period``).
DECODERS: dict[str, Any] = {
    "text": operator.itemgetter("value"), "integer": lambda v: int(v["value"]),
    "float": lambda v: float(v["value"]), "null": lambda v: None, "blob": _blob_value,
}


def decode_value(v: Mapping[str, Any]) -> Any:
    dec = DECODERS.get(v.get("type"))  # type: ignore[arg-type]
    return dec(v) if dec is not None else None


def stmt(sql: str, args: Sequence[Any] | Mapping[str, Any] = (), want_rows: bool = True) -> dict[str, Any]:
    """A Hrana statement; ``args`` positional, or a mapping for ``:name`` parameters."""
    out: dict[str, Any] = {"sql": sql, "want_rows": want_rows}
    if isinstance(args, Mapping):
        out["named_args"] = [{"name": k if k[:1] in ":@$" else f":{k}", "value": encode_value(v)}
                             for k, v in args.items()]
    elif args:
        out["args"] = encode_args(args)
    return out


def batch_requests(stmts: Sequence[dict[str, Any]], *, begin: bool, end: str | None,
                   first_sql_id: int = 1) -> tuple[list[dict[str, Any]], int]:
    """``stmts`` as one Hrana batch (each step runs only if the one before it succeeded), after
    ``store_sql`` requests for the statements it repeats; (requests, number of store_sql requests).

    ``begin``: BEGIN IMMEDIATE is step 0. ``end``: ``"commit"`` appends COMMIT (then a ROLLBACK
    that runs only if COMMIT did not), ``"rollback"`` a ROLLBACK, None nothing (the transaction
    stays open on the stream). Step ``i`` of the batch is statement ``i - begin``.
    """
    # A statement sent many times (one INSERT per row) is stored once on the stream and named
    # by id: the request shrinks by the SQL text times the row count.
    seen: dict[str, int] = {}
    for s in stmts:
        seen[s["sql"]] = seen.get(s["sql"], 0) + 1
    ids = {sql: i for i, sql in enumerate((sql for sql, n in seen.items()
                                           if n > 1 and len(sql.encode()) <= MAX_STORED_SQL), start=first_sql_id)}
    requests: list[dict[str, Any]] = [{"type": "store_sql", "sql_id": i, "sql": sql} for sql, i in ids.items()]
    steps: list[dict[str, Any]] = [{"stmt": {"sql": "BEGIN IMMEDIATE", "want_rows": False}}] if begin else []
    for s in stmts:
        sql_id = ids.get(s["sql"])
        if sql_id is not None:
            s = {k: v for k, v in s.items() if k != "sql"} | {"sql_id": sql_id}
        step: dict[str, Any] = {"stmt": s}
        if steps:
            step["condition"] = {"type": "ok", "step": len(steps) - 1}
        steps.append(step)
    if end == "commit":
        commit: dict[str, Any] = {"stmt": {"sql": "COMMIT", "want_rows": False}}
        if steps:
            commit["condition"] = {"type": "ok", "step": len(steps) - 1}
        steps.append(commit)
        steps.append({"stmt": {"sql": "ROLLBACK", "want_rows": False},
                      "condition": {"type": "not", "cond": {"type": "ok", "step": len(steps) - 1}}})
    elif end == "rollback":
        steps.append({"stmt": {"sql": "ROLLBACK", "want_rows": False}})
    requests.append({"type": "batch", "batch": {"steps": steps}})
    return requests, len(ids)


def multi_row(sql: str, rows: Sequence[Sequence[Any]], per: int) -> list[dict[str, Any]]:
    """``INSERT ... VALUES (?, ...) <tail>`` for every row, as statements of up to ``per`` rows each
    (``VALUES (...), (...), ...``: the same rows, the same conflict clause, applied row by row)."""
    start = sql.index("VALUES (") + len("VALUES ")
    end = sql.index(")", start) + 1
    head, one, tail = sql[:start], sql[start:end], sql[end:]
    out = []
    for k in range(0, len(rows), per):
        chunk = rows[k:k + per]
        out.append(stmt(head + ", ".join([one] * len(chunk)) + tail, [v for r in chunk for v in r],
                        want_rows=False))
    return out


def error_line(err: Mapping[str, Any] | None) -> str:
    if not err:
        return "unknown error"
    msg = str(err.get("message") or "unknown error").strip().splitlines()[0]
    code = err.get("code")
    return f"{msg} ({code})" if code else msg


class Client:
    """One keep-alive HTTP connection to a server; :meth:`pipeline` is one round trip."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise LibsqlError(f"{url}: only http:// and https:// are spoken here")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/v2/pipeline"
        self._cursor_path = parts.path.rstrip("/") + "/v3/cursor"
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._body = b""
        self._sent_to = self._path
        self._reused = False
        self._pending = (0, 0, 0)
        self.round_trips = 0  # requests sent (tests and benches count them)

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, body: bytes, path: str | None = None) -> None:
        """Write one request (the first half of a round trip); the answer is read by ``_receive``."""
        path = path or self._path
        self._body, self._sent_to, self._reused = body, path, self._conn is not None
        conn = self._connect()
        self.round_trips += 1
        try:
            conn.request("POST", path, body, self._headers)
        except _STALE:
            self.close()
            if not self._reused:
                raise ServerUnavailable(f"{self.url}: connection closed by the server") from None
            self._send(body, path)  # an idle keep-alive socket the server had dropped: nothing was sent
        except BaseException as exc:
            raise self._failure(exc) from None

    def _receive(self) -> tuple[int, bytes]:
        try:
            resp = self._connect().getresponse()
            data = resp.read()
        except _STALE as exc:
            self.close()
            if self._reused:
                # The server had closed the idle keep-alive socket before our request arrived: it
                # ran nothing, so it is sent once more on a fresh connection.
                self._send(self._body, self._sent_to)
                self._reused = False
                return self._receive()
            raise ServerUnavailable(f"{self.url}: connection closed by the server "
                                    f"({exc.__class__.__name__})") from None
        except BaseException as exc:
            raise self._failure(exc) from None
        if resp.will_close:
            self.close()
        return resp.status, data

    def _failure(self, exc: BaseException) -> BaseException:
        self.close()
        if isinstance(exc, TimeoutError):
            return ServerUnavailable(f"{self.url}: no answer within {self._timeout:g} s")
        if isinstance(exc, OSError | http.client.HTTPException):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
            return ServerUnavailable(f"{self.url}: {reason}")
        return exc

    def pipeline(self, requests: list[dict[str, Any]], baton: str | None = None
                 ) -> tuple[list[dict[str, Any]], str | None]:
        """Send ``requests`` on the stream ``baton`` (None: a new one); results and the next baton."""
        self._send(orjson.dumps({"baton": baton, "requests": requests}))
        return self._answer(len(requests))

    def cursor(self, statement: dict[str, Any], baton: str | None = None) -> tuple[dict[str, Any], str | None]:
        """Run one statement (from :func:`stmt`) on the stream ``baton`` through Hrana v3's cursor,
        whose rows come as a stream of lines: sqld applies its response limit (10 MB by default,
        ``RESPONSE_TOO_LARGE``) to a pipeline's answer, not to a cursor's. The result (``cols``,
        ``rows``, ``affected_row_count``, as :meth:`pipeline` gives it) and the next baton."""
        self._send(orjson.dumps({"baton": baton, "batch": {"steps": [{"stmt": statement}]}}), self._cursor_path)
        status, data = self._receive()
        self._check_status(status, data)
        lines = data.splitlines()
        try:
            head = orjson.loads(lines[0])
            result: dict[str, Any] = {"cols": [], "rows": [], "affected_row_count": 0}
            rows = result["rows"]
            for line in lines[1:]:
                entry = orjson.loads(line)
                kind = entry["type"]
                if kind == "row":
                    rows.append(entry["row"])
                elif kind == "step_begin":
                    result["cols"] = entry["cols"]
                elif kind == "step_end":
                    result["affected_row_count"] = entry.get("affected_row_count") or 0
                elif kind in ("step_error", "error"):
                    raise StatementError(error_line(entry.get("error")))
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            raise ServerUnavailable(f"{self.url}: malformed cursor answer ({len(data)} bytes)") from None
        return result, head.get("baton")

    def _check_status(self, status: int, data: bytes) -> None:
        if status in (401, 403):
            raise AuthError(f"{self.url}: the server refused the auth token (HTTP {status}): "
                            f"{_body_line(data)}")
        if status >= 500:
            raise ServerUnavailable(f"{self.url}: HTTP {status}: {_body_line(data)}")
        if status != 200:
            raise LibsqlError(f"{self.url}: HTTP {status}: {_body_line(data)}")

    def _answer(self, n_requests: int) -> tuple[list[dict[str, Any]], str | None]:
        status, data = self._receive()
        self._check_status(status, data)
        try:
            body = orjson.loads(data)
            results = body["results"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ServerUnavailable(f"{self.url}: malformed answer ({len(data)} bytes)") from None
        if len(results) != n_requests:
            raise ServerUnavailable(f"{self.url}: {len(results)} results for {n_requests} requests")
        return results, body.get("baton")

    def execute(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> dict[str, Any]:
        """One statement on a fresh stream, closed in the same request (autocommit)."""
        results, _ = self.pipeline([{"type": "execute", "stmt": stmt(sql, args)}, {"type": "close"}])
        return ok_result(results[0])["result"]

    def transaction(self, stmts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run ``stmts`` (from :func:`stmt`) as one transaction in one request; their results.

        Raises :class:`StatementError` for the first statement that failed (nothing committed).
        """
        self.send_transaction(stmts)
        return self.finish_transaction()

    def send_transaction(self, stmts: Sequence[dict[str, Any]]) -> None:
        """The first half of :meth:`transaction`: the request is on its way when this returns, so
        the caller can prepare the next one while the server works; then
        :meth:`finish_transaction`. One transaction in flight per Client."""
        requests, n_stored = batch_requests(stmts, begin=True, end="commit")
        requests.append({"type": "close"})
        self._pending = (len(requests), n_stored, len(stmts) + 1)
        self._send(orjson.dumps({"baton": None, "requests": requests}))

    def finish_transaction(self) -> list[dict[str, Any]]:
        """Wait for the answer to :meth:`send_transaction`; the statements' results."""
        n_requests, n_stored, commit = self._pending
        results, _ = self._answer(n_requests)
        for r in results[:n_stored]:
            ok_result(r)
        out = ok_result(results[n_stored])["result"]
        errors = out.get("step_errors") or []
        for i, err in enumerate(errors[: commit + 1]):
            if err:
                what = "COMMIT" if i == commit else "BEGIN" if i == 0 else f"statement {i}"
                exc = StatementError(f"{self.url}: {what} failed: {error_line(err)}")
                exc.step = -1 if i in (0, commit) else i - 1
                raise exc
        return out["step_results"][1:commit]


def _body_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    with contextlib.suppress(orjson.JSONDecodeError):  # not JSON: the text as it came
        parsed = orjson.loads(data)
        if isinstance(parsed, dict) and parsed.get("error"):
            text = str(parsed["error"])
    return (text.splitlines() or ["(empty)"])[0][:200]


def ok_result(result: Mapping[str, Any]) -> dict[str, Any]:
    if result.get("type") == "ok":
        return result["response"]
    raise StatementError(error_line(result.get("error")))
