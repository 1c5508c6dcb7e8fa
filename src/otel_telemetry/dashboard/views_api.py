"""The dashboard's map, services and metrics-explorer endpoints: thin wrappers over
``query/service_map.py`` and ``query/metrics.py``, so each page shows what ``otel-telemetry map``,
``services`` and ``metrics`` print for the same window. Each runs on the request's handler thread
over a read-only connection."""

from __future__ import annotations

from typing import Any

import apsw

from ..categories import CATEGORIES
from ..query import metrics, service_map
from ..query.filters import QueryError
from .api import INSTANCE, Context, Endpoint
from .params import WINDOW, ApiError, Params


def map_(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """``otel-telemetry map --format json`` for the window, ``by`` and ``category``."""
    since, until = p.window()
    by = p.choice("by", service_map.BYS, "service") or "service"
    out = service_map.service_map(conn, since, until, by, p.choice("category", CATEGORIES), p.text(INSTANCE))
    return {**out, "by": by, "since_ns": since, "until_ns": until}


def map_node(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """One node's operations, latest failed spans and latest traces (the map's click)."""
    since, until = p.window()
    name = p.text("name")
    if name is None:
        raise ApiError("parameter 'name' is required")
    by = p.choice("by", service_map.BYS, "service") or "service"
    return service_map.node_detail(conn, since, until, by, name, p.text(INSTANCE))


def services(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """``otel-telemetry services --format json`` for the window."""
    since, until = p.window()
    return service_map.services(conn, since, until, p.choice("category", CATEGORIES), p.text(INSTANCE))


def metric_names(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    since, until = p.window()
    return {"metrics": metrics.names(conn, since, until, p.text(INSTANCE))}


def metric(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """``otel-telemetry metrics NAME --agg --group-by --format json`` for the window."""
    since, until = p.window()
    name = p.text("name")
    if name is None:
        raise ApiError("parameter 'name' is required")
    try:
        return metrics.series(conn, name, since, until, p.choice("agg", metrics.AGGS), p.text("group_by"),
                              p.text(INSTANCE))
    except QueryError as exc:
        raise ApiError(str(exc)) from None


VIEWS: dict[str, tuple[Endpoint, tuple[str, ...]]] = {
    "map": (map_, (*WINDOW, "by", "category", INSTANCE)),
    "map_node": (map_node, (*WINDOW, "by", "name", INSTANCE)),
    "services": (services, (*WINDOW, "category", INSTANCE)),
    "metric_names": (metric_names, (*WINDOW, INSTANCE)),
    "metric": (metric, (*WINDOW, "name", "agg", "group_by", INSTANCE)),
}
