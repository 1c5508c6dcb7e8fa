"""Default AI alerts (issue 17 items 2 and 8) in a real collector process, fed by a separate app
process that uses 004's decorator integration (``@traced(agent_name=..., event_type="model_call",
cost_calculator=...)``).

004 "Alert Thresholds": success rate < 90 %, P95 latency > 3000 ms, daily cost > $10. They are on
without configuration, count failed GenAI calls (filed under error_patterns), stay quiet on a
quiet system, deliver to no channel until one is set, show in ``alerts list``, ``stats`` and the
dashboard (whose AI panel counts the failed calls too), and
``default_rules: false`` switches them off.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import CollectorProc, wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import Dashboard

APP = r"""
import sys
import otel_telemetry
from otel_telemetry import traced

endpoint, calls, failing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tel = otel_telemetry.configure("dev-system", endpoint=endpoint, join_timeout=10)

@traced(agent_name="persona_runtime", event_type="model_call", model="gpt-4o", provider="openai",
        cost_calculator=lambda result: 0.4)
def generate_content(prompt: str, fail: bool) -> str:
    if fail:
        raise TimeoutError("model timed out")
    return "ok"

for i in range(calls):
    try:
        generate_content(f"prompt {i}", i < failing)
    except TimeoutError:
        pass
print("ok" if tel.shutdown(10) else "shutdown timed out")
"""

DEFAULT_IDS = {"default_ai_success_rate", "default_ai_p95_latency", "default_ai_daily_cost"}


def _app(c: CollectorProc, calls: int, failing: int) -> None:
    out = subprocess.run([sys.executable, "-c", APP, c.endpoint, str(calls), str(failing)], capture_output=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == b"ok", out.stderr.decode()[-2000:]


def _cli(c: CollectorProc, *args: str) -> Any:
    res = CliRunner().invoke(main, [*args, "--db", c.db, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _dash(dash: Dashboard, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {dash.token}"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        return json.loads(body)
    finally:
        conn.close()


def _rounds(c: CollectorProc) -> int:
    return int(c.status().get("alerts", {}).get("rounds", 0))


def _two_more_rounds(c: CollectorProc) -> None:
    """Wait until the engine has evaluated twice more (so at least once over what is stored now)."""
    r0 = _rounds(c)
    wait_for(lambda: _rounds(c) >= r0 + 2, what="two alert rounds")


def test_default_ai_alerts_on_without_config_quiet_then_firing_then_off(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    # No rules, no targets: only a short interval and the status row often, so the test need not wait 15 s.
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
                                        "alerts": {"interval": 0.1}}))
    c.start()
    try:
        wait_for(lambda: Path(f"{c.db}.alerts.db").exists() and _rounds(c) > 0, what="the alert engine")
        rules = {r["id"]: r for r in _cli(c, "alerts", "list", "--state", "rules")}
        assert set(rules) == DEFAULT_IDS and all(r["is_default"] for r in rules.values())
        assert (rules["default_ai_success_rate"]["op"], rules["default_ai_success_rate"]["threshold"]) == ("<", 0.9)
        assert rules["default_ai_p95_latency"]["threshold"] == 3000
        assert rules["default_ai_daily_cost"]["threshold"] == 10

        # A quiet system: 5 calls, one failed (80 %), yet fewer than min_samples: nothing fires.
        _app(c, 5, 1)
        wait_for(lambda: c.rows("SELECT count(*) FROM records WHERE model = 'gpt-4o'")[0][0] == 5, what="5 calls")
        _two_more_rounds(c)
        assert _cli(c, "alerts", "list", "--state", "firing") == []

        # 40 more calls, 8 failed: 47 - 9 = 38 succeeded of 45 (84 %) < 90 %; 36 priced × $0.40 = $14.40 > $10.
        _app(c, 40, 8)
        wait_for(lambda: c.rows("SELECT count(*) FROM records WHERE model = 'gpt-4o'")[0][0] == 45, what="45 calls")
        # The failed calls are filed under error_patterns, and still count.
        cats = dict(c.rows("SELECT category, count(*) FROM records WHERE model = 'gpt-4o' GROUP BY category"))
        assert cats == {"ai_behavior": 36, "error_patterns": 9}
        wait_for(lambda: {a["rule"] for a in _cli(c, "alerts", "list", "--state", "firing")}
                 >= {"AI success rate below 90%", "AI daily cost above $10"}, what="the default alerts firing")
        _two_more_rounds(c)
        firing = {a["rule"]: a for a in _cli(c, "alerts", "list", "--state", "firing")}
        assert set(firing) == {"AI success rate below 90%", "AI daily cost above $10"}  # p95: fast calls
        assert abs(firing["AI success rate below 90%"]["value"] - 36 / 45) < 1e-9
        assert abs(firing["AI daily cost above $10"]["value"] - 36 * 0.4) < 1e-9
        # stats: the same calls (failed ones included, even with --category ai_behavior) and the alerts.
        for extra in ([], ["--category", "ai_behavior"]):
            report = _cli(c, "stats", "--period", "1d", *extra)
            assert (report["calls"]["total"], report["calls"]["failed"]) == (45, 9), extra
            assert {a["rule"] for a in report["alerts"]["firing"]} == set(firing)
            assert {r["id"] for r in report["alerts"]["rules"]} == DEFAULT_IDS
        # The dashboard: the same calls, the firing default alerts and the rules.
        dash = Dashboard(c.db, "test-token-0123456789abcdef", "127.0.0.1", 0)
        dash.start()
        try:
            ai = _dash(dash, "/api/ai?last=1d")["report"]
            assert (ai["calls"]["total"], ai["calls"]["failed"]) == (45, 9)
            assert abs(ai["calls"]["success_rate"] - 36 / 45) < 1e-9
            assert {a["rule"] for a in _dash(dash, "/api/alerts?state=firing")["alerts"]} == set(firing)
            assert {a["id"] for a in _dash(dash, "/api/alerts?state=rules")["alerts"]} == DEFAULT_IDS
        finally:
            dash.shutdown()
        # No channel configured: nothing was sent anywhere.
        assert c.status()["alerts"]["notify"]["submitted"] == 0
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]

    # Switched off: no default rules any more, and their open episodes are closed.
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
                                        "alerts": {"interval": 0.1, "default_rules": False}}))
    c.start()
    try:
        wait_for(lambda: _rounds(c) > 0, what="the alert engine")
        assert _cli(c, "alerts", "list", "--state", "rules") == []
        assert _cli(c, "alerts", "list", "--state", "firing") == []
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]


def test_call_window_gives_the_sql_values_while_rows_arrive(tmp_path: Path) -> None:
    """The engine's incremental call window (the default rules) agrees with the rules' SQL, exactly."""
    import random

    from otel_telemetry.collector.alerts.callwindow import CallWindow
    from otel_telemetry.collector.alerts.config import parse_alert_config
    from otel_telemetry.collector.alerts.rules import rule_value
    from otel_telemetry.store import writer as store
    from otel_telemetry.store.schema import COLUMNS

    ns, now = 1_000_000_000, 1_800_000_000 * 1_000_000_000
    rnd = random.Random(17)
    conn = store.open_writer(str(tmp_path / "w.db"))
    uid = iter(range(1, 10**9))

    def add(n: int, at: int) -> None:
        rows = []
        for _ in range(n):
            v: dict[str, Any] = dict.fromkeys(COLUMNS)
            failed = rnd.random() < 0.15
            v.update(uid=next(uid).to_bytes(16, "big"), timestamp=at - rnd.randrange(0, 2 * 86_400 * ns),
                     type=rnd.choice(["span", "span", "span", "log"]), category="error_patterns" if failed else
                     "ai_behavior", level="error" if failed else "info", data="{}", metadata="{}",
                     event=rnd.choice(["model_call", "chat", "work"]), model=rnd.choice([None, "gpt-4o"]),
                     duration_ms=rnd.choice([None, rnd.uniform(1, 6000)]), cost_usd=rnd.choice([None, 0.01, 0.3]))
            rows.append(tuple(v[c] for c in COLUMNS))
        with conn:
            conn.executemany(f"INSERT INTO records({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             rows)

    cfg = parse_alert_config({"rules": [
        {"name": "avg", "kind": "threshold", "source": "calls", "aggregation": "avg", "threshold": 1, "window": "2h"},
        {"name": "max", "kind": "threshold", "source": "calls", "aggregation": "max", "threshold": 1, "window": "30m"},
        {"name": "p99", "kind": "threshold", "source": "calls", "aggregation": "p99", "threshold": 1, "window": "1h",
         "min_samples": 5}]})
    window = CallWindow(max(r.window_s for r in cfg.rules))
    add(3000, now)
    for step in range(4):
        window.update(conn, now)
        for r in cfg.rules:
            want, got = rule_value(conn, r, now), rule_value(conn, r, now, window)
            assert got == (None if want is None else pytest.approx(want)), (step, r.name, got, want)
        now += 7 * 60 * ns  # time passes, more rows arrive (some of them late, some outside the window)
        add(500, now)
    assert sum(len(m.rows) for m in window._minutes.values()) > 0
    conn.close()
