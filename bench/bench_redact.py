"""Redaction cost per span on the app side (issue 5), against the SDK's own per-span cost.

    .venv/bin/python bench/bench_redact.py [--spans 20000] [--repeat 5]

Measures, in this one process (CPU time of the calling thread, median of ``--repeat``):

  sdk span         SDK TracerProvider (no processor): start_span(attributes=10) + end, the app's
                   per-span floor (bench_core.py's sdk-noop, ~15 µs there)
  typical/clean    Redactor.redact_span on the wire tuple of such a span without PII; one
                   attribute value varies per span (a cache miss every span), the rest repeat
  typical/bench    the bench_core.py attribute shape, incl. user.id (pseudonymised, keyed)
  with PII         the same span carrying an e-mail, a phone number, a card, an IP and a token
  resource         redact_resource on a 10-key resource (once per batch, not per span)

and prints each as µs/span and as % of the SDK span cost (target: typical ≤ 10 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from otel_telemetry.redact.redactor import RedactionConfig, Redactor  # noqa: E402

KEY = "bench-key-0123456789abcdef0123456789"


def _clean_attrs(i: int) -> dict:
    return {
        "http.request.method": "GET",
        "http.route": "/api/v1/items/{id}",
        "url.path": f"/api/v1/items/{i}",
        "http.response.status_code": 200,
        "server.address": "api.internal",
        "server.port": 8080,
        "user_agent.original": "python-requests/2.31.0",
        "request.seq": i,
        "cache.hit": True,
        "latency.ms": 3.25,
    }


def _bench_core_attrs(i: int) -> dict:
    return {
        "http.request.method": "GET", "http.route": "/api/v1/items/{id}", "http.response.status_code": 200,
        "server.address": "127.0.0.1", "server.port": 8080, "user.id": "u-12345", "request.seq": i,
        "cache.hit": True, "db.rows": 42, "latency.ms": 3.25,
    }


def _pii_attrs(i: int) -> dict:
    a = _clean_attrs(i)
    a.update({"enduser.email": f"user{i}@example.com", "client.address": "203.0.113.7",
              "note": "call +1 (415) 555-2671", "payment": "4111 1111 1111 1111",
              "http.request.header.authorization": ["Bearer abc123def456ghi789"]})
    return a


def _span(attrs: dict, i: int) -> tuple:
    return ("GET /api/v1/items/{id}", i.to_bytes(16, "big"), i.to_bytes(8, "big"), None,
            1_700_000_000_000_000_000 + i, 1_700_000_000_000_100_000 + i, 1, 0, None, attrs, None, None,
            "opentelemetry.instrumentation.fastapi", "0.51b0")


def _cpu_per(fn, items) -> float:  # type: ignore[no-untyped-def]
    t0 = time.thread_time()
    for it in items:
        fn(it)
    return (time.thread_time() - t0) / len(items) * 1e6


def sdk_span_us(n: int) -> float:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    t0 = time.thread_time()
    for i in range(n):  # as bench_core.py's sdk-noop: attributes given at start, then end()
        tracer.start_span("bench.op", attributes=_bench_core_attrs(i)).end()
    return (time.thread_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.spans
    red = Redactor(RedactionConfig(pseudonym_key=KEY))
    cases = {
        "typical/clean": [_span(_clean_attrs(i), i) for i in range(n)],
        "typical/bench_core": [_span(_bench_core_attrs(i), i) for i in range(n)],
        "with PII": [_span(_pii_attrs(i), i) for i in range(n)],
    }
    resource = {"service.name": "shop", "service.version": "1.4.2", "host.name": "web-3",
                "process.pid": 4242, "process.runtime.name": "cpython", "process.runtime.version": "3.11.9",
                "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
                "telemetry.sdk.version": "1.30.0", "deployment.environment": "prod"}
    results: dict[str, list[float]] = {k: [] for k in ("sdk span", *cases, "resource")}
    counts: dict[str, int] = {}
    resources = [dict(resource) for _ in range(n)]
    for _ in range(args.repeat):
        results["sdk span"].append(sdk_span_us(n))
        for name, spans in cases.items():
            red = Redactor(RedactionConfig(pseudonym_key=KEY))  # cold caches every repeat
            results[name].append(_cpu_per(red.redact_span, spans))
            counts = red.counts()
        results["resource"].append(_cpu_per(red.redact_resource, resources))
    sdk = statistics.median(results["sdk span"])
    print(f"{'case':<22}{'µs/span':>10}{'% of SDK span':>16}")
    for name, vals in results.items():
        us = statistics.median(vals)
        pct = "" if name == "sdk span" else f"{us / sdk * 100:15.1f}%"
        print(f"{name:<22}{us:>10.2f}{pct:>16}")
    clean_pct = statistics.median(results["typical/clean"]) / sdk * 100
    print(f"target typical ≤ 10 % of the SDK span: {'met' if clean_pct <= 10 else 'NOT met'} ({clean_pct:.1f} %)")
    print(f"counts() after one 'with PII' pass over {n} spans:", dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
