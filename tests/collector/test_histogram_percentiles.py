"""Histogram percentiles from the buckets (issue 17 item 1).

The design's rule (001 "Slow Response Times": ``response_time`` p95 > 1000 ms) runs in a real
collector process over histograms that a separate app process records: an explicit-bucket histogram
through the ZeroMQ exporter, an exponential one through OTLP/HTTP. The values are known, so the
true p95 is known, and the answer must be within the documented bucket resolution.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CollectorProc, wait_for

from otel_telemetry.query import histograms
from otel_telemetry.query.filters import nearest_rank

VALUES = [10.0 * i for i in range(1, 201)]  # 200 values, 10..2000 ms
TRUE_P95 = nearest_rank(VALUES, 95)  # 1900
TRUE_P50 = nearest_rank(VALUES, 50)  # 1000
DEFAULT_BOUNDS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)  # the OTel SDK's

APP = r"""
import sys
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
import otel_telemetry

endpoint, otlp_port = sys.argv[1], sys.argv[2]
values = [10.0 * i for i in range(1, 201)]
tel = otel_telemetry.configure("api", endpoint=endpoint, export_interval=3600, join_timeout=10)
zmq_hist = tel.meter_provider.get_meter("api").create_histogram("response_time", unit="ms")
exp_reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=f"http://127.0.0.1:{otlp_port}/v1/metrics"), export_interval_millis=3_600_000)
exp_provider = MeterProvider(resource=Resource.create({"service.name": "api-exp"}), metric_readers=[exp_reader],
                             views=[View(instrument_name="response_time_exp",
                                         aggregation=ExponentialBucketHistogramAggregation(max_size=160))])
exp_hist = exp_provider.get_meter("api").create_histogram("response_time_exp", unit="ms")
# An exponential histogram through the ZeroMQ exporter too: the stored point must keep its buckets.
from otel_telemetry.sdk.exporter import ZmqMetricExporter
zexp_provider = MeterProvider(
    resource=Resource.create({"service.name": "api-zexp"}),
    metric_readers=[PeriodicExportingMetricReader(ZmqMetricExporter(endpoint), export_interval_millis=3_600_000)],
    views=[View(instrument_name="response_time_zexp", aggregation=ExponentialBucketHistogramAggregation(max_size=160))])
zexp_hist = zexp_provider.get_meter("api").create_histogram("response_time_zexp", unit="ms")
# Two exports of running totals (the SDK's default, cumulative): the window must count 200 values, not 300.
for half in (values[::2], values[1::2]):
    for v in half:
        zmq_hist.record(v, {"route": "/documents/process"})
        exp_hist.record(v, {"route": "/documents/process"})
        zexp_hist.record(v, {"route": "/documents/process"})
    tel.meter_provider.force_flush(10_000)
    exp_provider.force_flush(10_000)
    zexp_provider.force_flush(10_000)
exp_provider.shutdown()
zexp_provider.shutdown()
print("ok" if tel.shutdown(10) else "shutdown timed out")
"""


class Webhook:
    """A real HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fired(self, rule: str) -> dict[str, Any] | None:
        return next((b for b in self.bodies if b["rule"] == rule and b["event_type"] == "alert.triggered"), None)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.server.shutdown()
    w.server.server_close()


def _rule(name: str, metric: str, aggregation: str, threshold: float, op: str = ">") -> dict[str, Any]:
    # 001's rule: {"metric": "response_time", "operator": ">", "threshold": 1000, "aggregation": "p95"}
    # min_samples: a rule has a value only once all 200 recorded values are in, so the value it fires
    # with does not depend on how far ingest had got at the engine's first round.
    return {"name": name, "kind": "threshold", "metric": metric, "aggregation": aggregation, "op": op,
            "threshold": threshold, "window": "1h", "severity": "warning", "min_samples": 200}


def test_design_p95_rule_on_histograms_in_a_real_collector(tmp_path: Path, webhook: Webhook) -> None:
    c = CollectorProc(tmp_path)
    rules = [_rule("Slow Response Times", "response_time", "p95", 1000),
             _rule("p50 explicit", "response_time", "p50", 0),
             _rule("count explicit", "response_time", "count", 0),
             _rule("Slow Response Times (exponential)", "response_time_exp", "p95", 1000),
             _rule("p50 exponential", "response_time_exp", "p50", 0),
             _rule("count exponential", "response_time_exp", "count", 0),
             _rule("p95 exponential over ZeroMQ", "response_time_zexp", "p95", 1000),
             _rule("count exponential over ZeroMQ", "response_time_zexp", "count", 0)]
    c.config.write_text(yaml.safe_dump({
        "store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
        "alerts": {"interval": 0.1, "rules": rules, "notify": [{"type": "webhook", "url": webhook.url}]}}))
    c.start()
    try:
        wait_for(lambda: "otlp_http" in c.status(), what="collector status with the OTLP port")
        port = c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1]
        app = subprocess.run([sys.executable, "-c", APP, c.endpoint, port], capture_output=True, timeout=120)
        assert app.returncode == 0 and app.stdout.strip() == b"ok", app.stderr.decode()[-2000:]
        wait_for(lambda: all(webhook.fired(r["name"]) for r in rules), timeout=60, what="every rule firing")
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]
    got = {r["name"]: webhook.fired(r["name"])["current_value"] for r in rules}  # type: ignore[index]
    assert got["count explicit"] == got["count exponential"] == got["count exponential over ZeroMQ"] == 200
    # Explicit buckets: the true p95 (1900) is in (1000, 2500]; the answer is within that width.
    assert abs(got["Slow Response Times"] - TRUE_P95) <= 2500 - 1000
    assert abs(got["p50 explicit"] - TRUE_P50) <= 1000 - 750
    # Exponential (the SDK picks the scale): relative error below 2**(2**-scale) - 1.
    row = c.rows("SELECT data FROM records WHERE name = 'response_time_exp' ORDER BY timestamp DESC LIMIT 1")
    scale = json.loads(row[0][0])["scale"]
    rel = 2.0 ** (2.0 ** -scale) - 1
    assert abs(got["Slow Response Times (exponential)"] - TRUE_P95) <= rel * TRUE_P95
    assert abs(got["p50 exponential"] - TRUE_P50) <= rel * TRUE_P50
    assert got["p95 exponential over ZeroMQ"] == pytest.approx(got["Slow Response Times (exponential)"])
    # What the bug returned: the histogram's sum (201000 here), never a percentile.
    assert got["Slow Response Times"] < sum(VALUES) / 10


def _point(values: list[float], bounds: tuple[float, ...] = DEFAULT_BOUNDS, **kw: Any) -> dict[str, Any]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    return {"attributes": kw.pop("attributes", {}), "count": len(values), "sum": sum(values),
            "min": min(values), "max": max(values), "bounds": list(bounds), "counts": counts, **kw}


def _exp_point(values: list[float], scale: int, **kw: Any) -> dict[str, Any]:
    idx: dict[int, int] = {}
    for v in values:
        i = math.ceil(math.log2(v) * 2 ** scale) - 1  # bucket i holds (base**i, base**(i+1)]
        idx[i] = idx.get(i, 0) + 1
    lo = min(idx)
    return {"attributes": kw.pop("attributes", {}), "count": len(values), "sum": sum(values),
            "min": min(values), "max": max(values), "scale": scale, "zero_count": 0,
            "positive": {"offset": lo, "counts": [idx.get(i, 0) for i in range(lo, max(idx) + 1)]},
            "negative": {"offset": 0, "counts": []}, **kw}


def _rows(*points: tuple[str, dict[str, Any]]) -> list[histograms.Row]:
    return [("svc", mtype, json.dumps(p)) for mtype, p in points]


def test_merges_series_deltas_and_resets_like_histogram_quantile() -> None:
    a, b = VALUES[:120], VALUES[120:]
    # Two series (different attributes), delta temporality: added up.
    w = histograms.window(_rows(("histogram", _point(a, attributes={"r": 1}, temporality="delta")),
                                ("histogram", _point(b, attributes={"r": 2}, temporality=1))))
    assert (w.count, w.series) == (200, 2)
    assert abs(histograms.quantile(w, 0.95) - TRUE_P95) <= 1500  # type: ignore[operator]
    # Cumulative with a baseline before the window: only the increase counts.
    before = _rows(("histogram", _point(a)))
    w = histograms.window(_rows(("histogram", _point(VALUES))), before)
    assert w.count == len(b) and abs(histograms.quantile(w, 0.5) - nearest_rank(b, 50)) <= 1500  # type: ignore[operator]
    # A reset (the count went down): the new point counts whole.
    w = histograms.window(_rows(("histogram", _point(VALUES)), ("histogram", _point(b[:10]))))
    assert w.count == 200 + 10
    # Exponential histograms of different scales in one series: brought to the coarser scale.
    w = histograms.window(_rows(("exponential_histogram", _exp_point(a, 6)),
                                ("exponential_histogram", _exp_point(VALUES, 5))))
    assert w.count == 200  # the first point (no baseline) whole, then the increase
    p = histograms.quantile(w, 0.95)
    assert abs(p - TRUE_P95) <= (2 ** (2 ** -5) - 1) * TRUE_P95  # type: ignore[operator]
    # Different explicit layouts across series overlap: still within the coarser bucket.
    w = histograms.window(_rows(("histogram", _point(a, attributes={"r": 1}, temporality="delta")),
                                ("histogram", _point(b, bounds=(500, 1000, 1500, 2000), attributes={"r": 2},
                                                     temporality="delta"))))
    assert abs(histograms.quantile(w, 0.95) - TRUE_P95) <= 1500  # type: ignore[operator]
    assert histograms.aggregate(histograms.Window(), "p95") is None


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.95, 0.99])
def test_exponential_error_is_within_the_documented_bound(q: float) -> None:
    for scale in (2, 4, 8):
        w = histograms.window(_rows(("exponential_histogram", _exp_point(VALUES, scale))))
        true = nearest_rank(VALUES, round(q * 100))
        assert abs(histograms.quantile(w, q) - true) <= (2 ** (2 ** -scale) - 1) * true * 1.0001  # type: ignore[operator]
