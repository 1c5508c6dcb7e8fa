"""One service of a three-service trace set, as its own instrumented process (the component map's
end-to-end test and browser test): ``frontend`` serves GET /checkout and calls ``payments``;
``payments`` serves the call, queries its database and publishes to ``ledger``; ``ledger``
consumes the message. Each role reads the parents it continues (trace id, span id) as JSON lines
on stdin, as the callee of a real propagated request would, and prints one JSON line: the parents
its calls hand on, what it emitted and its counters.

    python tests/apps/chain_app.py --endpoint ipc://... --role frontend --requests 20
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

import otel_telemetry


def _remote(trace_id: str, span_id: str) -> object:
    ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--role", choices=("frontend", "payments", "ledger"), required=True)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--fail-every", type=int, default=5, help="payments: every n-th call fails")
    args = ap.parse_args()
    tel = otel_telemetry.configure(args.role, endpoint=args.endpoint, export_interval=3600)
    tracer = trace.get_tracer(f"{args.role}.handlers")
    # payments also records its own metrics (exported at shutdown): a histogram and a counter.
    meter = metrics.get_meter("payments.handlers")
    pay_ms = meter.create_histogram("pay.duration", unit="ms", description="time to authorise a payment")
    pay_n = meter.create_counter("pay.requests", description="payment requests")
    rnd = random.Random(7)
    handed: list[dict[str, str]] = []
    emitted = {"spans": 0, "errors": 0}

    def ids(span: trace.Span) -> dict[str, str]:
        c = span.get_span_context()
        return {"trace_id": f"{c.trace_id:032x}", "span_id": f"{c.span_id:016x}"}

    if args.role == "frontend":
        for _ in range(args.requests):
            with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
                                              attributes={"http.request.method": "GET", "http.route": "/checkout"}):
                with tracer.start_as_current_span("POST /pay", kind=SpanKind.CLIENT,
                                                  attributes={"http.request.method": "POST",
                                                              "server.address": "payments"}) as call:
                    handed.append(ids(call))
            emitted["spans"] += 2
    else:
        parents = [json.loads(line) for line in sys.stdin if line.strip()]
        for i, p in enumerate(parents):
            ctx = _remote(p["trace_id"], p["span_id"])
            if args.role == "payments":
                with tracer.start_as_current_span("POST /pay", context=ctx, kind=SpanKind.SERVER,
                                                  attributes={"http.request.method": "POST",
                                                              "http.route": "/pay"}) as s:
                    with tracer.start_as_current_span("SELECT accounts", kind=SpanKind.CLIENT,
                                                      attributes={"db.system.name": "sqlite"}):
                        pass
                    with tracer.start_as_current_span("ledger publish", kind=SpanKind.PRODUCER,
                                                      attributes={"messaging.system": "kafka"}) as pub:
                        handed.append(ids(pub))
                    method = ("card", "wallet")[i % 2]
                    pay_ms.record(rnd.lognormvariate(3 if method == "card" else 2, 0.6), {"method": method})
                    pay_n.add(1, {"method": method})
                    if args.fail_every and i % args.fail_every == 0:
                        s.set_status(Status(StatusCode.ERROR, "card declined"))
                        emitted["errors"] += 1
                emitted["spans"] += 3
            else:
                with tracer.start_as_current_span("ledger process", context=ctx, kind=SpanKind.CONSUMER,
                                                  attributes={"messaging.system": "kafka",
                                                              "amount": rnd.randrange(100, 10_000)}):
                    pass
                emitted["spans"] += 1
    ok = tel.shutdown(10.0)
    print(json.dumps({"handed": handed, "emitted": emitted, "counters": tel.counters(), "shutdown_ok": ok}))


if __name__ == "__main__":
    main()
