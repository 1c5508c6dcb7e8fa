"""Retention by record type as well as category (issue 17 items 6 and 9), in a real collector process.

001 "Data Retention": events 90 days, metrics 180 days, traces 30 days (``cleanup_old_telemetry_data(
events_retention_days=90, metrics_retention_days=180, traces_retention_days=30)``), plus one
category × type pair. Records of known ages arrive over OTLP/HTTP; the collector's own retention
purges exactly the expired ones, every record is accounted for (stored + purged == sent), and 002's
CLI spelling ``retention --set --category ai_behavior --days 60`` changes what the collector keeps.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from conftest import CollectorProc, wait_for

from otel_telemetry.cli.commands import main

DAY_NS = 86_400 * 10**9
NOW = time.time_ns()


def _attrs(**kw: str) -> list[dict[str, Any]]:
    return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in kw.items()]


def _resource() -> dict[str, Any]:
    return {"attributes": _attrs(service__name="fernando")}


def _span(i: int, age_days: float, **attrs: str) -> dict[str, Any]:
    start = NOW - int(age_days * DAY_NS)
    return {"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"op{i}", "kind": 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 10**6), "attributes": _attrs(**attrs)}


def _post(port: int, path: str, body: dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()


def _kept(c: CollectorProc) -> set[str]:
    return {f"{t}:{cat}:{age}" for t, cat, age in c.rows(
        "SELECT type, category, CAST(round((? - timestamp) / 86400e9) AS INTEGER) FROM records", (NOW,))}


def _purged(c: CollectorProc) -> int:
    def find(obj: Any) -> int | None:
        if isinstance(obj, dict):
            if isinstance(obj.get("purged"), int):
                return obj["purged"]
            for v in obj.values():
                if (n := find(v)) is not None:
                    return n
        return None
    return find(c.status()) or 0


def test_design_retention_by_type_in_a_real_collector(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    c.config.write_text(yaml.safe_dump({
        "store": {"flush_interval": 0.05},
        "retention": {"interval": 0.2, "days": {"event": 90, "metric": 180, "span": 30, "ai_research.event": 400}},
        "alerts": {"default_rules": False}}))
    c.start()
    try:
        wait_for(lambda: "otlp_http" in c.status(), what="the OTLP port in the status row")
        port = int(c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])
        event = {"telemetry__event": "user_login", "telemetry__data": '{"method": "email", "success": true}'}
        spans = [
            _span(0, 20), _span(1, 40),  # plain spans (component_interactions): span 30 days
            _span(2, 40, telemetry__category="ai_research"),  # the type beats the category's 365 days
            _span(3, 60, telemetry__category="user_interaction", **event),  # event 90 days: kept
            _span(4, 100, telemetry__category="user_interaction", **event),  # expired
            _span(5, 300, telemetry__category="ai_research", **event),  # ai_research.event 400: kept
            _span(6, 500, telemetry__category="ai_research", **event),  # expired
        ]
        _post(port, "/v1/traces", {"resourceSpans": [{"resource": _resource(),
                                                      "scopeSpans": [{"scope": {"name": "api"}, "spans": spans}]}]})
        points = [{"timeUnixNano": str(NOW - age * DAY_NS), "asDouble": 85.5} for age in (100, 200)]
        metric = {"name": "cpu_usage", "unit": "%", "gauge": {"dataPoints": points}}  # 001's SystemMetric
        _post(port, "/v1/metrics", {"resourceMetrics": [{"resource": _resource(), "scopeMetrics": [{
            "scope": {"name": "api"}, "metrics": [metric]}]}]})
        logs = [{"timeUnixNano": str(NOW - age * DAY_NS), "severityNumber": 9, "body": {"stringValue": f"log {age}"},
                 "attributes": _attrs(**({"telemetry__category": "ai_behavior"} if age == 75 else {}))}
                for age in (20, 40, 75)]  # no log type setting: the category decides (30; ai_behavior 90)
        _post(port, "/v1/logs", {"resourceLogs": [{"resource": _resource(),
                                                   "scopeLogs": [{"scope": {"name": "api"}, "logRecords": logs}]}]})
        sent = len(spans) + len(points) + len(logs)
        expected = {"span:component_interactions:20", "event:user_interaction:60", "event:ai_research:300",
                    "metric:system_performance:100", "log:component_interactions:20", "log:ai_behavior:75"}
        wait_for(lambda: _kept(c) == expected, what="retention by type")
        wait_for(lambda: len(_kept(c)) + _purged(c) == sent, what="stored + purged == sent")

        runner = CliRunner()
        shown = runner.invoke(main, ["retention", "show", "--db", c.db, "--config", str(c.config), "--format", "json"])
        assert shown.exit_code == 0, shown.output
        cells = {(r["category"], r["type"]): r for r in json.loads(shown.output)}
        assert len(cells) == 6 * 4
        assert (cells[("ai_research", "span")]["days"], cells[("ai_research", "span")]["key"]) == (30, "span")
        assert (cells[("ai_research", "event")]["days"], cells[("ai_research", "event")]["key"]) == \
            (400, "ai_research.event")
        assert (cells[("system_performance", "metric")]["days"], cells[("system_performance", "log")]["days"]) == \
            (180, 30)
        assert cells[("ai_behavior", "log")] == {"category": "ai_behavior", "type": "log", "days": 90,
                                                 "key": "ai_behavior", "source": "default", "expired": 0}

        # 002's spelling: the collector applies the override at its next purge.
        alias = runner.invoke(main, ["retention", "--set", "--category", "ai_behavior", "--days", "60",
                                     "--db", c.db])
        assert alias.exit_code == 0 and "ai_behavior: keep 60 days" in alias.output, alias.output
        wait_for(lambda: "log:ai_behavior:75" not in _kept(c), what="the override applied")
        wait_for(lambda: len(_kept(c)) + _purged(c) == sent, what="stored + purged == sent (status row)")
        shown = runner.invoke(main, ["retention", "show", "--db", c.db, "--config", str(c.config), "--format", "json"])
        cells = {(r["category"], r["type"]): r for r in json.loads(shown.output)}
        assert (cells[("ai_behavior", "log")]["days"], cells[("ai_behavior", "log")]["source"]) == (60, "override")
        assert cells[("ai_behavior", "span")]["days"] == 30  # the type setting is more specific than the category
        bad = runner.invoke(main, ["retention", "--set", "--category", "ai_behavior", "--db", c.db])
        assert bad.exit_code == 2 and "--days" in bad.output
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]
