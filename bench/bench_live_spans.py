"""Spans in progress (issue 16 item 2): what one span start costs the app thread, live spans off
and on, measured on the span processor ``configure()`` installs (in process, no collector needed).

Off, ``on_start`` is the callable it was before the feature (the C one when the speed-ups are
built): nothing of ours runs. On, it is the Python ``on_start`` that also keeps a weak reference to
the span for 0.1 s. ``bench_core.py --variants sdk-noop,ours,ours-live`` measures the same on the
realistic workload end to end.

    .venv/bin/python bench/bench_live_spans.py [--calls 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit

import otel_telemetry


def per_call_ns(live: bool, calls: int, repeat: int) -> tuple[str, float]:
    endpoint = f"ipc://{tempfile.gettempdir()}/bench-live-{os.getpid()}-{int(live)}.ipc"  # nobody listens
    tel = otel_telemetry.configure("bench", endpoint=endpoint, set_global=False, metrics=False, logs=False,
                                   join_timeout=0, replay_buffer=0, live_spans=live)
    try:
        span = tel.tracer_provider.get_tracer("bench").start_span("GET /items/{id}")
        on_start = tel.tracer_provider._active_span_processor.on_start
        tracker = tel.transport.live_spans
        times = []
        for _ in range(repeat):
            times.append(timeit.timeit(lambda: on_start(span, None), number=calls) / calls * 1e9)
            if tracker is not None:
                tracker.clear()  # the same span over and over: do not let the deque fill
        return type(on_start).__name__, min(times)
    finally:
        tel.shutdown(2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    off_kind, off = per_call_ns(False, args.calls, args.repeat)
    on_kind, on = per_call_ns(True, args.calls, args.repeat)
    print(f"on_start per span (best of {args.repeat} x {args.calls:,}; includes the timing lambda):")
    print(f"  live spans off: {off:7.0f} ns  ({off_kind}: the span start path without the feature)")
    print(f"  live spans on:  {on:7.0f} ns  ({on_kind})")
    print(f"  on - off: {on - off:.0f} ns per span start; on / off = {on / off:.2f}")


if __name__ == "__main__":
    main()
