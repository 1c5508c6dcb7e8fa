"""Issue 15 item 4: the key rules (``user_id`` / ``user.id`` become ``ph_`` pseudonyms, secrets are
redacted) apply to ``record_telemetry`` data and to log bodies exactly as to span attributes, on
every path: redacted by the collector (ipc), in the app (``OTEL_TELEMETRY_REDACT_IN_APP=always``)
and over OTLP/HTTP from the official exporters. Real app and collector processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CollectorProc, wait_for

KEY = "k" * 48
UID, UID2 = "u-4711-alice", "u-0815-bob"

APP = f"""
import json, logging
import otel_telemetry
from opentelemetry import trace
tel = otel_telemetry.configure("keys-app", metrics=False)
otel_telemetry.record_telemetry("user_interaction", "login", "signed_in",
    data={{"user_id": "{UID}", "user.id": "{UID2}", "profile": {{"customer_id": "{UID}"}}, "password": "hunter2"}},
    metadata={{"user_id": "{UID2}"}})
with trace.get_tracer("keys").start_as_current_span("login", attributes={{"user.id": "{UID2}"}}):
    log = logging.getLogger("keys-app")
    log.addHandler(otel_telemetry.logging_handler(tel))
    log.setLevel(logging.INFO)
    log.propagate = False
    log.warning("login ok user_id={UID} from the web")
    log.warning({{"user.id": "{UID2}", "step": "mfa"}})
print(json.dumps({{"ok": tel.shutdown(15), "counters": tel.counters()}}))
"""


def _db_text(c: CollectorProc) -> str:
    return json.dumps(c.rows("SELECT name, data, metadata FROM records"))


def _check(c: CollectorProc, want: int) -> None:
    wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] >= want, what="records stored")
    text = _db_text(c)
    assert UID not in text and UID2 not in text and "hunter2" not in text, text
    [(data, meta)] = c.rows("SELECT data, metadata FROM records WHERE type = 'event'")
    d, m = json.loads(data), json.loads(meta)
    [(attrs,)] = c.rows("SELECT data FROM records WHERE type = 'span'")
    ph_uid2 = json.loads(attrs)["attributes"]["user.id"]
    assert ph_uid2.startswith("ph_")
    # The same id, the same pseudonym, wherever it was: attribute, event data, metadata, log body.
    assert d["user.id"] == ph_uid2 and m["record"]["user_id"] == ph_uid2
    assert d["user_id"].startswith("ph_") and d["profile"]["customer_id"] == d["user_id"]
    assert d["password"] == "[REDACTED:sensitive_key]"
    logs = c.rows("SELECT data FROM records WHERE type = 'log' ORDER BY timestamp")
    bodies = [json.loads(b)["body"] for (b,) in logs]
    assert f"user_id={d['user_id']} from the web" in bodies[0]
    assert bodies[1] == {"user.id": ph_uid2, "step": "mfa"}


@pytest.mark.parametrize("where", ["collector", "app"])
def test_event_data_and_log_bodies_get_the_key_rules_over_zeromq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 where: str) -> None:
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY", KEY)
    c = CollectorProc(tmp_path).start()
    try:
        env = {**os.environ, "OTEL_TELEMETRY_ENDPOINT": c.endpoint,
               "OTEL_TELEMETRY_REDACT_IN_APP": "always" if where == "app" else "auto"}
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(APP)], capture_output=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr.decode()
        res = json.loads(out.stdout.decode().splitlines()[-1])
        assert res["ok"] and res["counters"]["redaction"] == where
        _check(c, 4)
    finally:
        assert c.stop() == 0


def test_event_data_and_log_bodies_get_the_key_rules_over_otlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY", KEY)
    c = CollectorProc(tmp_path).start()
    try:
        wait_for(lambda: "otlp_http" in c.status(), what="OTLP/HTTP up")
        base = f"http://{c.status()['otlp_http']['endpoint']}"
        resource = Resource.create({"service.name": "otlp-keys"})
        spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(SimpleSpanProcessor(spans))
        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        data = json.dumps({"user_id": UID, "user.id": UID2, "profile": {"customer_id": UID}, "password": "hunter2"})
        tracer, logger = tp.get_tracer("lib"), lp.get_logger("lib")
        # An event in the AICO shape, as another SDK would send it, and the same logs.
        tracer.start_span("signed_in", attributes={
            "telemetry.category": "user_interaction", "telemetry.event": "signed_in", "telemetry.data": data,
            "telemetry.metadata": json.dumps({"user_id": UID2})}).end()
        with tracer.start_as_current_span("login", attributes={"user.id": UID2}):
            logger.emit(body=f"login ok user_id={UID} from the web", severity_number=SeverityNumber.WARN,
                        timestamp=1)
            logger.emit(body={"user.id": UID2, "step": "mfa"}, severity_number=SeverityNumber.WARN, timestamp=2)
        assert OTLPSpanExporter(endpoint=f"{base}/v1/traces").export(spans.get_finished_spans()).name == "SUCCESS"
        assert OTLPLogExporter(endpoint=f"{base}/v1/logs").export(logs.get_finished_logs()).name == "SUCCESS"
        _check(c, 4)
    finally:
        assert c.stop() == 0
