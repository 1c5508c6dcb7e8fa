"""The map, services and metrics pages in headless Chromium (the set-up of test_dashboard_browser.py)
on data that real producers sent to a real collector process during the test: the three-service
trace set of apps/chain_app.py (frontend -> payments -> ledger; payments also records a histogram
and a counter). Every number on the pages equals the CLI's JSON for the same window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CollectorProc, otlp_fixture_collector, run_chain, wait_for
from test_dashboard_browser import TOKEN, Page, browser, cli  # noqa: F401 - browser is a fixture

from otel_telemetry.dashboard.server import Dashboard

N, FAIL_EVERY = 30, 4


@pytest.fixture(scope="module")
def chain_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, str]]:
    tmp = tmp_path_factory.mktemp("views")
    coll = CollectorProc(tmp).start()
    try:
        result = run_chain(coll.endpoint, N, FAIL_EVERY)
        spans = sum(r["emitted"]["spans"] for r in result.values())
        wait_for(lambda: coll.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0] >= spans,
                 what="every span stored")
    finally:
        assert coll.stop() == 0
    dash = Dashboard(coll.db, TOKEN, "127.0.0.1", 0, tail_interval=0.1, keepalive_s=1)
    dash.start()
    yield dash, coll.db
    dash.shutdown()


@pytest.fixture
def vpage(browser: Any, chain_site: Any, tmp_path: Path) -> Iterator[Page]:  # noqa: F811 - the fixture
    pg = Page(browser, chain_site[0], tmp_path)
    yield pg
    pg.close()


def _attrs(p: Any, selector: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    return p.locator(selector).evaluate_all(
        f"els => els.map(e => Object.fromEntries({list(names)!r}.map(n => [n, e.getAttribute('data-' + n)])))")


def _num(v: Any) -> str:
    return "" if v is None else str(v)


def test_map_page_equals_cli_and_node_click_shows_traces(vpage: Page, chain_site: Any) -> None:
    _, db = chain_site
    p = vpage.open("map", "map")
    m = cli("map", "--db", db, "--last", "24h", "--format", "json")
    failed = len(range(0, N, FAIL_EVERY))
    assert {(e["source"], e["target"]): (e["calls"], e["errors"]) for e in m["edges"]} == {
        ("frontend", "payments"): (N, failed), ("payments", "ledger"): (N, 0)}
    edges = _attrs(p, "svg.map g.edge", ("source", "target", "calls", "errors", "p50", "p95"))
    assert sorted(map(tuple, (e.values() for e in edges))) == sorted(
        (e["source"], e["target"], str(e["calls"]), str(e["errors"]), _num(e["p50_ms"]), _num(e["p95_ms"]))
        for e in m["edges"])
    nodes = _attrs(p, "svg.map g.node", ("name", "calls", "errors"))
    assert sorted((n["name"], int(n["calls"]), int(n["errors"])) for n in nodes) == sorted(
        (n["name"], n["calls"], n["errors"]) for n in m["nodes"])
    assert p.locator('[data-testid="table-edges"] tbody tr').count() == 2
    vpage.shot("map")
    p.locator('svg.map g.node[data-name="payments"]').click()
    ops = p.locator('[data-testid="node-operations"] tbody tr')
    ops.first.wait_for()
    got = dict(ops.evaluate_all("els => els.map(e => [e.cells[0].textContent, Number(e.cells[1].textContent)])"))
    assert got == {"POST /pay": N, "SELECT accounts": N, "ledger publish": N}
    assert p.locator('[data-testid="node-errors"] tbody tr').count() == failed
    vpage.shot("map-node", full=True)
    p.locator('[data-testid="node-traces"] tbody tr').first.click()
    p.wait_for_selector('[data-testid="waterfall"] g.row')
    # The trace view shows the whole three-service trace.
    assert p.locator('[data-testid="waterfall"] g.row').count() == 6


def test_component_map_page_equals_cli(vpage: Page, chain_site: Any) -> None:
    _, db = chain_site
    p = vpage.open("map?by=component", "map")
    m = cli("map", "--db", db, "--last", "24h", "--by", "component", "--format", "json")
    edges = _attrs(p, "svg.map g.edge", ("source", "target", "calls"))
    assert sorted((e["source"], e["target"], int(e["calls"])) for e in edges) == sorted(
        (e["source"], e["target"], e["calls"]) for e in m["edges"]) and len(edges) == 2


def test_services_page_equals_cli(vpage: Page, chain_site: Any) -> None:
    _, db = chain_site
    p = vpage.open("services", "services")
    s = cli("services", "--db", db, "--last", "24h", "--format", "json")
    want = {x["service"]: x for x in s["services"]}
    assert set(want) == {"frontend", "payments", "ledger"}
    assert want["payments"]["errors"] == len(range(0, N, FAIL_EVERY)) and want["ledger"]["calls"] == N
    rows = p.locator('[data-testid="table-services"] tbody tr')
    assert rows.count() == 3
    for name, x in want.items():
        cells = dict(rows.filter(has=p.locator(f'td[data-v="{name}"]')).locator("td").evaluate_all(
            "els => els.map(e => [e.dataset.k, e.dataset.v])"))
        assert (int(cells["calls"]), int(cells["errors"])) == (x["calls"], x["errors"])
        assert cells["p50_ms"] == _num(x["p50_ms"]) and cells["p95_ms"] == _num(x["p95_ms"])
        # The rate divides by the window up to "now", which moved between the two requests.
        assert float(cells["rate_per_s"]) == pytest.approx(x["rate_per_s"], rel=1e-3)
    for chart in ("chart-svc-rate", "chart-svc-errors", "chart-svc-p50", "chart-svc-p95"):
        assert p.locator(f'[data-testid="{chart}"] path, [data-testid="{chart}"] circle').count() >= 1, chart
    vpage.shot("services")


def test_metrics_page_histogram_p95_equals_cli(vpage: Page, chain_site: Any) -> None:
    _, db = chain_site
    names = {n["name"] for n in cli("metrics", "--db", db, "--last", "24h", "--format", "json")}
    assert {"pay.duration", "pay.requests"} <= names
    p = vpage.open("metrics?name=pay.duration&agg=p95&group_by=method", "metrics")
    m = cli("metrics", "pay.duration", "--db", db, "--last", "24h", "--agg", "p95", "--group-by", "method",
            "--format", "json")
    want = {g["group"]: g["value"] for g in m["groups"]}
    assert set(want) == {"card", "wallet"}
    got = dict(p.locator('[data-testid="table-metric"] tbody tr').evaluate_all(
        "els => els.map(e => [e.cells[0].dataset.v, Number(e.cells[1].dataset.v)])"))
    assert got == want
    assert p.locator('[data-testid="chart-metric"] path, [data-testid="chart-metric"] circle').count() >= 2
    vpage.shot("metrics")
    # The counter, picked from the list: its rate and, switched to sum, the CLI's count.
    p = vpage.open("metrics?name=pay.requests&agg=sum", "metrics")
    s = cli("metrics", "pay.requests", "--db", db, "--last", "24h", "--agg", "sum", "--format", "json")
    assert s["groups"][0]["value"] == N
    got = p.locator('[data-testid="table-metric"] tbody tr td[data-k="value"]').get_attribute("data-v")
    assert float(got or "nan") == N


def test_jaeger_fixtures_render_on_the_map(browser: Any, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """The multi-service fixtures, posted over OTLP/HTTP to a real collector, on the map page (their
    own past windows, given in the route)."""
    c = otlp_fixture_collector(tmp_path, ("jaeger-example_trace.json", "jaeger-ui-multi-resource.json"))
    dash = Dashboard(c.db, TOKEN, "127.0.0.1", 0, tail_interval=0.1, keepalive_s=1)
    dash.start()
    pg = Page(browser, dash, tmp_path)
    try:
        for since, until, by in (("2017-01-26", "2017-01-27", "service"), ("2024-03-22", "2024-03-23", "service"),
                                 ("2024-03-22", "2024-03-23", "component")):
            p = pg.open(f"map?since={since}&until={until}&by={by}", "map")
            m = cli("map", "--db", c.db, "--since", since, "--until", until, "--by", by, "--format", "json")
            nodes = _attrs(p, "svg.map g.node", ("name", "calls", "errors"))
            assert sorted((n["name"], int(n["calls"])) for n in nodes) == sorted(
                (n["name"], n["calls"]) for n in m["nodes"])
            edges = _attrs(p, "svg.map g.edge", ("source", "target", "calls"))
            assert sorted((e["source"], e["target"], int(e["calls"])) for e in edges) == sorted(
                (e["source"], e["target"], e["calls"]) for e in m["edges"])
        # The last one: the component map of jaeger-ui-multi-resource.json, widgets -> ohboy twice.
        assert [(e["source"], e["target"], e["calls"]) for e in edges] == [("widgets", "ohboy", "2")]
        pg.shot("map-jaeger-components")
        p = pg.open("map?since=2017-01-26&until=2017-01-27", "map")
        assert sorted(_attrs(p, "svg.map g.node", ("name",)), key=str) == [
            {"name": "example-service-1"}, {"name": "example-service-2"}, {"name": "example-service-3"}]
    finally:
        pg.close()
        dash.shutdown()
