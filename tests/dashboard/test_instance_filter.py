"""``--instance`` / ``instance=`` everywhere on a central server: two collectors write the same
contents directly to one sqld; filtered by one instance, every panel and CLI report shows exactly
what a file holding only that instance's rows shows, and unfiltered they count both."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dashboard_seed import Seed, make_rows
from sqld import Sqld
from test_dashboard_api import TOKEN, Client

from otel_telemetry.cli import main
from otel_telemetry.dashboard.server import Dashboard
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

UID = COLUMNS.index("uid")


def _write(db: str, instance: str, rows: list[tuple[Any, ...]]) -> None:
    w = StoreWriter(db, instance=instance, batch_rows=500, flush_interval=0.02, status_interval=0.05)
    w.start()
    for k in range(0, len(rows), 500):
        assert w.submit(WriteBatch(rows[k:k + 500]), 30)
    assert w.flush(60)
    assert w.shutdown(30)
    assert w.stats()["stored"] == len(rows)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Client, str, str, Seed]]:
    tmp = tmp_path_factory.mktemp("instances")
    seed = Seed(now_ns=1_800_000_000 * 10**9)
    rows = make_rows(seed.now_ns, random.Random(5), seed)
    seed.rows = len(rows)
    other = [r[:UID] + (os.urandom(24),) + r[UID + 1:] for r in rows]  # same contents, new uids
    path = str(tmp / "a.db")
    _write(path, "dev-a", rows)
    server = Sqld(Path(tmp)).start()
    _write(server.url, "dev-a", rows)  # two devices writing one server directly
    _write(server.url, "dev-b", other)
    dashes = [Dashboard(db, TOKEN, "127.0.0.1", 0) for db in (path, server.url)]
    for d in dashes:
        d.start()
    try:
        yield Client(dashes[0]), Client(dashes[1]), path, server.url, seed
    finally:
        for d in dashes:
            d.shutdown()
        server.stop()


def test_every_panel_filters_by_instance(env: Any) -> None:
    local, remote, _, _, seed = env
    until = str(seed.now_ns // 10**9 + 1)
    for name, params in [("ai", {"last": "1h", "until": until}), ("ai", {"last": "7d", "until": until}),
                         ("errors", {"last": "24h", "until": until}), ("system", {"last": "6h", "until": until}),
                         ("traces", {"limit": 200, "until": until}), ("sessions", {"until": until})]:
        mine = local.json(name, **params, instance="dev-a")
        assert remote.json(name, **params, instance="dev-a") == mine, (name, params)
        b = remote.json(name, **params, instance="dev-b")
        if name == "traces":  # the same spans under other ids
            assert [s["name"] for s in b["spans"]] == [s["name"] for s in mine["spans"]]
        elif name != "errors":
            assert _no_instance(b) == _no_instance(mine), (name, params)
    ov = {k: remote.json("overview", last="7d", until=until, **({"instance": k} if k else {}))
          for k in ("dev-a", "dev-b", "nobody", "")}
    assert ov["dev-a"]["total"] == ov["dev-b"]["total"] == seed.rows and ov["nobody"]["total"] == 0
    assert ov[""]["total"] == 2 * seed.rows
    assert ov["dev-a"]["status"]["instance"] == "dev-a" and ov["nobody"]["status"] is None
    assert remote.json("ai", last="1h", until=until)["report"]["calls"]["total"] == \
        2 * local.json("ai", last="1h", until=until)["report"]["calls"]["total"]


def _no_instance(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _no_instance(v) for k, v in obj.items() if k != "instance"}
    if isinstance(obj, list):
        return [_no_instance(v) for v in obj]
    return obj


def _cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_cli_report_and_status_by_instance(env: Any) -> None:
    _, _, path, url, seed = env
    until = str(seed.now_ns // 10**9 + 1)
    for extra in ([], ["--agent", "planner"], ["--model", "gpt-4o"]):
        cmd = ["stats", "--period", "1d", "--until", until, "--format", "json", "--alerts-db", "/nonexistent", *extra]
        code, mine = _cli(*cmd, "--db", path, "--instance", "dev-a")
        assert code == 0, mine
        report = json.loads(mine)
        assert report["source"] == "rollups" and report["filters"]["instance"] == "dev-a"  # keyed by instance
        for inst in ("dev-a", "dev-b"):
            code, out = _cli(*cmd, "--db", url, "--instance", inst)
            assert code == 0 and json.loads(out)["calls"] == report["calls"], (extra, inst)
        code, out = _cli(*cmd, "--db", url)  # both instances, from the rollups
        assert json.loads(out)["calls"]["total"] == 2 * report["calls"]["total"]
    code, out = _cli("stats", "--period", "1d", "--by-instance", "--db", url)
    assert code == 2 and "--by-instance" in out
    code, out = _cli("status", "--db", url, "--instance", "dev-b", "--format", "json")
    assert code == 0 and json.loads(out)["instance"] == "dev-b"
    code, out = _cli("status", "--db", path, "--instance", "dev-a", "--format", "json")
    assert code == 0 and json.loads(out)["instance"] == "dev-a"
    code, out = _cli("status", "--db", url, "--instance", "nobody")
    assert code == 1 and "nobody" in out


def test_live_tail_by_instance(env: Any) -> None:
    import http.client

    from test_dashboard_api import _sse_events

    from otel_telemetry.dashboard.tail import Subscription
    from otel_telemetry.query.filters import RECORD_COLUMNS

    def row(instance: str | None) -> tuple[Any, ...]:
        values = dict.fromkeys(RECORD_COLUMNS)
        values.update(category="ai_behavior", level="info", instance=instance)
        return tuple(values[c] for c in RECORD_COLUMNS)

    sub = Subscription((), (), 10, "dev-a")
    assert sub.matches(row("dev-a")) and not sub.matches(row("dev-b")) and not sub.matches(row(None))
    assert Subscription((), (), 10).matches(row("dev-b"))

    _, remote, _, _, _ = env
    conn = http.client.HTTPConnection("127.0.0.1", remote.dash.port, timeout=30)
    conn.request("GET", "/api/tail?backlog=3&instance=dev-b",
                 headers={"Host": f"127.0.0.1:{remote.dash.port}", "Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert [k for k, _ in _sse_events(resp, 3)] == ["record"] * 3  # the backlog, read with the filter
    resp.close()
    conn.close()
