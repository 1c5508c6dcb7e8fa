"""End-to-end dashboard tests in headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no
browser download). Pages must show the CLI's numbers, the waterfall the right nesting, the live tail a
record emitted by a real producer through a real collector during the test; a hostile attribute value
must stay inert text. Screenshots of every page go to the test's tmp dir and tests/artifacts/; with
OTEL_TELEMETRY_UPDATE_SCREENSHOTS=1 also to docs/img/ (the ones docs/dashboard.md shows)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from conftest import CollectorProc, run_producer
from dashboard_seed import SESSION_ID, TRACE_ID, XSS, seed_db

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import Dashboard

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-token-0123456789abcdef"
ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_IMG = ROOT / "docs" / "img"
TIMEOUT_MS = 15_000


def _need_browser() -> Any:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    problem = None
    if not os.path.exists(CHROMIUM):
        problem = f"{CHROMIUM} is missing (make test installs Debian's chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "the playwright package is not installed (pip install -e '.[test]')"
    if problem:
        if in_ci:
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    return sync_playwright


def cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, str, Any]]:
    path = str(tmp_path_factory.mktemp("dashb") / "t.db")
    seed = seed_db(path)
    dash = Dashboard(path, TOKEN, "127.0.0.1", 0, tail_interval=0.1, keepalive_s=1)
    dash.start()
    yield dash, path, seed
    dash.shutdown()


class Page:
    """A logged-in page that records dialogs, page errors and console errors (CSP violations show there)."""

    def __init__(self, browser: Any, dash: Dashboard, shots: Path) -> None:
        self.ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        self.p = self.ctx.new_page()
        self.p.set_default_timeout(TIMEOUT_MS)
        self.dash, self.shots = dash, shots
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.p.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.p.on("pageerror", lambda e: self.errors.append(str(e)))
        self.p.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        resp = self.p.goto(dash.url)
        assert resp is not None and resp.status == 200
        assert "token" not in self.p.url  # the redirect stripped it

    def unready(self) -> None:
        """Clear the shown page's ready mark before a step that changes the route: the app clears
        it only in its hashchange handler, which a loaded renderer can run after the wait for the
        next page's mark has already seen the old one (the same page opened with other filters)."""
        self.p.evaluate("() => document.querySelector('main').removeAttribute('data-ready')")

    def open(self, route: str, ready: str) -> Any:
        self.unready()
        self.p.goto(f"{self.dash.base_url}#/{route}")
        self.p.wait_for_selector(f'main[data-ready="{ready}"]')
        assert not self.p.locator(".error-box").count(), self.p.locator(".error-box").all_inner_texts()
        return self.p

    def value(self, key: str) -> str:
        return self.p.locator(f'[data-value="{key}"]').inner_text()

    def shot(self, name: str, full: bool = False) -> None:
        target = self.shots / f"dashboard-{name}.png"
        self.p.screenshot(path=str(target), full_page=full)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(target, ARTIFACTS / target.name)
        if os.environ.get("OTEL_TELEMETRY_UPDATE_SCREENSHOTS") == "1":
            DOCS_IMG.mkdir(exist_ok=True)
            shutil.copy(target, DOCS_IMG / target.name)

    def close(self) -> None:
        self.ctx.close()
        assert self.dialogs == [], self.dialogs
        assert self.errors == [], self.errors


@pytest.fixture
def page(browser: Any, site: Any, tmp_path: Path) -> Iterator[Page]:
    pg = Page(browser, site[0], tmp_path)
    yield pg
    pg.close()


def test_overview_shows_cli_numbers(page: Page, site: Any) -> None:
    _, path, seed = site
    page.open("overview", "overview")
    st = cli("status", "--db", path, "--format", "json")
    assert page.value("stored") == f"{st['stored']:,}" == f"{seed.rows:,}"
    assert page.value("total") == f"{cli('stats', '--db', path, '--last', '24h', '--format', 'json')['total']:,}"
    assert page.value("dropped") == "0" and page.value("gaps") == "0" and page.value("queue_depth") == "0"
    for chart in ("chart-records", "chart-cpu", "chart-memory", "chart-io"):
        assert page.p.locator(f'[data-testid="{chart}"] path').count() >= 1, chart
    page.shot("overview")


def test_ai_page_shows_cli_numbers(page: Page, site: Any) -> None:
    _, path, _ = site
    page.open("ai", "ai")
    r = cli("stats", "--db", path, "--period", "1d", "--no-rollups", "--format", "json")
    assert page.value("calls") == f"{r['calls']['total']:,}" == "120"
    assert page.value("failed") == str(r["failed_calls"]["total"])
    assert page.value("success_rate") == f"{r['calls']['success_rate'] * 100:.1f} %"
    # The page sums hourly rollups and raw rows, --no-rollups the raw rows alone: the same total up
    # to float rounding, which can flip the 4th decimal shown when it sits on a boundary.
    assert abs(float(page.value("cost").lstrip("$")) - r["cost_usd"]["total"]) <= 0.00005 + 1e-9
    assert page.value("tokens") == f"{r['tokens']['total']:,}"
    assert page.value("top_agent") == f"{r['top_agent']['agent']} ({r['top_agent']['calls']})"
    models = page.p.locator('[data-testid="table-models"] tbody tr')
    assert models.count() == len(r["by_model"])
    first = models.first.locator("td").all_inner_texts()
    name = next(iter(r["by_model"]))
    assert first[:3] == [name, str(r["by_model"][name]["calls"]), str(r["by_model"][name]["failed"])]
    assert page.p.locator('[data-testid="table-failed"] tbody tr').count() == len(r["failed_calls"]["by_error_type"])
    page.shot("ai")


def test_errors_page_heatmap_and_latest(page: Page, site: Any) -> None:
    _, path, seed = site
    page.open("errors", "errors")
    total = cli("stats", "--db", path, "--category", "error_patterns", "--last", "24h", "--format", "json")["total"]
    assert page.value("error_total") == str(total) == str(sum(seed.error_components.values()))
    counts = page.p.locator('[data-testid="heatmap"] rect').evaluate_all(
        "els => els.map(e => Number(e.getAttribute('data-count')))")
    assert sum(counts) == total
    rows = page.p.locator('[data-testid="table-exceptions"] tbody tr')
    assert rows.count() == 50
    # The hostile exception message is shown as text, not markup.
    assert page.p.get_by_text(XSS).count() >= 1
    assert page.p.locator("img").count() == 0
    page.shot("errors")


def test_traces_search_waterfall_and_inert_attribute(page: Page, site: Any) -> None:
    _, path, _ = site
    p = page.open("traces?category=component_interactions", "traces")
    q = cli("query", "--db", path, "--type", "span", "--category", "component_interactions", "--last", "24h",
            "--limit", "50", "--format", "json")
    assert p.locator('[data-testid="table-spans"] tbody tr').count() == len(q)
    page.shot("traces")
    p = page.open(f"traces?trace_id={TRACE_ID}", "traces")
    rows = p.locator('[data-testid="waterfall"] g.row')
    got = rows.evaluate_all(
        "els => els.map(e => [e.getAttribute('data-span-id'), Number(e.getAttribute('data-depth'))])")
    assert got == [["a000000000000001", 0], ["a000000000000002", 1], ["a000000000000003", 2],
                   ["a000000000000004", 2], ["a000000000000005", 1]]
    p.locator('[data-span-id="a000000000000003"]').click()
    attrs = p.locator('[data-testid="span-attributes"]')
    attrs.wait_for()
    cell = attrs.get_by_text(XSS, exact=True)
    assert cell.count() == 1 and cell.is_visible()
    assert p.locator("img").count() == 0
    p.locator('[data-span-id="a000000000000004"]').click()
    p.locator('[data-testid="span-links"]').wait_for()
    assert p.locator('[data-testid="span-event"]').get_by_text(XSS, exact=True).is_visible()
    assert p.locator("img").count() == 0
    page.shot("trace", full=True)


def test_sessions_page_health_record(page: Page, site: Any) -> None:
    _, path, _ = site
    p = page.open("sessions", "sessions")
    assert p.locator('[data-testid="table-sessions"] tbody tr').first.locator("td").first.inner_text() == SESSION_ID
    page.unready()
    p.locator('[data-testid="table-sessions"] tbody tr').first.click()
    p.wait_for_selector('[data-testid="health"]')
    p.wait_for_selector('main[data-ready="sessions"]')
    q = cli("query", "--db", path, "--session-id", SESSION_ID, "--limit", "1000", "--last", "30d", "--format", "json")
    assert page.value("records") == str(len(q))
    def kv(test_id: str) -> dict[str, str]:
        return dict(p.locator(f'[data-testid="{test_id}"] tbody tr').evaluate_all(
            "els => els.map(e => [e.cells[0].textContent, e.cells[1].textContent])"))

    health = kv("health")
    assert health["latency_ms"] == "185.5" and health["network_status"] == "degraded"
    assert health["queue_depth"] == "3" and health["version"] == "3"  # 000: version, readonly number
    # 000's Field → UI mapping: token_usage key/value, errors/warnings expandable lists, event_context
    # a JSON viewer, notes text; never raw JSON in one cell, and a hostile value stays inert text.
    assert "token_usage" not in health and "errors" not in health and "notes" not in health
    assert kv("health-token-usage") == {"input": "1200", "output": "300", "total": "1500"}
    errors = p.locator('[data-testid="health-errors"] li')
    assert errors.count() == 1 and errors.locator("summary").inner_text() == "E42: upstream timeout"
    assert not errors.locator("pre").first.is_visible()
    errors.locator("summary").click()
    assert errors.locator("pre").first.inner_text() == "none"  # the stack, once expanded
    assert p.locator('[data-testid="health-warnings"] li').inner_text() == "W1: slow frame"
    ctx = orjson.loads(p.locator('[data-testid="health-event-context"]').inner_text())
    assert ctx == {"step": "moderation", "retries": 2, "flags": ["slow", XSS]}
    assert p.locator('[data-testid="health-notes"]').inner_text() == "seen after deploy 1.4.2\n" + XSS
    assert p.locator("img").count() == 0
    # The session's errors count the health records' errors[] (4 records × 1) and the error span.
    assert page.value("errors") == "5" and page.value("warnings") == "5"
    page.shot("sessions", full=True)


def test_alerts_and_confirmed_retention_change(page: Page, site: Any) -> None:
    _, path, _ = site
    p = page.open("alerts", "alerts")
    alerts = cli("alerts", "list", "--db", path, "--format", "json")
    rows = p.locator('[data-testid="table-alerts"] tbody tr')
    assert rows.count() == len(alerts) == 1
    assert rows.first.locator("td").all_inner_texts()[:3] == ["error_burst", "critical", "firing"]
    assert p.locator('[data-testid="alert-timeline"] rect').count() == 1
    page.shot("alerts", full=True)
    p.locator('[data-testid="table-retention"] tbody tr', has_text="user_interaction").click()
    dialog = p.locator('[data-testid="confirm-dialog"]')
    dialog.wait_for()
    p.locator('[data-testid="retention-days"]').fill("45")
    apply = p.locator('[data-testid="retention-apply"]')
    assert apply.is_disabled()
    p.locator('[data-testid="retention-confirm"]').fill("user_interactio")
    assert apply.is_disabled()
    p.locator('[data-testid="retention-confirm"]').fill("user_interaction")
    page.shot("retention-confirm")
    apply.click()
    p.locator('[data-testid="table-retention"] tbody tr', has_text="override").wait_for()
    show = {r["category"]: r for r in cli("retention", "show", "--db", path, "--format", "json")}
    assert show["user_interaction"]["days"] == 45 and show["user_interaction"]["source"] == "override"


def test_request_without_token_is_refused(browser: Any, site: Any) -> None:
    dash = site[0]
    ctx = browser.new_context()
    try:
        p = ctx.new_page()
        for url in (dash.base_url, f"{dash.base_url}?token=wrong-{TOKEN}", f"{dash.base_url}app.js",
                    f"{dash.base_url}api/overview"):
            resp = p.goto(url)
            assert resp is not None and resp.status == 401, url
            assert "unauthorized" in p.content()
    finally:
        ctx.close()


def test_live_tail_shows_record_from_real_collector(browser: Any, tmp_path: Path) -> None:
    coll = CollectorProc(tmp_path).start()
    dash = Dashboard(coll.db, TOKEN, "127.0.0.1", 0, tail_interval=0.1, keepalive_s=1)
    dash.start()
    pg = Page(browser, dash, tmp_path)
    try:
        p = pg.open("tail?category=ai_behavior,error_patterns", "tail")
        p.wait_for_selector('[data-testid="tail-state"]:text("live")')
        assert p.locator('[data-testid="tail-table"] tbody tr').count() == 0
        result = run_producer(coll.endpoint, "--spans", "24")
        assert isinstance(result, dict)
        row = p.locator('[data-testid="tail-table"] tbody tr', has_text="chat gpt-4o")
        row.first.wait_for()
        want = result["emitted"]["ai_behavior"] + result["emitted"]["error_patterns"]
        # A function, not an expression: Playwright evaluates a string expression with eval(),
        # which the dashboard's CSP (script-src 'self') refuses once the first poll comes out false.
        p.wait_for_function("n => document.querySelectorAll('[data-testid=tail-table] tbody tr').length >= n", arg=want)
        cats = set(p.locator('[data-testid="tail-table"] tbody tr td:nth-child(3)').all_inner_texts())
        assert cats == {"ai_behavior", "error_patterns"}
        assert p.locator('[data-testid="tail-table"] tbody tr').count() == want
        pg.shot("tail")
        # The overview of the same database shows what `otel-telemetry status` shows.
        coll.stop()
        p = pg.open("overview", "overview")
        st = cli("status", "--db", coll.db, "--format", "json")
        assert pg.value("stored") == f"{st['stored']:,}" and pg.value("gaps") == str(st["zmq"]["gaps_total"])
    finally:
        pg.close()
        dash.shutdown()
        if coll.proc is not None:
            coll.stop()
