"""``otel-telemetry conversation TRACE_ID``: a trace's LLM conversations and agent steps
(``query.conversation``), as the dashboard's trace view shows them."""

from __future__ import annotations

from typing import Any

import click
import orjson

from ..query import conversation as qv
from ..query import filters as query
from ..query import in_progress as live
from .output import TRACE_ID, _emit_csv, _emit_json, _emit_table, _open, common_options

MAX_RECORDS = 5000
STEP_COLUMNS = ("index", "kind", "name", "duration_ms", "input_tokens", "output_tokens", "cost_usd", "status",
                "summary")


def register(main: click.Group) -> None:
    """Attach the ``conversation`` command to the top-level CLI group."""
    main.add_command(conversation_cmd)


def _text(part: dict[str, Any]) -> str:
    kind = part.get("type")
    if kind == "tool_call":
        return f"[tool call {part.get('name')} {part.get('id') or ''}] {orjson.dumps(part.get('arguments')).decode()}"
    if kind == "tool_call_response":
        return f"[tool result {part.get('id') or ''}] {orjson.dumps(part.get('response')).decode()}"
    content = part.get("content")
    if content is None:
        return "(content not recorded)"
    return content if isinstance(content, str) else orjson.dumps(content).decode()


@click.command("conversation")
@click.argument("trace_id", type=TRACE_ID)
@common_options
def conversation_cmd(trace_id: str, db: str | None, fmt: str) -> None:
    """Print the agent steps of a trace and the conversation of each LLM call in it.

    Messages come from the current GenAI attributes (gen_ai.input.messages, ...), the older
    gen_ai.*.message / gen_ai.choice events, OpenInference llm.input_messages.* or gen_ai.prompt.N.*;
    content the source did not record is said to be absent, never made up. json prints turns,
    steps and totals; csv the steps.

    \b
    Example:
      otel-telemetry conversation 4bf92f3577b34da6a3ce929d0e0e4736
      otel-telemetry conversation 4bf92f3577b34da6a3ce929d0e0e4736 --format json
    """
    with _open(db) as conn:
        records = query.query_records(conn, query.Filters(trace_id=trace_id, limit=MAX_RECORDS, order="asc"))
        records += live.of_trace(conn, trace_id, records)  # steps still running (live spans)
    r = {"trace_id": trace_id, **qv.trace_conversation(records)}
    if fmt == "json":
        _emit_json(r)
        return
    # A step still running (live spans) shows its state where a finished one shows its status.
    rows = [[(s["state"] or s[c]) if c == "status" else s[c] for c in STEP_COLUMNS] for s in r["steps"]]
    if fmt == "csv":
        _emit_csv(STEP_COLUMNS, rows)
        return
    cost = STEP_COLUMNS.index("cost_usd")  # dollars of one call need more than the table's 3 decimals
    rows = [[f"{v:.6f}" if i == cost and v is not None else v for i, v in enumerate(row)] for row in rows]
    if not r["steps"]:
        raise click.ClickException(f"no GenAI spans in trace {trace_id}")
    t = r["totals"]
    click.echo(f"trace {trace_id}: {t['steps']} steps, {t['llm_calls']} LLM calls, {t['tool_calls']} tool calls, "
               f"tokens {t['input_tokens']} in / {t['output_tokens']} out, cost "
               + ("unknown" if t["cost_usd"] is None else f"${t['cost_usd']:.6f}"))
    click.echo("")
    _emit_table(STEP_COLUMNS, rows, {"name": 32, "summary": 48})
    for turn in r["turns"]:
        click.echo("")
        cost = "" if turn["cost_usd"] is None else f", ${turn['cost_usd']:.6f}"
        click.echo(f"== {turn['name']} ({turn['model'] or 'model ?'}, {turn['input_tokens']} in / "
                   f"{turn['output_tokens']} out{cost}; finish {', '.join(turn['finish_reasons']) or '?'})")
        if not turn["messages"]:
            click.echo(f"   {turn['note']}")
        for m in turn["messages"]:
            for part in m["parts"]:
                click.echo(f"   {m['role'] or '?'}: {_text(part)}")
