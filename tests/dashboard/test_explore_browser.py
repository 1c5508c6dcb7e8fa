"""The exploring views in headless Chromium, on data a real producer process (tests/explore_producer.py)
sent to a real collector process during the test: the Compare page names the attribute planted on
90 % of the failures, the trace search finds spans by attribute, and agent traces in the current
GenAI conventions and in OpenInference names render as step lists and conversations in order.
Every figure on screen is checked against the CLI's JSON for the same window. Screenshots go to
tests/artifacts/ (and docs/img/ with OTEL_TELEMETRY_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, CollectorProc
from test_dashboard_browser import TOKEN, Page, browser, cli  # noqa: F401 - browser is a fixture

from otel_telemetry.dashboard.server import Dashboard


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("explore")
    coll = CollectorProc(tmp).start()
    try:
        out = subprocess.run([sys.executable, str(HERE / "explore_producer.py"), "--endpoint", coll.endpoint],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        coll.stop()  # drains the writer: everything the producer sent is stored now
    assert res["shutdown_ok"] and res["counters"]["dropped"] == {}
    assert coll.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0] == res["spans"]
    dash = Dashboard(coll.db, TOKEN, "127.0.0.1", 0)
    dash.start()
    yield dash, coll.db, res
    dash.shutdown()


@pytest.fixture
def page(browser: Any, produced: Any, tmp_path: Path) -> Iterator[Page]:  # noqa: F811 - the fixture above
    pg = Page(browser, produced[0], tmp_path)
    yield pg
    pg.close()


def cells(p: Any, test_id: str) -> list[list[str]]:
    return p.locator(f'[data-testid="{test_id}"] tbody tr').evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")


def test_compare_names_the_planted_attribute(page: Page, produced: Any) -> None:
    _, db, _ = produced
    p = page.open("compare?where=error&name=POST%20%2Fcheckout", "compare")
    first = p.locator('[data-testid="table-compare"] tbody tr').first
    assert (first.get_attribute("data-key"), first.get_attribute("data-val")) == ("region", "eu-west")
    assert cells(p, "table-compare")[0][3:7] == ["18", "90 %", "18", "10 %"]
    # The same window in the CLI gives the same rows and counts.
    r = cli("compare", "--db", db, "--where", "error", "--name", "POST /checkout", "--last", "24h", "--format", "json")
    assert page.value("selection") == str(r["selection"]["spans"]) == "20"
    assert page.value("rest") == str(r["rest"]["spans"]) == "180"
    shown = [(row[0], row[1], int(row[3]), int(row[5])) for row in cells(p, "table-compare")]
    assert shown == [(a["key"], a["value"], a["selection"], a["rest"]) for a in r["attributes"]]
    assert not p.locator('[data-testid="compare-sampled"]').count()
    page.shot("compare")
    # A row opens the failing spans that carry the value.
    page.unready()
    first.click()
    p.wait_for_selector('main[data-ready="traces"]')
    assert len(cells(p, "table-spans")) == 18


def test_trace_search_by_attribute(page: Page, produced: Any) -> None:
    _, db, _ = produced
    p = page.open("traces", "traces")
    p.locator('[data-testid="attr-input"]').first.fill("region=eu-west")
    p.locator('[data-testid="attr-filters"] button').click()
    p.locator('[data-testid="attr-input"]').nth(1).fill("deployment.environment=prod")
    p.locator('[data-testid="trace-search"] select[name="status"]').select_option("error")
    page.unready()
    p.locator('[data-testid="trace-search"] button[type="submit"]').click()
    p.wait_for_url("**attr=deployment.environment*")
    p.wait_for_selector('main[data-ready="traces"]')
    rows = cells(p, "table-spans")
    q = cli("query", "--db", db, "--type", "span", "--attr", "region=eu-west", "--attr", "deployment.environment=prod",
            "--attr", "name=POST /checkout", "--level", "error", "--last", "24h", "--format", "json")
    assert len(rows) == len(q) == 18
    assert {r[-1] for r in rows} == {f"{s['trace_id'][:12]}…" for s in q}
    assert p.locator('[data-testid="attr-input"]').nth(1).input_value() == "deployment.environment=prod"
    page.shot("traces-attr")


def _steps_and_turns(page: Page, trace_id: str) -> tuple[Any, list[list[str]]]:
    p = page.open(f"traces?trace_id={trace_id}", "traces")
    p.locator('[data-testid="table-steps"]').wait_for()
    return p, cells(p, "table-steps")


def _messages(p: Any, n: int) -> list[tuple[str, str]]:
    conv = p.locator('[data-testid="conversation"]').nth(n)
    return [tuple(m) for m in conv.locator(".msg").evaluate_all(
        "ms => ms.map(m => [m.getAttribute('data-role'), m.querySelector('.parts').textContent])")]


def test_agent_trace_current_conventions(page: Page, produced: Any) -> None:
    _, db, res = produced
    p, steps = _steps_and_turns(page, res["agent_current"])
    assert [(s[1], s[2]) for s in steps] == [
        ("agent", "agent travel"), ("llm", "· gpt-4o-2024-08-06 asked for tool get_weather"),
        ("tool", "· ran tool get_weather"), ("llm", "· gpt-4o answered (stop)")]
    want = cli("conversation", res["agent_current"], "--db", db, "--format", "json")
    assert [s[6:9] for s in steps] == [["" if x is None else f"{x:,}" for x in (s["input_tokens"], s["output_tokens"])]
                                       + ["" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"]
                                       for s in want["steps"]]
    assert p.locator('[data-testid="conversation"]').count() == 2
    first = _messages(p, 0)
    assert [r for r, _ in first] == ["system", "user", "assistant"]
    assert first[0][1] == "You plan trips."
    assert first[1][1] == "Weather in Paris? Reply to [REDACTED:email]"  # redacted by the collector, stays so
    assert "tool call get_weather" in first[2][1] and '"city": "Paris"' in first[2][1]
    second = _messages(p, 1)
    assert [r for r, _ in second] == ["user", "assistant", "tool", "assistant"]
    assert second[-1][1] == "Sunny, 21 °C in Paris."
    facts = p.locator('[data-testid="turn-facts"]').first.inner_text()
    t = want["turns"][0]
    assert f"{t['input_tokens']} in / {t['output_tokens']} out" in facts and "finish: tool_call" in facts
    assert f"${t['cost_usd']:.4f}" in facts and t["model"] in facts
    # A step selects its span in the waterfall.
    p.locator('[data-testid="table-steps"] tbody tr').nth(2).click()
    p.locator('[data-testid="span-attributes"]').get_by_text("get_weather", exact=True).wait_for()
    page.shot("conversation", full=True)


def test_agent_trace_openinference(page: Page, produced: Any) -> None:
    _, _, res = produced
    p, steps = _steps_and_turns(page, res["agent_openinference"])
    assert [(s[1], s[2]) for s in steps] == [
        ("agent", "agent"), ("llm", "· gpt-4o-mini asked for tool search_docs"), ("tool", "· ran tool search_docs"),
        ("llm", "· gpt-4o-mini answered")]
    assert _messages(p, 0) == [("system", "You find documents."), ("user", "find the release notes"),
                               ("assistant", 'tool call search_docs t-1{\n  "q": "release notes"\n}')]
    assert [r for r, _ in _messages(p, 1)] == ["user", "tool", "assistant"]
    page.shot("conversation-openinference", full=True)


def test_older_events_and_absent_content(page: Page, produced: Any) -> None:
    _, _, res = produced
    p, steps = _steps_and_turns(page, res["events"])
    assert _messages(p, 0) == [("system", "Be brief."), ("user", "Hello there"), ("assistant", "Hi!")]
    p, steps = _steps_and_turns(page, res["bare"])
    absent = p.locator('[data-testid="conversation-absent"]')
    assert absent.count() == 1 and "not recorded" in absent.inner_text()
    assert p.locator(".msg").count() == 0  # nothing made up
