"""``otel-telemetry``: query, statistics and collector status from the command line (other groups in
siblings: ``alerts``, ``retention``, ``export``, ``keys``, ``purge``, ``dashboard``).

Library errors (``QueryError``, ``ValueError`` from retention, ``ConfigError``) become click usage
errors only here, and every click error is printed as one line on stderr: scripts and humans both
get a single, greppable reason instead of a usage banner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from .. import settings
from .._version import __version__
from ..categories import CATEGORIES
from ..query import attr_search
from ..query import filters as query
from ..store.alert_state import default_path as default_state_path
from . import (
    alerts as cli_alerts,
)
from . import (
    audit as cli_audit,
)
from . import (
    compare as cli_compare,
)
from . import (
    conversation as cli_conversation,
)
from . import (
    dashboard as cli_dashboard,
)
from . import (
    export as cli_export,
)
from . import (
    keys as cli_keys,
)
from . import (
    purge as cli_purge,
)
from . import (
    retention as cli_retention,
)
from . import (
    views as cli_views,
)
from .output import (
    _TABLE_WIDTH,
    ATTR_FILTER,
    TABLE_COLUMNS,
    TRACE_ID,
    _emit_csv,
    _emit_json,
    _emit_table,
    _OneLineGroup,
    _open,
    _window,
    common_options,
    db_option,
    window_options,
)


@click.group("otel-telemetry", cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="otel-telemetry",
                      help="Show the version and exit.")
def main() -> None:
    """Local OpenTelemetry telemetry: query, summarise and manage the collector's database.

    \b
    Example:
      otel-telemetry query --category error_patterns --last 1h
      otel-telemetry stats --last 7d --format json
    """


@main.command("query")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only records of this category.")
@click.option("--component", help="Only records from this component (exact match).")
@click.option("--event", help="Only records with this event name (exact match).")
@click.option("--level", type=click.Choice(query.LEVELS), help="Only records of this level.")
@click.option("--type", "type_", type=click.Choice(query.TYPES), help="Only records of this type.")
@click.option("--trace-id", type=TRACE_ID, help="Only records of this trace (32 hex characters).")
@click.option("--session-id", help="Only records of this session (exact match).")
@click.option("--service", help="Only records from this service.name (exact match).")
@click.option("--instance", help="Only records stored by this collector instance (exact match).")
@click.option("--attr", "attrs", multiple=True, type=ATTR_FILTER, metavar="KEY=VALUE",
              help="Attribute or resource-attribute filter: key=value, key!=value, key>number (also <, "
                   ">=, <=); service and name mean the columns. Repeatable; all must hold.")
@window_options
@click.option("--limit", type=click.IntRange(1, query.MAX_LIMIT), default=100, show_default=True,
              help="Most records to print.")
@click.option("--order", type=click.Choice(query.ORDERS), default="desc", show_default=True,
              help="By time: desc prints the newest first, asc the oldest first.")
@common_options
def query_cmd(category: str | None, component: str | None, event: str | None, level: str | None,
              type_: str | None, trace_id: str | None, session_id: str | None, service: str | None,
              instance: str | None, attrs: tuple[attr_search.AttrFilter, ...], last: float | None,
              since: int | None, until: int | None, limit: int, order: str, db: str | None, fmt: str) -> None:
    """Print stored records that match every given filter.

    json prints an array of objects keyed by the schema's column names (plus ``time``);
    csv has the same columns with a header row; table shows a compact summary per record.

    \b
    Example:
      otel-telemetry query --category ai_behavior --last 2h --limit 20
      otel-telemetry query --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 --format json
      otel-telemetry query --level error --since 2026-01-01 --until 2026-01-02 --format csv
      otel-telemetry query --type span --attr http.route=/checkout --attr 'http.response.status_code>=500'
    """
    start, end = _window(last, since, until)
    try:
        filters = query.Filters(category=category, component=component, event=event, level=level,
                                type=type_, trace_id=trace_id, session_id=session_id, service=service,
                                instance=instance, since_ns=start, until_ns=end, limit=limit, order=order,
                                attrs=attrs)
    except query.QueryError as exc:
        raise click.UsageError(str(exc)) from None
    with _open(db) as conn:
        records = query.query_records(conn, filters)
    if fmt == "json":
        _emit_json(records)
    elif fmt == "csv":
        _emit_csv(query.OUTPUT_COLUMNS, [[r[c] for c in query.OUTPUT_COLUMNS] for r in records])
    elif not records:
        click.echo("no matching records", err=True)
    else:
        _emit_table(TABLE_COLUMNS, [[r[c] for c in TABLE_COLUMNS] for r in records], _TABLE_WIDTH)


def _stats_rows(s: dict[str, Any]) -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = [("window", "since", s["since"]), ("window", "until", s["until"]),
                                        ("total", "", s["total"]), ("errors", "", s["errors"])]
    for section in ("by_category", "by_level", "by_type", "by_instance"):
        rows += [(section, k, n) for k, n in s.get(section, {}).items()]
    latency = [("overall", s["latency_ms"]["overall"]), *s["latency_ms"]["by_category"].items()]
    for name, lat in latency:
        rows += [(f"latency_ms:{name}", k, v) for k, v in lat.items()]
    return rows


def _print_stats_table(s: dict[str, Any]) -> None:
    click.echo(f"window   {s['since']} .. {s['until'] or 'now'}")
    if s["category"]:
        click.echo(f"category {s['category']}")
    if s.get("instance"):
        click.echo(f"instance {s['instance']}")
    click.echo(f"records  {s['total']}  (errors {s['errors']})")
    for section in ("by_category", "by_level", "by_type", "by_instance"):
        if s.get(section):
            click.echo("")
            _emit_table((section.removeprefix("by_"), "count"), list(s[section].items()), {})
    click.echo("")
    lat = [("(all)", s["latency_ms"]["overall"]), *s["latency_ms"]["by_category"].items()]
    headers = ("span latency ms", "count", "p50", "p95", "p99", "max")
    _emit_table(headers, [(n, v["count"], v["p50"], v["p95"], v["p99"], v["max"]) for n, v in lat], {})


PERIODS = ("1d", "7d", "30d")


@main.command("stats")
@window_options
@click.option("--period", type=click.Choice(PERIODS), default=None,
              help="Agent/dev metrics report over the last 1d, 7d or 30d (ending at --until or now).")
@click.option("--agent", default=None, help="Report only calls of this agent (gen_ai.agent.name).")
@click.option("--model", default=None, help="Report only calls of this model.")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only count records of this category.")
@click.option("--instance", default=None, help="Only count records stored by this collector instance.")
@click.option("--by-instance", is_flag=True, help="Also count records per collector instance.")
@click.option("--alerts-db", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Alert state file for the report's active alerts (default: <db>.alerts.db).")
@click.option("--rollups/--no-rollups", "with_rollups", default=True, show_default=True,
              help="Include the report's hourly and daily rollup tables.")
@common_options
def stats_cmd(last: float | None, since: int | None, until: int | None, period: str | None,
              agent: str | None, model: str | None, category: str | None, instance: str | None,
              by_instance: bool, alerts_db: str | None, with_rollups: bool, db: str | None, fmt: str) -> None:
    """Record counts and latency, or (with --period, --agent or --model) the agent/dev report.

    Without those options: counts by category, level and type, errors, and span latency
    percentiles, nearest-rank over every span duration in the window (exact).

    With them: success rate, P50/P95/P99 latency, cost (total, per model, per agent), tokens, top
    agent, failed calls by error type, active alerts and hourly/daily rollups per
    category/component/service. Windows of 6 h or more are read from rollups (counts, tokens
    and cost exact; percentiles within 2 %); shorter ones from raw rows (exact).

    \b
    Example:
      otel-telemetry stats --last 24h
      otel-telemetry stats --since 2026-01-01 --category ai_behavior --format json
      otel-telemetry stats --period 7d
      otel-telemetry stats --period 1d --agent orchestrator --model gpt-4o --format json
    """
    if period is not None and last is not None:
        raise click.UsageError("use either --period or --last, not both")
    if period is not None and since is not None:
        raise click.UsageError("use either --period or --since, not both")
    start, end = _window(query.parse_duration(period) if period else last, since, until)
    if period is None and agent is None and model is None:
        with _open(db) as conn:
            s = query.stats(conn, start, end, category, instance, by_instance)
        if fmt == "json":
            _emit_json(s)
        elif fmt == "csv":
            _emit_csv(("section", "key", "value"), _stats_rows(s))
        else:
            _print_stats_table(s)
        return
    if by_instance:
        raise click.UsageError("--by-instance applies to the counts, not to the report of "
                               "--period/--agent/--model (use --instance NAME for one instance's report)")
    from ..query import ai_stats, ai_stats_text

    alerts_path = alerts_db or default_state_path(str(settings.resolve('db', db)))
    with _open(db) as conn:
        r = ai_stats.report(conn, start, end, agent=agent, model=model, category=category,
                            alerts_path=alerts_path, period=period, include_rollups=with_rollups,
                            instance=instance)
    if fmt == "json":
        _emit_json(r)
    elif fmt == "csv":
        _emit_csv(("section", "key", "value"), ai_stats_text.csv_rows(r))
    else:
        click.echo("\n".join(ai_stats_text.table_lines(r)))


@main.command("status")
@click.option("--instance", default=None,
              help="Only this collector instance's status (on a server where several write or ship).")
@common_options
def status_cmd(instance: str | None, db: str | None, fmt: str) -> None:
    """Show the collector's counters as it last wrote them, and how long ago that was.

    Exits 1 when no collector has ever written status to the database (or none of --instance).

    \b
    Example:
      otel-telemetry status
      otel-telemetry status --db /var/lib/app/telemetry.db --format json
      otel-telemetry status --db http://central:8080 --instance kiosk-7
    """
    with _open(db) as conn:
        s = query.status(conn)
    if s is None:
        raise click.ClickException(
            f"no collector status in {settings.resolve('db', db)}; no collector has written to it yet "
            "(start one with: otel-telemetry collector run)")
    if instance is not None:
        # A server holds one status per instance; a file, the one of the collector writing it.
        one = (s.get("instances") or {}).get(instance) if "instances" in s else (
            s if s.get("instance") == instance else None)
        if one is None:
            raise click.ClickException(f"no status from instance {instance!r} in {settings.resolve('db', db)}")
        s = one
    if fmt == "json":
        _emit_json(s)
        return
    rows = list(_flatten(s))
    if fmt == "csv":
        _emit_csv(("key", "value"), rows)
    else:
        _emit_table(("key", "value"), rows, {})


def _flatten(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@main.group("collector")
def collector() -> None:
    """Run the collector that receives telemetry and writes the database.

    \b
    Example:
      otel-telemetry collector run --config collector.yaml
    """


@collector.command("run")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="FILE", help="collector.yaml (default: $OTEL_TELEMETRY_CONFIG, else built-ins).")
@db_option
@click.option("--endpoint", default=None, metavar="URL",
              help="ZeroMQ endpoint to bind: ipc://PATH or tcp://HOST:PORT (default: $OTEL_TELEMETRY_ENDPOINT).")
@click.pass_context
def collector_run(ctx: click.Context, config_path: str | None, db: str | None,
                  endpoint: str | None) -> None:
    """Run the collector in the foreground until interrupted (Ctrl-C or SIGTERM).

    \b
    Example:
      otel-telemetry collector run
      otel-telemetry collector run --db ./telemetry.db --endpoint tcp://127.0.0.1:5555
    """
    from ..collector.service import run_collector  # deferred: pulls in zmq and the OTLP receivers

    ctx.exit(run_collector(config_path, db, endpoint))


# ---- alerts ------------------------------------------------------------------------------------


cli_export.register(main)  # export, watch, completion
cli_alerts.register(main)  # alerts list|test|ack
cli_retention.register(main)  # retention show|set|purge (and the design's retention --set)
cli_keys.register(main)  # keys generate
cli_purge.register(main)  # purge
cli_dashboard.register(main)  # dashboard
cli_audit.register(main)  # audit [purge]
cli_compare.register(main)  # compare
cli_conversation.register(main)  # conversation
cli_views.register(main)  # map, services, metrics
