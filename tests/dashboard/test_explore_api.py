"""The dashboard's exploring endpoints (dashboard/explore_api.py) over HTTP, on a real server and a
database written by the real StoreWriter; each answer is compared with the CLI's JSON for the same
window. Browser tests of the same views: test_explore_browser.py."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import apsw
import orjson
import pytest
from click.testing import CliRunner
from dashboard_seed import seed_db

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import Dashboard

TOKEN = "explore-token-0123456789abcdef"
PAYLOADS = ("' OR 1=1 --", '"; DROP TABLE records; --', "x'); DELETE FROM records; --", "%", "_", "$",
            '") OR 1=1 --', "ünïcødé ' 🙂", "1 UNION SELECT name, sql FROM sqlite_master --")


class Client:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def get(self, path: str, params: Any = ()) -> tuple[int, Any]:
        qs = urlencode(params, doseq=True)
        conn = http.client.HTTPConnection("127.0.0.1", self.dash.port, timeout=30)
        try:
            conn.request("GET", f"/api/{path}" + (f"?{qs}" if qs else ""),
                         headers={"Host": f"127.0.0.1:{self.dash.port}", "Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            return r.status, orjson.loads(r.read())
        finally:
            conn.close()

    def json(self, path: str, params: Any = ()) -> Any:
        status, body = self.get(path, params)
        assert status == 200, body
        return body


def cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str]]:
    path = str(tmp_path_factory.mktemp("explore") / "t.db")
    seed_db(path, alerts=False)
    dash = Dashboard(path, TOKEN, "127.0.0.1", 0)
    dash.start()
    yield Client(dash), path
    dash.shutdown()


def _schema_and_count(path: str) -> Any:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")), \
            conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("attrs", [
    ["gen_ai.agent.name=planner"], ["gen_ai.agent.name=planner", "error.type!=TimeoutError"],
    ["gen_ai.usage.input_tokens>=1000"], ["http.route=/items", "service=web"], ["service.name=api"],
    ["name=GET /items/3"],
])
def test_trace_search_by_attribute_equals_cli(seeded: Any, attrs: list[str]) -> None:
    c, path = seeded
    d = c.json("traces", [("last", "24h"), ("limit", "200"), *(("attr", a) for a in attrs)])
    args = [a for spec in attrs for a in ("--attr", spec)]
    q = cli("query", "--db", path, "--type", "span", "--last", "24h", "--limit", "200", *args, "--format", "json")
    assert d["spans"] and [s["id"] for s in d["spans"]] == [r["id"] for r in q]


def test_attr_payloads_are_data(seeded: Any) -> None:
    c, path = seeded
    before = _schema_and_count(path)
    for p in PAYLOADS:
        for spec in (f"{p}=x", f"k={p}", f"service={p}"):
            status, body = c.get("traces", [("attr", spec), ("last", "30d")])
            assert status in (200, 400), (spec, body)
            if status == 200:
                assert body["spans"] == [], spec
    for bad in ("region", "n>abc", "service>1"):
        status, body = c.get("traces", [("attr", bad)])
        assert status == 400 and body["error"], bad
    assert _schema_and_count(path) == before


@pytest.mark.parametrize("where", ["error", "duration>500ms", "gen_ai.agent.name=planner"])
def test_compare_equals_cli(seeded: Any, where: str) -> None:
    c, path = seeded
    now = int(time.time())
    since, until = str(now - 7200), str(now + 60)  # the same window for both, to the nanosecond
    d = c.json("compare", [("since", since), ("until", until), ("where", where)])
    q = cli("compare", "--db", path, "--where", where, "--since", since, "--until", until, "--format", "json")
    assert d["attributes"] and q == d
    status, body = c.get("compare", [("where", "slow")])
    assert status == 400 and "where" in body["error"]


def test_conversation_equals_cli(seeded: Any) -> None:
    c, path = seeded
    call = cli("query", "--db", path, "--attr", "gen_ai.agent.name=coder", "--limit", "1", "--format", "json")[0]
    d = c.json("conversation", [("trace_id", call["trace_id"])])
    q = cli("conversation", call["trace_id"], "--db", path, "--format", "json")
    assert d.pop("truncated") is False and d == q
    assert d["steps"][0]["agent"] == "coder" and d["turns"][0]["content"] == "absent"
    assert c.get("conversation", [("trace_id", "xyz")])[0] == 400


def test_compare_past_the_bound_says_sampled_in_both(seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c, path = seeded
    monkeypatch.setenv("OTEL_TELEMETRY_COMPARE_MAX_SPANS", "100")  # read per request by both
    now = int(time.time())
    since, until = str(now - 6 * 3600), str(now + 60)
    d = c.json("compare", [("since", since), ("until", until), ("where", "error")])
    q = cli("compare", "--db", path, "--where", "error", "--since", since, "--until", until, "--format", "json")
    assert d == q and d["sampled"] and d["estimated"] and d["rows_read"] == 200 and d["max_spans"] == 100
    r = CliRunner().invoke(main, ["compare", "--db", path, "--where", "error", "--since", since, "--until", until])
    assert r.exit_code == 0 and "sampled" in r.stdout and "estimates" in r.stdout and ": ~" in r.stdout
    monkeypatch.setenv("OTEL_TELEMETRY_COMPARE_MAX_SPANS", "5")
    status, body = c.get("compare", [("where", "error")])
    assert status == 400 and "at least 100" in body["error"]
