"""A small instrumented service for `make demo`: traffic in all six categories.

Plain OTel API calls (spans, a histogram, a log) plus the original design's
``record_telemetry`` events; ``otel_telemetry.configure()`` ships them to the collector.
"""

from __future__ import annotations

import json
import logging
import random
import time

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import otel_telemetry


def main() -> None:
    tel = otel_telemetry.configure("demo-service", resource_attributes={"deployment.environment": "demo"})
    tracer = trace.get_tracer("demo.api")
    llm = trace.get_tracer("demo.llm")
    latency = metrics.get_meter("demo.api").create_histogram("http.server.request.duration", unit="s")
    cpu = metrics.get_meter("demo.host").create_gauge("system.cpu.utilization", unit="1")
    log = logging.getLogger("demo")
    log.addHandler(otel_telemetry.logging_handler(tel))
    log.setLevel(logging.INFO)
    rnd = random.Random(42)
    for i in range(200):
        with tracer.start_as_current_span("GET /chat", kind=SpanKind.SERVER,
                                          attributes={"http.request.method": "GET", "http.route": "/chat",
                                                      "session.id": f"s-{i % 5}"}):
            with llm.start_as_current_span("chat demo-model", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "demo-model",
                "gen_ai.usage.input_tokens": rnd.randint(50, 500), "gen_ai.usage.output_tokens": rnd.randint(10, 200),
            }):
                time.sleep(rnd.uniform(0.0005, 0.003))
            with tracer.start_as_current_span("SELECT messages", kind=SpanKind.CLIENT,
                                              attributes={"db.system.name": "sqlite"}):
                pass
            if i % 25 == 0:
                with tracer.start_as_current_span("tool: weather") as span:
                    try:
                        raise TimeoutError("weather API timed out")
                    except TimeoutError as exc:
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, "timeout"))
                log.error("tool call failed: weather API timed out")
        latency.record(rnd.uniform(0.01, 0.3), {"http.route": "/chat"})
        cpu.set(rnd.uniform(0.1, 0.9))
        otel_telemetry.record_telemetry("system_performance", "host", "heartbeat", data={"tick": i})
        if i % 10 == 0:
            otel_telemetry.record_telemetry("ai_research", "memory", "recall_precision",
                                            data={"precision": round(rnd.uniform(0.7, 1.0), 3)})
    ok = tel.shutdown(10)
    print("sample service finished:", json.dumps(tel.counters() | {"shutdown_ok": ok}))


if __name__ == "__main__":
    main()
