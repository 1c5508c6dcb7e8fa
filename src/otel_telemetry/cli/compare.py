"""``otel-telemetry compare``: which attribute values failing or slow spans share (``query.compare``)."""

from __future__ import annotations

import time

import click

from ..query import attr_search
from ..query import compare as qc
from ..query import filters as query
from .output import (
    ATTR_FILTER,
    _emit_csv,
    _emit_json,
    _emit_table,
    _open,
    _window,
    common_options,
    instance_option,
    window_options,
)


def register(main: click.Group) -> None:
    """Attach the ``compare`` command to the top-level CLI group."""
    main.add_command(compare_cmd)


def _where(text: str) -> qc.Where:
    try:
        return qc.parse_where(text)
    except query.QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--where") from None


@click.command("compare")
@click.option("--where", "where_text", required=True, metavar="SELECTION",
              help="The spans to explain: error, duration>500ms (>=, <, <=; ms or s), or an attribute "
                   "filter like key=value. They are compared with the other spans of the window.")
@click.option("--name", default=None, help="Only spans of this operation (span name, exact match).")
@click.option("--service", default=None, help="Only spans of this service (exact match).")
@instance_option
@click.option("--attr", "attrs", multiple=True, type=ATTR_FILTER, metavar="KEY=VALUE",
              help="Only spans matching this attribute filter, on both sides (repeatable; see query --attr).")
@window_options
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Most attribute values to print.")
@click.option("--max-spans", type=click.IntRange(100, 10_000_000), default=None,
              help="Bound on the work: values are counted on at most this many spans (half per side, a "
                   "repeatable sample beyond); a window of more than 5x as many records is read in spread "
                   "runs of row ids and its span counts are estimates. "
                   "Default: $OTEL_TELEMETRY_COMPARE_MAX_SPANS, else 10000.")
@common_options
def compare_cmd(where_text: str, name: str | None, service: str | None, instance: str | None,
                attrs: tuple[attr_search.AttrFilter, ...],
                last: float | None, since: int | None, until: int | None, limit: int, max_spans: int | None,
                db: str | None, fmt: str) -> None:
    """List attribute values over-represented in the selected spans against the rest of the window.

    For every key=value of the spans' attributes, resource attributes, service and name: how many
    spans of the selection and of the rest carry it, and the shares; sorted by the difference of
    the shares. Past --max-spans the output says "sampled" (and "~" before estimated counts).

    \b
    Example:
      otel-telemetry compare --where error --last 1h
      otel-telemetry compare --where "duration>500ms" --name "POST /checkout" --format json
      otel-telemetry compare --where region=eu-west --last 7d --limit 10
    """
    where = _where(where_text)
    start, end = _window(last, since, until)
    try:
        cap = qc.max_spans_setting(max_spans)
    except (query.QueryError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    with _open(db) as conn:
        r = qc.compare(conn, where, start, end if end is not None else time.time_ns(), name=name,
                       service=service, attrs=attrs, limit=limit, max_spans=cap, instance=instance)
    if fmt == "json":
        _emit_json(r)
        return
    rows = [[a[c] for c in qc.ROW_COLUMNS] for a in r["attributes"]]
    if fmt == "csv":
        _emit_csv(qc.ROW_COLUMNS, rows)
        return
    click.echo("\n".join(qc.table_lines(r)))
    if not rows:
        click.echo("no attribute value is over-represented in the selection", err=True)
        return
    click.echo("")
    _emit_table(("key", "value", "source", "selection", "sel %", "rest", "rest %", "score", "ratio"),
                rows, {"key": 40, "value": 40})
