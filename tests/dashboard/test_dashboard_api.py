"""The dashboard's HTTP API against a real server on 127.0.0.1 (ephemeral port) over real database
files: seeded through the real StoreWriter, and one filled by a real collector process. Numbers are
compared with the CLI's own output; no mocks."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import apsw
import orjson
import pytest
from click.testing import CliRunner
from conftest import CollectorProc, run_producer, wait_for
from dashboard_seed import SESSION_ID, TRACE_ID, TRACE_SPANS, XSS, seed_db

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import CSP, Dashboard
from otel_telemetry.dashboard.tail import Subscription
from otel_telemetry.store.writer import StoreWriter, WriteBatch

TOKEN = "test-token-0123456789abcdef"
STATIC = Path(__file__).parents[2] / "src" / "otel_telemetry" / "dashboard" / "static"


class Client:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def request(self, path: str, *, method: str = "GET", token: str | None = TOKEN, host: str | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.dash.port, timeout=30)
        h = {"Host": f"127.0.0.1:{self.dash.port}" if host is None else host}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            h["Cookie"] = cookie
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, path: str, **params: Any) -> Any:
        qs = urlencode(params, doseq=True)
        status, _, body = self.request(f"/api/{path}" + (f"?{qs}" if qs else ""))
        assert status == 200, body
        return orjson.loads(body)


def cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str, Any]]:
    path = str(tmp_path_factory.mktemp("dash") / "t.db")
    seed = seed_db(path)
    dash = Dashboard(path, TOKEN, "127.0.0.1", 0, tail_interval=0.05, keepalive_s=0.3)
    dash.start()
    yield Client(dash), path, seed
    dash.shutdown()


def schema_of(path: str) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"))
    finally:
        conn.close()


def count(path: str) -> int:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        conn.close()


# ---- auth, Host, headers ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/index.html", "/app.js", "/app.css", "/api/overview", "/api/tail",
                                  "/api/csrf", "/api/nope", "/nope"])
def test_every_route_needs_the_token(seeded: Any, path: str) -> None:
    c, _, _ = seeded
    for kwargs in ({"token": None}, {"token": "wrong-token-0123456789"},
                   {"token": None, "cookie": "otel_dashboard_1=x"},
                   {"token": None, "cookie": f"otel_dashboard_{c.dash.port}=nope"}):
        status, headers, body = c.request(path, **kwargs)
        assert status == 401, (path, kwargs)
        assert headers["content-security-policy"] == CSP
        assert TOKEN.encode() not in body


def test_token_in_url_sets_cookie_then_redirects(seeded: Any) -> None:
    c, _, _ = seeded
    status, headers, _ = c.request(f"/?token={TOKEN}&x=1", token=None)
    assert status == 303 and headers["location"] == "/?x=1"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    name_value = cookie.split(";")[0]
    status, headers, body = c.request("/", token=None, cookie=name_value)
    assert status == 200 and b'<script type="module" src="/app.js">' in body
    assert headers["content-type"].startswith("text/html")
    assert c.request("/api/overview", token=None, cookie=name_value)[0] == 200
    assert c.request("/?token=wrong", token=None)[0] == 401
    # The token is never accepted in an API URL (it would end up in logs and history).
    assert c.request(f"/api/overview?token={TOKEN}", token=None)[0] == 401


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:1", "127.0.0.1",
                                  "localhost.evil.example:{port}", ""])
def test_bad_host_header_refused(seeded: Any, host: str) -> None:
    c, _, _ = seeded
    status, headers, _ = c.request("/api/overview", host=host.format(port=c.dash.port))
    assert status == 421
    assert headers["content-security-policy"] == CSP


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_loopback_host_names_accepted(seeded: Any, host: str) -> None:
    c, _, _ = seeded
    assert c.request("/api/csrf", host=host.format(port=c.dash.port))[0] == 200


def test_security_headers_everywhere(seeded: Any) -> None:
    c, _, _ = seeded
    for path in ("/", "/app.js", "/api/overview", "/api/nope", "/api/traces?limit=0"):
        status, h, _ = c.request(path)
        assert h["content-security-policy"] == CSP, path
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store"
        assert h["x-frame-options"] == "DENY"
    assert c.request("/app.js")[1]["content-type"].startswith("text/javascript")


def test_static_files_have_no_inline_code_and_no_html_sinks() -> None:
    html = (STATIC / "index.html").read_text()
    import re

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "style=" not in html and "<style" not in html
    assert "http://" not in html and "https://" not in html  # no external assets
    for js in STATIC.glob("*.js"):
        text = js.read_text().replace('"http://www.w3.org/2000/svg"', "SVG_NS")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "setAttribute(\"style", "http://", "https://", "import(\"http"):
            assert sink not in text, (js.name, sink)


# ---- numbers equal the CLI's ---------------------------------------------------------------------

def test_overview_counters_equal_cli_status(seeded: Any) -> None:
    c, path, seed = seeded
    ov = c.json("overview")
    st = cli("status", "--db", path, "--format", "json")
    for key in ("stored", "received", "duplicates", "queue_depth", "rejected"):
        assert ov["status"][key] == st[key]
    assert ov["counters"]["stored"] == st["stored"] == seed.rows
    assert ov["counters"]["dropped"] == 0 and ov["counters"]["gaps"] == 0
    assert ov["total"] == seed.rows == cli("stats", "--db", path, "--last", "24h", "--format", "json")["total"]


def test_ai_report_equals_cli_stats(seeded: Any) -> None:
    c, path, seed = seeded
    until = str(seed.now_ns // 1_000_000_000 + 1)
    for last in ("1d", "7d"):
        d = c.json("ai", last=last, until=until)
        r = cli("stats", "--db", path, "--period", last, "--until", until, "--no-rollups", "--format", "json")
        for key in ("since_ns", "until_ns", "source", "calls", "latency_ms", "cost_usd", "tokens", "by_model",
                    "by_agent", "top_agent", "failed_calls"):
            assert d["report"][key] == r[key], key
        assert d["report"]["calls"]["total"] == 120
        s = d["series"]
        assert sum(s["calls"]) == 120 and sum(s["failed"]) == 12
        assert sum(sum(v) for v in s["tokens"]["model"].values()) == r["tokens"]["total"]
        assert sum(sum(v) for v in s["calls_by"]["agent"].values()) == 120
    d = c.json("ai", last="1h", until=until, agent="planner")  # raw path, filtered
    r = cli("stats", "--db", path, "--agent", "planner", "--last", "1h", "--until", until, "--no-rollups",
            "--format", "json")
    assert d["report"]["calls"] == r["calls"] and d["report"]["source"] == "raw"


def test_errors_equal_cli(seeded: Any) -> None:
    c, path, seed = seeded
    until = str(seed.now_ns // 1_000_000_000 + 1)
    d = c.json("errors", last="24h", until=until, limit=50)
    st = cli("stats", "--db", path, "--category", "error_patterns", "--last", "24h", "--until", until,
             "--format", "json")
    assert d["total"] == st["total"] == sum(seed.error_components.values())
    per = {comp: sum(row) for comp, row in zip(d["components"], d["cells"], strict=True)}
    assert per == seed.error_components
    q = cli("query", "--db", path, "--category", "error_patterns", "--last", "24h", "--until", until,
            "--limit", "50", "--format", "json")
    assert [x["id"] for x in d["latest"]] == [x["id"] for x in q]
    tool = next(x for x in d["latest"] if x["component"] == "tools")
    assert tool["exception"] == {"type": "ToolError", "message": XSS}


def test_system_metrics(seeded: Any) -> None:
    c, _, _ = seeded
    d = c.json("system", last="6h")
    cpu = [v for v in d["cpu_busy"] if v is not None]
    assert cpu and all(0.2 <= v <= 0.4 + 1e-9 for v in cpu)
    assert {round(v, 6) for v in d["memory_used"] if v is not None} == {0.42}
    disk = [v for v in d["bytes_per_s"]["disk_read"] if v is not None]
    assert disk and all(abs(v - 1_000_000 / 60) < 1 for v in disk[:-1])  # 1 MB per minute
    assert "net_receive" in d["bytes_per_s"]


def test_traces_search_equals_cli_and_paginates(seeded: Any) -> None:
    c, path, seed = seeded
    until = str(seed.now_ns // 1_000_000_000 + 1)
    q = cli("query", "--db", path, "--type", "span", "--category", "user_interaction", "--service", "web",
            "--last", "24h", "--until", until, "--limit", "1000", "--format", "json")
    ids: list[int] = []
    cursor = None
    while True:
        params = {"category": "user_interaction", "service": "web", "last": "24h", "until": until, "limit": 30}
        if cursor:
            params["cursor"] = cursor
        page = c.json("traces", **params)
        ids += [s["id"] for s in page["spans"]]
        cursor = page["next"]
        if not cursor:
            break
    assert ids == [x["id"] for x in q] and len(ids) == 100
    slow = c.json("traces", status="error", min_duration_ms=50, component="tools")
    assert [s["name"] for s in slow["spans"]] == ["search tool"]
    assert all(s["status"] == "error" for s in c.json("traces", status="error", limit=200)["spans"])


def test_trace_waterfall_nesting(seeded: Any) -> None:
    c, _, _ = seeded
    d = c.json("trace", trace_id=TRACE_ID.upper())
    got = [(s["span_id"], s["depth"]) for s in d["spans"]]
    assert got == [("a000000000000001", 0), ("a000000000000002", 1), ("a000000000000003", 2),
                   ("a000000000000004", 2), ("a000000000000005", 1)]
    assert d["duration_ms"] == 900.0 and len(d["spans"]) == len(TRACE_SPANS)
    rec = c.json("record", id=d["spans"][3]["id"])["record"]
    assert rec["data"]["links"][0]["span_id"] == "e" * 16
    assert rec["data"]["events"][0]["attributes"]["exception.message"] == XSS


def test_session_and_health_record(seeded: Any) -> None:
    c, path, _ = seeded
    d = c.json("session", session_id=SESSION_ID)
    q = cli("query", "--db", path, "--session-id", SESSION_ID, "--order", "asc", "--limit", "1000",
            "--last", "30d", "--format", "json")
    assert [r["id"] for r in d["records"]] == [r["id"] for r in q]
    h = d["health"]["fields"]
    assert h["latency_ms"] == 185.5 and h["frontend_fps"] == 54.0 and h["network_status"] == "degraded"
    assert h["token_usage"] == {"input": 1200, "output": 300, "total": 1500} and h["is_rate_limited"] is True
    assert h["event_context"]["retries"] == 2 and h["version"] == 3 and h["notes"].startswith("seen after")
    assert len(d["health_history"]) == 4
    # errors: the 4 health records' errors[] (1 each) + the one error span; warnings alike (+ a log)
    assert d["counts"]["errors"] == 5 and d["counts"]["warnings"] == 5
    listed = c.json("sessions")["sessions"][0]
    assert listed["session_id"] == SESSION_ID and (listed["errors"], listed["warnings"]) == (5, 5)


def test_alerts_equal_cli(seeded: Any) -> None:
    c, path, _ = seeded
    d = c.json("alerts")
    assert d["alerts"] == cli("alerts", "list", "--db", path, "--format", "json")
    assert [a["rule"] for a in d["alerts"]] == ["error_burst"]


# ---- hostile input --------------------------------------------------------------------------------

PAYLOADS = ["' OR 1=1 --", '"; DROP TABLE records; --', "%", "_", "ünï©ødé ☃ 𝄞", "' UNION SELECT * FROM retention --",
            "llm' --", "*", "\\", "1; DELETE FROM records"]
TEXT_FILTERS = [("traces", "service"), ("traces", "component"), ("traces", "event"), ("ai", "agent"),
                ("ai", "model"), ("session", "session_id"), ("alerts", "rule")]
CHOICE_FILTERS = [("traces", "category"), ("traces", "status"), ("alerts", "state"), ("tail", "category"),
                  ("tail", "level"), ("trace", "trace_id"), ("traces", "cursor"), ("traces", "min_duration_ms"),
                  ("errors", "limit"), ("overview", "last"), ("ai", "since"), ("system", "until"),
                  ("record", "id"), ("sessions", "limit")]


def test_sql_injection_payloads_match_nothing_and_change_nothing(seeded: Any) -> None:
    c, path, _ = seeded
    before, rows = schema_of(path), count(path)
    for payload in PAYLOADS:
        for endpoint, name in TEXT_FILTERS:
            d = c.json(endpoint, **{name: payload})
            if endpoint == "traces":
                assert d["spans"] == [], (name, payload)
            elif endpoint == "ai":
                assert d["report"]["calls"]["total"] == 0, (name, payload)
            elif endpoint == "session":
                assert d["records"] == [] and d["health"] is None
            else:
                assert d["alerts"] == []
        for endpoint, name in CHOICE_FILTERS:
            status, _, body = c.request(f"/api/{endpoint}?{urlencode({name: payload})}")
            assert status == 400, (endpoint, name, payload, body)
            assert "error" in orjson.loads(body)
    # A legitimate value next to the payloads still finds exactly its rows.
    assert {s["component"] for s in c.json("traces", component="llm", limit=200)["spans"]} == {"llm"}
    assert schema_of(path) == before and count(path) == rows


@pytest.mark.parametrize("query", [
    "traces?nope=1", "traces?limit=0", "traces?limit=abc", "traces?limit=1&limit=2", "traces?last=5x",
    "traces?since=2026-01-02&until=2026-01-01", "traces?last=1h&since=2h", "traces?min_duration_ms=nan",
    "traces?service=" + "x" * 300, "traces?service=", "trace", "trace?trace_id=xyz", "session",
    "record?id=-1", "ai?since=99999999999999999999", "errors?limit=1e3", "alerts?state=maybe",
    "tail?backlog=9999", "overview?" + "&".join(f"a{i}=1" for i in range(80)), "csrf?x=1", "traces?service=a%00b",
])
def test_bad_parameters_are_400_json(seeded: Any, query: str) -> None:
    c, _, _ = seeded
    status, headers, body = c.request(f"/api/{query}")
    assert status == 400, body
    assert headers["content-type"] == "application/json" and orjson.loads(body)["error"]


def test_unknown_routes_and_methods(seeded: Any) -> None:
    c, _, _ = seeded
    assert c.request("/api/nope")[0] == 404
    assert c.request("/../../etc/passwd")[0] == 404
    assert c.request("/api/overview", method="DELETE")[0] == 405
    assert c.request("/api/overview", method="POST", body={})[0] == 405
    assert c.request("/record?id=999999999")[0] == 404
    assert c.request("/api/record?id=999999999")[0] == 404


# ---- the one write ---------------------------------------------------------------------------------

def test_retention_change_needs_header_token_and_confirmation(seeded: Any) -> None:
    c, path, _ = seeded
    cookie = f"{c.dash.cookie_name}={c.dash.cookie_value}"
    good = {"category": "ai_research", "days": 400, "confirm": "ai_research"}
    # Cookie only (what a cross-site form post would carry): refused.
    assert c.request("/api/retention", method="POST", token=None, cookie=cookie, body=good)[0] == 403
    assert c.request("/api/retention", method="POST", token=None, cookie=cookie, body=good,
                     headers={"X-CSRF-Token": "0" * 64})[0] == 403
    assert c.request("/api/retention", method="POST", body=good, headers={"Origin": "http://evil.example"})[0] == 403
    assert c.request("/api/retention", method="POST", body=b"category=ai_research",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    for bad in ({"category": "ai_research", "days": 400}, {**good, "confirm": "ai_behavior"}, {**good, "days": 0},
                {**good, "days": True}, {**good, "category": "nope", "confirm": "nope"}, [good], {**good, "x": 1}):
        status, _, body = c.request("/api/retention", method="POST", body=bad)
        assert status == 400, (bad, body)
    assert c.request("/api/retention", method="POST", body=b"{not json")[0] == 400
    status, _, body = c.request("/api/retention", method="POST", body=good)
    assert status == 200, body
    show = {r["category"]: r for r in cli("retention", "show", "--db", path, "--format", "json")}
    assert show["ai_research"]["days"] == 400 and show["ai_research"]["source"] == "override"
    assert c.json("retention")["cells"] == [dict(r) for r in cli("retention", "show", "--db", path,
                                                                  "--format", "json")]
    assert {r["category"]: r["days"] for r in c.json("retention")["categories"]}["ai_research"] == 400
    csrf = c.json("csrf")["csrf"]
    status, _, _ = c.request("/api/retention", method="POST", token=None, cookie=cookie,
                             body={**good, "days": 365}, headers={"X-CSRF-Token": csrf,
                                                                  "Origin": f"http://127.0.0.1:{c.dash.port}"})
    assert status == 200
    assert {r["category"]: r["days"] for r in c.json("retention")["categories"]}["ai_research"] == 365


# ---- live tail -------------------------------------------------------------------------------------

def _sse_events(resp: http.client.HTTPResponse, want: int, timeout: float = 20) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    kind, data = None, None
    end = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < end:
        line = resp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and kind:
            out.append((kind, data))
            kind = data = None
    return out


@pytest.fixture
def own_seeded(tmp_path: Path) -> Iterator[tuple[Client, str]]:
    """A seeded store of the test's own, for a test that writes to it (the module's ``seeded`` one
    is shared: with two workers the tests of a module run in any order)."""
    path = str(tmp_path / "own.db")
    seed_db(path)
    dash = Dashboard(path, TOKEN, "127.0.0.1", 0, tail_interval=0.05, keepalive_s=0.3)
    dash.start()
    yield Client(dash), path
    dash.shutdown()


def test_live_tail_streams_new_records_with_filters(own_seeded: tuple[Client, str]) -> None:
    from dashboard_seed import _row

    c, path = own_seeded
    conn = http.client.HTTPConnection("127.0.0.1", c.dash.port, timeout=30)
    conn.request("GET", "/api/tail?category=ai_research&level=warning&backlog=0",
                 headers={"Host": f"127.0.0.1:{c.dash.port}", "Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    assert resp.getheader("Content-Security-Policy") == CSP
    assert resp.readline() == b"retry: 2000\n"
    wait_for(lambda: c.dash.tail.stats()["clients"] == 1, what="subscription")
    now = time.time_ns()
    rows = [_row(timestamp=now, type="event", category="ai_research", component="memory", event="recall",
                 name="wanted", level="warning", data={"x": 1}),
            _row(timestamp=now, type="event", category="ai_research", component="memory", event="recall",
                 name="other level", level="info", data={"x": 2}),
            _row(timestamp=now, type="event", category="ai_behavior", component="memory", event="recall",
                 name="other category", level="warning", data={"x": 3})]
    w = StoreWriter(path, flush_interval=0.02)
    w.start()
    assert w.submit(WriteBatch(rows), 10) and w.flush(10)
    assert w.shutdown(10)
    events = _sse_events(resp, 1)
    assert [(k, d["name"]) for k, d in events] == [("record", "wanted")]
    resp.close()
    conn.close()
    wait_for(lambda: c.dash.tail.stats()["clients"] == 0, what="unsubscribe after disconnect", timeout=30)


def test_subscription_buffer_is_bounded_and_counts_drops() -> None:
    sub = Subscription((), (), buffer=3)
    for i in range(10):
        sub.offer({"id": i})
    recs, drops = sub.get(0.01)
    assert [r["id"] for r in recs] == [0, 1, 2] and drops == 7
    assert sub.get(0.01) == ([], 0)


# ---- a database filled by a real collector ------------------------------------------------------------

def test_against_real_collector_db(tmp_path: Path) -> None:
    coll = CollectorProc(tmp_path).start()
    try:
        result = run_producer(coll.endpoint, "--spans", "120")
        assert isinstance(result, dict)
        total = sum(result["emitted"].values())
        wait_for(lambda: sum(coll.counts_by_category().values()) == total, what="all records stored")
        wait_for(lambda: coll.status().get("stored") == total, what="status row caught up")
    finally:
        coll.stop()
    dash = Dashboard(coll.db, TOKEN, "127.0.0.1", 0)
    dash.start()
    try:
        c = Client(dash)
        ov = c.json("overview")
        st = cli("status", "--db", coll.db, "--format", "json")
        assert ov["counters"]["stored"] == st["stored"] == total
        zmq = st["zmq"]
        assert ov["counters"]["gaps"] == zmq["gaps_total"] == 0
        assert ov["counters"]["uptime_s"] == st["uptime_s"]
        assert ov["total"] == total
        ai = c.json("ai", last="1h")
        assert ai["report"]["calls"]["total"] == result["emitted"]["ai_behavior"]
        spans = c.json("traces", category="ai_behavior", limit=200)["spans"]
        q = cli("query", "--db", coll.db, "--type", "span", "--category", "ai_behavior", "--limit", "1000",
                "--format", "json")
        assert [s["id"] for s in spans] == [x["id"] for x in q]
        errs = c.json("errors", last="1h")
        assert errs["total"] == result["emitted"]["error_patterns"]
    finally:
        dash.shutdown()


# ---- the command -----------------------------------------------------------------------------------

def test_command_refuses_non_loopback_without_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TELEMETRY_DASHBOARD_TOKEN", raising=False)
    db = tmp_path / "x.db"
    seed_db(str(db), alerts=False)
    for args in (["--host", "0.0.0.0"], ["--host", "192.168.1.5"], ["--token", "short"]):
        r = subprocess.run([sys.executable, "-m", "otel_telemetry", "dashboard", "--db", str(db), "--port", "0",
                            *args], capture_output=True, text=True, timeout=60, env={**os.environ})
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("Error:")


def test_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    seed_db(str(db), alerts=False)
    env = {**os.environ, "OTEL_TELEMETRY_DASHBOARD_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "otel_telemetry", "dashboard", "--db", str(db), "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert line.startswith("otel-telemetry dashboard: http://127.0.0.1:") and f"?token={TOKEN}" in line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 200 and orjson.loads(resp.read())["counters"]["stored"] > 0
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        rest = proc.stderr.read()  # type: ignore[union-attr]
        assert "Traceback" not in rest and TOKEN not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
