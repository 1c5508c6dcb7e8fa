"""The component map on real database files: the writer maintains the call edges in its own
transactions (``store/edges.py``), the map reads them (``query/service_map.py``). Expected counts and
percentiles are computed here from the generated spans, never read back from the database."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner
from sqld import Sqld, ship

from otel_telemetry.cli.commands import main
from otel_telemetry.query import service_map
from otel_telemetry.store import db as store_db
from otel_telemetry.store import edges, schema
from otel_telemetry.store import libsql_conn as lc
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 1_000_000_000
H = 3600 * NS
T0 = 1_767_225_600 * NS + 7 * H  # 2026-01-01T07:00Z
SERVICES = ("web", "api", "db")


def span(trace: str, sid: str, parent: str | None, service: str, ts: int, dur: float, *, kind: str = "internal",
         component: str | None = None, category: str = "component_interactions", error: bool = False,
         name: str = "op") -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(uid=f"{trace}{sid}".encode(), timestamp=ts, type="span", category=category,
             component=component or f"{service}.lib", level="error" if error else "info", name=name,
             event=name, service=service, trace_id=trace, span_id=sid, parent_span_id=parent, kind=kind,
             duration_ms=dur, status="error" if error else "unset", data="{}", metadata="{}")
    return tuple(v[c] for c in schema.COLUMNS)


Want = dict[tuple[str, str], list[tuple[float, bool]]]


def traces(n: int, seed: int = 3) -> tuple[list[list[tuple[Any, ...]]], Want]:
    """n traces web(server) -> web(client) -> api(server) -> api(client) -> db(server); returns the
    spans of each trace and the expected service edges' (duration, error) lists."""
    rnd = random.Random(seed)
    out: list[list[tuple[Any, ...]]] = []
    want: Want = {}
    for i in range(n):
        t = f"{i:032x}"
        ts = T0 + i * 7 * NS
        d_db, d_api = rnd.lognormvariate(1, 1), rnd.lognormvariate(3, 0.7)
        e_db, e_api = rnd.random() < 0.1, rnd.random() < 0.05
        spans = [
            span(t, "0000000000000001", None, "web", ts, 500.0, kind="server", category="user_interaction"),
            span(t, "0000000000000002", "0000000000000001", "web", ts, 400.0, kind="client"),
            span(t, "0000000000000003", "0000000000000002", "api", ts, d_api, kind="server", error=e_api),
            span(t, "0000000000000004", "0000000000000003", "api", ts, d_api / 2, kind="client"),
            span(t, "0000000000000005", "0000000000000004", "db", ts, d_db, kind="server", error=e_db),
        ]
        want.setdefault(("web", "api"), []).append((d_api, e_api))
        want.setdefault(("api", "db"), []).append((d_db, e_db))
        out.append(spans)
    return out, want


def write(path: str, batches: list[list[tuple[Any, ...]]]) -> dict[str, int]:
    w = StoreWriter(path, batch_rows=1, flush_interval=0.0)
    w.start()
    for b in batches:
        assert w.submit(WriteBatch(b), 10)
        assert w.flush(30)  # one transaction per batch: parents and children really arrive apart
    s = w.stats()
    assert w.shutdown(30)
    return s


def exact(values: list[float], p: int) -> float:
    v = sorted(values)
    return v[max(-(-p * len(v) // 100), 1) - 1]


def check(m: dict[str, Any], want: Want) -> None:
    got = {(e["source"], e["target"]): e for e in m["edges"]}
    assert set(got) == set(want)
    for key, calls in want.items():
        e = got[key]
        assert e["calls"] == len(calls) and e["errors"] == sum(err for _, err in calls)
        for p in (50, 95):
            assert e[f"p{p}_ms"] == pytest.approx(exact([d for d, _ in calls], p), rel=0.021)


@pytest.mark.parametrize("order", ["together", "children_first", "parents_first", "shuffled"])
def test_edges_whatever_order_spans_arrive(tmp_path: Path, order: str) -> None:
    ts, want = traces(60)
    rnd = random.Random(5)
    if order == "together":
        batches = [[s for t in ts for s in t]]
    elif order == "children_first":  # each trace's spans in separate batches, deepest first
        batches = [[t[k] for t in ts] for k in range(4, -1, -1)]
    elif order == "parents_first":
        batches = [[t[k] for t in ts] for k in range(5)]
    else:
        flat = [s for t in ts for s in t]
        rnd.shuffle(flat)
        batches = [flat[k:k + 13] for k in range(0, len(flat), 13)]
    path = str(tmp_path / "t.db")
    stats = write(path, batches)
    assert stats["stored"] == 300 and stats["edge_children_evicted"] == 0
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        m = service_map.service_map(conn, T0 - H, T0 + 2 * H)
        check(m, want)
        assert {n["name"]: (n["calls"], n["errors"]) for n in m["nodes"]} == {
            "web": (120, 0), "api": (120, sum(e for _, e in want[("web", "api")])),
            "db": (60, sum(e for _, e in want[("api", "db")]))}
        assert conn.execute("SELECT count(*) FROM edge_waiting").fetchone()[0] == 0
        # Entry spans: the server spans (web's is also the root).
        entries = service_map.edge_accs(conn, T0 - H, T0 + 2 * H, "entry")
        assert {k[2]: a[0] for k, a in entries.items()} == {"web": 60, "api": 60, "db": 60}
        # Components: web.lib -> api.lib -> db.lib, the same pairs.
        comp = service_map.service_map(conn, T0 - H, T0 + 2 * H, by="component")
        assert {(e["source"], e["target"]): e["calls"] for e in comp["edges"]} == {
            ("web.lib", "api.lib"): 60, ("api.lib", "db.lib"): 60}
    finally:
        conn.close()


def test_duplicates_count_once_and_category_filters(tmp_path: Path) -> None:
    ts, want = traces(30)
    path = str(tmp_path / "t.db")
    flat = [s for t in ts for s in t]
    write(path, [flat[:70], flat, flat[40:]])  # resent rows are skipped by uid, and so are their edges
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        check(service_map.service_map(conn, T0 - H, T0 + H), want)
        assert service_map.service_map(conn, T0 - H, T0 + H, category="user_interaction")["edges"] == []
        m = service_map.service_map(conn, T0 - H, T0 + H, category="component_interactions")
        assert {n["name"] for n in m["nodes"]} == {"web", "api", "db"}
        assert {n["name"]: n["calls"] for n in m["nodes"]}["web"] == 30  # the client spans only
        assert service_map.service_map(conn, T0 + 2 * H, T0 + 3 * H) == {"nodes": [], "edges": []}
    finally:
        conn.close()


def test_old_database_backfilled_and_raw_path_agrees(tmp_path: Path) -> None:
    ts, want = traces(40)
    path = str(tmp_path / "t.db")
    write(path, [[t[k] for t in ts] for k in range(5)])
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    maintained = service_map.service_map(conn, T0 - H, T0 + H)
    conn.close()
    # Without the edge tables (a central server, or a file from before they existed) the map is
    # computed from the raw spans: the same figures.
    old = str(tmp_path / "old.db")
    shutil.copy(path, old)
    conn = apsw.Connection(old)
    for t in (*edges.TABLES, "edge_waiting"):
        conn.execute(f"DROP TABLE {t}")
    assert service_map.service_map(conn, T0 - H, T0 + H) == maintained
    conn.close()
    # The writer opening that file rebuilds the tables from every stored span.
    write(old, [])
    conn = apsw.Connection(old, flags=apsw.SQLITE_OPEN_READONLY)
    assert service_map.service_map(conn, T0 - H, T0 + H) == maintained
    conn.close()
    check(maintained, want)


@pytest.mark.parametrize("limit", ["10MB", "24KB"])  # 24 KB: the day's answer is refused, the cursor brings it
def test_a_server_map_is_aggregated_on_the_server_whatever_the_window_holds(tmp_path: Path, limit: str) -> None:
    """A central server keeps no edge tables: its map and services page come from its spans. They
    used to fetch every span of the window, and a server refuses an answer over its response limit
    (sqld: 10 MB by default, some 50,000 spans): HTTP 500 at a month of a few devices. Here the
    window holds 4,000 spans from 200 callers of one API; with a 24 KB limit the answer for the
    whole window is refused and comes through the cursor instead. The answers equal the file's."""
    ts = []
    for i in range(2000):
        t, at = f"{i:032x}", T0 + i * 3 * NS
        ts += [span(t, "0000000000000001", None, f"web{i % 200}", at, 50.0 + i % 7, kind="server"),
               span(t, "0000000000000002", "0000000000000001", "api", at, 10.0 + i % 5, kind="server",
                    error=i % 10 == 0)]
    lo, hi = T0 - H, T0 + 2 * H
    path = str(tmp_path / "t.db")
    write(path, [ts])
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    file_map = service_map.service_map(conn, lo, hi)
    file_services = service_map.services(conn, lo, hi)
    conn.close()
    assert len(file_map["edges"]) == 200 and sum(e["calls"] for e in file_map["edges"]) == 2000
    server = Sqld(tmp_path, extra=("--max-response-size", limit)).start()
    try:
        assert ship(path, server.url, "one")["shipped"] == 4000
        remote = lc.Connection(server.url)
        try:
            assert not any(store_db.has_table(remote, t) for t in edges.TABLES)
            assert service_map.service_map(remote, lo, hi) == file_map
            assert (remote.cursor_reruns > 0) is (limit == "24KB"), remote.cursor_reruns
            assert service_map.services(remote, lo, hi) == file_services
            assert service_map.service_map(remote, lo, hi, instance="one") == file_map
        finally:
            remote.close()
    finally:
        server.stop()


def test_waiting_children_are_bounded_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edges, "MAX_WAITING", 10)
    orphans = [span(f"{i:032x}", "00000000000000aa", "00000000000000ff", "api", T0, 1.0) for i in range(25)]
    path = str(tmp_path / "t.db")
    stats = write(path, [orphans[:12], orphans[12:]])
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        waiting = conn.execute("SELECT count(*) FROM edge_waiting").fetchone()[0]
    finally:
        conn.close()
    assert waiting == 10 and stats["edge_children_evicted"] == 15


def test_window_parts_cover_the_window_once() -> None:
    day = 24 * H
    since, until = T0 + 5 * 60 * NS, T0 + 3 * day + 2 * H + 1
    ps = service_map.parts(since, until)
    assert ("daily", T0 - 7 * H + day, T0 - 7 * H + 3 * day) in ps
    hours = sorted((lo, hi) for kind, lo, hi in ps if kind == "hourly")
    assert hours == [(T0, T0 - 7 * H + day), (T0 - 7 * H + 3 * day, until)]
    assert service_map.parts(T0, T0 + H) == [("hourly", T0, T0 + H)]


def run(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_cli_map_formats(tmp_path: Path) -> None:
    ts, want = traces(20)
    path = str(tmp_path / "t.db")
    write(path, [[s for t in ts for s in t]])
    window = ("--since", str(T0 // NS - 3600), "--until", str(T0 // NS + 3600), "--db", path)
    m = orjson.loads(run("map", *window, "--format", "json"))
    assert set(m) == {"nodes", "edges"}
    assert all(set(n) == {"name", "calls", "errors"} for n in m["nodes"])
    assert all(set(e) == {"source", "target", "calls", "errors", "p50_ms", "p95_ms"} for e in m["edges"])
    check(m, want)
    dot = run("map", *window, "--format", "dot")
    assert dot.startswith("digraph map {") and '"web" -> "api"' in dot and '"api" -> "db"' in dot
    table = run("map", *window)
    assert "web" in table and "p95_ms" in table
    csv = run("map", *window, "--format", "csv").splitlines()
    assert csv[0] == "source,target,calls,errors,p50_ms,p95_ms" and len(csv) == 3
    comp = orjson.loads(run("map", *window, "--by", "component", "--format", "json"))
    assert {e["source"] for e in comp["edges"]} == {"web.lib", "api.lib"}
    r = CliRunner().invoke(main, ["map", "--by", "host", "--db", path])
    assert r.exit_code == 2


def test_purge_takes_the_edges_along(tmp_path: Path) -> None:
    from otel_telemetry.store import purge
    from otel_telemetry.store.writer import open_admin

    ts, want = traces(20)
    path = str(tmp_path / "t.db")
    orphan = span(f"{999:032x}", "00000000000000aa", "00000000000000ff", "api", T0, 1.0)
    write(path, [[s for t in ts for s in t] + [orphan]])
    conn = open_admin(path)
    try:
        # The called spans are component_interactions: purging that category removes every edge,
        # and the waiting orphan; the user_interaction server spans of web stay as entries.
        out = purge.purge(conn, purge.PurgeSpec(categories=("component_interactions",)))
        assert out["edge_rows"] > 0
        m = service_map.service_map(conn, T0 - H, T0 + H)
        assert m["edges"] == [] and conn.execute("SELECT count(*) FROM edge_waiting").fetchone()[0] == 0
        assert {k[2]: a[0] for k, a in service_map.edge_accs(conn, T0 - H, T0 + H, "entry").items()} == {"web": 20}
        # A cutoff inside an hour rebuilds that hour from the spans left in it.
        purge.purge(conn, purge.PurgeSpec(before_ns=T0 + 30 * 60 * NS))
        assert service_map.edge_accs(conn, T0 - H, T0 + H, "entry") == {}
    finally:
        conn.close()
