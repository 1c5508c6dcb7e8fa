"""The metrics explorer and the services figures on real database files written by the real
``StoreWriter``; expected numbers are worked out by hand here from the points written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner
from test_service_map import NS, T0, H, exact, traces, write

from otel_telemetry.cli.commands import main
from otel_telemetry.query import metrics, service_map
from otel_telemetry.query.filters import QueryError
from otel_telemetry.store import schema

M = 60 * NS
BOUNDS = [10.0, 20.0, 50.0, 100.0]


def point(i: int, name: str, mtype: str, ts: int, value: float | None, attrs: dict[str, Any], service: str = "api",
          **extra: Any) -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(uid=f"m{i}-{name}".encode(), timestamp=ts, type="metric", category="system_performance", component="m",
             event=name, level="info", name=name, service=service, metric_type=mtype, metric_value=value,
             data=orjson.dumps({"attributes": attrs, **extra}).decode(), metadata="{}")
    return tuple(v[c] for c in schema.COLUMNS)


def seed(path: str) -> None:
    rows = []
    cum = {"temporality": "cumulative", "monotonic": True}
    # orders: route /a cumulative 100 (before the window), then 110, 115, 3 (a reset), 8; /b delta 2, 2, 2
    for k, (dt, val) in enumerate([(-30 * M, 100), (5 * M, 110), (10 * M, 115), (20 * M, 3), (30 * M, 8)]):
        rows.append(point(k, "orders", "sum", T0 + dt, val, {"route": "/a"}, **cum))
    for k in range(3):
        rows.append(point(10 + k, "orders", "sum", T0 + (5 + 10 * k) * M, 2, {"route": "/b"},
                          temporality="delta", monotonic=True))
    for k, val in enumerate((1.0, 5.0, 3.0)):  # a gauge
        rows.append(point(20 + k, "queue.depth", "gauge", T0 + (1 + k) * M, val, {"host": "h1"}))
    # latency: cumulative histogram, two points in the window
    for k, counts in enumerate(([0, 20, 10, 0, 0], [0, 70, 50, 10, 0])):
        n = sum(counts)
        rows.append(point(30 + k, "latency", "histogram", T0 + (2 + 20 * k) * M, n, {"route": "/a"},
                          temporality="cumulative", bounds=BOUNDS, counts=counts, count=n, sum=40.0 * n,
                          min=12.0, max=90.0))
    write(path, [rows])


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "m.db")
    seed(path)
    return path


def test_counter_sum_and_rate_with_reset_baseline_and_groups(db: str) -> None:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        m = metrics.series(conn, "orders", T0, T0 + H, "sum", "route")
        assert m["kind"] == "counter" and m["bucket_ns"] == 60 * NS and len(m["buckets"]) == 60
        g = {x["group"]: x for x in m["groups"]}
        assert g["/a"]["value"] == 10 + 5 + 3 + 5 and g["/b"]["value"] == 6  # 110 continues 100
        assert sum(v for v in g["/a"]["series"] if v) == g["/a"]["value"]
        assert g["/a"]["series"][5] == 10 and g["/a"]["series"][20] == 3 and g["/a"]["series"][1] == 0
        rate = metrics.series(conn, "orders", T0, T0 + H, "rate", None)
        assert rate["groups"][0]["group"] == "(all)" and rate["groups"][0]["value"] == pytest.approx(29 / 3600)
        assert metrics.series(conn, "orders", T0, T0 + H)["agg"] == "rate"  # counters default to rate
        with pytest.raises(QueryError, match="does not apply"):
            metrics.series(conn, "orders", T0, T0 + H, "p95")
        with pytest.raises(QueryError, match="no metric named"):
            metrics.series(conn, "nope", T0, T0 + H)
    finally:
        conn.close()


def test_gauge_and_histogram_from_buckets(db: str) -> None:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        for agg, want in (("last", 3.0), ("avg", 3.0), ("max", 5.0), ("min", 1.0)):
            assert metrics.series(conn, "queue.depth", T0, T0 + H, agg)["groups"][0]["value"] == want
        h = metrics.series(conn, "latency", T0, T0 + H, "p95", "route")
        # Window = the last cumulative point: [0, 70, 50, 10, 0]; rank 0.95 * 130 = 123.5 lies in
        # (50, 100] after 120, a bucket closed above by the points' max 90: 50 + 40 * 3.5 / 10.
        assert h["groups"][0]["group"] == "/a" and h["groups"][0]["value"] == pytest.approx(64.0)
        # Per bucket: the first point whole (p95 of [0, 20, 10, 0, 0] = 20 + 30 * 8.5 / 10), then the
        # increase [0, 50, 40, 10, 0] (50 + 40 * 5 / 10).
        s = h["groups"][0]["series"]
        assert s[2] == pytest.approx(45.5) and s[22] == pytest.approx(70.0)
        assert sum(v is not None for v in s) == 2
        p50 = metrics.series(conn, "latency", T0, T0 + H, "p50")["groups"][0]["value"]
        assert p50 == pytest.approx(12 + 8 * 65 / 70)  # (10, 20] closed below by the min 12
    finally:
        conn.close()


def test_metric_names(db: str) -> None:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        got = {(n["name"], n["type"]): n["points"] for n in metrics.names(conn, T0, T0 + H)}
    finally:
        conn.close()
    assert got == {("latency", "histogram"): 2, ("orders", "sum"): 7, ("queue.depth", "gauge"): 3}


def run(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_cli_metrics(db: str) -> None:
    w = ("--since", str(T0 // NS), "--until", str((T0 + H) // NS), "--db", db)
    names = orjson.loads(run("metrics", *w, "--format", "json"))
    assert [n["name"] for n in names] == ["latency", "orders", "queue.depth"]
    m = orjson.loads(run("metrics", "latency", *w, "--agg", "p95", "--group-by", "route", "--format", "json"))
    assert m["groups"][0]["value"] == pytest.approx(64.0)
    assert "/a" in run("metrics", "orders", *w, "--group-by", "route")
    csv = run("metrics", "orders", *w, "--agg", "sum", "--format", "csv").splitlines()
    assert csv[0] == "bucket,group,sum" and len(csv) == 61
    r = CliRunner().invoke(main, ["metrics", "orders", *w, "--agg", "p99"])
    assert r.exit_code == 2 and "does not apply" in r.stderr
    r = CliRunner().invoke(main, ["metrics", *w, "--agg", "p99"])
    assert r.exit_code == 2


def test_services_entry_spans(tmp_path: Path) -> None:
    ts, want = traces(50)
    path = str(tmp_path / "s.db")
    write(path, [[t[k] for t in ts] for k in (4, 3, 2, 1, 0)])
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        s = service_map.services(conn, T0 - H, T0 + H)
    finally:
        conn.close()
    got = {x["service"]: x for x in s["services"]}
    assert set(got) == {"web", "api", "db"}
    assert got["web"]["calls"] == 50 and got["web"]["errors"] == 0
    assert got["web"]["p95_ms"] == 500.0  # one value: clamped to the exact min/max
    api = want[("web", "api")]
    assert got["api"]["calls"] == 50 and got["api"]["errors"] == sum(e for _, e in api)
    assert got["api"]["p95_ms"] == pytest.approx(exact([d for d, _ in api], 95), rel=0.021)
    assert got["api"]["rate_per_s"] == pytest.approx(50 / 7200)
    assert len(s["buckets"]) == 2 and sum(c or 0 for c in got["db"]["series"]["calls"]) == 50
    cli = orjson.loads(run("services", "--since", str((T0 - H) // NS), "--until", str((T0 + H) // NS),
                           "--db", path, "--format", "json"))
    assert cli == orjson.loads(orjson.dumps(s))
