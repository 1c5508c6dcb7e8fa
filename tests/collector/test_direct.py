"""Direct to a server: ``collector run --db http://...`` writes its transactions to a real sqld.

The books close (emitted == stored on the server + counted drops), timestamps are exact to the
nanosecond, the CLI prints the same for the server as for a file holding the same rows, each
batch is one request, a redelivered row is stored once, and a server that is down at start or
killed mid-run pushes back (counted) without losing anything silently.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import CollectorProc, producer_result, run_producer, wait_for
from sqld import Sqld, free_port

from otel_telemetry.cli import main
from otel_telemetry.store import libsql_batch as lb
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import rollups
from otel_telemetry.store.schema import COLUMNS, STORED_COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

CMP = ", ".join(STORED_COLUMNS)


def _direct_collector(tmp: Path, url: str, instance: str, name: str = "c") -> CollectorProc:
    c = CollectorProc(tmp, name)
    c.db = url  # CollectorProc passes --db; a URL makes it a direct-mode collector
    cfg = yaml.safe_load(c.config.read_text())
    cfg["instance"] = instance
    # Without a database file the alert state goes to the runtime directory; keep it in the test's.
    cfg["alerts"] = {"state_db": str(tmp / f"{name}.alerts.db")}
    c.config.write_text(yaml.safe_dump(cfg))
    return c


def _central(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = lc.Connection(url)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _status(url: str, instance: str) -> dict:
    try:
        rows = _central(url, "SELECT body FROM sync_status WHERE instance = ?", (instance,))
    except Exception:  # noqa: BLE001 - not there yet / server down
        return {}
    return json.loads(rows[0][0]) if rows else {}


def _rounded(rows: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]


def _json_rounded(v: object) -> object:
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, dict):
        return {k: _json_rounded(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_rounded(x) for x in v]
    return v


def _app_drops(result: dict) -> int:
    return sum(sum(v.get("dropped", {}).values()) for v in result["counters"]["by_category"].values())


def _collector_drops(st: dict) -> int:
    zmq = st.get("zmq") or {}
    return (int(st.get("dropped_rows", 0)) + sum((zmq.get("gaps") or {}).values())
            + sum((zmq.get("dropped") or {}).values()))


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Sqld(tmp_path).start()
    yield s
    s.stop()


def test_direct_round_trip_books_exact_and_cli_as_on_a_file(tmp_path: Path, server: Sqld) -> None:
    c = _direct_collector(tmp_path, server.url, "kiosk-1").start()
    r = producer_result(run_producer(c.endpoint, "--spans", "1500", wait=False))  # type: ignore[arg-type]
    assert c.stop() == 0
    assert not list(tmp_path.glob("http*")), "a URL must never become a file"
    st = _status(server.url, "kiosk-1")
    stored = _central(server.url, "SELECT count(*) FROM records")[0][0]
    emitted = sum(r["emitted"].values())
    assert emitted == stored + _app_drops(r) + _collector_drops(st), (emitted, stored, st)
    # errors 0: status rows and the retention run (on the server too) went through as well
    assert stored > 0 and st["stored"] == stored and st["store_retries"] == 0 and st["errors"] == 0
    assert st["retention_runs"] >= 1
    assert st["commits"] < stored  # batches, not rows
    assert {row[0] for row in _central(server.url, "SELECT DISTINCT instance FROM records")} == {"kiosk-1"}

    # The same rows in a local file (written by a local collector fed the server's rows), then
    # every read command prints the same on both.
    central = _central(server.url, f"SELECT {CMP} FROM records ORDER BY id")
    local_db = str(tmp_path / "copy.db")
    w = StoreWriter(local_db, instance="kiosk-1")
    w.start()
    assert w.submit(WriteBatch(rows=[row[:-1] for row in central]), 10)
    assert w.flush(30) and w.shutdown(10)
    from otel_telemetry.store.db import open_reader

    conn = open_reader(local_db)
    local = list(conn.execute(f"SELECT {CMP} FROM records ORDER BY id"))
    conn.close()
    assert local == central  # every column; timestamps to the nanosecond
    for table in rollups.TABLES:  # the rollups the server kept agree with the file's
        sql = f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
        conn = open_reader(local_db)
        mine = list(conn.execute(sql))
        conn.close()
        # Sums of floats depend on the batching (the server's batches are not the file's).
        assert _rounded(_central(server.url, sql)) == _rounded(mine), table

    ts = central[0][STORED_COLUMNS.index("timestamp")]
    since, until = str(ts // 10**9 - 3600), str(ts // 10**9 + 3600)
    window = ["--since", since, "--until", until]
    runner = CliRunner()
    for cmd in (["query", *window, "--limit", "5000", "--format", "json"],
                ["stats", *window, "--format", "json"],
                ["stats", *window, "--by-instance", "--instance", "kiosk-1", "--format", "csv"],
                ["stats", "--period", "1d", "--until", until, "--format", "json", "--alerts-db", "/nonexistent"],
                ["export", *window, "--format", "otlp-json", "-o", "-"],
                ["export", "--format", "csv", "-o", "-"]):
        outs = []
        for db in (local_db, server.url):
            res = runner.invoke(main, [*cmd, "--db", db], catch_exceptions=False)
            assert res.exit_code == 0, (cmd, db, res.output)
            outs.append(res.output)
        assert outs[0].strip(), cmd
        if "--period" in cmd:  # read from rollups, whose float sums depend on the batching
            assert _json_rounded(json.loads(outs[0])) == _json_rounded(json.loads(outs[1])), cmd
        else:
            assert outs[0] == outs[1], cmd
    res = runner.invoke(main, ["status", "--db", server.url, "--format", "json"])
    assert res.exit_code == 0 and list(json.loads(res.output)["instances"]) == ["kiosk-1"]


def _row(n: int, ts: int, **kw: object) -> tuple:
    values: dict = dict.fromkeys(COLUMNS)
    values.update(uid=n.to_bytes(16, "big"), timestamp=ts, type="span", category="ai_behavior", level="info",
                  data="{}", metadata="{}", duration_ms=1.5 + n % 7, model="gpt-4o", input_tokens=n)
    values.update(kw)
    return tuple(values[col] for col in COLUMNS)


def test_one_request_per_batch_and_redelivery_stored_once(server: Sqld) -> None:
    w = StoreWriter(server.url, instance="dev", status_interval=3600, flush_interval=0.01)
    w.start()
    try:
        conn = w._conn
        assert isinstance(conn, lb.BufferedConnection)
        ts = 1796613017076846598  # a float would make it ...592
        first = [_row(i, ts + i) for i in range(600)]
        before = conn.client.round_trips
        assert w.submit(WriteBatch(first, {(b"pub", "t"): 600}, 600), 10) and w.flush(30)
        assert conn.client.round_trips - before == 1  # rows, rollups, checkpoints: one request
        assert w.stats()["stored"] == 600

        again = first[:100] + [_row(i, ts + i) for i in range(600, 700)]
        before = conn.client.round_trips
        assert w.submit(WriteBatch(again, {(b"pub", "t"): 700}, 200), 10) and w.flush(30)
        assert conn.client.round_trips - before == 3  # refused by its guard, which uids, then the write
        s = w.stats()
        assert (s["stored"], s["duplicates"], s["dropped_rows"]) == (700, 100, 0)
    finally:
        assert w.shutdown(10)
    assert _central(server.url, "SELECT min(timestamp), max(timestamp), count(*) FROM records") == [
        (ts, ts + 699, 700)]
    # Rollups counted each stored row once (not the redelivered ones).
    assert _central(server.url, "SELECT sum(count), sum(input_tokens) FROM rollup_daily") == [
        (700, sum(range(700)))]
    assert _central(server.url, "SELECT next_seq FROM publishers") == [(700,)]


def _wait_log(c: CollectorProc, words: str) -> None:
    wait_for(lambda: words in c.log.read_text(), 60, f"{words!r} in the collector's log")


def _books_after(c: CollectorProc, url: str, result: dict, instance: str) -> dict:
    st = _status(url, instance)
    stored = _central(url, "SELECT count(*) FROM records")[0][0]
    emitted = sum(result["emitted"].values())
    assert emitted == stored + _app_drops(result) + _collector_drops(st), (emitted, stored, st)
    return st


def test_server_down_at_start_pushes_back_then_catches_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    c = _direct_collector(tmp_path, url, "kiosk-2").start()  # starts although nobody answers
    prod = run_producer(c.endpoint, "--spans", "3000", "--shutdown-timeout", "60", wait=False)
    _wait_log(c, "unreachable, holding batches")
    server = Sqld(tmp_path, port=port).start()
    try:
        r = producer_result(prod)  # type: ignore[arg-type]
        assert c.stop() == 0
        st = _books_after(c, url, r, "kiosk-2")
        assert st["store_retries"] >= 1 and st["store_unavailable"] == 0 and st["dropped_unavailable"] == 0
        assert _central(url, "SELECT count(*) FROM records")[0][0] > 0
    finally:
        server.stop()


def test_server_killed_mid_run_then_restarted(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Sqld(tmp_path, port=port).start()
    c = _direct_collector(tmp_path, url, "kiosk-3").start()
    prod = run_producer(c.endpoint, "--spans", "6000", "--rate", "1500", "--shutdown-timeout", "60", wait=False)
    try:
        wait_for(lambda: _central(url, "SELECT count(*) FROM records")[0][0] > 0
                 if server.healthy() else False, 60, "first rows on the server")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        server.proc = None
        _wait_log(c, "unreachable, holding batches")
        server = Sqld(tmp_path, port=port).start()  # same directory: the rows so far are there
        r = producer_result(prod)  # type: ignore[arg-type]
        assert c.stop() == 0
        st = _books_after(c, url, r, "kiosk-3")
        assert st["store_retries"] >= 1 and st["dropped_unavailable"] == 0
        uids = _central(url, "SELECT count(*), count(DISTINCT uid) FROM records")[0]
        assert uids[0] == uids[1]
        assert _central(url, "SELECT sum(count) FROM rollup_daily")[0][0] == uids[0]  # no row twice
    finally:
        server.stop()
        if c.proc is not None:
            c.stop()


def test_server_down_at_shutdown_counts_what_it_could_not_write(tmp_path: Path) -> None:
    c = _direct_collector(tmp_path, f"http://127.0.0.1:{free_port()}", "kiosk-4")
    cfg = yaml.safe_load(c.config.read_text())
    cfg["shutdown_timeout"] = 3
    c.config.write_text(yaml.safe_dump(cfg))
    c.start()
    r = producer_result(run_producer(c.endpoint, "--spans", "300", "--shutdown-timeout", "5", wait=False))  # type: ignore[arg-type]
    _wait_log(c, "unreachable, holding batches")
    c.stop()
    line = next(ln for ln in c.log.read_text().splitlines() if "collector stopped:" in ln)
    last = dict(kv.split("=", 1) for kv in line.split("collector stopped: ", 1)[1].split())
    assert int(last["stored"]) == 0
    # Nothing silent: the app counted what it could not send, the collector what it held.
    collector_drops = int(last["dropped_rows"]) + int(last["zmq_dropped"]) + int(last["zmq_gaps"])
    assert sum(r["emitted"].values()) == _app_drops(r) + collector_drops, (r, line)
    if int(last["dropped_rows"]):
        assert "could not be written (counted as dropped_unavailable)" in c.log.read_text()


@pytest.mark.heavy
def test_otlp_clients_are_pushed_back_while_the_server_is_down(tmp_path: Path) -> None:
    """OTLP/HTTP against a direct-mode collector whose server is down: 503 (not stored in time),
    then 429 once the writer's queue is full; after the server is back every retried span is
    stored exactly once (the held batches commit too; the retries find their uids stored)."""
    from test_otlp_receivers import post, span_request

    from otel_telemetry.collector.config import load
    from otel_telemetry.collector.service import Collector

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("store: {flush_interval: 0.02, queue_batches: 1}\nretention: {interval: 3600}\n"
                   "receivers:\n  zmq: {enabled: false}\n  otlp_grpc: {enabled: false}\n"
                   "  otlp_http: {endpoint: '127.0.0.1:0'}\n"
                   f"alerts: {{default_rules: false, state_db: '{tmp_path}/c.alerts.db'}}\n")
    c = Collector(load(str(cfg), db=url, endpoint=f"ipc://{tmp_path}/c.ipc"))
    c.start()
    server = None
    try:
        http_port = int(c.otlp_http.endpoint.rsplit(":", 1)[1])
        bodies = [span_request(f"svc-{k}", 20).SerializeToString() for k in range(3)]
        statuses = [post(http_port, "/v1/traces", b)[0] for b in bodies]
        # the first is held by the writer, the second waits in its queue (1 batch), the third finds it full
        assert statuses == [503, 503, 429], statuses
        assert c.writer.stats()["store_retries"] >= 1 and c.writer.stats()["stored"] == 0
        server = Sqld(tmp_path, port=port).start()
        for b in bodies:  # the client retries, as OTLP exporters do on 429/503
            wait_for(lambda b=b: post(http_port, "/v1/traces", b)[0] == 200, 60, "stored once the server is back")
        assert c.shutdown(10)
        assert _central(url, "SELECT count(*), count(DISTINCT uid) FROM records") == [(60, 60)]
        s = c.writer.stats()
        assert s["stored"] == 60 and s["dropped_rows"] == 0 and s["store_unavailable"] == 0
    finally:
        c.shutdown(10)
        if server is not None:
            server.stop()
