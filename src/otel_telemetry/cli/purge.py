"""``otel-telemetry purge``: delete records by category, by time or all, leaving no remnants.

The library part is ``collector.purge``; this module parses options and prints. Like ``retention
purge`` it writes through the CLI's admin connection, so it works while a collector is running
(short transactions behind the busy timeout; the collector stays the writer of record rows).
"""

from __future__ import annotations

import time
from typing import Any

import click

from ..categories import CATEGORIES
from .output import DURATION, TIME, _open, common_options, emit_purge_result


def register(main: click.Group) -> None:
    """Attach the ``purge`` command to the top-level CLI group."""
    main.add_command(purge_cmd)


@click.command("purge")
@click.option("--category", "categories", type=click.Choice(CATEGORIES), multiple=True,
              help="Purge records of this category (repeatable). Alone: all of its records.")
@click.option("--before", type=TIME, default=None,
              help="Purge records older than this time (exclusive: a record exactly at it is kept): "
                   "ISO-8601 time, date, epoch seconds, or a duration before now.")
@click.option("--older-than", type=DURATION, default=None,
              help="Purge records older than this age, e.g. 30d, 12h (same as --before <age ago>).")
@click.option("--all", "everything", is_flag=True, help="Purge every record of every category.")
@click.option("--instance", default=None,
              help="Only records this collector instance stored (a central server); alone: all of them.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed with --all when no one "
                                          "can answer the prompt).")
@click.option("--dry-run", is_flag=True, help="Only count the records a purge would delete.")
@common_options
def purge_cmd(categories: tuple[str, ...], before: int | None, older_than: float | None, everything: bool,
              instance: str | None, yes: bool, dry_run: bool, db: str | None, fmt: str) -> None:
    """Delete records now and scrub them from the database file and its WAL.

    Deleted rows are overwritten with zeros (secure_delete), their rollups removed, freed pages
    returned to the file system and the WAL truncated, so the purged data cannot be read back from
    the files. Works while the collector is running.

    \b
    Example:
      otel-telemetry purge --category user_interaction --dry-run
      otel-telemetry purge --category ai_research --older-than 30d
      otel-telemetry purge --before 2026-01-01
      otel-telemetry purge --all --yes --format json
      otel-telemetry purge --db http://central:8080 --instance kiosk-7 --older-than 7d
    """
    from ..store import purge as purge_lib

    if before is not None and older_than is not None:
        raise click.UsageError("use either --before or --older-than, not both")
    if older_than is not None:
        before = max(-(2**63), time.time_ns() - int(older_than * 1_000_000_000))
    try:
        spec = purge_lib.PurgeSpec(purge_lib.parse_categories(categories), before, everything, instance)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if dry_run:
        with _open(db) as conn:
            counts = purge_lib.count(conn, spec)
        result: dict[str, Any] = {"dry_run": True, "would_delete": counts, "total": sum(counts.values())}
    else:
        if everything and not yes:
            what = "in the database" if instance is None else f"of instance {instance!r}"
            click.confirm(f"Purge every record {what}?", abort=True, err=True)
        with _open(db, admin=True) as conn:
            done = purge_lib.purge(conn, spec)
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        counts = done["deleted"]
        result = {"dry_run": False, "deleted": counts, "total": done["total"],
                  "rollup_rows": done["rollup_rows"], "edge_rows": done["edge_rows"],
                  "bytes_reclaimed": done["pages_freed"] * page_size,
                  "wal_truncated": done["wal_truncated"]}
        if done["wal_truncated"] is None:
            click.echo("note: on a libSQL server the rows and their rollups are deleted, but scrubbing "
                       "them from its files is up to the server (it refuses PRAGMA secure_delete)", err=True)
        elif not done["wal_truncated"]:
            click.echo("warning: the WAL could not be truncated (a reader kept it busy); purged data may "
                       "remain in it until the collector's next checkpoint; run purge again", err=True)
    emit_purge_result(fmt, result, [("rollup rows", "rollup_rows"), ("edge rows", "edge_rows"),
                                    ("bytes reclaimed", "bytes_reclaimed"),
                                    ("wal truncated", "wal_truncated")])
