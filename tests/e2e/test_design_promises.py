"""The original design documents' own examples (issue 17), run as their authors would: an app
process → ZeroMQ → a real collector process → SQLite, read back through the CLI where the
document uses it. No mocks.

- 002 (AICO): ``record_telemetry(...)`` without ``configure()``; the record with ``component``
  and ``metadata``; ``query --category=ai_behavior --component=emotion_engine --last=24h``.
- 004 (M1): ``child_function(_trace_id=trace_id)`` on a decorated function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from conftest import CollectorProc, wait_for


def _run_app(code: str, endpoint: str, **env: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=120,
                          env={**os.environ, "OTEL_TELEMETRY_ENDPOINT": endpoint,
                               "OTEL_TELEMETRY_JOIN_TIMEOUT": "10", **env})
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_telemetry", *args], capture_output=True, text=True,
                          timeout=60)


# 002 L195–210, verbatim apart from the import and the "..." placeholders.
AICO_CALL = """
record_telemetry(
    category="ai_behavior",
    subcategory="emotion_simulation",
    event="emotion_state_transition",
    level="info",
    data={
        "previous_state": {"joy": 0.3, "sadness": 0.1},
        "current_state": {"joy": 0.7, "sadness": 0.0},
        "trigger": "user_interaction",
        "appraisal_factors": {"novelty": 0.8},
    }
)
"""


def test_record_telemetry_without_configure_is_sent_through_a_default_transport(
        collector: CollectorProc) -> None:
    """Item 3: the document never calls configure(); the event must arrive, not vanish."""
    out = _run_app("""
        import json, logging
        logging.basicConfig(level=logging.INFO)
        from otel_telemetry import record_telemetry
        from otel_telemetry.sdk import configure as cfg
    """ + textwrap.indent(AICO_CALL, " " * 8) + """
        record_telemetry("not_a_category", "x", "bad", data={})  # counted, not silently lost
        tel = cfg._default
        assert cfg._current is None  # the default is not installed as "the configured one"
        print(json.dumps({"counters": tel.counters()}))
        # No flush, no shutdown: the app just exits, as the document's does; the SDK's exit hook
        # shuts the default provider down and that flushes the transport.
    """, collector.endpoint, OTEL_SERVICE_NAME="aico-backend")
    assert out["counters"]["emitted"] == 2 and out["counters"]["dropped"] == {"invalid_event": 1}
    wait_for(lambda: collector.counts_by_category().get("ai_behavior") == 1, what="the event stored")
    [(comp, data, service)] = collector.rows("SELECT component, data, service FROM records")
    assert json.loads(data)["trigger"] == "user_interaction"
    # No component given: the service name, which `query --component` finds.
    assert comp == service == "aico-backend"


def test_aico_record_component_metadata_and_the_documents_query(collector: CollectorProc) -> None:
    """Item 9: the AICO record's component and metadata, found by 002's own CLI line."""
    _run_app("""
        import json
        import otel_telemetry
        from otel_telemetry import record_telemetry
        tel = otel_telemetry.configure("aico", metrics=False, logs=False)
        record_telemetry(
            category="ai_behavior", subcategory="emotion_simulation", component="emotion_engine",
            event="emotion_state_transition", level="info", data={"trigger": "user_interaction"},
            metadata={"session_id": "session-123abc", "trace_id": "trace-456def", "span_id": "span-789ghi",
                      "user_mode": "developer", "deployment_type": "coupled", "version": "0.5.2"})
        record_telemetry("ai_behavior", "emotion_simulation", "other_component_event", component="memory")
        record_telemetry("ai_behavior", "emotion_simulation", "in_w3c_trace", component="emotion_engine",
                         metadata={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                   "span_id": "00f067aa0ba902b7"})
        print(json.dumps({"shutdown": tel.shutdown(10), "counters": tel.counters()}))
    """, collector.endpoint)
    wait_for(lambda: collector.counts_by_category().get("ai_behavior") == 3, what="3 events stored")
    res = _cli("query", "--db", collector.db, "--category=ai_behavior", "--component=emotion_engine",
               "--last=24h", "--format", "json", "--order", "asc")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert [r["event"] for r in found] == ["emotion_state_transition", "in_w3c_trace"]
    first = found[0]
    assert first["session_id"] == "session-123abc"
    assert first["metadata"]["record"] == {
        "session_id": "session-123abc", "trace_id": "trace-456def", "span_id": "span-789ghi",
        "user_mode": "developer", "deployment_type": "coupled", "version": "0.5.2"}
    # AICO's free-form trace id still groups: the same reference always maps to one trace.
    assert len(first["trace_id"]) == 32
    assert found[1]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found[1]["parent_span_id"] == "00f067aa0ba902b7"
    # The document's index list includes component.
    plan = collector.rows("EXPLAIN QUERY PLAN SELECT * FROM records WHERE component = ? AND timestamp > ?",
                          ("emotion_engine", 0))
    assert any("records_component" in str(row) for row in plan), plan


def test_m1_trace_id_keyword_propagates_and_never_reaches_the_function(collector: CollectorProc) -> None:
    """Item 4: 004's "Trace ID Propagation" example; child_function takes no arguments."""
    out = _run_app("""
        import asyncio, json
        import otel_telemetry
        from otel_telemetry import traced
        tel = otel_telemetry.configure("m1", metrics=False, logs=False)

        def parent_function():
            trace_id = "trace_1733560000"  # M1: f"trace_{int(time.time())}", fixed for the test
            child_function(_trace_id=trace_id)
            child_function(_trace_id=trace_id)

        @traced(agent_name="service")
        def child_function():
            pass  # Will inherit trace_id from kwargs

        @traced(agent_name="service")
        async def async_child():
            return 1

        parent_function()
        child_function(_trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
        asyncio.run(async_child(_trace_id="trace_1733560000"))
        print(json.dumps({"shutdown": tel.shutdown(10), "counters": tel.counters()}))
    """, collector.endpoint)
    assert out["shutdown"] and out["counters"]["dropped"] == {}
    wait_for(lambda: sum(collector.counts_by_category().values()) == 4, what="4 spans stored")
    rows = collector.rows("SELECT name, trace_id, status, data FROM records ORDER BY timestamp")
    assert all(status != "error" for _, _, status, _ in rows)  # no TypeError recorded
    m1 = [(name, tid, json.loads(data)["attributes"]) for name, tid, _, data in rows
          if json.loads(data)["attributes"].get("telemetry.trace_ref") == "trace_1733560000"]
    assert [name for name, _, _ in m1] == ["child_function", "child_function", "async_child"]
    assert len({tid for _, tid, _ in m1}) == 1  # one trace for one reference
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in {tid for _, tid, _, _ in rows}


def test_host_metrics_include_disk_usage_per_mount(collector: CollectorProc) -> None:
    """Item 11: 001's scheduled collection reads ``psutil.disk_usage('/')``; ours reports every
    mount under the OTel names, ``/`` always included."""
    import psutil

    out = _run_app("""
        import json
        import otel_telemetry
        tel = otel_telemetry.configure("fernando", host_metrics=True, logs=False, export_interval=3600)
        print(json.dumps({"shutdown": tel.shutdown(15), "counters": tel.counters()}))
    """, collector.endpoint)
    assert out["shutdown"] and out["counters"]["dropped"] == {}
    attr = "json_extract(data, '$.attributes.\"{}\"')"
    sql = (f"SELECT name, {attr.format('system.filesystem.state')}, metric_value, metric_unit, category "
           f"FROM records WHERE name LIKE 'system.filesystem.%' AND "
           f"{attr.format('system.filesystem.mountpoint')} = '/'")
    wait_for(lambda: len(collector.rows(sql)) == 5, what="filesystem metrics of / stored")
    got = {(name, state): (value, unit, cat) for name, state, value, unit, cat in collector.rows(sql)}
    disk = psutil.disk_usage("/")
    assert got[("system.filesystem.limit", None)] == (disk.total, "By", "system_performance")
    used, unit, _ = got[("system.filesystem.usage", "used")]
    assert unit == "By" and abs(used - disk.used) <= 0.05 * disk.total  # other writers on the disk
    free = got[("system.filesystem.usage", "free")][0]
    reserved = got[("system.filesystem.usage", "reserved")][0]
    assert used + free + reserved == disk.total
    assert 0 < got[("system.filesystem.utilization", None)][0] <= 1


# 000 (Hi Stranger) "Fields": one per-session health record, every field of the document.
HI_STRANGER = {
    "telemetry_id": "tel-0001", "session_id": "chat-42", "timestamp": "2026-12-07T10:00:00.000Z",
    "app_version": "2.3.1", "env": "staging", "latency_ms": 212.5, "frontend_fps": 58.0,
    "network_status": "online", "active_users_count": 17,
    "token_usage": {"input": 820, "output": 140, "total": 960}, "model_latency_ms": 1430.0,
    "errors": [{"code": "MOD_TIMEOUT", "message": "moderation timed out", "stack": "moderate()\n  call()"},
               {"code": "WS_DROP", "message": "socket dropped", "stack": ""}],
    "warnings": [{"code": "SLOW_FRAME", "message": "frame took 40 ms"}],
    "event_name": "moderation_cycle", "event_context": {"cycle": 7, "model": "omni-moderation"},
    "cpu_load_pct": 41.5, "memory_usage_mb": 512.0, "network_rtt_ms": 38.0, "uptime_seconds": 3600.0,
    "is_rate_limited": False, "queue_depth": 2, "notes": "after the 2.3.1 rollout", "version": 4,
}


def test_hi_stranger_session_view(collector: CollectorProc) -> None:
    """Item 10: the health record through a real collector, read back by the dashboard's API."""
    import http.client

    import orjson

    from otel_telemetry.dashboard.server import Dashboard

    _run_app(f"""
        import json
        import otel_telemetry
        tel = otel_telemetry.configure("hi-stranger", metrics=False, logs=False)
        record = {HI_STRANGER!r}
        with otel_telemetry.session(record["session_id"]):
            otel_telemetry.record_telemetry("system_performance", "session_health", "session_health",
                                            data=record)
            otel_telemetry.record_telemetry("error_patterns", "moderation", "moderation_failed", level="error",
                                            data={{"reason": "timeout"}})
        print(json.dumps({{"shutdown": tel.shutdown(10)}}))
    """, collector.endpoint)
    wait_for(lambda: collector.rows("SELECT count(*) FROM records WHERE session_id = 'chat-42'")[0][0] == 2,
             what="health record stored")
    token = "design-token-0123456789abcdef"
    dash = Dashboard(collector.db, token, "127.0.0.1", 0)
    dash.start()
    try:
        def api(path: str) -> dict[str, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status == 200, body
            return orjson.loads(body)

        d = api("/api/session?session_id=chat-42")
        fields = d["health"]["fields"]
        for key in ("event_context", "notes", "version", "telemetry_id", "token_usage", "errors", "warnings"):
            assert fields[key] == HI_STRANGER[key], key
        # Two errors in the health record's errors[] plus the error-level event.
        assert d["counts"]["errors"] == 3 and d["counts"]["warnings"] == 1
        [listed] = api("/api/sessions?last=30d")["sessions"]
        assert (listed["session_id"], listed["errors"], listed["warnings"]) == ("chat-42", 3, 1)
    finally:
        dash.shutdown()


def test_record_telemetry_without_configure_and_a_bad_setting_warns_once(tmp_path: Any) -> None:
    """The default transport cannot start (a bad OTEL_TELEMETRY_* value): one warning, no raise."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from otel_telemetry import record_telemetry, traced
        record_telemetry("ai_behavior", "s", "e")
        record_telemetry("ai_behavior", "s", "e")
        traced(lambda: 1)()
        print("app went on")
    """)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "OTEL_TELEMETRY_ENDPOINT": f"ipc://{tmp_path}/x.ipc", "OTEL_TELEMETRY_QUEUE_SIZE": "lots"})
    assert proc.returncode == 0 and proc.stdout.strip() == "app went on", proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "default transport cannot start" in line]
    assert len(warnings) == 1 and "OTEL_TELEMETRY_QUEUE_SIZE" in warnings[0], proc.stderr
