"""The libSQL client (store/libsql_http.py) and the store location rules, against a real sqld."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqld import JwtKeys, Sqld, free_port

from otel_telemetry.store import db as dbmod
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import libsql_http as lh
from otel_telemetry.store import location

NS_TS = 1796613017076846598  # FINDINGS §3: libsql 0.1.11 returns ...592 for this one


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sqld]:
    s = Sqld(tmp_path_factory.mktemp("sqld")).start()
    yield s
    s.stop()


def _table(conn: lc.Connection, name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name}(i INTEGER, b BLOB, f REAL, t TEXT)")


def test_int64_and_every_type_round_trip_exactly(server: Sqld) -> None:
    conn = lc.Connection(server.url)
    _table(conn, "types")
    values = [(NS_TS, b"\x00\x01\xff" * 5, 1.5, "é ✓"), (2**63 - 1, b"", -0.25, ""), (-(2**63), None, None, None),
              (0, bytes(range(256)), 1e300, "x" * 10_000)]
    conn.executemany("INSERT INTO types VALUES (?, ?, ?, ?)", values)
    assert conn.execute("SELECT * FROM types ORDER BY rowid").fetchall() == values
    # Bound as a parameter in a WHERE clause too, not only stored.
    assert conn.execute("SELECT count(*) FROM types WHERE i = ?", (NS_TS,)).fetchone() == (1,)
    with pytest.raises(OverflowError):
        conn.execute("SELECT ?", (2**63,))
    conn.close()


def test_a_batch_is_one_round_trip_and_one_transaction(server: Sqld) -> None:
    conn = lc.Connection(server.url)
    _table(conn, "batch")
    client = lh.Client(server.url)
    rows = [lh.stmt("INSERT INTO batch(i, t) VALUES (?, ?)", (NS_TS + i, f"r{i}"), want_rows=False)
            for i in range(2000)]
    client.transaction(rows)
    assert client.round_trips == 1
    assert conn.execute("SELECT count(*), min(i), max(i) FROM batch").fetchone() == (2000, NS_TS, NS_TS + 1999)
    # One bad statement: nothing of the batch is committed, and the error names the statement.
    bad = [*rows[:5], lh.stmt("INSERT INTO no_such_table VALUES (1)", (), want_rows=False), *rows[5:10]]
    with pytest.raises(lh.StatementError) as err:
        client.transaction(bad)
    assert err.value.step == 5 and "no such table" in str(err.value)
    assert client.round_trips == 2
    assert conn.execute("SELECT count(*) FROM batch").fetchone() == (2000,)
    conn.close()


def test_executemany_is_one_round_trip(server: Sqld) -> None:
    conn = lc.Connection(server.url)
    _table(conn, "many")
    before = conn.client.round_trips
    conn.executemany("INSERT INTO many(i) VALUES (?)", [(i,) for i in range(500)])
    assert conn.client.round_trips == before + 1 and conn.changes() == 500
    conn.close()


def test_transactions_span_calls_on_one_stream(server: Sqld) -> None:
    conn = lc.Connection(server.url)
    _table(conn, "tx")
    conn.execute("BEGIN")
    assert conn.in_transaction
    conn.execute("INSERT INTO tx(i) VALUES (1)")
    conn.execute("ROLLBACK")
    assert not conn.in_transaction
    with conn:
        conn.execute("INSERT INTO tx(i) VALUES (2)")
    with pytest.raises(RuntimeError), conn:
        conn.execute("INSERT INTO tx(i) VALUES (3)")
        raise RuntimeError
    assert conn.execute("SELECT i FROM tx").fetchall() == [(2,)]
    conn.close()


def test_down_server_is_one_line_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(lh.ServerUnavailable) as err:
        lh.Client(url, timeout=2).execute("SELECT 1")
    assert url in str(err.value) and "\n" not in str(err.value)


class _Faulty(http.server.BaseHTTPRequestHandler):
    mode = "500"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "close":
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-request: no answer at all
            return
        body = b"internal error" if self.mode == "500" else b"{not json"
        self.send_response(500 if self.mode == "500" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _NoCursor(http.server.BaseHTTPRequestHandler):
    """A server whose every answer is too large for its pipeline and that has no /v3/cursor
    ("404"), or whose cursor answers garbage ("garbage")."""

    mode = "404"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/v2/pipeline"):
            status, body = 200, json.dumps({"baton": "b1", "results": [{"type": "error", "error": {
                "message": "Response is too large", "code": "RESPONSE_TOO_LARGE"}}]}).encode()
        elif self.mode == "404":
            status, body = 404, b"not found"
        else:
            status, body = 200, b'{"baton": null}\n{"type": "row", "row": [{"ty'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["404", "garbage"])
def test_a_too_large_answer_without_a_cursor_is_one_clear_line(mode: str) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_NoCursor,), {"mode": mode}))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    conn = lc.Connection(f"http://127.0.0.1:{srv.server_address[1]}", timeout=5)
    try:
        if mode == "404":
            with pytest.raises(lh.StatementError) as err:
                conn.execute("SELECT x FROM big")
            assert "response limit" in str(err.value) and "--max-response-size" in str(err.value)
        else:
            with pytest.raises(lh.ServerUnavailable) as err:
                conn.execute_all([("SELECT x FROM big", ())])
            assert "malformed cursor answer" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        conn.close()
        srv.shutdown()
        srv.server_close()
        t.join()


@pytest.mark.parametrize("mode", ["500", "close", "garbage"])
def test_bad_server_answers_are_unavailable(mode: str) -> None:
    handler = type("H", (_Faulty,), {"mode": mode})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(lh.ServerUnavailable):
            lh.Client(f"http://127.0.0.1:{srv.server_address[1]}", timeout=5).transaction(
                [lh.stmt("SELECT 1", ())])
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


def test_jwt_auth(tmp_path: Path) -> None:
    keys = JwtKeys()
    s = Sqld(tmp_path, jwt=keys).start()
    try:
        assert lh.Client(s.url, keys.token()).execute("SELECT 1")["rows"]
        for token in (None, "not-a-jwt", JwtKeys().token()[:-4] + "AAAA"):
            with pytest.raises(lh.AuthError) as err:
                lh.Client(s.url, token).execute("SELECT 1")
            assert "refused the auth token" in str(err.value) and "\n" not in str(err.value)
    finally:
        s.stop()


# ---- where the store lives --------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "url"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://db.example.com/", "https://db.example.com"),
    ("libsql://db.example.com", "https://db.example.com"),
    ("HTTP://[::1]:9", "http://[::1]:9"),
])
def test_urls_are_never_paths(raw: str, url: str) -> None:
    loc = location.parse(raw)
    assert loc.is_remote and loc.url == url and loc.path is None


@pytest.mark.parametrize("raw", ["telemetry.db", "/var/lib/x.db", "./http:/x", "C:relative"])
def test_paths_stay_paths(raw: str) -> None:
    assert location.parse(raw).path == raw


@pytest.mark.parametrize(("raw", "words"), [
    ("ws://127.0.0.1:8080", "ws:// is not supported"), ("file:///tmp/x.db", "file:// is not supported"),
    ("http://user:pw@h:1", "credentials"), ("http://h:1/?authToken=x", "query strings"),
    ("http://h:99999", "port"), ("http://:80", "no host"), ("  ", "empty"),
])
def test_bad_locations_are_one_line(raw: str, words: str) -> None:
    with pytest.raises(location.LocationError) as err:
        location.parse(raw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(location.TOKEN_ENV, raising=False)
    monkeypatch.delenv(location.TOKEN_FILE_ENV, raising=False)
    f = tmp_path / "token"
    f.write_text("secret-from-file\n")
    os.chmod(f, 0o644)
    with pytest.raises(location.LocationError, match="chmod 600"):
        location.read_token(str(f))
    os.chmod(f, 0o600)
    assert location.read_token(str(f)) == "secret-from-file"
    monkeypatch.setenv(location.TOKEN_FILE_ENV, str(f))
    assert location.read_token(None) == "secret-from-file"
    monkeypatch.setenv(location.TOKEN_ENV, "from-env")
    assert location.read_token(str(f)) == "from-env"


def test_store_opens_a_server_like_a_file(server: Sqld) -> None:
    conn = dbmod.open_admin(server.url)  # creates the schema there
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"records", "rollup_hourly", "rollup_daily", "sync_cursors", "collector_status"} <= tables
    cols = {r[1] for r in conn.execute("PRAGMA table_info(records)")}
    assert "instance" in cols
    conn.close()
    reader = dbmod.open_reader(server.url)
    assert reader.execute("SELECT count(*) FROM records").fetchone() == (0,)
    reader.close()
