"""``otel-telemetry audit``: read (and purge) the audit log of data access (``store/audit.py``)."""

from __future__ import annotations

from typing import Any

import click

from .. import settings
from .output import TIME, _emit_json, _emit_rows, _window, db_option, format_option, window_options


def register(main: click.Group) -> None:
    """Attach the ``audit`` group to the top-level CLI group."""
    main.add_command(audit)


def _log_path(db: str | None) -> Any:
    from ..store import audit as store_audit
    from ..store import location

    try:
        return store_audit.path_for(str(settings.resolve("db", db)))
    except (location.LocationError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


@click.group("audit", invoke_without_command=True)
@window_options(last_default="24h when --since is not given")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Show at most this many entries (the newest).")
@db_option
@format_option
@click.pass_context
def audit(ctx: click.Context, last: float | None, since: int | None, until: int | None, limit: int,
          db: str | None, fmt: str) -> None:
    """Who read, exported, purged or changed what, and how many rows: every CLI command that opens
    the store and every dashboard API call leaves an entry. The log lives beside the database
    (<db>.audit.jsonl, 0600), outside the records, so purge and retention never erase it; it is
    bounded ($OTEL_TELEMETRY_AUDIT_MAX_MB, default 8), oldest entries first out.

    \b
    Example:
      otel-telemetry audit --last 7d
      otel-telemetry audit --format json | jq 'select(.what == "export")'
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..store import audit as store_audit

    start, end = _window(last, since, until)
    entries = store_audit.read(_log_path(db), start, end, limit)
    if fmt == "json":
        _emit_json(entries)
        return
    rows = [(e.get("time"), e.get("who"), e.get("what"), e.get("rows"), e.get("outcome"),
             " ".join(f"{k}={v}" for k, v in (e.get("params") or {}).items())) for e in entries]
    _emit_rows(fmt, ("time", "who", "what", "rows", "outcome", "params"), rows, {"params": 60})


@audit.command("purge")
@click.option("--before", type=TIME, default=None, help="Remove entries older than this time (or a duration "
                                                         "before now, e.g. 90d).")
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
@click.pass_context
def audit_purge(ctx: click.Context, before: int | None, everything: bool, yes: bool, db: str | None) -> None:
    """Remove old entries of the audit log; the purge itself is recorded as a new entry.

    \b
    Example:
      otel-telemetry audit purge --before 365d
    """
    from ..store import audit as store_audit

    if (before is None) == (not everything):
        raise click.UsageError("give --before TIME or --all")
    if everything and not yes:
        click.confirm("Remove every audit log entry?", abort=True)
    parent = ctx.parent.params if ctx.parent is not None else {}
    path = _log_path(db if db is not None else parent.get("db"))
    removed = store_audit.purge(path, None if everything else before, store_audit.os_user())
    click.echo(f"removed {removed} audit entries (the purge is recorded)")
