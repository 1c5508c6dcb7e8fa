"""Seed data for the dashboard tests, written through the real ``StoreWriter`` (rollups, status row)
and the real ``AlertEngine`` (alert state file), plus helpers to run the dashboard on a free port."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from otel_telemetry.collector.alerts.config import parse_alert_config
from otel_telemetry.collector.alerts.engine import AlertEngine
from otel_telemetry.store import schema
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 1_000_000_000
MS = 1_000_000
XSS = "<img src=x onerror=alert(1)>"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SESSION_ID = "sess-health-1"
# The known trace: (span_id, parent, name, component, start offset ms, duration ms, status)
TRACE_SPANS = (
    ("a000000000000001", None, "POST /chat", "http", 0, 900.0, "ok"),
    ("a000000000000002", "a000000000000001", "plan", "agent", 10, 600.0, "ok"),
    ("a000000000000003", "a000000000000002", "chat gpt-4o", "llm", 20, 500.0, "ok"),
    ("a000000000000004", "a000000000000002", "search tool", "tools", 530, 60.0, "error"),
    ("a000000000000005", "a000000000000001", "SELECT history", "db", 700, 120.0, "ok"),
)
HEALTH = {"latency_ms": 182.5, "frontend_fps": 57.0, "network_status": "degraded",
          "token_usage": {"input": 1200, "output": 300, "total": 1500}, "model_latency_ms": 950.0,
          "errors": [{"code": "E42", "message": "upstream timeout", "stack": "none"}],
          "warnings": [{"code": "W1", "message": "slow frame"}], "queue_depth": 3, "is_rate_limited": True,
          "app_version": "1.4.2", "env": "prototype", "event_name": "moderation_cycle",
          "event_context": {"step": "moderation", "retries": 2, "flags": ["slow", XSS]},
          "notes": "seen after deploy 1.4.2\n" + XSS, "version": 3}


@dataclass
class Seed:
    now_ns: int
    rows: int = 0
    trace_id: str = TRACE_ID
    session_id: str = SESSION_ID
    models: tuple[str, ...] = ("gpt-4o", "claude-sonnet-4")
    agents: tuple[str, ...] = ("planner", "coder", "reviewer")
    error_components: dict[str, int] = field(default_factory=dict)


def _row(**kw: Any) -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(level="info", metadata=orjson.dumps({"resource": {"service.name": kw.get("service") or "svc"},
                                                  "scope": {"name": "seed", "version": None}}).decode())
    v.update(kw)
    if isinstance(v["data"], dict):
        v["data"] = orjson.dumps(v["data"]).decode()
    v["uid"] = v["uid"] or random.randbytes(24)
    return tuple(v[c] for c in schema.COLUMNS)


def make_rows(now: int, rnd: random.Random, seed: Seed) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    # GenAI calls over the last 5 hours.
    for i in range(120):
        ts = now - (i * 150 + 30) * NS
        model, agent = seed.models[i % 2], seed.agents[i % 3]
        failed = i % 10 == 0
        inp, out = 500 + i * 7, 100 + i * 3
        attrs = {"gen_ai.request.model": model, "gen_ai.agent.name": agent, "gen_ai.operation.name": "chat",
                 "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out}
        if failed:
            attrs["error.type"] = "RateLimitError" if i % 20 == 0 else "TimeoutError"
        rows.append(_row(timestamp=ts, type="span", category="ai_behavior", component="llm", event="model_call",
                         name=f"chat {model}", service="agent-runtime", kind="client",
                         trace_id=rnd.randbytes(16).hex(), span_id=rnd.randbytes(8).hex(),
                         duration_ms=200.0 + (i * 37) % 900, status="error" if failed else "ok",
                         level="error" if failed else "info", model=model, provider="openai", agent=agent,
                         input_tokens=inp, output_tokens=out, total_tokens=inp + out,
                         cost_usd=(inp * 2.5 + out * 10) / 1e6, data={"attributes": attrs}))
    # Error patterns per component, spread over hours.
    for i in range(60):
        comp = ("db", "api", "worker")[i % 3 if i < 45 else 0]
        seed.error_components[comp] = seed.error_components.get(comp, 0) + 1
        ts = now - (i * 280 + 45) * NS
        rows.append(_row(timestamp=ts, type="span", category="error_patterns", component=comp, event="work",
                         name=f"{comp} failure", service="api", kind="internal", status="error", level="error",
                         status_message=f"{comp} broke", trace_id=rnd.randbytes(16).hex(),
                         span_id=rnd.randbytes(8).hex(), duration_ms=12.0,
                         data={"attributes": {}, "events": [{"name": "exception", "time_unix_nano": ts,
                                                             "attributes": {"exception.type": "ValueError",
                                                                            "exception.message": f"bad {i}"}}]}))
    # Ordinary spans and logs.
    for i in range(200):
        ts = now - (i * 90 + 20) * NS
        rows.append(_row(timestamp=ts, type="span", category="user_interaction", component="http",
                         event=f"GET /items/{i % 5}", name=f"GET /items/{i % 5}", service=("web", "api")[i % 2],
                         kind="server", status="unset", duration_ms=5.0 + i % 50, trace_id=rnd.randbytes(16).hex(),
                         span_id=rnd.randbytes(8).hex(), data={"attributes": {"http.route": "/items"}}))
        rows.append(_row(timestamp=ts + 1000, type="log", category="component_interactions", component="log",
                         event="log", name="log", level=("info", "warning")[i % 2], service="api",
                         data={"body": f"request {i} done", "attributes": {}}))
    # Host metrics every minute for 3 hours.
    for m in range(180):
        ts = now - (m * 60 + 5) * NS
        for name, attrs, value in (
            ("system.cpu.utilization", {"cpu.mode": "idle"}, 0.6 + 0.2 * ((m % 10) / 10)),
            ("system.cpu.utilization", {"cpu.mode": "user"}, 0.3),
            ("system.memory.utilization", {"system.memory.state": "used"}, 0.42),
            ("system.disk.io", {"system.device": "sda", "disk.io.direction": "read"}, 1e9 - m * 1_000_000),
            ("system.network.io", {"network.interface.name": "eth0", "network.io.direction": "receive"},
             5e8 - m * 600_000),
        ):
            rows.append(_row(timestamp=ts, type="metric", category="system_performance", component="host",
                             event=name, name=name, service="host", metric_type="gauge", metric_value=value,
                             data={"attributes": attrs}))
    # The known trace, with a hostile attribute value, an event and a link.
    t0 = now - 600 * NS
    for sid, parent, name, comp, off, dur, status in TRACE_SPANS:
        attrs: dict[str, Any] = {"step": name}
        if sid == "a000000000000003":
            attrs["note"] = XSS
        data: dict[str, Any] = {"attributes": attrs}
        if sid == "a000000000000004":
            data["events"] = [{"name": "exception", "time_unix_nano": t0 + off * MS,
                               "attributes": {"exception.type": "ToolError", "exception.message": XSS}}]
            data["links"] = [{"trace_id": "f" * 32, "span_id": "e" * 16, "attributes": {"why": "retry"}}]
        rows.append(_row(uid=bytes.fromhex(TRACE_ID + sid), timestamp=t0 + off * MS, type="span",
                         category="error_patterns" if status == "error" else "component_interactions",
                         component=comp, event=name, name=name, service="chat-api", kind="internal",
                         trace_id=TRACE_ID, span_id=sid, parent_span_id=parent, duration_ms=dur, status=status,
                         level="error" if status == "error" else "info", session_id=SESSION_ID, data=data))
    # A session with health records (record_telemetry events) and other records.
    for k in range(4):
        ts = now - (400 - k * 60) * NS
        health = {**HEALTH, "latency_ms": HEALTH["latency_ms"] + k, "frontend_fps": HEALTH["frontend_fps"] - k}
        rows.append(_row(timestamp=ts, type="event", category="system_performance", subcategory="session_health",
                         component="frontend", event="session_health", name="session_health", level="info",
                         session_id=SESSION_ID, trace_id=None, data=health))
    rows.append(_row(timestamp=now - 300 * NS, type="log", category="error_patterns", component="frontend",
                     event="log", name="log", level="warning", session_id=SESSION_ID,
                     data={"body": "frame budget exceeded", "attributes": {}}))
    seed.error_components["frontend"] = seed.error_components.get("frontend", 0) + 1
    seed.error_components["tools"] = seed.error_components.get("tools", 0) + 1
    return rows


def seed_db(path: str, now_ns: int | None = None, alerts: bool = True) -> Seed:
    """Write the seed rows through a real StoreWriter (which also writes the status row)."""
    now = time.time_ns() if now_ns is None else now_ns
    seed = Seed(now_ns=now)
    rows = make_rows(now, random.Random(5), seed)
    w = StoreWriter(path, batch_rows=500, flush_interval=0.02, status_interval=0.05)
    w.start()
    for k in range(0, len(rows), 500):
        assert w.submit(WriteBatch(rows[k:k + 500]), 30)
    assert w.flush(60)
    time.sleep(0.2)  # one more status row after the last commit
    assert w.shutdown(30)
    seed.rows = len(rows)
    if alerts:
        cfg = parse_alert_config({"rules": [
            {"name": "error_burst", "kind": "frequency", "filter": {"level": "error"}, "window": "1h",
             "threshold": 1, "severity": "critical", "message": "errors"},
            {"name": "never", "kind": "frequency", "filter": {"level": "critical"}, "window": "1h",
             "threshold": 1000, "severity": "info"}], "default_rules": False}, env={})
        engine = AlertEngine(path, cfg, clock=lambda: now)
        engine.evaluate_once(now)
        engine.shutdown(5)
    return seed
