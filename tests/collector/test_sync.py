"""``sync:``: a collector process ships every committed row to a real sqld, exactly once.

The books close on both sides (emitted == stored + counted drops, locally and centrally), the
central copy is column-for-column the local one (timestamps to the nanosecond, tagged with the
instance), and a server that is down, answers 500, closes mid-request or refuses the token only
delays shipping: counted, retried with backoff, the local store unaffected, the cursor unmoved.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import CollectorProc, producer_result, run_producer, wait_for
from sqld import JwtKeys, Sqld, free_port

from otel_telemetry.cli import main
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store.schema import STORED_COLUMNS

CMP = ", ".join(c for c in STORED_COLUMNS)


def _sync_collector(tmp: Path, url: str, instance: str, name: str = "c", token_file: Path | None = None,
                    **sync: object) -> CollectorProc:
    c = CollectorProc(tmp, name)
    cfg = yaml.safe_load(c.config.read_text())
    cfg["instance"] = instance
    cfg["sync"] = {"url": url, "interval": 0.05, **sync}
    if token_file is not None:
        cfg["sync"]["auth_token_file"] = str(token_file)
    c.config.write_text(yaml.safe_dump(cfg))
    return c


def _central(url: str, sql: str, params: tuple = (), token: str | None = None) -> list[tuple]:
    conn = lc.Connection(url, token)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _local_rows(c: CollectorProc) -> list[tuple]:
    return c.rows(f"SELECT {CMP} FROM records ORDER BY uid")


def _shipped_all(c: CollectorProc) -> bool:
    st = c.status().get("sync") or {}
    n = c.rows("SELECT count(*) FROM records")[0][0] if Path(c.db).exists() else -1
    return st.get("pending") == 0 and st.get("cursor") == c.rows("SELECT max(id) FROM records")[0][0] and n > 0


def _books(result: dict, stored: int) -> None:
    emitted = sum(result["emitted"].values())
    drops = sum(sum(v.get("dropped", {}).values()) for v in result["counters"]["by_category"].values())
    assert emitted == stored + drops, (emitted, stored, drops)


def _local_books(result: dict, c: CollectorProc) -> None:
    """The books on the collector's own file once it has committed what the app sent: an app may
    exit before a loaded collector's first acknowledgement (then it does not wait for one), so the
    count is read when it stops growing towards the app's figure (60 s at most), then checked."""
    emitted = sum(result["emitted"].values())
    drops = sum(sum(v.get("dropped", {}).values()) for v in result["counters"]["by_category"].values())
    with contextlib.suppress(AssertionError):
        wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] >= emitted - drops, 60, "rows committed")
    _books(result, c.rows("SELECT count(*) FROM records")[0][0])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Sqld]:
    s = Sqld(tmp_path).start()
    yield s
    s.stop()


def test_round_trip_exact_and_cli_output_identical(tmp_path: Path, server: Sqld) -> None:
    c = _sync_collector(tmp_path, server.url, "dev-a").start()
    r = producer_result(run_producer(c.endpoint, "--spans", "1200", wait=False))  # type: ignore[arg-type]
    wait_for(lambda: _shipped_all(c), 60, "every row shipped")
    assert c.stop() == 0
    local = _local_rows(c)
    _books(r, len(local))
    central = _central(server.url, f"SELECT {CMP} FROM records ORDER BY uid")
    assert central == local  # every column, timestamps to the nanosecond, instance included
    assert {row[-1] for row in central} == {"dev-a"}
    assert _central(server.url, "SELECT instance, last_id FROM sync_cursors") == [("dev-a", len(local))]
    st = c.status()["sync"]
    assert st["shipped"] == len(local) and st["errors"] == 0 and st["last_error"] is None

    # status on the server: each shipping collector's last status row, by instance.
    res = CliRunner().invoke(main, ["status", "--db", server.url, "--format", "json"])
    assert res.exit_code == 0, res.output
    inst = json.loads(res.output)["instances"]
    assert list(inst) == ["dev-a"] and inst["dev-a"]["instance"] == "dev-a" and inst["dev-a"]["pid"] > 0
    # Every read command prints the same on the server as on the file (fixed window: no "now").
    ts = c.rows("SELECT min(timestamp), max(timestamp) FROM records")[0]
    since, until = str(ts[0] // 10**9 - 60), str(ts[1] // 10**9 + 60)
    window = ["--since", since, "--until", until]
    runner = CliRunner()
    commands = [
        ["query", *window, "--limit", "5000", "--format", "json"],
        ["query", *window, "--category", "error_patterns", "--instance", "dev-a"],
        ["stats", *window, "--format", "json"],
        ["stats", *window, "--by-instance", "--format", "csv"],
        # The report's alert section reads a collector's alert state file, which lives beside its own
        # database (never on the server): both runs name the device's.
        ["stats", "--period", "1d", "--until", until, "--format", "json", "--alerts-db", f"{c.db}.alerts.db"],
        ["stats", *window, "--agent", "x", "--format", "json", "--alerts-db", f"{c.db}.alerts.db"],
        ["export", *window, "--format", "jsonl", "-o", "-"],
        ["export", *window, "--format", "otlp-json", "--instance", "dev-a", "-o", "-"],
        ["export", "--format", "csv", "-o", "-"],
        ["watch", "--backlog", "7", "--max-records", "7", "--format", "jsonl", "--instance", "dev-a"],
        ["retention", "show", "--format", "json"],
        ["purge", "--category", "ai_research", "--dry-run", "--format", "json"],
    ]
    for cmd in commands:
        outs = []
        for db in (c.db, server.url):
            res = runner.invoke(main, [*cmd, "--db", db], catch_exceptions=False)
            assert res.exit_code == 0, (cmd, db, res.output)
            outs.append(res.output)
        assert outs[0] == outs[1], cmd
        assert outs[0].strip(), cmd


def test_down_at_start_offline_restart_then_back(tmp_path: Path) -> None:
    port = free_port()
    c = _sync_collector(tmp_path, f"http://127.0.0.1:{port}", "dev-b").start()
    r1 = producer_result(run_producer(c.endpoint, "--spans", "300", wait=False))  # type: ignore[arg-type]
    wait_for(lambda: (c.status().get("sync") or {}).get("errors", 0) >= 2, 30, "retries counted")
    st = c.status()["sync"]
    assert st["shipped"] == 0 and "127.0.0.1" in st["last_error"]
    # Local ingest unaffected: every record the app did not count as dropped gets stored (the last
    # ones may still be on their way through the socket when the producer has exited).
    drops = sum(sum(v.get("dropped", {}).values()) for v in r1["counters"]["by_category"].values())
    wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == sum(r1["emitted"].values()) - drops,
             30, "every record stored locally")
    local_n = c.rows("SELECT count(*) FROM records")[0][0]
    _books(r1, local_n)
    wait_for(lambda: c.status()["sync"]["pending"] == local_n, 30, "every local row counted as pending")
    # Restart while the server is still down: nothing shipped, nothing lost.
    assert c.stop() == 0
    c.start()
    r2 = producer_result(run_producer(c.endpoint, "--spans", "300", wait=False))  # type: ignore[arg-type]
    server = Sqld(tmp_path, port=port).start()
    try:
        wait_for(lambda: _shipped_all(c), 60, "catch-up after the server came back")
        assert c.stop() == 0
        local = _local_rows(c)
        _books(r2, len(local) - local_n)
        assert _central(server.url, f"SELECT {CMP} FROM records ORDER BY uid") == local
    finally:
        server.stop()


class _FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards /v2/pipeline to sqld; ``mode`` makes it answer 500, or forward and then close the
    connection without answering (the server committed, the client never hears it)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.faults = 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _FaultProxy
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode
        if mode == "500" and b'"batch"' in body:
            self.server.faults += 1
            self.send_response(500)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"boom!")
            return
        up = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        up.request("POST", self.path, body, headers)
        resp = up.getresponse()
        data = resp.read()
        up.close()
        if mode == "close" and b'"batch"' in body:
            self.server.faults += 1
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["500", "close"])
def test_bad_server_answers_retry_without_loss_or_duplicates(tmp_path: Path, server: Sqld, mode: str) -> None:
    proxy = _FaultProxy(server.port)
    proxy.mode = mode
    t = threading.Thread(target=proxy.serve_forever, daemon=True)
    t.start()
    try:
        c = _sync_collector(tmp_path, f"http://127.0.0.1:{proxy.server_address[1]}", "dev-c",
                            batch_rows=100).start()
        r = producer_result(run_producer(c.endpoint, "--spans", "600", wait=False))  # type: ignore[arg-type]
        wait_for(lambda: proxy.faults >= 3 and (c.status().get("sync") or {}).get("errors", 0) >= 3, 30,
                 "faults seen and counted")
        _local_books(r, c)  # local store unaffected
        proxy.mode = "pass"
        wait_for(lambda: _shipped_all(c), 60, "every row shipped after the faults")
        assert c.stop() == 0
        local = _local_rows(c)
        central = _central(server.url, f"SELECT {CMP} FROM records ORDER BY uid")
        assert central == local  # exactly once, although "close" let some batches commit unheard
        st = c.status()["sync"]
        assert st["shipped"] == len(local) and st["errors"] >= 3 and st["last_error"] is None
        if mode == "close":
            assert st["confirmed_late"] > 0  # batches committed unheard, found by the cursor
        # The rollups agree with the rows: nothing counted twice on the server.
        n = _central(server.url, "SELECT sum(count) FROM rollup_hourly")[0][0]
        assert n == len(local)
    finally:
        proxy.shutdown()
        proxy.server_close()
        t.join()


def test_jwt_wrong_or_missing_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = JwtKeys()
    server = Sqld(tmp_path, jwt=keys).start()
    try:
        bad = tmp_path / "bad.token"
        bad.write_text(JwtKeys().token()[:-8] + "AAAAAAAA")
        os.chmod(bad, 0o600)
        monkeypatch.delenv("OTEL_TELEMETRY_DB_AUTH_TOKEN", raising=False)
        c = _sync_collector(tmp_path, server.url, "dev-d", token_file=bad).start()
        r = producer_result(run_producer(c.endpoint, "--spans", "120", wait=False))  # type: ignore[arg-type]
        wait_for(lambda: (c.status().get("sync") or {}).get("errors", 0) >= 2, 30, "auth errors counted")
        st = c.status()["sync"]
        assert "refused the auth token" in st["last_error"] and st["shipped"] == 0
        _local_books(r, c)  # rows stay local
        assert c.stop() == 0
        good = keys.token()
        # Nothing reached the server, not even the schema: no cursor can have moved.
        assert _central(server.url, "SELECT count(*) FROM sqlite_master WHERE name = 'sync_cursors'",
                        token=good) == [(0,)]
        # The CLI: one clear line, for a missing and for a wrong token.
        runner = CliRunner()
        for token in (None, "nope"):
            if token is None:
                monkeypatch.delenv("OTEL_TELEMETRY_DB_AUTH_TOKEN", raising=False)
            else:
                monkeypatch.setenv("OTEL_TELEMETRY_DB_AUTH_TOKEN", token)
            res = runner.invoke(main, ["stats", "--db", server.url])
            assert res.exit_code == 1 and "refused the auth token" in res.output
            assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
        # With the right token the rows kept locally all arrive (the env token would win: unset).
        monkeypatch.delenv("OTEL_TELEMETRY_DB_AUTH_TOKEN", raising=False)
        bad.write_text(good)
        c.start()
        wait_for(lambda: _shipped_all(c), 60, "shipped with the right token")
        assert c.stop() == 0
        assert _central(server.url, f"SELECT {CMP} FROM records ORDER BY uid", token=good) == _local_rows(c)
    finally:
        server.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _otlp_span(trace_id: str, span_id: str, parent: str, name: str, service: str, start: int) -> bytes:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "stitch"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 5_000_000)}]}]}]}).encode()


def test_a_trace_across_two_instances_is_one_trace_on_the_server(tmp_path: Path, server: Sqld) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    t0 = 1796613017076846598
    devices = []
    for name in ("edge", "backend"):
        c = _sync_collector(tmp_path, server.url, name, name=name)
        cfg = yaml.safe_load(c.config.read_text())
        port = free_port()
        cfg["receivers"] = {"otlp_http": {"endpoint": f"127.0.0.1:{port}"}, "otlp_grpc": {"enabled": False}}
        c.config.write_text(yaml.safe_dump(cfg))
        devices.append((c.start(), port))
    # The child starts 1 ms after its parent: the trace reads in time order whichever device
    # shipped first (ids on the server follow arrival).
    spans = [("b7ad6b7169203331", "", "GET /checkout", "edge", t0),
             ("00f067aa0ba902b7", "b7ad6b7169203331", "charge card", "backend", t0 + 1_000_000)]
    for (_c, port), (sid, parent, name, svc, start) in zip(devices, spans, strict=True):
        wait_for(lambda port=port: _listening(port), 30, "OTLP/HTTP receiver bound")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/traces", _otlp_span(trace, sid, parent, name, svc, start),
                     {"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
    for c, _ in devices:
        wait_for(lambda c=c: _shipped_all(c), 60, "shipped")
        assert c.stop() == 0
    res = CliRunner().invoke(main, ["query", "--trace-id", trace, "--since", "0", "--order", "asc",
                                    "--format", "json", "--db", server.url])
    assert res.exit_code == 0, res.output
    got = [(r["span_id"], r["parent_span_id"], r["instance"]) for r in json.loads(res.output)]
    assert got == [("b7ad6b7169203331", None, "edge"), ("00f067aa0ba902b7", "b7ad6b7169203331", "backend")]
