"""The dashboard's exploring endpoints: attribute filters for the trace search, what failing or
slow spans share (``compare``), and LLM conversations and agent steps of a trace (``conversation``).

Same shape as ``api``: functions ``(conn, params, ctx) -> dict`` on the request's handler thread,
over read-only connections; the work is done by ``query/`` (``attr_search``, ``compare``,
``conversation``), so the CLI prints the same numbers.
"""

from __future__ import annotations

from typing import Any

import apsw

from ..query import attr_search
from ..query import compare as qc
from ..query import conversation as qv
from ..query import filters as query
from ..query import in_progress as live
from ..query.filters import QueryError
from .api import INSTANCE
from .params import WINDOW, ApiError, Params


def attr_filters(p: Params) -> tuple[attr_search.AttrFilter, ...]:
    """Every ``attr`` parameter (repeatable, one filter each: values may hold commas) parsed."""
    out = []
    for raw in p.raw.get("attr", ()):
        text = raw.strip()
        if not text:
            continue
        try:
            out.append(attr_search.parse(text))
        except QueryError as exc:
            raise ApiError(str(exc)) from None
    return tuple(out)


def compare(conn: apsw.Connection, p: Params, ctx: Any) -> dict[str, Any]:
    """``otel-telemetry compare`` for the window: ``where`` (error, duration>500ms, key=value),
    optional ``name``, ``service``, ``attr`` (repeatable), ``limit``; sampled beyond the
    ``compare_max_spans`` setting, as the CLI."""
    since, until = p.window("24h")
    text = p.text("where")
    if text is None:
        raise ApiError("where is required: error, duration>500ms or key=value")
    try:
        where = qc.parse_where(text)
        cap = qc.max_spans_setting()
    except (QueryError, ValueError) as exc:
        raise ApiError(str(exc)) from None
    return qc.compare(conn, where, since, until, name=p.text("name"), service=p.text("service"),
                      attrs=attr_filters(p), limit=p.integer("limit", 20, 1, 1000), max_spans=cap,
                      instance=p.text(INSTANCE))


MAX_TRACE_RECORDS = 5000  # as the waterfall (records_api.trace)


def conversation(conn: apsw.Connection, p: Params, ctx: Any) -> dict[str, Any]:
    """The LLM conversations (turns) and agent steps of one trace (``otel-telemetry conversation``)."""
    trace_id = p.text("trace_id")
    if trace_id is None:
        raise ApiError("trace_id is required")
    try:
        flt = query.Filters(trace_id=trace_id, limit=MAX_TRACE_RECORDS + 1, order="asc")
    except QueryError as exc:
        raise ApiError(str(exc)) from None
    records = query.query_records(conn, flt)
    # Steps still running (live spans) are steps too: "the agent has been thinking for 40 s".
    out = qv.trace_conversation(records[:MAX_TRACE_RECORDS] + live.of_trace(conn, flt.trace_id, records))
    return {"trace_id": flt.trace_id, **out, "truncated": len(records) > MAX_TRACE_RECORDS}


# name -> (function, accepted parameters); the server routes /api/<name> here.
EXPLORE: dict[str, tuple[Any, tuple[str, ...]]] = {
    "compare": (compare, (*WINDOW, "where", "name", "service", "attr", "limit", INSTANCE)),
    "conversation": (conversation, ("trace_id",)),
}
