"""Spans in progress in headless Chromium (the set-up of test_dashboard_browser.py), on what a real
app with live spans on (tests/apps/live_app.py) sent to a real collector process during the test.

The live tail lists a running span with a running clock before it ends; its trace view draws it as
running and follows it until it ends, then shows the finished span. A span whose app was killed
turns abandoned. The pages show what ``watch --in-progress --format json`` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, CollectorProc, wait_for
from test_dashboard_browser import TOKEN, Page, browser, cli  # noqa: F401 - browser is a fixture

from otel_telemetry.dashboard.server import Dashboard

APP = str(HERE / "apps" / "live_app.py")


class LiveSite:
    """A collector, an app holding an agent trace open, and a dashboard on the collector's file."""

    def __init__(self, tmp: Path, abandon_after: float, *app_args: str) -> None:
        self.tmp = tmp
        self.coll = CollectorProc(tmp)
        self.coll.config.write_text(
            f"store: {{flush_interval: 0.05}}\nlive_spans: {{abandon_after: {abandon_after}}}\n")
        self.coll.start()
        self.app = subprocess.Popen([sys.executable, APP, "--endpoint", self.coll.endpoint, "--quick", "20",
                                     "--ready", str(tmp / "ready"), *app_args],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: (tmp / "ready").exists() or self.app.poll() is not None, timeout=60, what="app ready")
        assert self.app.poll() is None, self.app.stderr.read().decode() if self.app.stderr else ""
        self.ids = json.loads((tmp / "ready").read_text())
        wait_for(lambda: len(self.cli_spans()) == 2, what="two spans in progress")
        self.dash = Dashboard(self.coll.db, TOKEN, "127.0.0.1", 0, tail_interval=0.1, keepalive_s=1)
        self.dash.start()

    def cli_spans(self) -> list[dict[str, Any]]:
        return cli("watch", "--in-progress", "--db", self.coll.db, "--format", "json")["spans"]

    def close(self) -> None:
        self.dash.shutdown()
        if self.app.poll() is None:
            self.app.kill()
            self.app.wait(10)
        if self.coll.proc is not None:
            assert self.coll.stop() == 0


@pytest.fixture
def running_site(tmp_path: Path) -> Iterator[LiveSite]:
    site = LiveSite(tmp_path, 3600, "--release", str(tmp_path / "release"))
    yield site
    site.close()


@pytest.fixture
def killed_site(tmp_path: Path) -> Iterator[LiveSite]:
    site = LiveSite(tmp_path, 1.0, "--hang")
    yield site
    site.close()


def _rows(p: Any) -> list[list[str]]:
    return p.locator('[data-testid="table-in-progress"] tbody tr').evaluate_all(
        "rows => rows.map(r => [...r.children].map(td => td.textContent))")


def test_running_span_visible_before_it_ends_then_replaced(browser: Any, running_site: LiveSite,  # noqa: F811
                                                          tmp_path: Path) -> None:
    site, ids = running_site, running_site.ids
    pg = Page(browser, site.dash, tmp_path)
    try:
        p = pg.open("tail", "tail")
        p.wait_for_selector('[data-testid="table-in-progress"] td.st-running')
        wait_for(lambda: len(_rows(p)) == 2, what="both spans in the panel")
        # What the panel shows is what the CLI prints (columns: started, elapsed, state, service,
        # component, name, span, trace).
        shown = {r[6]: (r[2], r[3], r[5]) for r in _rows(p)}
        assert shown == {s["span_id"]: (s["state"], s["service"], s["name"]) for s in site.cli_spans()}
        assert shown[ids["tool_span_id"]] == ("running", "agent-app", "execute_tool search")
        assert p.locator('[data-testid="in-progress-count"]').inner_text() == "2"
        first = {r[6]: r[1] for r in _rows(p)}[ids["tool_span_id"]]
        wait_for(lambda: {r[6]: r[1] for r in _rows(p)}[ids["tool_span_id"]] != first, what="the clock to run")
        pg.shot("in-progress-tail")
        # Its trace: the running spans drawn up to now, the finished chat span beside them.
        # Clicked the way a person clicks, the button held across clock ticks (every 250 ms): the
        # clock runs in place, so the row under the pointer is the same row at mouseup. A table
        # redrawn on each tick swallowed such clicks (and, under load, Playwright's quick ones too).
        box = p.locator('[data-testid="table-in-progress"] tbody tr', has_text="execute_tool search").bounding_box()
        assert box is not None
        p.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        p.mouse.down()
        p.wait_for_timeout(600)
        p.mouse.up()
        p.wait_for_selector('main[data-ready="traces"]')
        tool = p.locator(f'g[data-span-id="{ids["tool_span_id"]}"]')
        assert tool.get_attribute("data-state") == "running"
        assert "running" in tool.locator("text.label").text_content()
        assert p.locator('[data-testid="trace-in-progress"]').inner_text().strip() == "2 in progress"
        assert p.locator('g[data-state]').count() == 2 and p.locator("g.row").count() == 3
        steps = p.locator('[data-testid="table-steps"] tbody tr').evaluate_all(
            "rows => rows.map(r => [...r.children].map(td => td.textContent))")
        assert [(s[1], s[-1]) for s in steps] == [("agent", "running"), ("llm", "unset"), ("tool", "running")]
        assert steps[2][5].startswith("running")  # the latency column: running N s
        # Held across the page's 2 s refresh of a running trace: the refresh waits for the release.
        tool.click(delay=2500)
        assert "running" in p.locator('[data-testid="span-summary"]').inner_text()
        pg.shot("in-progress-trace")
        # The span ends: the page, following the trace, turns it into the finished span.
        (tmp_path / "release").touch()
        p.wait_for_selector(f'g[data-span-id="{ids["tool_span_id"]}"]:not([data-state])', timeout=60_000)
        p.wait_for_selector('[data-testid="trace-in-progress"]', state="detached")
        assert " ms" in p.locator(f'g[data-span-id="{ids["tool_span_id"]}"] text.label').text_content()
        assert p.locator("g.row").count() == 3 and p.locator('g[data-state]').count() == 0
        wait_for(lambda: p.locator('[data-testid="table-steps"] td.st-running').count() == 0, what="steps done")
        out, err = site.app.communicate(timeout=60)
        assert site.app.returncode == 0, err.decode()
        p = pg.open("tail", "tail")
        p.wait_for_selector('text="Nothing in progress."')
        assert site.cli_spans() == []
    finally:
        pg.close()


def test_killed_app_span_shows_abandoned(browser: Any, killed_site: LiveSite, tmp_path: Path) -> None:  # noqa: F811
    site = killed_site
    site.app.kill()
    site.app.wait(10)
    wait_for(lambda: {s["state"] for s in site.cli_spans()} == {"abandoned"}, what="abandoned")
    pg = Page(browser, site.dash, tmp_path)
    try:
        p = pg.open("tail", "tail")
        p.wait_for_selector('[data-testid="table-in-progress"] td.st-abandoned')
        wait_for(lambda: len(_rows(p)) == 2, what="both spans in the panel")
        assert {r[6]: r[2] for r in _rows(p)} == {s["span_id"]: "abandoned" for s in site.cli_spans()}
        p = pg.open(f"traces?trace_id={site.ids['trace_id']}", "traces")
        tool = p.locator(f'g[data-span-id="{site.ids["tool_span_id"]}"]')
        assert tool.get_attribute("data-state") == "abandoned"
        assert tool.locator("text.label").text_content().startswith("abandoned after")
    finally:
        pg.close()
