"""``otel-telemetry retention``: show, set and apply retention per category, record type or both.

Also the design's spelling (002): ``otel-telemetry retention --set --category C --days N``.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .. import settings
from ..categories import CATEGORIES
from ..store.retention import MAX_DAYS
from ..store.retention import TYPES as RETENTION_TYPES
from .output import F, _emit_rows, _open, common_options, db_option, emit_purge_result, retention_policy


def register(main: click.Group) -> None:
    """Attach the ``retention`` group to the top-level CLI group."""
    main.add_command(retention)


def config_option(f: F) -> F:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
        help=f"collector.yaml whose retention settings are the defaults "
             f"(default: ${settings.SETTINGS['config'].env}, else built-in defaults).",
    )(f)


def _set_retention(category: str | None, rtype: str | None, days: int, db: str | None) -> None:
    """``retention set`` and the design's ``retention --set`` spelling: store one override."""
    from ..store import retention as ret

    if category is None and rtype is None:
        raise click.UsageError("give --category, --type or both")
    key = ".".join(k for k in (category, rtype) if k)
    with _open(db, admin=True) as conn:
        try:
            ret.set_days(conn, key, days)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        cells = [r for r in ret.effective_table(conn, ret.RetentionPolicy())
                 if (category in (None, r["category"]) and rtype in (None, r["type"])) and r["key"] != key]
    click.echo(f"{key}: keep {days} days")
    for r in cells:  # say where a more specific key still decides
        click.echo(f"  note: {r['category']} {r['type']} rows keep {r['days']} days (set by {r['key']})", err=True)


@click.group("retention", invoke_without_command=True)
@click.option("--set", "set_", is_flag=True, help="The design's spelling of 'retention set' (with --category "
                                                 "and/or --type, and --days).")
@click.option("--category", type=click.Choice(CATEGORIES), default=None, help="With --set: the category.")
@click.option("--type", "rtype", type=click.Choice(RETENTION_TYPES), default=None, help="With --set: the type.")
@click.option("--days", type=click.IntRange(min=1, max=MAX_DAYS), default=None, help="With --set: days to keep.")
@db_option
@click.pass_context
def retention(ctx: click.Context, set_: bool, category: str | None, rtype: str | None, days: int | None,
              db: str | None) -> None:
    """Show, change and apply retention (days to keep records) per category, record type
    (span, metric, log, event) or both; the most specific setting wins.

    \b
    Example:
      otel-telemetry retention show
      otel-telemetry retention set --category ai_research --days 730
      otel-telemetry retention set --type metric --days 180
      otel-telemetry retention --set --category ai_behavior --days 60
      otel-telemetry retention purge --dry-run
    """
    given = set_ or category is not None or rtype is not None or days is not None or db is not None
    if ctx.invoked_subcommand is not None:
        if given:
            raise click.UsageError(f"options before '{ctx.invoked_subcommand}' belong to 'retention --set'; "
                                   f"put them after '{ctx.invoked_subcommand}'")
        return
    if not set_:
        if given:
            raise click.UsageError("--category/--type/--days without --set: use 'retention set' or 'retention --set'")
        click.echo(ctx.get_help())
        return
    if days is None:
        raise click.UsageError("retention --set needs --days")
    _set_retention(category, rtype, days, db)


def instance_option(f: F) -> F:
    return click.option(
        "--instance", default=None,
        help="Only the rows this collector instance stored (a central server where several meet).",
    )(f)


def _check_instance(instance: str | None) -> None:
    if instance is not None and not instance.strip():
        raise click.UsageError("--instance must not be empty")


@retention.command("show")
@config_option
@instance_option
@common_options
def retention_show(config_path: str | None, instance: str | None, db: str | None, fmt: str) -> None:
    """Days kept per category and record type, the setting that decides (a category.type pair, a
    type, or the category), whether it is an override, configured or built in, and rows expired now.

    \b
    Example:
      otel-telemetry retention show --format json
      otel-telemetry retention show --db http://central:8080 --instance kiosk-7
    """
    from ..store import retention as ret

    _check_instance(instance)
    policy = retention_policy(config_path)
    with _open(db) as conn:
        table = ret.effective_table(conn, policy)
        expired = ret.count_expired_cells(conn, ret.effective_days(conn, policy), time.time_ns(), instance)
    headers = ("category", "type", "days", "key", "source", "expired")
    _emit_rows(fmt, headers, [[r["category"], r["type"], r["days"], r["key"], r["source"],
                               expired[(r["category"], r["type"])]] for r in table])


@retention.command("set")
@click.option("--category", type=click.Choice(CATEGORIES), default=None,
              help="Category whose retention to change (with --type: only that type of it).")
@click.option("--type", "rtype", type=click.Choice(RETENTION_TYPES), default=None,
              help="Record type whose retention to change: span, metric, log or event.")
@click.option("--days", type=click.IntRange(min=1, max=MAX_DAYS), required=True, help="Days to keep its records.")
@db_option
def retention_set(category: str | None, rtype: str | None, days: int, db: str | None) -> None:
    """Store a retention override for a category, a record type or one type of a category; the
    collector applies it on its next purge.

    \b
    Example:
      otel-telemetry retention set --category error_patterns --days 180
      otel-telemetry retention set --type span --days 30
      otel-telemetry retention set --category ai_research --type event --days 730
    """
    _set_retention(category, rtype, days, db)


@retention.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count the rows a purge would delete.")
@config_option
@instance_option
@common_options
def retention_purge(dry_run: bool, config_path: str | None, instance: str | None, db: str | None,
                    fmt: str) -> None:
    """Delete expired records now and return the freed space to the file system. With --instance,
    only that collector instance's expired records (no size cap: it is the whole store's); the
    rollups stay, as for every expired record.

    \b
    Example:
      otel-telemetry retention purge --dry-run
      otel-telemetry retention purge --format json
      otel-telemetry retention purge --db http://central:8080 --instance kiosk-7
    """
    from ..store import retention as ret

    _check_instance(instance)
    policy = retention_policy(config_path)
    now = time.time_ns()
    if dry_run:
        with _open(db) as conn:
            counts = ret.count_expired(conn, ret.effective_days(conn, policy), now, instance)
        result: dict[str, Any] = {"dry_run": True, "would_delete": counts, "total": sum(counts.values())}
    else:
        with _open(db, admin=True) as conn:
            done = ret.purge_all(conn, policy, now, instance)
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        counts = done["deleted"]
        result = {"dry_run": False, "deleted": counts, "total": sum(counts.values()),
                  "capped": done["capped"], "bytes_reclaimed": done["pages_freed"] * page_size}
    emit_purge_result(fmt, result, [("size cap", "capped"), ("bytes reclaimed", "bytes_reclaimed")])
