"""``otel-telemetry watch --in-progress``: spans started and not yet ended (live spans).

Reads ``query.in_progress`` on a read-only connection every ``--interval``, like ``watch``:

- ``--format table``: the spans in progress with their elapsed time, printed again whenever the
  set or a state changes (on a terminal, redrawn in place every interval, so the time runs);
- ``--format jsonl``: one line per change: ``started``, ``abandoned``, and ``ended`` (with the
  stored span's ``duration_ms`` and ``status``) or ``gone`` (evicted without its span);
- ``--format json``: the current spans in progress once (the dashboard's ``/api/in_progress``), then exit.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import click
import orjson

from ..query import export as rx
from ..query import in_progress as live
from .output import _open

_COLUMNS = (("elapsed", 10), ("state", 9), ("service", 20), ("name", 36), ("trace_id", 32), ("span_id", 16))
_EVENT_KEYS = ("time", "elapsed_ms", "state", "service", "component", "category", "name", "trace_id", "span_id",
               "parent_span_id", "instance")


def _elapsed(ms: float) -> str:
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} m {int(s % 60)} s" if s < 3600 else f"{int(s // 3600)} h {int(s % 3600 // 60)} m"


def _line(cells: list[str]) -> str:
    out = []
    for text, (_, width) in zip(cells, _COLUMNS, strict=True):
        out.append((text[: width - 1] + "…" if len(text) > width else text).ljust(width))
    return "  ".join(out).rstrip()


def _matches(rec: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(not values or rec.get(col) in values for col, values in filters.items())


def _ended(conn: Any, rec: dict[str, Any]) -> dict[str, Any]:
    """The line for a span that left the in-progress table: stored (``ended``) or not (``gone``)."""
    row = conn.execute("SELECT duration_ms, status FROM records WHERE trace_id = ? AND span_id = ? LIMIT 1",
                       (rec["trace_id"], rec["span_id"])).fetchone() if rec.get("trace_id") else None
    event = "ended" if row is not None else "gone"
    out = {"event": event, **{k: rec.get(k) for k in _EVENT_KEYS}, "state": event}
    if row is not None:
        out["duration_ms"], out["status"] = row[0], row[1]
    return out


def watch_in_progress(db: str | None, fmt: str, interval: float, max_records: int | None,
                      timeout: float | None, filters: dict[str, Any]) -> None:
    """Poll the spans in progress until Ctrl-C, ``timeout`` or ``max_records`` lines/blocks."""
    filters = {c: tuple(filters.get(c) or ()) for c in rx.FILTER_COLUMNS}
    deadline = None if timeout is None else time.monotonic() + timeout
    out = sys.stdout
    tty = fmt == "table" and out.isatty()
    shown = 0
    before: dict[str, dict[str, Any]] = {}
    first = True
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the normal way to stop a live view
        with _open(db) as conn:
            while True:
                now = live.spans(conn)
                spans = [s for s in now["spans"] if _matches(s, filters)]
                if fmt == "json":
                    click.echo(orjson.dumps({**now, "spans": spans}).decode(), file=out)
                    return
                current = {f"{s['trace_id']}:{s['span_id']}": s for s in spans}
                if fmt == "jsonl":
                    lines = [{"event": "started" if s["state"] == "running" else "abandoned",
                              **{k: s.get(k) for k in _EVENT_KEYS}}
                             for key, s in current.items()
                             if key not in before or before[key]["state"] != s["state"]]
                    lines += [_ended(conn, s) for key, s in before.items() if key not in current]
                    for line in lines:
                        click.echo(orjson.dumps(line).decode(), file=out)
                        shown += 1
                        if max_records is not None and shown >= max_records:
                            return
                elif tty or first or {k: s["state"] for k, s in current.items()} != {
                        k: s["state"] for k, s in before.items()}:
                    if tty:
                        click.echo("\x1b[H\x1b[2J", nl=False, file=out)
                    click.echo(f"in progress at {now['now']}: {len(spans)} span(s)"
                               f"{' (more not shown)' if now['truncated'] else ''}", file=out)
                    if spans:
                        click.echo(_line([c.upper() for c, _ in _COLUMNS]), file=out)
                    for s in spans:
                        click.echo(_line([_elapsed(s["elapsed_ms"]), s["state"], s["service"] or "",
                                          s["name"] or "", s["trace_id"] or "", s["span_id"] or ""]), file=out)
                    shown += 1
                    if max_records is not None and shown >= max_records:
                        return
                out.flush()
                before, first = current, False
                if deadline is not None and time.monotonic() >= deadline:
                    return
                wait = interval if deadline is None else min(interval, deadline - time.monotonic())
                time.sleep(max(0.0, wait))
