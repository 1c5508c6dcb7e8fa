"""Retention on a central libSQL server: the CLI against ``--db URL`` (for a systemd timer or cron)
and ``sync: {retention: true}``, with the same counts as on the local file."""

from __future__ import annotations

import time
from pathlib import Path

import apsw
import orjson
import pytest
from click.testing import CliRunner
from conftest import wait_for
from sqld import Sqld, ship

from otel_telemetry.cli.commands import main
from otel_telemetry.collector.sync.config import SyncConfig
from otel_telemetry.collector.sync.shipper import SyncShipper
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import schema
from otel_telemetry.store.retention import RetentionPolicy
from otel_telemetry.store.writer import StoreWriter, WriteBatch

DAY = 86_400 * 10**9


def _row(uid: int, ts: int, cat: str) -> tuple:
    v = dict.fromkeys(schema.COLUMNS)
    v.update(uid=uid.to_bytes(16, "big"), timestamp=ts, type="span", category=cat, level="info",
             event="e", name="e", component="c", data="{}", metadata="{}", duration_ms=float(uid % 50))
    return tuple(v[c] for c in schema.COLUMNS)


def _seed(path: str, now: int, extra: tuple = ()) -> dict[str, int]:
    """Rows 0..99 days old in two categories; returns how many are older than 30 days per category."""
    rows, old = list(extra), {"system_performance": 0, "ai_research": 0}
    for i in range(400):
        cat = ("system_performance", "ai_research")[i % 2]
        age = (i % 100) * DAY + 3600 * 10**9
        rows.append(_row(i, now - age, cat))
        old[cat] += age > 30 * DAY
    w = StoreWriter(path, batch_rows=1000, flush_interval=0.02, instance="dev-r")
    w.start()
    assert w.submit(WriteBatch(rows), 30) and w.flush(30)
    assert w.shutdown(30)
    return old


def _cli(*args: str) -> dict:
    r = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Sqld(tmp_path).start()
    yield s
    s.stop()


def test_cli_retention_on_the_server_matches_the_file(tmp_path: Path, server: Sqld) -> None:
    path = str(tmp_path / "t.db")
    old = _seed(path, time.time_ns())
    assert ship(path, server.url, "dev-r")["shipped"] == 400
    for db in (path, server.url):
        r = CliRunner().invoke(main, ["retention", "set", "--category", "ai_research", "--days", "30", "--db", db])
        assert r.exit_code == 0, r.output
    shows = [_cli("retention", "show", "--db", db) for db in (path, server.url)]
    assert shows[0] == shows[1]
    dry = [_cli("retention", "purge", "--dry-run", "--db", db) for db in (path, server.url)]
    assert dry[0] == dry[1] and dry[0]["would_delete"]["ai_research"] == old["ai_research"]
    done = [_cli("retention", "purge", "--db", db) for db in (path, server.url)]
    assert done[0]["deleted"] == done[1]["deleted"] == {**dict.fromkeys(done[0]["deleted"], 0), **old}
    conn = lc.Connection(server.url)
    assert conn.execute("SELECT count(*) FROM records").fetchone() == (400 - sum(old.values()),)
    conn.close()


def test_sync_retention_applies_the_collectors_days_on_the_server(tmp_path: Path, server: Sqld) -> None:
    path = str(tmp_path / "t.db")
    now = time.time_ns()
    old = _seed(path, now)
    policy = RetentionPolicy(days={"system_performance": 30, "ai_research": 30})
    shipper = SyncShipper(path, SyncConfig(url=server.url, interval=0.02, retention=True), "dev-r",
                          retention=policy, retention_interval=3600, clock=lambda: now)
    shipper.start()
    try:
        wait_for(lambda: shipper.stats()["retention_purged"] > 0, 60, "retention ran on the server")
    finally:
        assert shipper.shutdown(30)
    assert shipper.stats()["retention_purged"] == sum(old.values())
    conn = lc.Connection(server.url)
    assert conn.execute("SELECT count(*) FROM records WHERE timestamp < ?", (now - 30 * DAY,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM records").fetchone() == (400 - sum(old.values()),)
    conn.close()


def test_emergency_purge_on_the_server_matches_the_file(tmp_path: Path, server: Sqld) -> None:
    path = str(tmp_path / "t.db")
    now = time.time_ns()
    cut = now - 20 * DAY - 3600 * 10**9  # row 20 (system_performance) sits exactly here
    _seed(path, now, extra=(_row(1000, cut - 1, "system_performance"), _row(1001, cut - 2, "system_performance")))
    ship(path, server.url, "dev-r")
    # The cut goes through an hourly bucket: its rollup row is rebuilt from what is left (by SQL on the server).
    before = f"{cut // 10**9}.{cut % 10**9:09d}"
    args = ["purge", "--category", "system_performance", "--before", before, "--yes"]
    out = [_cli(*args, "--db", db) for db in (path, server.url)]
    assert out[0]["deleted"] == out[1]["deleted"] and out[0]["total"] > 0
    assert out[0]["rollup_rows"] == out[1]["rollup_rows"]
    assert out[0]["wal_truncated"] is True and out[1]["wal_truncated"] is None  # scrubbing: the server's
    for table in ("records", "rollup_hourly", "rollup_daily"):
        sql = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        conn = lc.Connection(server.url)
        remote = conn.execute(sql).fetchall()
        conn.close()
        local_conn = apsw.Connection(path)
        local = [tuple(r) for r in local_conn.execute(sql)]
        local_conn.close()
        if table == "records":  # ids and rows equal; the seed's rows carry their instance both sides
            assert [r[1:] for r in remote] == [r[1:] for r in local]
        else:
            assert remote == local, table  # rollups rebuilt the same way on both
