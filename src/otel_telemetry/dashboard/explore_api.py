"""The dashboard's exploring endpoints: attribute filters for the trace search, what failing or
slow spans share (``compare``), and LLM conversations and agent steps of a trace (``conversation``).

Same shape as ``api``: functions ``(conn, params, ctx) -> dict`` on the request's handler thread,
over read-only connections; the work is done by ``query/`` (``attr_search``, ``compare``,
``conversation``), so the CLI prints the same numbers.
"""

from __future__ import annotations

from typing import Any

from ..query import attr_search
from ..query.filters import QueryError
from .params import ApiError, Params


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


# name -> (function, accepted parameters); the server routes /api/<name> here.
EXPLORE: dict[str, tuple[Any, tuple[str, ...]]] = {}
