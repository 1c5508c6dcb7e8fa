"""A sample instrumented process for the end-to-end tests (run as a separate process).

Emits spans in all six categories (explicit attribute, default rules, record_telemetry), logs and
metrics, optionally at a steady rate, then shuts down and prints its counters and what it
emitted as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import otel_telemetry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--spans", type=int, default=600)
    ap.add_argument("--rate", type=float, default=0.0, help="spans per second; 0 = flat out")
    ap.add_argument("--join-timeout", type=float, default=5.0)
    ap.add_argument("--shutdown-timeout", type=float, default=10.0)
    ap.add_argument("--queue-size", type=int, default=8192)
    ap.add_argument("--ready-file", default=None, help="touched once the first span is emitted")
    ap.add_argument("--ready-after", type=int, default=0, help="touch --ready-file after this many spans")
    ap.add_argument("--stop-file", default=None, help="stop emitting (before --spans) once this file exists")
    ap.add_argument("--replay-buffer", type=int, default=None, help="records held unconfirmed (setting)")
    args = ap.parse_args()
    tel = otel_telemetry.configure(
        "producer", endpoint=args.endpoint, join_timeout=args.join_timeout, queue_size=args.queue_size,
        export_interval=3600, replay_buffer=args.replay_buffer,
    )
    tracer = trace.get_tracer("producer.component")
    emitted: dict[str, int] = {}

    def span(i: int) -> str:
        k = i % 6
        if k == 0:
            with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.request.model": "gpt-4o",
                                                                       "gen_ai.usage.input_tokens": i}):
                return "ai_behavior"
        if k == 1:
            with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER,
                                              attributes={"http.request.method": "GET"}):
                return "user_interaction"
        if k == 2:
            with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT,
                                              attributes={"db.system.name": "sqlite"}):
                return "component_interactions"
        if k == 3:
            with tracer.start_as_current_span("work") as s:
                s.set_status(Status(StatusCode.ERROR, "boom"))
                return "error_patterns"
        if k == 4:
            with tracer.start_as_current_span("sample", attributes={"telemetry.category": "system_performance"}):
                return "system_performance"
        otel_telemetry.record_telemetry("ai_research", "memory", "recall", data={"i": i, "precision": 0.9})
        return "ai_research"

    start = time.monotonic()
    for i in range(args.spans):
        cat = span(i)
        emitted[cat] = emitted.get(cat, 0) + 1
        if args.stop_file and i % 500 == 0 and os.path.exists(args.stop_file):
            break
        if i == args.ready_after and args.ready_file:
            open(args.ready_file, "w").close()
        if args.rate:
            delay = start + (i + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    logger = logging.getLogger("producer")
    logger.addHandler(otel_telemetry.logging_handler(tel))
    logger.error("disk almost full")
    emitted["error_patterns"] = emitted.get("error_patterns", 0) + 1
    t0 = time.monotonic()
    ok = tel.shutdown(args.shutdown_timeout)
    print(json.dumps({"emitted": emitted, "counters": tel.counters(), "shutdown_ok": ok,
                      "shutdown_s": time.monotonic() - t0}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
