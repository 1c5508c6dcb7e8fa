"""One instance's rows purged from a store where several meet (issue 14): the rollups carry the
instance in their key, so the other instance's rollups and stats stay exactly what its records
say; on a file and on a real sqld. Also the upgrade of rollup tables from before that key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner
from sqld import Sqld, ship

from otel_telemetry.cli.commands import main
from otel_telemetry.query import ai_stats
from otel_telemetry.store import db as store_db
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import rollups, schema
from otel_telemetry.store.writer import StoreWriter, WriteBatch

DAY = 86_400 * 10**9
HOUR = 3600 * 10**9
ROLLUP_SQL = "SELECT * FROM {t} WHERE instance = ? ORDER BY bucket_start_ns, category, component, service, type, " \
             "model, agent, call, error_type"


def _row(uid: int, ts: int) -> tuple[Any, ...]:
    v = dict.fromkeys(schema.COLUMNS)
    cat = ("system_performance", "ai_behavior")[uid % 2]
    v.update(uid=uid.to_bytes(16, "big"), timestamp=ts, type="span", category=cat, component=f"c{uid % 3}",
             service="svc", event="e", name="e", data="{}", metadata="{}", duration_ms=float(uid % 50),
             level="error" if uid % 7 == 0 else "info", status="error" if uid % 7 == 0 else "ok")
    if cat == "ai_behavior":  # a GenAI call with tokens and a cost (exact in binary: quarters)
        v.update(model=("m1", "m2")[uid % 4 // 2], agent="planner", input_tokens=uid % 90, output_tokens=7,
                 total_tokens=uid % 90 + 7, cost_usd=(uid % 8) / 4)
    return tuple(v[c] for c in schema.COLUMNS)


def _write(path: str, instance: str, rows: list[tuple[Any, ...]]) -> None:
    w = StoreWriter(path, batch_rows=500, flush_interval=0.02, instance=instance)
    w.start()
    assert w.submit(WriteBatch(rows), 30) and w.flush(30)
    assert w.shutdown(30)


def _seed(path: str, now: int) -> dict[str, int]:
    """Rows of dev-a and dev-b interleaved over 0-60 days (shared buckets), written by two writers."""
    counts = {}
    for k, inst in enumerate(("dev-a", "dev-b")):
        rows = [_row(i, now - (i % 60) * DAY - (i % 24) * HOUR - 1) for i in range(k, 600, 2)]
        _write(path, inst, rows)
        counts[inst] = len(rows)
    return counts


def _conn(db: str) -> Any:
    return lc.Connection(db) if db.startswith("http") else apsw.Connection(db)


def _fetch(db: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = _conn(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def _recomputed(db: str, table: str, instance: str) -> list[tuple[Any, ...]]:
    """The rollup rows of ``instance`` computed again from its records, as stored rows."""
    recs = _fetch(db, f"SELECT {rollups.SELECT_INPUT} FROM records WHERE instance = ?", (instance,))
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    for r in recs:
        rollups.add_input(hourly, r, rollups.HOUR_NS)
    aggs = hourly if table == "rollup_hourly" else rollups.roll_up(hourly, rollups.DAY_NS)
    return sorted(rollups.upsert_args(aggs), key=lambda r: r[:9])


def _stored(db: str, table: str, instance: str) -> list[tuple[Any, ...]]:
    return _fetch(db, ROLLUP_SQL.format(t=table), (instance,))


def _cli(*args: str) -> dict[str, Any]:
    r = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


@pytest.fixture
def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    """(now, counts, [the file, a sqld holding the same rows])."""
    path = str(tmp_path / "t.db")
    now = time.time_ns()
    counts = _seed(path, now)
    server = Sqld(tmp_path).start()
    try:
        assert ship(path, server.url, "shipper")["shipped"] == sum(counts.values())
        yield now, counts, [path, server.url]
    finally:
        server.stop()


def test_rollups_are_per_instance_and_stats_instance_reads_them(stores: Any) -> None:
    now, counts, dbs = stores
    for db in dbs:
        for inst in counts:
            for table in rollups.TABLES:
                assert _stored(db, table, inst) == _recomputed(db, table, inst), (db, table, inst)
        conn = store_db.open_reader(db)
        try:
            r = ai_stats.report(conn, now - 30 * DAY, now, instance="dev-b")
            raw = ai_stats.report(conn, now - 30 * DAY, now, instance="dev-b", source="raw")
        finally:
            conn.close()
        assert r["source"] == "rollups" and raw["source"] == "raw"
        for key in ("calls", "tokens", "cost_usd", "failed_calls", "by_agent"):
            if key == "by_agent":
                assert {n: v["calls"] for n, v in r[key].items()} == {n: v["calls"] for n, v in raw[key].items()}
            else:
                assert r[key] == raw[key], (db, key)
    # The CLI gives the same report on the server as on the file.
    outs = [_cli("stats", "--period", "30d", "--until", str(now // 10**9), "--instance", "dev-b", "--db", db)
            for db in dbs]
    for o in outs:
        o.pop("alerts")
    assert outs[0] == outs[1] and outs[0]["source"] == "rollups" and outs[0]["calls"]["total"] > 0


def test_purge_instance_keeps_the_other_instance_exact(stores: Any) -> None:
    now, counts, dbs = stores
    before = {db: {t: _stored(db, t, "dev-b") for t in rollups.TABLES} for db in dbs}
    outs = [_cli("purge", "--instance", "dev-a", "--yes", "--db", db) for db in dbs]
    for db, out in zip(dbs, outs, strict=True):
        assert out["total"] == counts["dev-a"]  # books: every dev-a row, nothing else
        assert _fetch(db, "SELECT instance, count(*) FROM records GROUP BY instance") == [("dev-b", counts["dev-b"])]
        for table in rollups.TABLES:
            assert _stored(db, table, "dev-a") == []
            assert _stored(db, table, "dev-b") == before[db][table] == _recomputed(db, table, "dev-b")
    assert outs[0]["deleted"] == outs[1]["deleted"] and outs[0]["rollup_rows"] == outs[1]["rollup_rows"] > 0


def test_purge_instance_before_a_time_rebuilds_the_cut_bucket(stores: Any) -> None:
    now, counts, dbs = stores
    cut = now - 10 * DAY - 30 * 60 * 10**9  # through an hour and a day
    args = ["purge", "--instance", "dev-a", "--before", f"{cut // 10**9}.{cut % 10**9:09d}"]
    dry = [_cli(*args, "--dry-run", "--db", db) for db in dbs]
    outs = [_cli(*args, "--db", db) for db in dbs]
    for db, out, d in zip(dbs, outs, dry, strict=True):
        assert out["total"] == d["total"] > 0
        left = _fetch(db, "SELECT instance, count(*) FROM records GROUP BY instance ORDER BY 1")
        assert left == [("dev-a", counts["dev-a"] - out["total"]), ("dev-b", counts["dev-b"])]
        assert _fetch(db, "SELECT count(*) FROM records WHERE instance = 'dev-a' AND timestamp < ?", (cut,)) == [(0,)]
        for table in rollups.TABLES:
            assert _stored(db, table, "dev-b") == _recomputed(db, table, "dev-b")
            # dev-a: whole buckets before the cut are gone; the cut one is rebuilt from what is left
            size = rollups.TABLES[table]
            start = cut - cut % size
            assert [r for r in _stored(db, table, "dev-a") if r[0] >= start] == [
                r for r in _recomputed(db, table, "dev-a") if r[0] >= start]
            assert [r for r in _stored(db, table, "dev-a") if r[0] < start] == []


def test_retention_purge_instance_deletes_only_its_expired_rows(stores: Any) -> None:
    now, counts, dbs = stores
    before = {db: {(t, i): _stored(db, t, i) for t in rollups.TABLES for i in counts} for db in dbs}
    for db in dbs:
        r = CliRunner().invoke(main, ["retention", "set", "--type", "span", "--days", "30", "--db", db])
        assert r.exit_code == 0, r.output
    expired = {i: _fetch(dbs[0], "SELECT count(*) FROM records WHERE instance = ? AND timestamp < ?",
                         (i, now - 30 * DAY))[0][0] for i in counts}
    assert expired["dev-a"] > 0 and expired["dev-b"] > 0
    shows = [_cli("retention", "show", "--instance", "dev-a", "--db", db) for db in dbs]
    assert shows[0] == shows[1]
    dry = [_cli("retention", "purge", "--dry-run", "--instance", "dev-a", "--db", db) for db in dbs]
    assert dry[0] == dry[1] and dry[0]["total"] == expired["dev-a"]
    done = [_cli("retention", "purge", "--instance", "dev-a", "--db", db) for db in dbs]
    for db, d in zip(dbs, done, strict=True):
        assert d["total"] == expired["dev-a"]
        left = _fetch(db, "SELECT instance, count(*) FROM records GROUP BY instance ORDER BY 1")
        assert left == [("dev-a", counts["dev-a"] - expired["dev-a"]), ("dev-b", counts["dev-b"])]
        # Rollups outlive raw rows: unchanged for both instances; dev-b's still equal its records.
        assert {(t, i): _stored(db, t, i) for t in rollups.TABLES for i in counts} == before[db]
        for table in rollups.TABLES:
            assert _stored(db, table, "dev-b") == _recomputed(db, table, "dev-b")


def test_cli_refuses_an_empty_instance(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    _write(path, "dev-a", [_row(1, time.time_ns())])
    for args in (["purge", "--instance", " "], ["retention", "purge", "--instance", ""]):
        r = CliRunner().invoke(main, [*args, "--db", path])
        assert r.exit_code == 2 and "--instance must not be empty" in r.output, r.output


# ---- upgrade of rollup tables from before the instance key ------------------------------------------

_OLD_DDL = rollups.DDL.replace("    instance TEXT NOT NULL DEFAULT '',   -- the rows' collector instance\n", "") \
    .replace(", error_type, instance)", ", error_type)")


def _make_old(db: str) -> None:
    """Replace the rollup tables by ones without the instance key, summed over instances as they were."""
    conn = _conn(db)
    try:
        recs = [tuple(r) for r in conn.execute(f"SELECT {rollups.SELECT_INPUT} FROM records")]
        hourly: dict[tuple[Any, ...], list[Any]] = {}
        for r in recs:
            rollups.add_input(hourly, (*r[:-1], None), rollups.HOUR_NS)  # as if no instance
        for table in rollups.TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute(_OLD_DDL)
        assert "instance" not in _OLD_DDL
        for table, size in rollups.TABLES.items():
            aggs = hourly if size == rollups.HOUR_NS else rollups.roll_up(hourly, size)
            args = [a[:9] + a[10:] for a in rollups.upsert_args(aggs)]
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(args[0]))})", args)
    finally:
        conn.close()


def test_upgrade_gives_old_rollups_their_instance_on_a_file_and_a_server(tmp_path: Path) -> None:
    now = time.time_ns()
    path = str(tmp_path / "t.db")
    # dev-a alone 40-59 days ago, dev-b alone 20-39 days ago, both in the last 20 days (some buckets shared).
    rows_a = [_row(i, now - (i % 60) * DAY - 1) for i in range(0, 600, 2) if i % 60 >= 40 or i % 60 < 20]
    rows_b = [_row(i, now - (i % 60) * DAY - 1) for i in range(1, 600, 2) if i % 60 < 40]
    rows_a += [_row(1000 + i, now - i * DAY - 1) for i in range(1, 20, 2)]  # buckets of both: rebuilt
    _write(path, "dev-a", rows_a)
    _write(path, "dev-b", rows_b)
    server = Sqld(tmp_path).start()
    try:
        ship(path, server.url, "shipper")
        for db in (path, server.url):
            want = {(t, i): _stored(db, t, i) for t in rollups.TABLES for i in ("dev-a", "dev-b")}
            assert {r[0] for r in want[("rollup_daily", "dev-a")]} & {r[0] for r in want[("rollup_daily", "dev-b")]}
            _make_old(db)
            # Retention took the records of day 50 after its rollups were made: those stay,
            # attributed to dev-a by the rule "the records' one instance" only while some are left.
            conn = _conn(db)
            conn.execute("DELETE FROM records WHERE timestamp < ? AND timestamp >= ?", (now - 50 * DAY, now - 51 * DAY))
            conn.close()
            store_db.open_admin(db).close()  # the upgrade runs when a writer/admin opens the store
            cols = [r[1] for r in _fetch(db, "PRAGMA table_info(rollup_hourly)")]
            assert "instance" in cols
            for table, size in rollups.TABLES.items():
                gone = now - 50 * DAY - 1  # the emptied rows' time
                gone_start = (gone - gone % size) if size == rollups.DAY_NS else None
                for inst in ("dev-a", "dev-b"):
                    got = _stored(db, table, inst)
                    exp = want[(table, inst)]
                    if inst == "dev-a" and table == "rollup_daily":
                        # the emptied day's rows are kept, unattributed (two instances in the store)
                        exp = [r for r in exp if r[0] != gone_start]
                    if inst == "dev-a" and table == "rollup_hourly":
                        exp = [r for r in exp if r[0] != gone - gone % size]
                    assert got == exp, (db, table, inst)
                unattributed = _stored(db, table, "")
                assert unattributed and all(r[0] < now - 49 * DAY for r in unattributed)
            # Totals are unchanged by the upgrade: every old row went somewhere.
            for table in rollups.TABLES:
                total = _fetch(db, f"SELECT sum(count) FROM {table}")[0][0]
                assert total == len(rows_a) + len(rows_b)
    finally:
        server.stop()


def _trace(uid: int, ts: int, parent_svc: str, child_svc: str) -> list[tuple[Any, ...]]:
    """A server span of ``parent_svc`` calling ``child_svc`` (one call edge), in the same hour."""
    out = []
    trace = f"{uid:032x}"
    for k, (svc, kind, parent) in enumerate(((parent_svc, "server", None), (child_svc, "server", f"{uid:015x}0"))):
        v = dict.fromkeys(schema.COLUMNS)
        v.update(uid=(uid * 2 + k).to_bytes(16, "big"), timestamp=ts + k, type="span",
                 category="component_interactions", component="http", service=svc, event="GET /",
                 name="GET /", kind=kind, trace_id=trace,
                 span_id=f"{uid:015x}{k}", parent_span_id=parent, duration_ms=float(10 + uid % 30 - k),
                 status="error" if uid % 5 == 0 else "unset", level="info", data="{}", metadata="{}")
        out.append(tuple(v[c] for c in schema.COLUMNS))
    return out


def test_purge_instance_on_a_file_recounts_the_call_edges_it_touched(tmp_path: Path) -> None:
    now = time.time_ns()
    path = str(tmp_path / "t.db")
    # Both instances' traces in the same hours (edges keep no instance), over 3 days.
    _write(path, "dev-a", [r for i in range(60) for r in _trace(i, now - (i % 72) * HOUR - 10**6, "gw", "orders")])
    _write(path, "dev-b", [r for i in range(60, 120) for r in _trace(i, now - (i % 72) * HOUR - 10**6, "gw", "users")])
    edge_sql = "SELECT * FROM {t} ORDER BY 1, 2, 3, 4, 5"
    assert any(r[4] == "orders" for r in _fetch(path, edge_sql.format(t="edge_hourly")))
    out = _cli("purge", "--instance", "dev-a", "--db", path)
    assert out["total"] == 120 and out["edge_rows"] > 0
    # What a full rebuild from the spans left gives (edges.ensure on a copy without edge tables).
    copy = str(tmp_path / "copy.db")
    conn = apsw.Connection(path)
    conn.execute("VACUUM INTO ?", (copy,))
    conn.close()
    conn = apsw.Connection(copy)
    conn.execute("DROP TABLE edge_hourly; DROP TABLE edge_daily")
    conn.close()
    store_db.open_admin(copy).close()
    for table in ("edge_hourly", "edge_daily"):
        got = _fetch(path, edge_sql.format(t=table))
        assert got == _fetch(copy, edge_sql.format(t=table)), table
        assert got and not any(r[4] == "orders" for r in got)
    assert _fetch(path, "SELECT count(*) FROM edge_waiting") == [(0,)]
