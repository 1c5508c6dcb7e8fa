"""Acceptance of issue 5's redaction: a PII corpus planted in every field, sent through ZeroMQ by a
real producer process and through OTLP/HTTP and OTLP/gRPC by the official exporters to a real
collector process that stores, forwards to a real OTLP sink and posts alerts to a real webhook.
Nothing of the corpus may show up in the database file or its WAL (during the run and after the
checkpoint at exit), the alert state, the forwarded payloads, the webhook bodies, the collector's
log or the CLI's output; every record arrives, and the pseudonymised user id is the same keyed
HMAC on both paths."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import CollectorProc, wait_for
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_sink import Sink
from pii_corpus import E2E_SECRETS as SECRETS
from pii_corpus import PII, TEXT, USER_ID, plant

from otel_telemetry.redact import rules as redact_rules
from otel_telemetry.redact.redactor import RedactionConfig, Redactor, scan_bytes

HERE = Path(__file__).parents[1]  # tests/
KEY = "pii-e2e-key-0123456789abcdef-0123"
PSEUDONYM = "ph_" + hmac.digest(KEY.encode(), USER_ID.encode(), "sha256").hex()[:24]
DETECT = Redactor(RedactionConfig(pseudonym_key=KEY))  # used only for its detectors (find)


_RULE_RX = {"url_credentials": "URL_CREDENTIALS", "private_key": "PRIVATE_KEY", "jwt": "JWT", "bearer": "BEARER",
            "basic_auth": "BASIC", "api_key": "API_KEY", "kv_secret": "KV_SECRET", "email": "EMAIL",
            "ipv6": "IPV6_CANDIDATE", "card": "CARD", "ipv4": "IPV4", "phone": "PHONE", "secret_token": "SECRET_RUN"}


def _contexts(data: bytes, rules: dict[str, int]) -> list[str]:
    text = data.decode("latin-1")
    checks = {"secret_token": redact_rules.entropy_ok, "card": redact_rules.card_ok, "ipv4": redact_rules.ipv4_ok,
              "phone": redact_rules.phone_ok, "ipv6": redact_rules.ipv6_ok}
    return [f"{rule}: {text[max(0, m.start() - 40):m.end() + 20]!r}" for rule in rules
            for m in [m for m in getattr(redact_rules, _RULE_RX[rule]).finditer(text)
                      if rule not in checks or checks[rule](m)][:3]]


# In the raw file, a topic text ("telemetry.<category>.<component>", publishers table) follows its
# record's header bytes; one of them can be 0x40 ('@') after a random publisher-id byte that reads
# as a letter: "y@telemetry.system" is then an e-mail address to the detector. A topic is never
# PII (its component was redacted before it became a topic), so the test reads it apart.
def assert_no_pii(where: str, data: bytes) -> None:
    hits = scan_bytes(DETECT, data.replace(b"@telemetry.", b"@ telemetry."))
    assert hits == {}, f"{where}: detector hits {hits}: {_contexts(data, hits)}"
    for secret in SECRETS:
        assert secret.encode() not in data, f"{where}: planted value {secret!r} found"
    assert USER_ID.encode() not in data, f"{where}: plain user id found"


class Webhook:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def _otlp_send(tag: str, send: Any) -> dict[str, int]:
    """Plant the corpus through plain SDK providers and ship it with ``send(spans, metrics, logs)``."""
    resource = Resource.create({"service.name": f"pii-{tag}", "host.owner": PII["email"], "deployment.note": TEXT,
                                "enduser.id": USER_ID})
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    planted = plant(tp, mp, lp)
    send(spans.get_finished_spans(), reader.get_metrics_data(), logs.get_finished_logs())
    return planted


def _send_http(port: int) -> Any:
    base = f"http://127.0.0.1:{port}"

    def send(spans: Any, metrics: Any, logs: Any) -> None:
        assert HttpSpanExporter(endpoint=f"{base}/v1/traces").export(spans).name == "SUCCESS"
        assert HttpMetricExporter(endpoint=f"{base}/v1/metrics").export(metrics).name == "SUCCESS"
        assert HttpLogExporter(endpoint=f"{base}/v1/logs").export(logs).name == "SUCCESS"
    return send


def _send_grpc(port: int) -> Any:
    kw: dict[str, Any] = {"endpoint": f"127.0.0.1:{port}", "insecure": True, "compression": grpc.Compression.Gzip}

    def send(spans: Any, metrics: Any, logs: Any) -> None:
        assert GrpcSpanExporter(**kw).export(spans).name == "SUCCESS"
        assert GrpcMetricExporter(**kw).export(metrics).name == "SUCCESS"
        assert GrpcLogExporter(**kw).export(logs).name == "SUCCESS"
    return send


def _cli(db: str, *args: str) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "otel_telemetry", *args, "--db", db], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert_no_pii(f"CLI {args[0]} stderr", proc.stderr)
    return proc.stdout


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def test_pii_corpus_never_leaves_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          webhook: Webhook) -> None:
    # The collector takes the key from the env var its config names; the app from the standard one.
    monkeypatch.setenv("PII_E2E_KEY", KEY)
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY_FILE", str(tmp_path / "never-created.key"))
    sink = Sink(tmp_path).start()
    c = CollectorProc(tmp_path)
    c.config.write_text(
        "log_level: debug\nstore: {flush_interval: 0.05}\nretention: {interval: 3600}\n"
        "redaction: {key_env: PII_E2E_KEY}\n"
        f"forward:\n  - {{endpoint: 'http://127.0.0.1:{sink.http_port}', protocol: http/protobuf,"
        " retry_initial: 0.05, retry_max: 0.2}\n"
        "alerts:\n  interval: 1s\n  service: pii\n  rules:\n"
        "    - {name: pii_errors, kind: frequency, filter: {level: error}, window: 10m, op: '>', threshold: 0,"
        " severity: critical}\n"
        f"  notify:\n    - {{type: webhook, url: 'http://127.0.0.1:{webhook.port}/hook'}}\n")
    try:
        c.start()
        wait_for(lambda: "otlp_grpc" in c.status(), what="OTLP receivers up")
        status = c.status()
        http_port = int(status["otlp_http"]["endpoint"].rsplit(":", 1)[1])
        grpc_port = int(status["otlp_grpc"]["endpoint"].rsplit(":", 1)[1])

        # (a) ZeroMQ: a real instrumented process, redaction on by default in its sender thread.
        proc = subprocess.run(
            [sys.executable, str(HERE / "pii_corpus.py"), "--endpoint", c.endpoint, "--service", "pii-zmq"],
            capture_output=True, timeout=120, env=dict(os.environ, OTEL_TELEMETRY_REDACT_KEY=KEY))
        assert proc.returncode == 0, proc.stderr.decode()
        zmq_out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        # (b) OTLP with the official exporters, redacted by the collector.
        planted = {"pii-zmq": zmq_out["planted"], "pii-otlp-http": _otlp_send("otlp-http", _send_http(http_port)),
                   "pii-otlp-grpc": _otlp_send("otlp-grpc", _send_grpc(grpc_port))}
        expect = {svc: {"span": p["spans"], "log": p["logs"], "metric": p["metric_points"]}
                  for svc, p in planted.items()}
        total = sum(sum(e.values()) for e in expect.values())

        def stored() -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for svc, rtype, n in c.rows("SELECT service, type, count(*) FROM records GROUP BY service, type"):
                out.setdefault(svc, {})[rtype] = n
            return out

        wait_for(lambda: stored() == expect, timeout=60, what=f"all records stored: {expect}")
        wait_for(lambda: len(sink.items()) >= total, timeout=60, what="all records forwarded")
        wait_for(lambda: any(b'"alert.triggered"' in b for b in webhook.bodies), timeout=60, what="alert webhook")

        # The books: nothing dropped on the app side, nothing rejected by the collector.
        counters = zmq_out["counters"]
        assert zmq_out["shutdown_ok"] and counters["dropped"] == {}
        assert counters["sent"] == sum(expect["pii-zmq"].values())
        # Over ipc the collector redacts the records; the app still redacts its resource and topics.
        assert counters["redaction"] == "collector"
        assert counters["redacted"]["email"] > 0 and counters["redacted"]["pseudonym"] > 0
        assert_no_pii("app counters", json.dumps(counters).encode())

        # Raw bytes while the collector runs: the database file and its WAL before any checkpoint at exit.
        db, wal = Path(c.db), Path(c.db + "-wal")
        assert wal.exists() and wal.stat().st_size > 0
        assert_no_pii("database file (running)", _read(db))
        assert_no_pii("WAL (running)", _read(wal))
        wait_for(lambda: c.status().get("redaction", {}).get("records", 0) >= sum(
            sum(expect[s].values()) for s in ("pii-otlp-http", "pii-otlp-grpc")), what="status row with redaction")
        status = c.status()
        assert c.stop() == 0
    finally:
        if c.proc is not None:
            c.stop()
        sink.stop()

    # After the orderly exit (WAL checkpointed into the file).
    assert_no_pii("database file (after exit)", _read(db))
    assert_no_pii("WAL (after exit)", _read(wal))
    assert_no_pii("alert state database", _read(Path(c.db + ".alerts.db")) + _read(Path(c.db + ".alerts.db-wal")))
    assert_no_pii("collector log", c.log.read_bytes())
    assert_no_pii("forwarded OTLP payloads", sink.out.read_bytes())
    assert webhook.bodies
    for body in webhook.bodies:
        assert_no_pii("webhook body", body)

    # The collector's per-rule counts are in its status row (counts only).
    red = status["redaction"]
    assert red["enabled"] and red["redaction_error"] == 0 and red["redacted"]["email"] > 0
    assert red["redacted"]["pseudonym"] > 0 and red["redacted"]["sensitive_key"] > 0
    assert_no_pii("status", json.dumps(status).encode())
    assert all(not v.get("rejected") for k, v in status.items() if k in ("zmq", "otlp_http", "otlp_grpc"))

    # Every record arrived once, locally and downstream.
    forwarded: dict[str, dict[str, int]] = {}
    for item in sink.items():
        svc = item["resource"]["service.name"]
        forwarded.setdefault(svc, {})[item["signal"]] = forwarded.setdefault(svc, {}).get(item["signal"], 0) + 1
    assert forwarded == expect

    # CLI output.
    out = _cli(c.db, "query", "--format", "json", "--last", "1d", "--limit", "1000")
    assert_no_pii("query --format json", out)
    rows = json.loads(out)
    assert len(rows) == total
    exported = _cli(c.db, "export", "--format", "otlp-json", "-o", "-")
    assert_no_pii("export --format otlp-json", exported)
    assert_no_pii("status --format json", _cli(c.db, "status", "--format", "json"))

    # The pseudonym of user.id: the same keyed HMAC on every path (correlatable), and present.
    pseudonyms = {svc: set() for svc in expect}
    for r in rows:
        pseudonyms[r["service"]] |= set(re.findall(r"ph_[0-9a-f]{24}", json.dumps(r)))
    assert pseudonyms == {svc: {PSEUDONYM} for svc in expect}
    assert PSEUDONYM.encode() in exported
    assert not (tmp_path / "never-created.key").exists()  # a configured key is used, no file made


def test_dictionary_of_a_million_ids_recovers_no_pseudonym() -> None:
    """10^6 candidate ids, hashed every keyless way (sha256, sha1, md5, HMAC with a wrong and an
    empty key): none gives a pseudonym made with the real key."""
    r = Redactor(RedactionConfig(pseudonym_key=KEY))
    planted = [f"user-{i:06d}" for i in (0, 4242, 123456, 999999)]
    targets = {r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, {"user.id": u}, None, None, None, None))[9]
               ["user.id"][3:] for u in planted}
    assert len(targets) == 4
    sha256, sha1, md5, digest = hashlib.sha256, hashlib.sha1, hashlib.md5, hmac.digest
    wrong, empty = b"wrong-key-0123456789abcdef0123", b""
    recovered = 0
    for i in range(1_000_000):
        cand = b"user-%06d" % i
        for h in (sha256(cand).hexdigest(), sha1(cand).hexdigest(), md5(cand).hexdigest(),
                  digest(wrong, cand, "sha256").hex(), digest(empty, cand, "sha256").hex()):
            if h[:24] in targets:
                recovered += 1
    assert recovered == 0
    # The search space was the right one: with the key, all four are found.
    assert sum(digest(KEY.encode(), u.encode(), "sha256").hex()[:24] in targets for u in planted) == 4


_BOOKS_APP = """
import json, sys, otel_telemetry
from opentelemetry._logs import SeverityNumber

class Weird:  # a dict key no one can print: the redactor cannot decide what it holds
    def __str__(self):
        raise RuntimeError("unprintable")
    __repr__ = __str__

tel = otel_telemetry.configure("books", endpoint=sys.argv[1], join_timeout=10, metrics=False, set_global=False)
tracer, logger = tel.tracer_provider.get_tracer("books"), tel.logger_provider.get_logger("books")
for i in range(50):
    with tracer.start_as_current_span(f"op {i}", attributes={"mail": f"u{i}@example.com", "i": i}):
        pass
    logger.emit(body=f"call +1 (415) 555-{1000 + i}", severity_number=SeverityNumber.INFO)
raised = None
try:
    logger.emit(body={Weird(): "x", "mail": "bob@example.com"}, severity_number=SeverityNumber.INFO)
except Exception as exc:
    raised = repr(exc)
ok = tel.shutdown(20)
print(json.dumps({"counters": tel.counters(), "ok": ok, "raised": raised}))
"""


@pytest.mark.parametrize("site", ["collector", "app"])
def test_books_exact_and_unredactable_record_dropped_and_counted(collector: CollectorProc, site: str) -> None:
    """Redaction drops nothing it can redact; a record that cannot be handled is dropped and counted
    (never sent as it was, never raised into the app), and the books close. Over this ipc endpoint
    the collector redacts by default (``site=collector``: the app counts the unprintable record as
    ``encode_error``, the collector counts the replacements); with OTEL_TELEMETRY_REDACT_IN_APP=always
    the app redacts (it counts the replacements and the record it failed on as ``redaction_error``)."""
    env = dict(os.environ, OTEL_TELEMETRY_REDACT_KEY=KEY,
               OTEL_TELEMETRY_REDACT_IN_APP="always" if site == "app" else "auto")
    proc = subprocess.run([sys.executable, "-c", _BOOKS_APP, collector.endpoint], capture_output=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    c = out["counters"]
    assert out["ok"] and out["raised"] is None
    assert c["redaction"] == site
    reason = "redaction_error" if site == "app" else "encode_error"
    assert c["dropped"] == {reason: 1} and c["sent"] == 100 and c["emitted"] == 101
    wait_for(lambda: sum(collector.counts_by_category().values()) == 100, what="100 records stored")
    assert collector.stop() == 0
    if site == "app":
        assert c["redacted"] == {"email": 50, "phone": 50}
    else:
        assert c["redacted"] == {}
        red = collector.status()["redaction"]
        assert red["redacted"] == {"email": 50, "phone": 50} and red["records"] == 100
    assert_no_pii("database", _read(Path(collector.db)) + _read(Path(collector.db + "-wal")))
    assert b"bob@example.com" not in _read(Path(collector.db))
    assert collector.status()["zmq"]["rejected"] == {}


def test_zero_code_exporters_redact_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry-point exporters of ``opentelemetry-instrument`` (built with no arguments) get the
    default too: redaction on, unless OTEL_TELEMETRY_REDACT turns it off."""
    from otel_telemetry.sdk.instrumentation import ZmqLogExporter, ZmqSpanExporter

    monkeypatch.delenv("OTEL_TELEMETRY_REDACT", raising=False)
    monkeypatch.setenv("OTEL_TELEMETRY_ENDPOINT", f"ipc://{tmp_path}/on.ipc")
    monkeypatch.setenv("OTEL_TELEMETRY_JOIN_TIMEOUT", "0")
    on = ZmqSpanExporter()
    logs = ZmqLogExporter()
    assert on.transport is logs.transport and on.transport._convert.redactor is not None
    assert on.transport.counters()["redacted"] == {}
    monkeypatch.setenv("OTEL_TELEMETRY_ENDPOINT", f"ipc://{tmp_path}/off.ipc")
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT", "off")
    off = ZmqSpanExporter()
    assert off.transport._convert.redactor is None
    for exp in (on, logs, off):
        exp.shutdown(2000)
