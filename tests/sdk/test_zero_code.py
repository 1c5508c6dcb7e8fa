"""Zero-code instrumentation: unmodified apps under ``opentelemetry-instrument`` with the ``zmq``
exporters, ``instrument_fastapi`` for ``configure()`` users, and host metrics. Real collector
processes, real sockets, a real uvicorn server driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
from conftest import CollectorProc, wait_for

HERE = Path(__file__).parents[1]  # tests/
APPS = HERE / "apps"
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))
ATTR = "json_extract(data, '$.attributes.\"{}\"')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _distro_env(collector: CollectorProc, service: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="zmq", OTEL_METRICS_EXPORTER="zmq", OTEL_LOGS_EXPORTER="zmq",
        OTEL_TELEMETRY_ENDPOINT=collector.endpoint, OTEL_SERVICE_NAME=service,
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
        # Batches and metric collections only leave on shutdown: what is stored proves the flush.
        OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
    )
    env.update(extra)
    return env


def _status_code(c: CollectorProc, where: str) -> list[tuple]:
    code = f"coalesce({ATTR.format('http.response.status_code')}, {ATTR.format('http.status_code')})"
    return c.rows(f"SELECT category, {ATTR.format('http.route')}, {code}, duration_ms, status FROM records "
                  f"WHERE type = 'span' AND kind = 'server' AND {where} ORDER BY timestamp")


def _check_host_metrics(c: CollectorProc, service: str) -> None:
    rows = c.rows("SELECT name, category, metric_value, metric_unit FROM records WHERE type = 'metric' "
                  "AND service = ? AND (name LIKE 'system.%' OR name LIKE 'process.%')", (service,))
    by_name: dict[str, list[tuple]] = {}
    for name, category, value, unit in rows:
        assert category == "system_performance", name
        by_name.setdefault(name, []).append((value, unit))
    for name in ("system.cpu.utilization", "system.memory.usage", "system.memory.utilization", "system.disk.io",
                 "system.network.io", "system.uptime", "process.cpu.utilization", "process.memory.usage",
                 "system.filesystem.usage", "system.filesystem.utilization"):
        assert name in by_name, f"{name} missing; got {sorted(by_name)}"
    for name in ("system.cpu.utilization", "system.memory.utilization", "process.cpu.utilization"):
        assert all(0.0 <= v <= 1.0 and u == "1" for v, u in by_name[name]), (name, by_name[name])
    assert all(v > 0 and u == "By" for v, u in by_name["process.memory.usage"])
    assert all(v >= 0 and u == "By" for v, u in by_name["system.memory.usage"])
    assert sum(v for v, _ in by_name["system.memory.usage"]) > 0
    assert all(v > 0 and u == "s" for v, u in by_name["system.uptime"])


def test_entry_points_name_the_zmq_exporters() -> None:
    from otel_telemetry.sdk import instrumentation

    for group, cls in (("opentelemetry_traces_exporter", instrumentation.ZmqSpanExporter),
                       ("opentelemetry_metrics_exporter", instrumentation.ZmqMetricExporter),
                       ("opentelemetry_logs_exporter", instrumentation.ZmqLogExporter)):
        (ep,) = entry_points(group=group, name="zmq")
        assert ep.load() is cls
    (hook,) = [ep for ep in entry_points(group="opentelemetry_post_instrument") if ep.name == "otel_telemetry"]
    assert hook.load() is instrumentation.post_instrument


def test_script_under_opentelemetry_instrument_sends_every_signal_once(collector: CollectorProc) -> None:
    """The issue's command line on a plain script; a normal exit runs the providers' atexit
    shutdowns (logs, then metrics, then traces), all through one shared transport."""
    env = _distro_env(collector, "script-svc")
    proc = subprocess.run([INSTRUMENT, sys.executable, str(APPS / "script_app.py")], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    wait_for(lambda: len(collector.rows("SELECT 1 FROM records WHERE service = 'script-svc'")) >= 3,
             what="span, log and metric stored")
    rows = collector.rows("SELECT type, name, category, trace_id FROM records WHERE service = 'script-svc' "
                          "AND (type != 'metric' OR name = 'script.jobs') ORDER BY type")
    by_type = {r[0]: r for r in rows}
    assert len(rows) == 3 and set(by_type) == {"log", "metric", "span"}, rows
    assert by_type["span"][1] == "work"
    assert by_type["log"][3] == by_type["span"][3], "the log is correlated with its span"
    assert by_type["metric"][1] == "script.jobs"
    assert not any((collector.status().get("gaps") or {}).values())


def test_unmodified_fastapi_app_under_opentelemetry_instrument(collector: CollectorProc) -> None:
    port = _free_port()
    env = _distro_env(collector, "shop", OTEL_TELEMETRY_HOST_METRICS="true")
    app = subprocess.Popen([INSTRUMENT, sys.executable, str(APPS / "fastapi_app.py"), str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _listening(port) or app.poll() is not None, timeout=30, what="uvicorn listening")
        assert app.poll() is None, app.stderr.read().decode() if app.stderr else ""
        # One connection per request: uvicorn closes the connection after an unhandled 500.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"Connection": "close"}) as http:
            assert http.get("/items/1").status_code == 200
            assert http.get("/items/2").status_code == 200
            assert http.get("/items/99").status_code == 404
            assert http.get("/boom").status_code == 500
            assert http.get("/healthz").status_code == 200
    finally:
        app.send_signal(signal.SIGTERM)  # uvicorn shuts down, then re-raises SIGTERM: our hook exits via atexit
        _, err = app.communicate(timeout=30)
    assert app.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]

    wait_for(lambda: len(_status_code(collector, "service = 'shop'")) >= 5, what="server spans stored")
    spans = _status_code(collector, "service = 'shop'")
    items = [r for r in spans if r[1] == "/items/{item_id}"]
    assert [(r[0], r[2], r[4]) for r in items] == [("user_interaction", 200, "unset")] * 2 + \
        [("user_interaction", 404, "unset")]
    assert all(r[3] is not None and r[3] > 0 for r in spans), spans
    (boom,) = [r for r in spans if r[1] == "/boom"]
    assert (boom[0], boom[2], boom[4]) == ("error_patterns", 500, "error")
    assert [r[:3] for r in spans if r[1] == "/healthz"] == [("user_interaction", "/healthz", 200)]
    # The request duration histogram (HTTP server metrics) and the app's own stdlib logs.
    hist = collector.rows("SELECT category, data FROM records WHERE type = 'metric' AND service = 'shop' "
                          "AND name IN ('http.server.duration', 'http.server.request.duration')")
    assert hist and all(cat == "user_interaction" for cat, _ in hist)
    assert sum(json.loads(d)["count"] for _, d in hist) == 5
    logs = dict(collector.rows("SELECT json_extract(data, '$.body'), category FROM records "
                               "WHERE type = 'log' AND service = 'shop'"))
    assert logs.get("served item 1") == "component_interactions", logs
    assert logs.get("boom requested") == "error_patterns", logs
    _check_host_metrics(collector, "shop")


def test_instrument_fastapi_with_configure(collector: CollectorProc) -> None:
    import uvicorn
    from fastapi import FastAPI, HTTPException

    import otel_telemetry

    tel = otel_telemetry.configure("api-svc", endpoint=collector.endpoint, set_global=False, host_metrics=True,
                                   export_interval=3600)
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        if order_id > 10:
            raise HTTPException(status_code=404)
        return {"id": order_id}

    @app.get("/fail")
    def fail() -> None:
        raise ValueError("nope")

    assert otel_telemetry.instrument_fastapi(app) is app
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="in-process uvicorn started")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/orders/3").status_code == 200
        assert httpx.get(f"{base}/orders/30").status_code == 404
        assert httpx.get(f"{base}/fail").status_code == 500
    finally:
        server.should_exit = True
        thread.join(10)
        assert tel.shutdown(10)
    counters = tel.counters()
    assert counters["dropped"] == {} and counters["queued"] == 0, counters

    wait_for(lambda: len(_status_code(collector, "service = 'api-svc'")) == 3, what="server spans stored")
    spans = _status_code(collector, "service = 'api-svc'")
    assert [(r[0], r[1], r[2]) for r in spans] == [
        ("user_interaction", "/orders/{order_id}", 200), ("user_interaction", "/orders/{order_id}", 404),
        ("error_patterns", "/fail", 500)]
    assert all(r[3] > 0 for r in spans)
    wait_for(lambda: collector.rows("SELECT 1 FROM records WHERE service = 'api-svc' AND name = 'system.uptime'"),
             what="host metrics stored")
    _check_host_metrics(collector, "api-svc")


def test_host_metrics_start_on_any_meter_provider() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_telemetry.sdk import hostmetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        hm = hostmetrics.start(provider, system=False)
        assert {i.name for i in hm.instruments} == {"process.cpu.time", "process.cpu.utilization",
                                                     "process.memory.usage", "process.memory.virtual",
                                                     "process.thread.count", "process.uptime"}
        data = reader.get_metrics_data()
        names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        assert {"process.memory.usage", "process.uptime"} <= names
    finally:
        provider.shutdown()


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("", False), ("false", False)])
def test_host_metrics_env_switch(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    from otel_telemetry.sdk import hostmetrics

    monkeypatch.setenv(hostmetrics.ENV, value)
    assert hostmetrics.enabled_by_env() is expected
