"""One store, two devices (issue 14's central view): ``--instance`` on ``map``, ``services``,
``metrics`` and ``compare`` (and their dashboard endpoints' ``instance``) shows one collector
instance's records; and two devices counting the same thing are two series, so one's cumulative
points are never read as the other's resets. Real files written by two real ``StoreWriter``s
(one per instance), and a real sqld for the server path."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import apsw
import orjson
import pytest
from click.testing import CliRunner
from sqld import Sqld, ship
from test_metrics_services import M, point
from test_service_map import NS, T0, H, span

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import Dashboard
from otel_telemetry.query import compare as qc
from otel_telemetry.query import metrics, service_map
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store import schema
from otel_telemetry.store.writer import StoreWriter, WriteBatch

CUM = {"temporality": "cumulative", "monotonic": True}
_UID, _DATA, _META = (schema.COLUMNS.index(c) for c in ("uid", "data", "metadata"))


def _write(path: str, instance: str, rows: list[tuple[Any, ...]]) -> None:
    w = StoreWriter(path, batch_rows=500, flush_interval=0.02, instance=instance)
    w.start()
    assert w.submit(WriteBatch(rows), 30) and w.flush(30)
    assert w.shutdown(30)


def _device(k: int, inst: str, downstream: str, region: str) -> list[tuple[Any, ...]]:
    """A kiosk app "shop": 10 traces shop(server) -> shop(client) -> <downstream>(server), every
    third downstream span failing in ``region``; and its cumulative counter ``orders`` (the same
    service and attributes on both devices), +k+1 every two minutes from a device-specific start."""
    rows = []
    for i in range(10):
        t = f"{k:02x}{i:030x}"
        ts = T0 + (k * 10 + i) * NS
        fail = i % 3 == 0
        rows += [span(t, "0000000000000001", None, "shop", ts, 50.0, kind="server"),
                 span(t, "0000000000000002", "0000000000000001", "shop", ts, 40.0, kind="client"),
                 span(t, "0000000000000003", "0000000000000002", downstream, ts, 30.0, kind="server",
                      error=fail)]
        if fail:  # the failures carry the device's region as an attribute
            v = list(rows[-1])
            v[_DATA] = orjson.dumps({"attributes": {"region": region}}).decode()
            rows[-1] = tuple(v)
    start = (100, 5000)[k]
    for m in range(6):
        rows.append(point(100 * k + m, "orders", "sum", T0 + (2 * m + k) * M, start + (k + 1) * m, {"route": "/buy"},
                          service="shop", **CUM))
    return [(*r[:_UID], inst.encode() + r[_UID], *r[_UID + 1:]) for r in rows]  # uids unique across devices


def _seed(path: str) -> None:
    _write(path, "kiosk-a", _device(0, "kiosk-a", "payments", "eu-west"))
    _write(path, "kiosk-b", _device(1, "kiosk-b", "stock", "us-east"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "two.db")
    _seed(path)
    return path


def _cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return orjson.loads(r.output)


def _window(db: str) -> tuple[str, ...]:
    return ("--since", str(T0 // NS - 3600), "--until", str((T0 + H) // NS), "--db", db, "--format", "json")


def _edges(m: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(e["source"], e["target"]): e["calls"] for e in m["edges"]}


def _checks(conn: Any, db: str) -> None:
    lo, hi = T0 - H, T0 + H
    both = service_map.service_map(conn, lo, hi)
    assert _edges(both) == {("shop", "payments"): 10, ("shop", "stock"): 10}
    a = service_map.service_map(conn, lo, hi, instance="kiosk-a")
    assert _edges(a) == {("shop", "payments"): 10}
    assert {n["name"]: (n["calls"], n["errors"]) for n in a["nodes"]} == {"shop": (20, 0), "payments": (10, 4)}
    assert service_map.service_map(conn, lo, hi, instance="nobody") == {"nodes": [], "edges": []}
    svc = {s["service"]: s["calls"] for s in service_map.services(conn, lo, hi, instance="kiosk-b")["services"]}
    assert svc == {"shop": 10, "stock": 10}
    node = service_map.node_detail(conn, lo, hi, "service", "shop", instance="kiosk-b")
    assert node["spans"] == 20 and {t["trace_id"][:2] for t in node["traces"]} == {"01"}

    # Counters: kiosk-a counted 5 (100 -> 105), kiosk-b 10 (5000 -> 5010), within the window.
    def total(**kw: Any) -> float:
        return metrics.series(conn, "orders", lo, hi, "sum", **kw)["groups"][0]["value"]
    assert total(instance="kiosk-a") == 100 + 5 and total(instance="kiosk-b") == 5000 + 10  # first points whole
    assert total() == 105 + 5010  # two series, not one with a "reset" at every other point
    assert [x["points"] for x in metrics.names(conn, lo, hi, "kiosk-a")] == [6]

    err = qc.parse_where("error")
    r = qc.compare(conn, err, lo, hi, instance="kiosk-b")
    assert r["instance"] == "kiosk-b" and r["selection"]["spans"] == 4
    assert ("region", "us-east") in {(x["key"], x["value"]) for x in r["attributes"]}
    assert "eu-west" not in {x["value"] for x in r["attributes"]}

    # The CLI prints the same numbers.
    assert _cli("map", "--instance", "kiosk-a", *_window(db)) == {k: a[k] for k in ("nodes", "edges")}
    assert _cli("services", "--instance", "kiosk-b", *_window(db))["services"][0]["calls"] == 10
    assert _cli("metrics", "orders", "--agg", "sum", "--instance", "kiosk-a", *_window(db))["groups"][0]["value"] == 105
    assert _cli("compare", "--where", "error", "--instance", "kiosk-b", *_window(db))["selection"]["spans"] == 4


def _api(dash: Dashboard, path: str, **params: Any) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
    try:
        conn.request("GET", f"/api/{path}?{urlencode(params)}",
                     headers={"Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        return orjson.loads(body)
    finally:
        conn.close()


TOKEN = "instance-views-token-0123456789"


def test_one_instance_on_a_file(db: str) -> None:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        _checks(conn, db)
    finally:
        conn.close()
    # The dashboard's pages take the same ``instance`` and show the CLI's numbers.
    dash = Dashboard(db, TOKEN, "127.0.0.1", 0)
    dash.start()
    try:
        since, until = T0 // NS - 3600, (T0 + H) // NS
        w = {"since": since, "until": until, "instance": "kiosk-a"}
        page = _api(dash, "map", **w)
        assert {k: page[k] for k in ("nodes", "edges")} == _cli("map", "--instance", "kiosk-a", *_window(db))
        assert _api(dash, "services", **w)["services"] == _cli("services", "--instance", "kiosk-a",
                                                               *_window(db))["services"]
        assert _api(dash, "metric", name="orders", agg="sum", **w)["groups"][0]["value"] == 105
        assert _api(dash, "metric_names", **w)["metrics"][0]["points"] == 6
        assert _api(dash, "map_node", name="shop", **w)["spans"] == 20
        assert _api(dash, "compare", where="error", **w)["selection"]["spans"] == 4
    finally:
        dash.shutdown()


def test_one_instance_on_a_server(db: str, tmp_path: Path) -> None:
    """The same answers from a real sqld that the file was shipped to (no edge tables there: the
    map is read from raw spans; the rollups carry the instance)."""
    server = Sqld(tmp_path).start()
    try:
        assert ship(db, server.url, "shipper")["shipped"] == 2 * (30 + 6)
        conn = lc.Connection(server.url)
        try:
            _checks(conn, server.url)
        finally:
            conn.close()
    finally:
        server.stop()


def _as_worker(row: tuple[Any, ...], w: int) -> tuple[Any, ...]:
    """``row`` as process ``w`` of the app "shop" sends it: the SDK's own ``service.instance.id``."""
    meta = orjson.dumps({"resource": {"service.name": "shop", "service.instance.id": f"worker-{w}"}})
    return (*row[:_META], meta.decode(), *row[_META + 1:])


def test_two_processes_of_one_service_are_two_series(tmp_path: Path) -> None:
    """Two workers of one app on one device (same collector instance, same service and attributes)
    count on one cumulative counter: 5 and 10 in the window, from 100 and 5000. The metrics page
    and an alert rule's ``rate`` see two series, not one that resets at every other point."""
    from otel_telemetry.collector.alerts.rules import parse_rule, rule_value

    rows = [_as_worker(point(10 * m + w, "orders", "sum", T0 + (2 * m + w) * M, start + (w + 1) * m,
                             {"route": "/buy"}, service="shop", **CUM), w)
            for m in range(6) for w, start in enumerate((100, 5000))]
    path = str(tmp_path / "workers.db")
    _write(path, "one-device", rows)
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert metrics.series(conn, "orders", T0 - H, T0 + H, "sum")["groups"][0]["value"] == 105 + 5010
        rule = parse_rule({"name": "orders rate", "metric": "orders", "aggregation": "rate", "window": "1h",
                           "threshold": 1}, "rules[0]")
        assert rule_value(conn, rule, T0 + 30 * M) == pytest.approx((5 + 10) / 3600)
    finally:
        conn.close()


def test_system_page_adds_up_the_devices_network_counters(tmp_path: Path) -> None:
    """The dashboard's system page on a store two devices ship to: each device's cumulative
    network counter is its own series (before, the larger one hid the other's bytes), CPU busy is
    the devices' average."""
    path = str(tmp_path / "hosts.db")
    for k, (inst, start, per_s, idle) in enumerate((("kiosk-a", 10**9, 100, 0.25), ("kiosk-b", 10, 10, 0.75))):
        rows = [point(10 * k + j, "system.network.io", "sum", T0 + j * 10 * M, start + per_s * 600 * j,
                      {"network.io.direction": "receive"}, **CUM) for j in range(2)]
        rows += [point(10 * k + 5 + j, "system.cpu.utilization", "gauge", T0 + j * 10 * M, idle,
                       {"cpu.mode": "idle"}) for j in range(2)]
        _write(path, inst, rows)
    page = _api_once(path, "system", since=T0 // NS - 60, until=(T0 + H) // NS)
    assert [v for v in page["bytes_per_s"]["net_receive"] if v is not None] == [110.0]
    assert {v for v in page["cpu_busy"] if v is not None} == {0.5}
    a = _api_once(path, "system", since=T0 // NS - 60, until=(T0 + H) // NS, instance="kiosk-b")
    assert [v for v in a["bytes_per_s"]["net_receive"] if v is not None] == [10.0]


def _api_once(path: str, name: str, **params: Any) -> Any:
    dash = Dashboard(path, TOKEN, "127.0.0.1", 0)
    dash.start()
    try:
        return _api(dash, name, **params)
    finally:
        dash.shutdown()


def test_two_workers_cumulative_histograms_in_metrics_and_alert_rules(tmp_path: Path) -> None:
    """Two workers' cumulative histograms (what OTLP SDKs send by default), interleaved: the
    window holds 10 new values from each, whatever the other worker's totals are. Before, one
    worker's point was taken from the other's, and the window read 130 values."""
    from otel_telemetry.collector.alerts.rules import parse_rule, rule_value

    bounds = [10.0, 20.0, 50.0, 100.0]
    shapes = {0: ([0, 10, 0, 0, 0], [0, 20, 0, 0, 0]), 1: ([0, 0, 0, 100, 0], [0, 0, 0, 100, 10])}
    rows = []
    for j, ts in enumerate((T0 - 20 * M, T0 + 10 * M)):  # a baseline before the window, then one in it
        for w in (0, 1):
            counts = shapes[w][j]
            rows.append(_as_worker(point(10 * j + w, "latency", "histogram", ts + w * M, 0.0, {"route": "/buy"},
                                         service="shop", temporality="cumulative", bounds=bounds, counts=counts,
                                         count=sum(counts), sum=0.0), w))
    path = str(tmp_path / "hist.db")
    _write(path, "one-device", rows)
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert metrics.series(conn, "latency", T0, T0 + H, "count")["groups"][0]["value"] == 20
        rule = parse_rule({"name": "latency count", "metric": "latency", "aggregation": "count", "window": "30m",
                           "threshold": 1}, "rules[0]")
        assert rule_value(conn, rule, T0 + 15 * M) == 20
    finally:
        conn.close()

