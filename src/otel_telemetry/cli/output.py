"""Shared pieces of the CLI: one-line errors, parameter types, shared options, output formats.

Library errors become CLI errors only in the commands (``commands.py`` and the other command
modules); this module only formats (and builds the retention policy several commands share).
"""

from __future__ import annotations

import csv
import errno
import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import apsw
import click
import orjson

from .. import settings
from ..query import attr_search
from ..query import filters as query

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json", "csv")
TABLE_COLUMNS = ("time", "type", "category", "component", "event", "level", "name", "duration_ms",
                 "trace_id")
# Widest a table cell may be; longer text ends in "…" so one record stays one line.
_TABLE_WIDTH = {"component": 24, "event": 28, "name": 32, "category": 22}
DEFAULT_LAST_S = 86400


# What the command that is running touched, for its audit entry (store/audit.py): the context of
# the command that took --db (set by that option's callback) and the rows it printed.
_audit_ctx: click.Context | None = None
_audit_rows: int | None = None


def count_rows(n: int) -> None:
    """Rows a command returned or touched (its audit entry says how many)."""
    global _audit_rows
    _audit_rows = (_audit_rows or 0) + n


def _remember_db(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    global _audit_ctx
    _audit_ctx = ctx
    return value


def _audit(outcome: str) -> None:
    """Append the entry of the command that just ran, if it opened the store (never raises)."""
    global _audit_ctx, _audit_rows
    ctx, rows = _audit_ctx, _audit_rows
    _audit_ctx = _audit_rows = None
    names: list[str] = []
    c: click.Context | None = ctx
    while c is not None and c.parent is not None:  # the command's words, without the program name
        names.insert(0, c.info_name or "")
        c = c.parent
    if ctx is None or names[:1] in (["audit"], ["collector"]):
        return  # the audit log's own commands (a purge records itself); the collector is no reader
    from ..store import audit  # deferred like the store

    try:
        db = str(settings.resolve("db", ctx.params.get("db")))
        path = audit.path_for(db)
        if "://" not in db and not Path(db).is_file():
            return  # no store was opened (and none may be created, not even its audit log)
    except Exception:  # a bad --db: the command already said so
        return
    params = {k: v for k, v in ctx.params.items() if k not in ("db", "fmt")}
    audit.append(path, audit.os_user(), " ".join(names), params, rows, outcome)


class _OneLineGroup(click.Group):
    """Top-level group whose errors are one stderr line (click's default adds a usage banner).
    Every command that opens the store leaves an audit entry (store/audit.py)."""

    def invoke(self, ctx: click.Context) -> Any:
        outcome = "error"
        try:
            rv = super().invoke(ctx)
            outcome = "ok"
            return rv
        except click.exceptions.Exit as exc:
            outcome = "ok" if exc.exit_code == 0 else "error"
            raise
        except SystemExit as exc:
            outcome = "ok" if not exc.code else "error"
            raise
        finally:
            _audit(outcome)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare group prints its help; that is the useful answer
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            where = f"{exc.ctx.command_path}: " if isinstance(exc, click.UsageError) and exc.ctx else ""
            click.echo(f"Error: {where}{' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # output piped into head etc.; not an error worth a trace
                sys.exit(1)
            raise
        sys.exit(rv if isinstance(rv, int) else 0)


class _Parsed(click.ParamType):
    """A click type backed by a ``query`` parser, whose QueryError becomes a BadParameter."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except query.QueryError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Parsed("DURATION", query.parse_duration)
TIME = _Parsed("TIME", query.parse_time)
TRACE_ID = _Parsed("HEX32", lambda text: query.Filters(trace_id=text).trace_id)
ATTR_FILTER = _Parsed("KEY=VALUE", attr_search.parse)


def db_option(f: F) -> F:
    return click.option(
        "--db", "db", type=click.Path(dir_okay=False), default=None, metavar="PATH|URL", callback=_remember_db,
        help=f"SQLite database file, or a libSQL server URL (http://, https://, libsql://; token "
             f"from $OTEL_TELEMETRY_DB_AUTH_TOKEN). Default: ${settings.SETTINGS['db'].env}, "
             "else ~/.local/share/otel-telemetry/telemetry.db.",
    )(f)


def format_option(f: F) -> F:
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
        help="Output format: aligned table for people, json or csv for programs.",
    )(f)


def instance_option(f: F) -> F:
    """``--instance``: one collector instance's records (a central store's per-device view)."""
    return click.option("--instance", default=None, metavar="NAME",
                        help="Only records stored by this collector instance (exact match): one device's "
                             "view of a store that several ship to.")(f)


def common_options(f: F) -> F:
    """``--db`` and ``--format``, shared by every command that reads the database."""
    return db_option(format_option(f))


def window_options(f: F | None = None, *, until_default: str = "now",
                   last_default: str = "24h when --since is not given") -> Any:
    """``--last``/``--since``/``--until``; bare ``@window_options`` or with other default texts."""
    def add(f: F) -> F:
        f = click.option("--until", type=TIME, default=None,
                         help="End of the window (exclusive): ISO-8601 time, date, epoch seconds, "
                              f"or a duration before now. Default: {until_default}.")(f)
        f = click.option("--since", type=TIME, default=None,
                         help="Start of the window (inclusive), same forms as --until. "
                              "Cannot be combined with --last.")(f)
        return click.option("--last", type=DURATION, default=None,
                            help="Window length ending at --until (or now), e.g. 30s, 15m, 24h, 7d, 1w. "
                                 f"Default: {last_default}.")(f)
    return add(f) if f is not None else add


def _window(last: float | None, since: int | None, until: int | None) -> tuple[int, int | None]:
    if last is not None and since is not None:
        raise click.UsageError("use either --last or --since, not both")
    if since is None:
        end = until if until is not None else time.time_ns()
        # Clamped so a long --last before an early --until still binds as a 64-bit integer.
        since = max(-(2**63), end - int((last if last is not None else DEFAULT_LAST_S) * 1_000_000_000))
    if until is not None and since >= until:
        raise click.UsageError("the window is empty: --since must be before --until")
    return since, until


def _db_path(db: str | None) -> str:
    """The store's file path, or its normalised server URL (``store.location``: never a URL as a file)."""
    from ..store import location  # deferred like the store below

    path = str(settings.resolve("db", db))
    try:
        loc = location.parse(path)
    except location.LocationError as exc:
        raise click.UsageError(str(exc)) from None
    if loc.url is not None:
        return loc.url
    # Checked here because opening a missing file, even read-only, must never create it.
    from ..store import preflight

    try:
        preflight.check_regular(path)  # a FIFO: said as such (opening one would block)
    except preflight.StoreFileError as exc:
        raise click.UsageError(str(exc)) from None
    if not Path(path).is_file():
        raise click.UsageError(f"no database at {path}; start the collector first or pass --db")
    return path


@contextmanager
def _open(db: str | None, admin: bool = False) -> Iterator[apsw.Connection]:
    from ..store import db as dbmod  # deferred: not needed for --help

    path = _db_path(db)
    try:
        conn = dbmod.open_admin(path) if admin else dbmod.open_reader(path)
    except (dbmod.DatabaseKeyError, dbmod.location.LocationError) as exc:  # bad key or token file
        raise click.ClickException(str(exc)) from None
    except apsw.Error as exc:
        raise click.ClickException(f"cannot open database {path}: {exc}{_media_hint(path)}") from None
    try:
        yield conn
    except apsw.Error as exc:
        raise click.ClickException(f"database {path}: {exc}") from None
    except query.QueryError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        conn.close()


def _media_hint(path: str) -> str:
    """Why SQLite could not open a file on read-only media, when that is the reason."""
    from ..store import preflight

    if (preflight.read_only_fs(path) and os.path.exists(f"{path}-wal")
            and not os.path.exists(f"{path}-shm")):
        return ("; it is on a read-only file system with a -wal but no -shm beside it, which SQLite "
                "cannot create there: copy the file and its -wal to writable storage and read the copy")
    return ""


def _cell(value: Any, exact: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not exact:  # programs (csv) get every digit; people get 3
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: dict[str, int]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    for row in cells:
        for i, h in enumerate(headers):
            limit = widths.get(h)
            if limit and len(row[i]) > limit:
                row[i] = row[i][: limit - 1] + "…"
    sizes = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(s) for h, s in zip(headers, sizes, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(s) for c, s in zip(r, sizes, strict=True)).rstrip() for r in cells]
    click.echo("\n".join(lines))


def _emit_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([_cell(v, exact=True) for v in row] for row in rows)
    click.echo(buf.getvalue(), nl=False)


def _emit_json(obj: Any) -> None:
    if isinstance(obj, list):
        count_rows(len(obj))
    click.echo(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode())


def _emit_rows(fmt: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
               widths: dict[str, int] | None = None) -> None:
    if fmt == "json":
        _emit_json([dict(zip(headers, r, strict=True)) for r in rows])
        return
    count_rows(len(rows))
    if fmt == "csv":
        _emit_csv(headers, rows)
    else:
        _emit_table(headers, rows, widths or {})


def emit_purge_result(fmt: str, result: dict[str, Any], extra: Sequence[tuple[str, str]] = ()) -> None:
    """Print a purge/dry-run ``result`` ({dry_run, deleted|would_delete: {category: n}, total, ...}):
    the whole object for json, else one row per category, the total, then ``extra`` (label, key)."""
    global _audit_rows
    if fmt == "json":
        _emit_json(result)
    else:
        label = "would_delete" if result["dry_run"] else "deleted"
        rows: list[tuple[Any, ...]] = [(c, n) for c, n in result[label].items()]
        rows.append(("(total)", result["total"]))
        if not result["dry_run"]:
            rows += [(f"({name})", result[key]) for name, key in extra]
        _emit_rows(fmt, ("category", label), rows)
    _audit_rows = int(result.get("total") or 0)  # rows deleted (or that would be), not lines printed


def retention_policy(config_path: str | None) -> Any:
    """The retention policy of collector.yaml (``--config``), for commands that purge or show it."""
    from ..collector import config as collector_config
    from ..store.retention import RetentionPolicy

    # Purging by built-in defaults while the collector keeps data longer would lose data.
    try:
        rt = collector_config.load(config_path).retention
        cap = None if rt.max_size_mb is None else max(1, int(rt.max_size_mb * 1024 * 1024))
        return RetentionPolicy(days=dict(rt.days), max_size_bytes=cap)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
