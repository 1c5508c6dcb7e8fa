"""Real third-party OTLP peers around a real collector process (installed by `make peers`, pinned in
tests/peers.py; a test skips, or fails under CI=true, only where its peer could not be installed).

- otelcol-contrib (filelog -> otlphttp, gzip, bearer token) as a client of our OTLP/HTTP receiver,
  through a restart of our collector: every line stored once, redacted.
- rotel as the downstream of our ``forward:``, down while the app runs, then restarted while it
  runs: every span arrives once.
- VictoriaMetrics receiving our forwarded metrics (after an outage), read back through PromQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CollectorProc, producer_result, run_producer, wait_for
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from otlp_sink import Sink, free_port
from peers import peer

TOKEN = "peer-test-token-0123456789"


class Peer:
    """One peer process, logging to a file; always stopped by the fixture that made it."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.cmd, self.log = cmd, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Peer:
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self.proc = None
        return rc

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for p in started:
        p.stop()


def _token_config(c: CollectorProc, tmp: Path, extra: str, port: int = 0) -> None:
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    c.config.write_text("store:\n  flush_interval: 0.05\nreceivers:\n"
                        f"  otlp_http: {{endpoint: '127.0.0.1:{port}', auth: {{bearer_token_file: '{token_file}'}}}}\n"
                        + extra)


def _stored_logs(c: CollectorProc) -> list[str]:
    return [json.loads(d)["body"] for (d,) in c.rows("SELECT data FROM records WHERE type = 'log'")]


def test_otelcol_filelog_through_our_restart_every_line_once(tmp_path: Path, peers: list[Peer]) -> None:
    otelcol = peer("otelcol")
    port = free_port()
    c = CollectorProc(tmp_path)
    _token_config(c, tmp_path, "", port)
    c.start()
    app_log = tmp_path / "app.log"
    lines = [f"line {i} user=alice password=hunter{i}x" for i in range(2000)]
    app_log.write_text("".join(f"{line}\n" for line in lines[:1000]))
    cfg = tmp_path / "otelcol.yaml"
    cfg.write_text(f"""
receivers:
  filelog: {{include: ['{app_log}'], start_at: beginning, poll_interval: 50ms}}
processors:
  batch: {{send_batch_size: 250, timeout: 100ms}}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{port}
    compression: gzip
    headers: {{Authorization: "Bearer {TOKEN}"}}
    retry_on_failure: {{enabled: true, initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0}}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    logs: {{receivers: [filelog], processors: [batch], exporters: [otlphttp]}}
""")
    oc = Peer([str(otelcol), "--config", str(cfg)], tmp_path / "otelcol.log").start()
    peers.append(oc)
    wait_for(lambda: len(_stored_logs(c)) >= 1000, timeout=60, what="first 1000 lines stored")
    assert c.stop() == 0

    # Our collector is down: the next lines fail to export and otelcol retries them.
    with app_log.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines[1000:]))
    wait_for(lambda: "Exporting failed" in oc.text(), timeout=60, what="otelcol to see the outage")
    c.start()
    wait_for(lambda: len(_stored_logs(c)) >= 2000, timeout=60, what="all 2000 lines stored")
    assert oc.stop() == 0
    assert c.stop() == 0

    stored = _stored_logs(c)
    expected = [line.replace(line.split("password=")[1], "[REDACTED:kv_secret]") for line in lines]
    assert len(stored) == 2000 and sorted(stored) == sorted(expected)  # each once, the secret redacted
    assert c.status()["otlp_http"]["rejected"] == {}


def _rotel(binary: Path, tmp: Path, grpc_port: int, http_port: int, sink: Sink) -> Peer:
    return Peer([str(binary), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                 "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "otlp",
                 "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink.grpc_port}",
                 "--otlp-exporter-protocol", "grpc", "--pid-file", str(tmp / "rotel.pid")], tmp / "rotel.log")


def _forward(c: CollectorProc) -> dict[str, Any]:
    (counters,) = c.status()["forward"].values()
    return counters


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_rotel_downstream_outage_and_restart_every_span_once(tmp_path: Path, peers: list[Peer],
                                                             protocol: str) -> None:
    rotel = peer("rotel")
    sink = Sink(tmp_path).start()  # where rotel forwards to; up all along
    try:
        grpc_port, http_port = free_port(), free_port()
        endpoint = f"grpc://127.0.0.1:{grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{http_port}"
        c = CollectorProc(tmp_path)
        c.config.write_text(
            "store:\n  flush_interval: 0.05\n"
            f"forward:\n  - endpoint: {endpoint}\n    protocol: {protocol}\n"
            f"    queue_dir: {tmp_path / 'fwdq'}\n    retry_initial: 0.05\n    retry_max: 0.2\n")
        c.start()

        # 1. rotel is down while the app runs and our collector restarts: everything waits in the queue.
        first = run_producer(c.endpoint, "--spans", "3000")
        assert first["counters"]["sent"] == 3001  # type: ignore[index]
        assert c.stop() == 0
        assert _forward(c)["queued"] == 3001 and _forward(c)["sent"] == 0
        c.start()
        r = _rotel(rotel, tmp_path, grpc_port, http_port, sink).start()
        peers.append(r)
        wait_for(lambda: len(sink.items()) >= 3001, timeout=60, what="the queue delivered through rotel")

        # 2. rotel restarts while the app runs.
        app = run_producer(c.endpoint, "--spans", "4000", "--rate", "1000", wait=False)
        wait_for(lambda: len(sink.items()) > 3001, timeout=60, what="the second run reaching rotel")
        failed = _forward(c)["failed"]
        assert r.stop() == 0
        wait_for(lambda: _forward(c)["failed"] > failed, timeout=60, what="the collector to see rotel gone")
        r.start()
        second = producer_result(app)  # type: ignore[arg-type]
        assert second["counters"]["sent"] == 4001
        wait_for(lambda: len(sink.items()) >= 7002, timeout=60, what="everything delivered through rotel")
        assert r.stop() == 0
        assert c.stop() == 0
    finally:
        sink.stop()

    items = sink.items()
    ids = [(x["trace_id"], x["span_id"]) for x in items if x["signal"] == "span"]
    assert len(ids) == 7000 and len(set(ids)) == 7000  # nothing lost, nothing twice
    assert len([x for x in items if x["signal"] == "log"]) == 2
    assert set(ids) == set(c.rows("SELECT trace_id, span_id FROM records WHERE type IN ('span', 'event')"))
    fwd = _forward(c)
    assert fwd["queued"] == 0 and not fwd["dropped"]


def _metrics_request(now: int) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="vm-peer")))
    sm = rm.scope_metrics.add()
    gauge = sm.metrics.add()
    gauge.name = "peer.queue.depth"
    for i in range(6):  # two series (k=even/odd), three points each, a second apart
        dp = gauge.gauge.data_points.add()
        dp.time_unix_nano = now - (6 - i) * 1_000_000_000
        dp.as_double = 1.5 * i
        dp.attributes.append(KeyValue(key="k", value=AnyValue(string_value="even" if i % 2 == 0 else "odd")))
    total = sm.metrics.add()
    total.name = "peer.requests"
    total.sum.is_monotonic = True
    total.sum.aggregation_temporality = 2  # cumulative
    dp = total.sum.data_points.add()
    dp.start_time_unix_nano, dp.time_unix_nano, dp.as_int = now - 10_000_000_000, now, 42
    return req.SerializeToString()


def _promql(port: int, query: str) -> dict[str, float]:
    """``{series label k (or "-"): value}`` of an instant query; {} while VictoriaMetrics is not up."""
    url = f"http://127.0.0.1:{port}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
    except (OSError, urllib.error.URLError):
        return {}
    assert body["status"] == "success", body
    return {r["metric"].get("k", "-"): float(r["value"][1]) for r in body["data"]["result"]}


def test_victoria_metrics_reads_our_forwarded_metrics_through_promql(tmp_path: Path, peers: list[Peer]) -> None:
    vm_bin = peer("victoria-metrics")
    vm_port = free_port()
    c = CollectorProc(tmp_path)
    _token_config(c, tmp_path, f"forward:\n  - endpoint: http://127.0.0.1:{vm_port}/opentelemetry\n"
                               "    protocol: http/protobuf\n    retry_initial: 0.05\n    retry_max: 0.2\n")
    c.start()
    wait_for(lambda: "otlp_http" in c.status(), what="status with the OTLP endpoint")
    http_port = int(c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/metrics", data=_metrics_request(time.time_ns()),
                                 headers={"Content-Type": "application/x-protobuf",
                                          "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    # VictoriaMetrics is not up yet: the forwarder retries until it is.
    wait_for(lambda: _forward(c)["failed"] >= 1, timeout=60, what="a failed forward")
    vm = Peer([str(vm_bin), f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
               "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=ERROR"], tmp_path / "vm.log")
    peers.append(vm.start())
    query = 'count_over_time({__name__="peer.queue.depth"}[10m])'
    wait_for(lambda: _promql(vm_port, query) == {"even": 3.0, "odd": 3.0}, timeout=60,
             what="VictoriaMetrics to hold every point once")
    assert _promql(vm_port, 'sum_over_time({__name__="peer.queue.depth"}[10m])') == {"even": 9.0, "odd": 13.5}
    assert _promql(vm_port, 'last_over_time({__name__="peer.requests"}[10m])') == {"-": 42.0}
    assert _promql(vm_port, 'count_over_time({__name__="peer.requests"}[10m])') == {"-": 1.0}
    assert c.stop() == 0
    fwd = _forward(c)
    assert fwd["sent"] == 7 and fwd["queued"] == 0 and not fwd["dropped"]
