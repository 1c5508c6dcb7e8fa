"""``otel-telemetry map`` (who calls whom), ``services`` (each service's entry spans) and ``metrics``
(any stored metric): the same numbers as the dashboard's map, services and metrics pages."""

from __future__ import annotations

import time

import click

from ..categories import CATEGORIES
from ..query import service_map
from .output import _emit_csv, _emit_json, _emit_table, _open, _window, db_option, window_options


def register(main: click.Group) -> None:
    main.add_command(map_cmd)


@click.command("map")
@window_options
@click.option("--by", type=click.Choice(service_map.BYS), default="service", show_default=True,
              help="Nodes are services (service.name) or components (telemetry.component, else the scope).")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only edges (and node counts) of this category "
              "(the called span's category).")
@click.option("--format", "fmt", type=click.Choice(("table", "json", "csv", "dot")), default="table",
              show_default=True, help="table for people, json/csv for programs, dot for Graphviz.")
@db_option
def map_cmd(last: float | None, since: int | None, until: int | None, by: str, category: str | None,
            fmt: str, db: str | None) -> None:
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
        m = service_map.service_map(conn, start, end if end is not None else time.time_ns(), by, category)
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
