"""The collector's opt-in Prometheus ``/metrics`` (issue 15 item 8), scraped from a real collector
process with a real HTTP client and read with Prometheus's own text-format parser
(``prometheus_client.parser``), after traffic over OTLP/HTTP and ZeroMQ.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import yaml
from conftest import CollectorProc, run_producer, wait_for
from test_store_faults import _spans, http_port, post

parser = pytest.importorskip("prometheus_client.parser")

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "otel-telemetry-collector.json"


def _scrape(endpoint: str, path: str = "/metrics") -> tuple[int, str, str]:
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_endpoint_scraped_and_parsed(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "metrics_endpoint": "127.0.0.1:0"}))
    c.start()
    try:
        wait_for(lambda: "metrics_endpoint" in c.status(), what="the metrics endpoint in the status row")
        endpoint = c.status()["metrics_endpoint"]
        assert endpoint.startswith("127.0.0.1:")  # loopback
        assert post(http_port(c), _spans(7)) == 200
        out = run_producer(c.endpoint, "--spans", "25")
        emitted = sum(out["emitted"].values())  # type: ignore[index]
        wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == 7 + emitted, what="all stored")

        def scraped() -> dict:
            status, ctype, text = _scrape(endpoint)
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
            return _samples(text)

        wait_for(lambda: scraped().get(("otel_telemetry_stored_total", ())) == 7 + emitted, what="stored in /metrics")
        m = scraped()
        assert m[("otel_telemetry_received_total", (("source", "otlp_http"),))] == 7
        assert m[("otel_telemetry_received_total", (("source", "zmq"),))] == emitted
        assert m[("otel_telemetry_store_state", (("state", "running"),))] == 1
        assert m[("otel_telemetry_store_state", (("state", "disk_full"),))] == 0
        assert m[("otel_telemetry_queue_depth", (("queue", "store"),))] >= 0
        assert m[("otel_telemetry_up", ())] == 1
        assert m[("otel_telemetry_spans_in_progress", ())] == 0
        # The default AI alert rules are on: each has a state, exactly one of ok/pending/firing.
        rules = {dict(k[1])["rule"] for k in m if k[0] == "otel_telemetry_alert_state"}
        assert rules
        for rule in rules:
            assert sum(v for k, v in m.items() if k[0] == "otel_telemetry_alert_state"
                       and dict(k[1])["rule"] == rule) == 1
        assert _scrape(endpoint, "/other")[0] == 404
        # The Grafana dashboard queries these families.
        dash = json.loads(GRAFANA.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        declared = {f.name for f in parser.text_string_to_metric_families(_scrape(endpoint)[2])}
        families = declared | {f"{name}_total" for name in declared}  # a counter family drops _total
        for expr in exprs:
            used = [w for w in expr.replace("(", " ").replace(")", " ").replace("[", " ").replace("{", " ").split()
                    if w.startswith("otel_telemetry_")]
            assert used and all(u in families for u in used), expr
    finally:
        assert c.stop() == 0, c.log.read_text()[-3000:]
