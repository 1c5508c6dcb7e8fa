"""An agent app with live spans on (``configure(live_spans=...)``), run as its own process.

It emits ``--quick`` short spans (they end long before a start would be announced), then an agent
trace ``invoke_agent planner`` → ``chat`` (ends) → ``execute_tool search`` that keeps running until
``--release`` exists. ``--ready`` is written (with the trace id) once the tool span has run for
``--ready-after`` seconds. ``--hang`` never ends the spans (the test kills the process). At the end
it prints its counters and what it emitted as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind

import otel_telemetry


def wait_file(path: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--live", choices=("on", "off", "env"), default="on")
    ap.add_argument("--quick", type=int, default=200)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--ready-after", type=float, default=0.5)
    ap.add_argument("--release", default=None)
    ap.add_argument("--hang", action="store_true")
    args = ap.parse_args()
    options = {} if args.live == "env" else {"live_spans": args.live == "on"}
    tel = otel_telemetry.configure("agent-app", endpoint=args.endpoint, join_timeout=10, metrics=False,
                                   logs=False, **options)
    tracer = trace.get_tracer("agent.runtime")
    for i in range(args.quick):
        with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER,
                                          attributes={"http.route": "/items/{id}", "item.id": i}):
            pass
    agent = tracer.start_span("invoke_agent planner", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "user.email": "ann@example.com"})
    ctx = trace.set_span_in_context(agent)
    with tracer.start_as_current_span("chat gpt-4o", context=ctx, kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30}):
        pass
    tool = tracer.start_span("execute_tool search", context=ctx, attributes={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
    time.sleep(args.ready_after)
    ids = {"trace_id": format(agent.get_span_context().trace_id, "032x"),
           "agent_span_id": format(agent.get_span_context().span_id, "016x"),
           "tool_span_id": format(tool.get_span_context().span_id, "016x")}
    with open(args.ready + ".tmp", "w") as f:
        json.dump(ids, f)
    os.replace(args.ready + ".tmp", args.ready)
    if args.hang:
        while True:
            time.sleep(1)
    if args.release:
        wait_file(args.release)
    tool.end()
    agent.end()
    ok = tel.shutdown(60)
    c = tel.transport.counters()
    print(json.dumps({"shutdown_ok": ok, "counters": c, "spans": args.quick + 3, **ids}), flush=True)


if __name__ == "__main__":
    main()
