"""Reads whose answer is larger than a libSQL server's response limit.

sqld refuses a pipeline answer over ``--max-response-size`` (10 MB by default) with
``RESPONSE_TOO_LARGE``. Before the cursor fallback (``store.libsql_conn``), ``otel-telemetry stats``
over a central server's whole store, a node's details with long error messages and a compare of
LLM spans with their prompts all failed there although they work on a file. Here the server's
limit is 64 KB, so a few thousand records are enough; every answer must equal the file's."""

from __future__ import annotations

import random
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner
from sqld import Sqld, ship

from otel_telemetry.cli.commands import main
from otel_telemetry.query import compare as qc
from otel_telemetry.query import filters, service_map
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import schema
from otel_telemetry.store.libsql_http import StatementError
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00Z
SPANS = 3000
LIMIT = "64KB"


def _spans(seed: int = 11) -> list[tuple[Any, ...]]:
    """Spans of two services, as varied as real ones: request ids, user ids, prompts; failures
    carry a long message and ``region=eu-west`` nine times in ten."""
    rnd = random.Random(seed)
    out = []
    for i in range(SPANS):
        failed = rnd.random() < 0.2
        region = "eu-west" if (failed and rnd.random() < 0.9) or rnd.random() < 0.1 else "us-east"
        attrs = {"http.route": f"/api/orders/{rnd.randrange(10**6)}", "user.id": f"u{rnd.randrange(5000)}",
                 "region": region, "gen_ai.prompt": " ".join(f"word{rnd.randrange(900)}" for _ in range(60))}
        v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
        v.update(uid=f"{i:032x}".encode(), timestamp=T0 + i * 10 * NS, type="span",
                 category="ai_behavior" if i % 3 else "system_performance", component="api.lib",
                 level="error" if failed else "info", name=f"op{i % 4}", event="op", service=f"svc{i % 2}",
                 trace_id=f"{i:032x}", span_id=f"{i:016x}", kind="server", duration_ms=rnd.lognormvariate(3, 1),
                 status="error" if failed else "ok",
                 status_message=f"upstream refused request {rnd.getrandbits(64):x}: " + "x" * 600 if failed else None,
                 data=orjson.dumps({"attributes": attrs}).decode(),
                 metadata=orjson.dumps({"resource": {"service.name": f"svc{i % 2}", "host.name": "h1"}}).decode())
        out.append(tuple(v[c] for c in schema.COLUMNS))
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("big")
    path = str(tmp / "t.db")
    w = StoreWriter(path)
    w.start()
    assert w.submit(WriteBatch(_spans()), 10) and w.flush(30)
    assert w.shutdown(30)
    server = Sqld(tmp, extra=("--max-response-size", LIMIT)).start()
    try:
        assert ship(path, server.url, "one")["shipped"] == SPANS
        yield path, server.url
    finally:
        server.stop()


def _both(stores: Any, read: Any) -> tuple[Any, Any, int]:
    """``read(conn)`` on the file and on the server, and how many statements the server's
    connection had to run again through the cursor."""
    path, url = stores
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        on_file = read(conn)
    finally:
        conn.close()
    remote = lc.Connection(url)
    try:
        return on_file, read(remote), remote.cursor_reruns
    finally:
        remote.close()


def test_stats_of_the_whole_store(stores: Any) -> None:
    """Every duration of the store is ranked by the server, which answers a few rows."""
    on_file, on_server, reruns = _both(stores, lambda c: filters.stats(c, None, None))
    assert on_file["latency_ms"]["overall"]["count"] == SPANS
    assert on_server == on_file and reruns == 0


def test_stats_percentiles_ranked_by_the_server_equal_the_file_s(tmp_path: Any) -> None:
    """Nearest ranks at the edges: one span, ties, integers, a NaN (stored as NULL) and a text
    duration (neither counted), an empty category, a window with no span."""
    durations = {"ai_behavior": [7.0], "system_performance": [3, 3, 3.5, 1e-3, 2.0, 2.0, float("nan"), "slow"],
                 "user_interaction": [float(i % 13) for i in range(101)]}
    rows, i = [], 0
    for cat, values in durations.items():
        for d in values:
            v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
            v.update(uid=f"e{i}".encode(), timestamp=T0 + i * NS, type="span", category=cat, level="info",
                     name="op", service="svc", trace_id=f"{i:032x}", span_id=f"{i:016x}", duration_ms=d,
                     data="{}", metadata="{}")
            rows.append(tuple(v[c] for c in schema.COLUMNS))
            i += 1
    path = str(tmp_path / "e.db")
    w = StoreWriter(path)
    w.start()
    assert w.submit(WriteBatch(rows), 10) and w.flush(30)
    assert w.shutdown(30)
    server = Sqld(tmp_path).start()
    try:
        assert ship(path, server.url, "edge")["shipped"] == len(rows)
        for window in ((None, None, None), (T0, T0 + 5 * NS, None), (None, None, "system_performance"),
                       (T0 + 10**6 * NS, None, None)):
            on_file, on_server, _ = _both((path, server.url), lambda c, w=window: filters.stats(c, *w))
            assert on_server == on_file, window
        assert on_file["latency_ms"]["overall"]["count"] == 0
    finally:
        server.stop()


def test_a_node_with_long_error_messages(stores: Any) -> None:
    on_file, on_server, reruns = _both(
        stores, lambda c: service_map.node_detail(c, T0, T0 + SPANS * 10 * NS, "service", "svc0"))
    assert on_file["spans"] == SPANS // 2 and on_file["errors"]
    assert on_server == on_file and reruns > 0


def test_compare_of_spans_with_their_prompts(stores: Any) -> None:
    on_file, on_server, reruns = _both(
        stores, lambda c: qc.compare(c, qc.parse_where("error"), T0, T0 + SPANS * 10 * NS))
    assert on_file["attributes"][0]["key"] == "region" and on_file["attributes"][0]["value"] == "eu-west"
    assert on_server == on_file and reruns > 0


def test_the_cli_reads_a_large_answer_from_the_server(stores: Any) -> None:
    path, url = stores
    got = {}
    for db in (path, url):
        r = CliRunner().invoke(main, ["stats", "--db", db, "--since", "2026-01-01", "--until", "2026-01-02",
                                      "--format", "json"])
        assert r.exit_code == 0, r.output
        got[db] = orjson.loads(r.stdout)
    assert got[path]["total"] == SPANS and got[url] == got[path]


def test_the_cursor_runs_on_the_connection_s_stream_and_transaction(stores: Any) -> None:
    """A large read inside a transaction sees that transaction's own writes, and the stream goes
    on afterwards: the rollback undoes them. Several statements in one request (the dashboard's
    panels) are answered each its own way."""
    _path, url = stores
    remote = lc.Connection(url)
    try:
        remote.execute("BEGIN")
        remote.execute("CREATE TABLE scratch(x TEXT)")
        remote.execute("INSERT INTO scratch SELECT status_message FROM records WHERE status_message IS NOT NULL")
        n = remote.execute("SELECT count(*) FROM scratch").fetchone()[0]
        assert n > 200
        rows = remote.execute("SELECT x FROM scratch").fetchall()
        assert len(rows) == n and remote.cursor_reruns == 1 and remote.in_transaction
        small, big = remote.execute_all([("SELECT count(*) FROM scratch", ()), ("SELECT x FROM scratch", ())])
        assert small.fetchone() == (n,) and len(big.fetchall()) == n and remote.cursor_reruns == 2
        remote.execute("ROLLBACK")
        with pytest.raises(StatementError, match="no such table"):
            remote.execute("SELECT count(*) FROM scratch")
    finally:
        remote.close()
