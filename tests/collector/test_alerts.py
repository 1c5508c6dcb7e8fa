"""Alert rules, lifecycle and webhook delivery against real SQLite files and real HTTP servers on
127.0.0.1; the engine's clock is controlled by the test. No mocks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import apsw
import pytest
import yaml
from click.testing import CliRunner
from conftest import wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.collector.alerts.config import AlertConfig, parse_alert_config
from otel_telemetry.collector.alerts.engine import AlertEngine, list_alerts, state_path
from otel_telemetry.collector.alerts.notify import AlertEvent, Notifier, NotifyTarget
from otel_telemetry.collector.alerts.rules import rule_value
from otel_telemetry.store import schema
from otel_telemetry.store.writer import WriteBatch, open_reader

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
EXAMPLE = Path(__file__).parents[2] / "collector-config" / "alerts.example.yaml"
_uids = itertools.count(1)


# ---- helpers ------------------------------------------------------------------------------------

def row(ts: int, **kw: Any) -> dict[str, Any]:
    r = {"uid": next(_uids).to_bytes(16, "big"), "timestamp": ts, "type": "span", "category": "component_interactions",
         "component": "comp", "event": "ev", "level": "info", "data": "{}", "metadata": "{}"}
    r.update(kw)
    return r


def make_db(path: Path) -> str:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute(schema.DDL)
    cols = {c[1] for c in conn.execute("PRAGMA table_info(records)")}
    if "cost_usd" not in cols:  # the GenAI columns may not be in schema.DDL yet
        conn.execute("ALTER TABLE records ADD COLUMN cost_usd REAL")
    conn.close()
    return str(path)


def insert(db: str, rows: list[dict[str, Any]]) -> None:
    conn = apsw.Connection(db)
    try:
        with conn:
            for r in rows:
                conn.execute(f"INSERT INTO records({', '.join(r)}) VALUES ({', '.join('?' * len(r))})",
                             list(r.values()))
    finally:
        conn.close()


class Hook:
    """A real HTTP server on 127.0.0.1 recording POSTs; can fail with given codes or hang."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.codes: list[int] = []  # statuses to answer with, in order; then 200
        self.hang = threading.Event()  # set: handlers block until ``release`` is set
        self.release = threading.Event()
        self.cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.cond:
                    hook.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    code = hook.codes.pop(0) if hook.codes else 200
                    hook.cond.notify_all()
                if hook.hang.is_set():
                    hook.release.wait(60)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(b) for p, _, b in self.requests if path is None or p == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def config(rules: list[dict[str, Any]], notify: list[dict[str, Any]] | None = None, **top: Any) -> AlertConfig:
    top.setdefault("default_rules", False)  # the built-in AI rules have their own tests
    return parse_alert_config({"rules": rules, "notify": notify or [], "service": "svc", "environment": "test",
                               **top}, env={"ALERT_HMAC": "s3cret", "ALERT_TOKEN": "tok"})


def nearest_rank(values: list[float], p: int) -> float:
    s = sorted(values)
    return s[max(1, math.ceil(p / 100 * len(s))) - 1]


# ---- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, named", [
    ({"rulez": []}, "'rulez'"),
    ({"rules": [{"name": "a", "kind": "frequency", "threshold": 1, "windw": "1m"}]}, "'windw'"),
    ({"rules": [{"name": "a", "kind": "frequency", "threshold": 1, "filter": {"colour": "x"}}]}, "'colour'"),
    ({"rules": [{"name": "a", "kind": "frequency", "threshold": 1, "op": "=="}]}, ".op"),
    ({"rules": [{"name": "a", "kind": "gauge", "threshold": 1}]}, ".kind"),
    ({"rules": [{"name": "a", "kind": "frequency"}]}, ".threshold"),
    ({"rules": [{"name": "a", "kind": "threshold", "threshold": 1}]}, ".metric"),
    ({"rules": [{"name": "a", "metric": "m", "threshold": 1, "aggregation": "median"}]}, ".aggregation"),
    ({"rules": [{"name": "a", "metric": "m", "threshold": 1, "for": "soon"}]}, ".for"),
    ({"rules": [{"name": "a", "metric": "m", "threshold": 1, "severity": "fatal"}]}, ".severity"),
    ({"rules": [{"name": "a", "metric": "m", "threshold": 1}, {"name": "a", "metric": "m", "threshold": 2}]},
     "duplicate rule name 'a'"),
    ({"notify": [{"type": "webhook", "url": "http://x/", "secret": "inline"}]}, "'secret'"),
    ({"notify": [{"type": "pager", "url": "http://x/"}]}, ".type"),
    ({"notify": [{"type": "webhook", "url": "file:///etc/passwd"}]}, ".url"),
    ({"notify": [{"type": "webhook", "url": "http://x/", "secret_env": "NOT_SET_ANYWHERE"}]}, "NOT_SET_ANYWHERE"),
    ({"interval": 0}, ".interval"),
])
def test_bad_config_is_rejected_naming_the_key(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_alert_config(raw, "collector.yaml: alerts", env={})
    assert named in str(err.value)
    assert str(err.value).startswith("collector.yaml: alerts")


def test_example_file_has_the_designs_defaults() -> None:
    cfg = parse_alert_config(yaml.safe_load(EXAMPLE.read_text())["alerts"], env={})
    got = {r.name: (r.kind, r.op, r.threshold, r.severity, r.window_s) for r in cfg.rules}
    assert got == {
        "high_cpu": ("threshold", "<", 0.2, "warning", 300),          # busy > 80 % == idle < 20 %
        "memory_critical": ("threshold", ">", 0.95, "critical", 60),
        "error_rate": ("frequency", ">", 5, "critical", 60),
        "p95_latency": ("threshold", ">", 3000, "warning", 300),
        # 004's AI alerts, built in (default_rules), over GenAI calls whatever their category
        "AI success rate below 90%": ("success_rate", "<", 0.9, "warning", 3600),
        "AI P95 latency above 3000 ms": ("threshold", ">", 3000, "warning", 3600),
        "AI daily cost above $10": ("cost_budget", ">", 10, "warning", 86400),
    }
    assert cfg.interval_s == 15 and not cfg.notify and dict(cfg.metadata) == {"region": "us-east-1"}
    assert [r.source for r in cfg.rules if r.default] == ["calls", "calls", "calls"]


# ---- rule values --------------------------------------------------------------------------------

def test_each_rule_kind_computes_the_independently_computed_value(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.db")
    now = T0 + 3600 * NS
    rows: list[dict[str, Any]] = []
    idle = [0.4, 0.1, 0.15, 0.05]  # avg 0.175: busy 82.5 %
    for i, v in enumerate(idle):  # inside the 5m window, mode idle; "user" rows must be ignored
        rows.append(row(now - (i * 30 + 1) * NS, type="metric", category="system_performance",
                        name="system.cpu.utilization", metric_value=v, data='{"attributes": {"cpu.mode": "idle"}}'))
        rows.append(row(now - (i * 30 + 1) * NS, type="metric", category="system_performance",
                        name="system.cpu.utilization", metric_value=0.9, data='{"attributes": {"cpu.mode": "user"}}'))
    rows.append(row(now - 400 * NS, type="metric", name="system.cpu.utilization", metric_value=0.99,
                    data='{"attributes": {"cpu.mode": "idle"}}'))  # outside the window
    # A cumulative counter with a reset: 10, 40, 70, (reset) 5, 25 over the window.
    counter = [10.0, 40.0, 70.0, 5.0, 25.0]
    for i, v in enumerate(counter):
        rows.append(row(now - (250 - i * 50) * NS, type="metric", name="req.count", metric_value=v,
                        data='{"attributes": {"route": "/a"}}'))
    durations = [float(d) for d in (120, 3500, 80, 4100, 950, 300, 2999, 3001, 15, 7000, 640)]
    for i, d in enumerate(durations):
        failed = i % 4 == 0  # a failed GenAI call is filed under error_patterns, as the collector does
        rows.append(row(now - (i + 1) * 10 * NS, duration_ms=d, category="error_patterns" if failed else "ai_behavior",
                        level="error" if failed else "info", status="error" if failed else "ok",
                        model="gpt-4o", cost_usd=0.25 * (i + 1)))
    errors_in_minute = 7
    for i in range(errors_in_minute):
        rows.append(row(now - (i * 8 + 1) * NS, type="log", level="error", category="error_patterns"))
    rows.append(row(now - 61 * NS, type="log", level="error", category="error_patterns"))  # outside 1m
    rows.append(row(now - 2 * 86400 * NS, cost_usd=1000.0))  # outside 1d
    insert(db, rows)

    cfg = config([
        {"name": "cpu_avg", "metric": "system.cpu.utilization", "filter": {"attributes": {"cpu.mode": "idle"}},
         "aggregation": "avg", "window": "5m", "op": "<", "threshold": 0.2},
        {"name": "cpu_max", "metric": "system.cpu.utilization", "filter": {"attributes": {"cpu.mode": "idle"}},
         "aggregation": "max", "window": "5m", "threshold": 1},
        {"name": "cpu_min", "metric": "system.cpu.utilization", "aggregation": "min", "window": "5m", "threshold": 1},
        {"name": "req_rate", "metric": "req.count", "aggregation": "rate", "window": "5m", "threshold": 1},
        {"name": "p95", "source": "spans", "aggregation": "p95", "window": "5m", "threshold": 3000},
        {"name": "p50", "source": "spans", "aggregation": "p50", "window": "5m", "threshold": 3000},
        {"name": "errors", "kind": "frequency", "filter": {"level": ["error", "critical"]}, "window": "1m",
         "threshold": 5},
        {"name": "success", "kind": "success_rate", "source": "calls", "window": "15m", "threshold": 0.9},
        {"name": "cost", "kind": "cost_budget", "window": "1d", "threshold": 10},
        {"name": "nothing", "metric": "no.such.metric", "threshold": 1},
    ])
    conn = open_reader(db)
    try:
        got = {r.name: rule_value(conn, r, now) for r in cfg.rules}
    finally:
        conn.close()
    increase = (40 - 10) + (70 - 40) + 5 + (25 - 5)
    n_err = sum(1 for i in range(len(durations)) if i % 4 == 0)
    expected = {
        "cpu_avg": sum(idle) / len(idle), "cpu_max": max(idle), "cpu_min": min(idle),
        "req_rate": increase / 300, "p95": nearest_rank(durations, 95), "p50": nearest_rank(durations, 50),
        "errors": sum(1 for r in rows if r["level"] in ("error", "critical") and r["timestamp"] > now - 60 * NS),
        "success": (len(durations) - n_err) / len(durations),
        "cost": sum(0.25 * (i + 1) for i in range(len(durations))), "nothing": None,
    }
    assert got.keys() == expected.keys()
    for name, want in expected.items():
        assert got[name] == (None if want is None else pytest.approx(want)), name
    assert (nearest_rank(durations, 95), nearest_rank(durations, 50)) == (7000.0, 950.0)  # rank 11 and 6 of 11
    assert expected["errors"] == errors_in_minute + 2  # plus the error spans at -10 s and -50 s
    met = {r.name: r.met(got[r.name]) for r in cfg.rules}
    assert met["cpu_avg"] is True and met["p95"] is True and met["errors"] is True
    assert met["success"] is True and met["cost"] is True and met["nothing"] is False


# ---- lifecycle ----------------------------------------------------------------------------------

class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def at(self, seconds: float) -> int:
        self.ns = T0 + int(seconds * NS)
        return self.ns


def test_lifecycle_for_dedupe_resolve_cooldown_and_restart(tmp_path: Path, hook: Hook) -> None:
    db = make_db(tmp_path / "t.db")
    cfg = config([{"name": "errors", "kind": "frequency", "filter": {"level": "error"}, "window": "60s",
                   "op": ">", "threshold": 2, "for": "30s", "cooldown": "120s", "severity": "critical"}],
                 [{"type": "webhook", "url": hook.url(), "backoff": 0.01}])
    clock = Clock(T0)
    notifier = Notifier(cfg.notify)
    notifier.start()
    engine = AlertEngine(db, cfg, clock=clock, notifier=notifier)

    def step(seconds: float) -> tuple[str, str | None]:
        (res,) = engine.evaluate_once(clock.at(seconds))
        assert notifier.flush(10)
        return res.state, res.transition

    def errors_at(seconds: float, n: int = 3) -> None:
        insert(db, [row(T0 + int(seconds * NS), type="log", level="error") for _ in range(n)])

    assert step(0) == ("ok", None)
    errors_at(0)
    assert step(1) == ("pending", None)
    assert step(20) == ("pending", None)              # held 19 s < for 30 s
    assert hook.bodies() == []
    assert step(31) == ("firing", "fired")            # held 30 s
    assert step(40) == ("firing", None)               # still firing: no second notification
    assert step(50) == ("firing", None)
    assert [b["event_type"] for b in hook.bodies()] == ["alert.triggered"]
    assert step(61) == ("ok", "resolved")             # the errors at 0 s left the 60 s window
    assert [b["event_type"] for b in hook.bodies()] == ["alert.triggered", "alert.resolved"]

    for t in (70, 100, 130, 160):                     # the condition holds again from 71 s on
        errors_at(t)
    assert step(71) == ("pending", None)
    assert step(102) == ("pending", None)             # held 31 s, but within cooldown (61 + 120)
    assert step(150) == ("pending", None)
    assert len(hook.bodies()) == 2
    assert step(181) == ("firing", "fired")           # cooldown over, still true: fires once
    assert step(185) == ("firing", None)
    bodies = hook.bodies()
    assert [b["event_type"] for b in bodies] == ["alert.triggered", "alert.resolved", "alert.triggered"]
    assert bodies[0]["current_value"] == 3 and bodies[2]["current_value"] == 6
    assert bodies[0]["severity"] == "critical" and bodies[0]["threshold"] == 2

    assert engine.shutdown(5) and engine.shutdown(5)  # idempotent
    # A restarted engine keeps the episode: no new notification while it is still firing.
    engine2 = AlertEngine(db, cfg, clock=clock, notifier=notifier)
    (res,) = engine2.evaluate_once(clock.at(190))
    assert (res.state, res.transition) == ("firing", None)
    assert notifier.flush(10) and len(hook.bodies()) == 3
    engine2.shutdown(5)
    notifier.shutdown(5)

    alerts = list_alerts(state_path(db, cfg))
    assert [(a["rule"], a["state"], a["notified"]) for a in alerts] == [("errors", "firing", 1),
                                                                         ("errors", "resolved", 2)]
    assert alerts[1]["fired"] == "2026-01-01T00:00:31Z" and alerts[1]["resolved"] == "2026-01-01T00:01:01Z"
    assert alerts[0]["fired"] == "2026-01-01T00:03:01Z"
    assert [a["id"] for a in list_alerts(state_path(db, cfg), "resolved")] == [alerts[1]["id"]]
    st = engine.stats()
    assert st["fired"] == 2 and st["resolved"] == 1 and st["notify"]["sent"] == 3


# ---- notifications ------------------------------------------------------------------------------

def test_webhook_slack_and_discord_formats_with_bearer_and_hmac(tmp_path: Path, hook: Hook) -> None:
    db = make_db(tmp_path / "t.db")
    now = T0 + 100 * NS
    insert(db, [row(now - i * NS, type="log", level="error") for i in range(25)])
    cfg = config([{"name": "error_rate", "kind": "frequency", "filter": {"level": "error"}, "window": "1m",
                   "threshold": 5, "severity": "critical", "message": "Error rate exceeded"}],
                 [{"type": "webhook", "url": hook.url("/generic"), "secret_env": "ALERT_HMAC",
                   "bearer_env": "ALERT_TOKEN", "timeout": 5},
                  {"type": "slack", "url": hook.url("/slack")},
                  {"type": "discord", "url": hook.url("/discord")}],
                 metadata={"region": "us-east-1"})  # 003's payload: region in metadata
    engine = AlertEngine(db, cfg, clock=lambda: now)
    engine.start()  # its own notifier and thread; the first round runs at once
    wait_for(lambda: len(hook.requests) == 3, what="three deliveries")
    engine.shutdown(5)

    generic = hook.bodies("/generic")[0]
    assert generic == {
        "event_type": "alert.triggered", "severity": "critical", "timestamp": "2026-01-01T00:01:40Z",
        "metric": "error_rate", "current_value": 25.0, "threshold": 5.0, "rule": "error_rate", "op": ">",
        "message": "Error rate exceeded = 25 (threshold > 5, window 60s)", "rule_id": "error_rate",
        "metadata": {"service": "svc", "environment": "test", "region": "us-east-1"},
    }
    (path, headers, raw) = next(r for r in hook.requests if r[0] == "/generic")
    assert headers["authorization"] == "Bearer tok"
    assert headers["content-type"] == "application/json"
    want = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-signature-256"], want)
    slack_headers = next(r[1] for r in hook.requests if r[0] == "/slack")
    assert "authorization" not in slack_headers and "x-signature-256" not in slack_headers

    slack = hook.bodies("/slack")[0]
    assert slack["text"].endswith("CRITICAL ALERT: error_rate")
    assert slack["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": (
        "*Error rate exceeded = 25 (threshold > 5, window 60s)*\nCurrent: 25 | Threshold: > 5")}}
    fields = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert "*Service:*\nsvc" in fields and "*Time:*\n2026-01-01T00:01:40Z" in fields

    discord = hook.bodies("/discord")[0]
    assert discord["content"].endswith("**CRITICAL ALERT: error_rate**")
    (embed,) = discord["embeds"]
    assert embed["color"] == 0xFF0000 and embed["description"] == "Current: 25 | Threshold: > 5"
    assert {"name": "Service", "value": "svc", "inline": True} in embed["fields"]
    assert {"name": "Time", "value": "2026-01-01T00:01:40Z", "inline": True} in embed["fields"]


def _event(i: int = 0) -> AlertEvent:
    return AlertEvent("alert.triggered", f"r{i}", "warning", T0, "m", 1.0, 0.5, ">", "msg")


def test_retries_on_5xx_with_backoff_but_not_on_4xx(hook: Hook) -> None:
    hook.codes = [500, 503]
    n = Notifier([NotifyTarget("webhook", hook.url(), retries=3, backoff=0.01)], rand=lambda: 0.5)
    n.start()
    assert n.submit(_event())
    assert n.flush(10)
    assert len(hook.requests) == 3
    assert {k: n.stats()[k] for k in ("sent", "failed", "retries")} == {"sent": 1, "failed": 0, "retries": 2}
    hook.codes = [400]
    assert n.submit(_event(1)) and n.flush(10)
    assert len(hook.requests) == 4  # a 4xx is not retried
    hook.codes = [502, 502, 502, 502]
    assert n.submit(_event(2)) and n.flush(10)
    assert len(hook.requests) == 8  # 1 + 3 retries, then given up
    assert {k: n.stats()[k] for k in ("sent", "failed", "retries")} == {"sent": 1, "failed": 2, "retries": 5}
    assert n.shutdown(5) and n.shutdown(5)


def test_hanging_endpoint_never_slows_evaluation_or_ingest(tmp_path: Path, hook: Hook) -> None:
    from otel_telemetry.store.writer import StoreWriter

    db = make_db(tmp_path / "t.db")
    # One error every 60 s; a 30 s window and a clock that advances 30 s per round make the
    # condition alternate, so every round fires or resolves and queues a notification.
    insert(db, [row(T0 + k * 60 * NS, type="log", level="error") for k in range(1, 400)])
    ticks = itertools.count(1)
    cfg = config([{"name": "flap", "kind": "frequency", "filter": {"level": "error"}, "window": "30s",
                   "threshold": 0}],
                 [{"type": "webhook", "url": hook.url(), "timeout": 60, "retries": 0, "queue_size": 2}],
                 interval=0.001)
    hook.hang.set()
    engine = AlertEngine(db, cfg, clock=lambda: T0 + next(ticks) * 30 * NS)
    writer = StoreWriter(db, flush_interval=0.01)
    writer.start()
    try:
        engine.start()
        wait_for(lambda: len(hook.requests) == 1, what="the first delivery to hang")
        for i in range(20):  # ingest goes on while the notifier is stuck
            batch = WriteBatch(rows=[tuple(row(T0 - i * NS, level="info").get(c) for c in schema.COLUMNS)])
            assert writer.submit(batch, timeout=10)
        assert writer.flush(30)
        wait_for(lambda: engine.stats()["rounds"] >= 50, what="50 evaluation rounds")
        st = engine.stats()
        # Rounds and transitions kept going while the one delivery is stuck and the queue is full.
        assert len(hook.requests) == 1 and not hook.release.is_set()
        assert st["fired"] + st["resolved"] >= 49
        assert st["notify"]["queued"] == 2
        # Transitions minus at most one round not yet submitted, one in flight and two queued.
        assert st["notify"]["dropped"] >= st["fired"] + st["resolved"] - 4
        assert writer.stats()["stored"] == 20
    finally:
        hook.release.set()
        assert engine.shutdown(10)
        assert engine.shutdown(10)
        writer.shutdown(10)
    st = engine.stats()
    assert st["notify_dropped"] == st["notify"]["dropped"] > 0


# ---- CLI ----------------------------------------------------------------------------------------

def test_cli_alerts_list_and_test(tmp_path: Path, hook: Hook) -> None:
    db = make_db(tmp_path / "t.db")
    now_rows = [row(T0 + i * NS, type="log", level="error") for i in range(3)]
    insert(db, now_rows)
    cfg = config([{"name": "errors", "kind": "frequency", "filter": {"level": "error"}, "window": "1m",
                   "threshold": 2}])
    engine = AlertEngine(db, cfg)
    engine.evaluate_once(T0 + 10 * NS)
    engine.shutdown(5)
    runner = CliRunner()

    res = runner.invoke(main, ["alerts", "list", "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.output)
    assert item["rule"] == "errors" and item["state"] == "firing" and item["value"] == 3
    res = runner.invoke(main, ["alerts", "list", "--db", db, "--state", "resolved"])
    assert res.exit_code == 0 and "no matching alerts" in res.output
    res = runner.invoke(main, ["alerts", "list", "--db", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no alerts database" in res.output

    # alerts test: evaluated now, so give it fresh rows.
    import time
    insert(db, [row(time.time_ns() - i * NS, type="log", level="error") for i in range(4)])
    rules = tmp_path / "alerts.yaml"
    rules.write_text(yaml.safe_dump({"alerts": {
        "rules": [{"name": "errors", "kind": "frequency", "filter": {"level": "error"}, "window": "1h",
                   "threshold": 3},
                  {"name": "cost", "kind": "cost_budget", "threshold": 10}],
        "notify": [{"type": "webhook", "url": hook.url("/test")}]}}))
    res = runner.invoke(main, ["alerts", "test", "--config", str(rules), "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = {r["rule"]: r for r in json.loads(res.output)}
    assert out["errors"]["value"] == 4 and out["errors"]["would_fire"] == "yes"
    assert out["cost"]["value"] == 0 and out["cost"]["would_fire"] == "no"
    assert hook.requests == []  # nothing sent without --notify
    res = runner.invoke(main, ["alerts", "test", "--config", str(rules), "--db", db, "--notify"])
    assert res.exit_code == 0, res.output
    assert "sent 1" in res.output
    (body,) = hook.bodies("/test")
    assert body["rule"] == "errors" and body["message"].startswith("[test]")

    rules.write_text("alerts:\n  rules:\n    - {name: x, kind: frequency, threshold: 1, windw: 1m}\n")
    res = runner.invoke(main, ["alerts", "test", "--config", str(rules), "--db", db])
    assert res.exit_code == 2 and "'windw'" in res.output
    for args in (["alerts"], ["alerts", "list"], ["alerts", "test"]):
        res = runner.invoke(main, [*args, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output
