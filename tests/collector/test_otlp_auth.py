"""OTLP receivers: bearer tokens, TLS and the refusal of unauthenticated non-loopback binds.

Real collector processes with OTLP on free ports of 127.0.0.1, the official exporters, real
SQLite files; a self-signed certificate made with the ``openssl`` CLI for the TLS test. No
traffic goes anywhere but 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import CollectorProc, wait_for
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_telemetry.auth import bearer_matches, is_loopback_host
from otel_telemetry.collector.config import ConfigError, OtlpReceiverConfig, check_otlp_exposure, load

HTTP_TOKEN = "http-token-0123456789abcdef"
GRPC_TOKEN = "grpc-token-fedcba9876543210"
ENV = "OTEL_TELEMETRY_TEST_OTLP_TOKEN"


def spans(service: str, n: int = 3) -> Any:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("auth-test")
    for i in range(n):
        with tracer.start_as_current_span(f"{service}-op-{i}"):
            pass
    return exporter.get_finished_spans()


def stored(c: CollectorProc, service: str) -> int:
    return c.rows("SELECT count(*) FROM records WHERE service = ?", (service,))[0][0]


def ports(c: CollectorProc) -> tuple[int, int]:
    s = c.status()
    return int(s["otlp_http"]["endpoint"].rsplit(":", 1)[1]), int(s["otlp_grpc"]["endpoint"].rsplit(":", 1)[1])


def rejected(c: CollectorProc, receiver: str) -> int:
    return int(c.status().get(receiver, {}).get("rejected", {}).get("unauthenticated", 0))


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProc]:
    """Collector with OTLP/HTTP's token from an env variable and OTLP/gRPC's from a file."""
    tmp = tmp_path_factory.mktemp("otlpauth")
    token_file = tmp / "grpc.token"
    token_file.write_text(GRPC_TOKEN + "\n")
    token_file.chmod(0o600)
    c = CollectorProc(tmp)
    c.config.write_text(
        "store: {flush_interval: 0.02}\nreceivers:\n"
        f"  otlp_http: {{endpoint: '127.0.0.1:0', auth: {{bearer_token_env: {ENV}}}}}\n"
        f"  otlp_grpc: {{endpoint: '127.0.0.1:0', auth: {{bearer_token_file: '{token_file}'}}}}\n")
    os.environ[ENV] = HTTP_TOKEN  # inherited by the collector process only through Popen
    try:
        c.start()
    finally:
        del os.environ[ENV]
    wait_for(lambda: "otlp_grpc" in c.status(), what="status with OTLP endpoints")
    yield c
    if c.proc is not None:
        assert c.stop() == 0, c.log.read_text()
    log = c.log.read_text()
    assert HTTP_TOKEN not in log and GRPC_TOKEN not in log


def test_http_without_or_with_wrong_token_is_401_and_stores_nothing(proc: CollectorProc) -> None:
    http_port, _ = ports(proc)
    url = f"http://127.0.0.1:{http_port}/v1/traces"
    before = rejected(proc, "otlp_http")
    assert HttpSpanExporter(endpoint=url).export(spans("h-none")).name == "FAILURE"
    for bad in (f"Bearer {HTTP_TOKEN}x", f"Bearer {GRPC_TOKEN}", f"Basic {HTTP_TOKEN}", HTTP_TOKEN, "Bearer "):
        assert HttpSpanExporter(endpoint=url, headers={"authorization": bad}).export(spans("h-wrong")).name == \
            "FAILURE"
    # The raw answer: 401, WWW-Authenticate, a google.rpc.Status body with UNAUTHENTICATED.
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    try:
        conn.request("POST", "/v1/traces", body=b"{}", headers={"Content-Type": "application/json",
                                                                "Authorization": "Bearer nope"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 401 and resp.getheader("WWW-Authenticate") == "Bearer"
        assert b'"code":16' in body and HTTP_TOKEN.encode() not in body
    finally:
        conn.close()
    # The right token is stored (acknowledged = committed); the rejected requests stored nothing.
    assert HttpSpanExporter(endpoint=url, headers={"authorization": f"Bearer {HTTP_TOKEN}"}).export(
        spans("h-ok")).name == "SUCCESS"
    assert HttpSpanExporter(endpoint=url, headers={"Authorization": f"bearer {HTTP_TOKEN}"}).export(
        spans("h-ok2")).name == "SUCCESS"
    assert (stored(proc, "h-ok"), stored(proc, "h-ok2")) == (3, 3)
    assert (stored(proc, "h-none"), stored(proc, "h-wrong")) == (0, 0)
    wait_for(lambda: rejected(proc, "otlp_http") >= before + 7, what="unauthenticated counter")


def test_grpc_without_or_with_wrong_token_is_unauthenticated_and_stores_nothing(proc: CollectorProc) -> None:
    _, grpc_port = ports(proc)
    kw: dict[str, Any] = {"endpoint": f"127.0.0.1:{grpc_port}", "insecure": True, "timeout": 10}
    before = rejected(proc, "otlp_grpc")
    assert GrpcSpanExporter(**kw).export(spans("g-none")).name == "FAILURE"
    for bad in (f"Bearer {GRPC_TOKEN}x", f"Bearer {HTTP_TOKEN}", GRPC_TOKEN):
        assert GrpcSpanExporter(**kw, headers={"authorization": bad}).export(spans("g-wrong")).name == "FAILURE"
    # The raw status code.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(ExportTraceServiceRequest(), metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert GRPC_TOKEN not in (info.value.details() or "")
    assert GrpcSpanExporter(**kw, headers={"authorization": f"Bearer {GRPC_TOKEN}"}).export(
        spans("g-ok")).name == "SUCCESS"
    assert stored(proc, "g-ok") == 3
    assert (stored(proc, "g-none"), stored(proc, "g-wrong")) == (0, 0)
    wait_for(lambda: rejected(proc, "otlp_grpc") >= before + 6, what="unauthenticated counter")


# -- refusal at start-up ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_expecting_failure(tmp: Path, receivers: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    cfg = tmp / "c.yaml"
    cfg.write_text(f"receivers:\n{receivers}")
    proc = subprocess.run(
        [sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(cfg),
         "--db", str(tmp / "c.db"), "--endpoint", f"ipc://{tmp}/c.ipc"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stderr


def test_non_loopback_bind_without_tls_and_token_is_refused(tmp_path: Path) -> None:
    port = _free_port()
    rc, err = _run_expecting_failure(tmp_path, f"  otlp_http: {{endpoint: '0.0.0.0:{port}'}}\n")
    assert rc in (1, 2), err
    assert "receivers.otlp_http.tls" in err and "receivers.otlp_http.auth" in err and "0.0.0.0" in err, err
    # A token alone is not enough: TLS is named.
    rc, err = _run_expecting_failure(
        tmp_path, f"  otlp_grpc: {{endpoint: '0.0.0.0:{port}', auth: {{bearer_token_env: {ENV}}}}}\n",
        env={ENV: "t0ken"})
    assert rc in (1, 2), err
    assert "receivers.otlp_grpc.tls" in err and "receivers.otlp_grpc.auth" not in err, err
    # A configured token that cannot be read is a configuration error too.
    rc, err = _run_expecting_failure(tmp_path, f"  otlp_http: {{auth: {{bearer_token_env: {ENV}_UNSET}}}}\n")
    assert rc == 2 and "bearer_token_env" in err and f"{ENV}_UNSET" in err, err


def test_exposure_rule_and_config_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1", "127.5.6.7", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", "localhost.example.com", "fe80::1"):
        assert not is_loopback_host(host), host
    check_otlp_exposure("receivers.otlp_http", OtlpReceiverConfig(endpoint="[::1]:4318"))
    check_otlp_exposure("receivers.otlp_http", OtlpReceiverConfig(endpoint="10.0.0.1:4318", enabled=False))
    with pytest.raises(ConfigError, match=r"receivers\.otlp_http\.tls and receivers\.otlp_http\.auth"):
        check_otlp_exposure("receivers.otlp_http", OtlpReceiverConfig(endpoint="[::]:4318"))
    with pytest.raises(ConfigError, match=r"receivers\.otlp_grpc\.auth"):
        check_otlp_exposure("receivers.otlp_grpc", OtlpReceiverConfig(endpoint="0.0.0.0:1", bearer_token=None))

    assert bearer_matches("Bearer abc", "abc") and bearer_matches("bearer  abc ", "abc")
    assert not any(bearer_matches(h, "abc") for h in (None, "", "abc", "Bearer", "Bearer ab", "Bearer abcd",
                                                      "Basic abc", "Bearer ABC", "Bearer äbc"))

    def cfg(text: str) -> Any:
        p = tmp_path / "c.yaml"
        p.write_text(text)
        return load(str(p), db=str(tmp_path / "c.db"), endpoint="ipc:///tmp/x.ipc")

    token_file = tmp_path / "tok"
    token_file.write_text("s3cret\n")
    monkeypatch.setenv(ENV, "from-env")
    c = cfg(f"receivers: {{otlp_http: {{auth: {{bearer_token_env: {ENV}}}}}, "
            f"otlp_grpc: {{auth: {{bearer_token_file: '{token_file}'}}}}}}")
    assert (c.otlp_http.bearer_token, c.otlp_grpc.bearer_token) == ("from-env", "s3cret")
    assert "from-env" not in repr(c) and "s3cret" not in repr(c)
    bad = [
        ("{otlp_http: {auth: {bearer_token: inline}}}", "unknown key 'bearer_token'"),
        (f"{{otlp_http: {{auth: {{bearer_token_env: {ENV}, bearer_token_file: '{token_file}'}}}}}}", "exactly one"),
        ("{otlp_http: {auth: {bearer_token_env: OTEL_TELEMETRY_NOPE_UNSET}}}", "OTEL_TELEMETRY_NOPE_UNSET"),
        (f"{{otlp_grpc: {{auth: {{bearer_token_file: '{tmp_path}/missing'}}}}}}", "otlp_grpc.auth.bearer_token_file"),
        (f"{{otlp_http: {{tls: {{cert_file: '{tmp_path}/c.pem', key_file: '{token_file}'}}}}}}",
         "otlp_http.tls.cert_file"),
        (f"{{otlp_http: {{tls: {{cert_file: '{token_file}', key_file: '{token_file}'}}}}}}", "otlp_http.tls"),
        (f"{{otlp_http: {{tls: {{cert_file: '{token_file}'}}}}}}", "otlp_http.tls.key_file"),
    ]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    bad.append((f"{{otlp_http: {{auth: {{bearer_token_file: '{empty}'}}}}}}", "is empty"))
    for text, needle in bad:
        with pytest.raises(ConfigError) as info:
            cfg(f"receivers: {text}\n")
        assert needle in str(info.value), (text, str(info.value))
        assert "s3cret" not in str(info.value)


# -- TLS ------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI for a self-signed cert")
def test_tls_and_token_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the exporter's certificate_file (session.verify).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    token_file = tmp_path / "token"
    token_file.write_text(HTTP_TOKEN)
    c = CollectorProc(tmp_path)
    tls = f"tls: {{cert_file: '{cert}', key_file: '{key}'}}, auth: {{bearer_token_file: '{token_file}'}}"
    c.config.write_text("store: {flush_interval: 0.02}\nreceivers:\n"
                        f"  otlp_http: {{endpoint: '127.0.0.1:0', {tls}}}\n"
                        f"  otlp_grpc: {{endpoint: '127.0.0.1:0', {tls}}}\n")
    c.start()
    try:
        wait_for(lambda: "otlp_grpc" in c.status(), what="status with OTLP endpoints")
        http_port, grpc_port = ports(c)
        auth = {"authorization": f"Bearer {HTTP_TOKEN}"}
        url = f"https://127.0.0.1:{http_port}/v1/traces"
        assert HttpSpanExporter(endpoint=url, certificate_file=str(cert), headers=auth).export(
            spans("tls-h")).name == "SUCCESS"
        assert HttpSpanExporter(endpoint=url, certificate_file=str(cert)).export(
            spans("tls-h-none")).name == "FAILURE"
        # Plaintext HTTP to the TLS port gets no OTLP answer.
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        try:
            with pytest.raises((OSError, http.client.HTTPException)):
                conn.request("POST", "/v1/traces", body=b"{}", headers={"Content-Type": "application/json",
                                                                        **auth})
                conn.getresponse().read()
        finally:
            conn.close()
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        kw: dict[str, Any] = {"endpoint": f"127.0.0.1:{grpc_port}", "insecure": False, "credentials": creds,
                              "timeout": 10}
        assert GrpcSpanExporter(**kw, headers=auth).export(spans("tls-g")).name == "SUCCESS"
        assert GrpcSpanExporter(**kw).export(spans("tls-g-none")).name == "FAILURE"
        assert (stored(c, "tls-h"), stored(c, "tls-g")) == (3, 3)
        assert (stored(c, "tls-h-none"), stored(c, "tls-g-none")) == (0, 0)
    finally:
        assert c.stop() == 0, c.log.read_text()
