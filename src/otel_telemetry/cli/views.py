"""``otel-telemetry map`` (who calls whom), ``services`` (each service's entry spans) and ``metrics``
(any stored metric): the same numbers as the dashboard's map, services and metrics pages."""

from __future__ import annotations

import time

import click

from ..categories import CATEGORIES
from ..query import filters, service_map
from ..query import metrics as qmetrics
from .output import (
    _emit_csv,
    _emit_json,
    _emit_table,
    _open,
    _window,
    common_options,
    db_option,
    instance_option,
    window_options,
)


def register(main: click.Group) -> None:
    main.add_command(map_cmd)
    main.add_command(services_cmd)
    main.add_command(metrics_cmd)


def _end(end: int | None) -> int:
    return end if end is not None else time.time_ns()


@click.command("map")
@window_options
@click.option("--by", type=click.Choice(service_map.BYS), default="service", show_default=True,
              help="Nodes are services (service.name) or components (telemetry.component, else the scope).")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only edges (and node counts) of this category "
              "(the called span's category).")
@instance_option
@click.option("--format", "fmt", type=click.Choice(("table", "json", "csv", "dot")), default="table",
              show_default=True, help="table for people, json/csv for programs, dot for Graphviz.")
@db_option
def map_cmd(last: float | None, since: int | None, until: int | None, by: str, category: str | None,
            instance: str | None, fmt: str, db: str | None) -> None:
    """Who calls whom: the component map over the window.

    Nodes are the services (or components) with spans in the window: calls are their spans,
    errors those at level error. Edges are parent -> child spans that cross from one service
    (component) to another: client -> server, producer -> consumer, any cross-boundary call.
    Each edge has the child spans' calls, errors (status error) and p50/p95 duration (from
    log-scale buckets, within 2 %). The window is widened to whole hours.

    json is {"nodes": [{name, calls, errors}], "edges": [{source, target, calls, errors,
    p50_ms, p95_ms}]}; csv has one row per edge; dot is a Graphviz digraph.

    \b
    Example:
      otel-telemetry map --last 24h
      otel-telemetry map --by component --category component_interactions --format json
      otel-telemetry map --last 7d --format dot | dot -Tsvg > map.svg
    """
    start, end = _window(last, since, until)
    with _open(db) as conn:
        m = service_map.service_map(conn, start, _end(end), by, category, instance)
    headers = ("source", "target", "calls", "errors", "p50_ms", "p95_ms")
    if fmt == "json":
        _emit_json(m)
    elif fmt == "dot":
        click.echo(service_map.to_dot(m), nl=False)
    elif fmt == "csv":
        _emit_csv(headers, [[e[h] for h in headers] for e in m["edges"]])
    else:
        _emit_table(("node", "calls", "errors"), [(n["name"], n["calls"], n["errors"]) for n in m["nodes"]], {})
        click.echo("")
        if m["edges"]:
            _emit_table(headers, [[e[h] for h in headers] for e in m["edges"]], {})
        else:
            click.echo("no edges in this window (no parent/child spans across two nodes)")


@click.command("services")
@window_options
@click.option("--category", type=click.Choice(CATEGORIES), help="Only entry spans of this category.")
@instance_option
@common_options
def services_cmd(last: float | None, since: int | None, until: int | None, category: str | None,
                 instance: str | None, db: str | None, fmt: str) -> None:
    """Each service's health: rate, errors and p50/p95 duration of its entry spans.

    Entry spans are where work enters a service: server and consumer spans, root spans, and spans
    whose parent is in another service. Percentiles come from log-scale buckets (within 2 %); the
    window is widened to whole hours. json adds per-hour (per-day past 72 h) series.

    \b
    Example:
      otel-telemetry services --last 24h
      otel-telemetry services --last 7d --format json
    """
    start, end = _window(last, since, until)
    with _open(db) as conn:
        s = service_map.services(conn, start, _end(end), category, instance)
    headers = ("service", "calls", "errors", "error_rate", "rate_per_s", "p50_ms", "p95_ms")
    if fmt == "json":
        _emit_json(s)
    elif fmt == "csv":
        _emit_csv(headers, [[x[h] for h in headers] for x in s["services"]])
    elif not s["services"]:
        click.echo("no entry spans in this window", err=True)
    else:
        _emit_table(headers, [[x[h] for h in headers] for x in s["services"]], {})


@click.command("metrics")
@click.argument("name", required=False)
@click.option("--group-by", "group_by", metavar="ATTR", help="Split by this point attribute (or 'service').")
@click.option("--agg", type=click.Choice(qmetrics.AGGS), default=None,
              help="counters: sum|rate (default rate); gauges: last|avg|max|min (default last); "
                   "histograms: p50|p95|p99|avg|count|sum|min|max (default p95, from the buckets).")
@window_options
@instance_option
@common_options
def metrics_cmd(name: str | None, group_by: str | None, agg: str | None, last: float | None, since: int | None,
                until: int | None, instance: str | None, db: str | None, fmt: str) -> None:
    """Any stored metric over the window, grouped by one attribute; without NAME, the metric names.

    NAME's value over the whole window per group, and (json, csv) its series per bucket (at most
    240 buckets). Counters: what was counted (sum) or that per second (rate), cumulative points as
    increases with resets handled; gauges: last, avg, max or min of the points; histograms:
    percentiles from the merged buckets, as the alert rules compute them.

    \b
    Example:
      otel-telemetry metrics --last 24h
      otel-telemetry metrics http.server.request.duration --agg p95 --group-by http.route
      otel-telemetry metrics orders.placed --agg sum --last 7d --format json
    """
    start, end = _window(last, since, until)
    with _open(db) as conn:
        if name is None:
            if group_by is not None or agg is not None:
                raise click.UsageError("--group-by and --agg need a metric NAME")
            rows = qmetrics.names(conn, start, _end(end), instance)
            headers = ("name", "type", "unit", "points", "services")
            if fmt == "json":
                _emit_json(rows)
            elif fmt == "csv":
                _emit_csv(headers, [[r[h] for h in headers] for r in rows])
            elif not rows:
                click.echo("no metrics in this window", err=True)
            else:
                _emit_table(headers, [[r[h] for h in headers] for r in rows], {})
            return
        try:
            m = qmetrics.series(conn, name, start, _end(end), agg, group_by, instance)
        except filters.QueryError as exc:
            raise click.UsageError(str(exc)) from None
    if fmt == "json":
        _emit_json(m)
    elif fmt == "csv":
        _emit_csv(("bucket", "group", m["agg"]), [[filters.iso_ns(b), g["group"], g["series"][k]]
                                                  for g in m["groups"] for k, b in enumerate(m["buckets"])])
    else:
        click.echo(f"{m['name']} ({m['kind']}, {m['agg']}) {m['since']} .. {m['until']}")
        _emit_table(("group", m["agg"], "points"), [(g["group"], g["value"], g["points"]) for g in m["groups"]], {})
        if m["truncated"]:
            click.echo(f"(showing the {len(m['groups'])} largest groups)")
