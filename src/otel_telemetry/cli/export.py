"""``otel-telemetry export``, ``watch`` and ``completion``, registered on the main group by ``cli/commands.py``.

Both reading commands use read-only connections and keyset pagination on the row id
(``records_export``): ``export`` streams any number of rows in bounded memory, ``watch`` polls for
rows newer than the last one it printed. Neither subscribes to the collector's ZeroMQ socket, so a
slow terminal can never back-pressure the applications.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import click
import orjson

from ..categories import CATEGORIES
from ..query import export as rx
from ..query import filters as query
from .output import TABLE_COLUMNS, TRACE_ID, F, _open, db_option, window_options

COMPLETE_VAR = "_OTEL_TELEMETRY_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
WATCH_FORMATS = ("table", "jsonl", "json")
# Fixed widths so a live table stays aligned without knowing the rows to come.
_WATCH_WIDTH = {"time": 24, "type": 6, "category": 22, "component": 24, "event": 28, "level": 8,
                "name": 32, "duration_ms": 11, "trace_id": 32}
_PLAIN_PROGRESS_S = 2.0


def _filter_options(multiple: bool) -> Callable[[F], F]:
    """The record filters of ``query``; with ``multiple`` each may be repeated (any value matches)."""
    again = " Repeat to match any of several." if multiple else ""

    def deco(f: F) -> F:
        for name, kw in reversed((
            ("--category", {"type": click.Choice(CATEGORIES), "help": "Only records of this category."}),
            ("--component", {"help": "Only records from this component (exact match)."}),
            ("--event", {"help": "Only records with this event name (exact match)."}),
            ("--level", {"type": click.Choice(query.LEVELS), "help": "Only records of this level."}),
            ("--type", {"type": click.Choice(query.TYPES), "help": "Only records of this type."}),
            ("--service", {"help": "Only records from this service.name (exact match)."}),
            ("--trace-id", {"type": TRACE_ID, "help": "Only records of this trace (32 hex characters)."}),
            ("--session-id", {"help": "Only records of this session (exact match)."}),
            ("--instance", {"help": "Only records stored by this collector instance (exact match)."}),
        )):
            dest = name[2:].replace("-", "_")
            f = click.option(name, dest, multiple=multiple, **{**kw, "help": kw["help"] + again})(f)
        return f
    return deco


def _selection(filters: dict[str, Any], since: int | None = None, until: int | None = None) -> rx.Selection:
    equal: dict[str, tuple[str, ...]] = {}
    for column in rx.FILTER_COLUMNS:
        value = filters.get(column)
        if value:
            equal[column] = tuple(value) if isinstance(value, tuple | list) else (value,)
    return rx.Selection(equal, since, until)


class _Progress:
    """click's bar on a terminal; elsewhere (when forced) a plain line every few seconds."""

    def __init__(self, total: int, show: bool | None, label: str) -> None:
        tty = sys.stderr.isatty()
        self.total, self.done, self.label = total, 0, label
        self.plain = bool(show) and not tty
        self.bar: Any = None
        if (tty if show is None else show) and tty:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self._next = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.plain and time.monotonic() >= self._next:
            self._line()
            self._next = time.monotonic() + _PLAIN_PROGRESS_S

    def _line(self) -> None:
        pct = 100 * self.done // self.total if self.total else 100
        click.echo(f"{self.label}: {self.done}/{self.total} records ({pct}%)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        elif self.plain:
            self._line()


def _open_output(path: str) -> tuple[BinaryIO, str | None]:
    """(stream, temporary file to rename onto ``path`` on success, or None for stdout)."""
    if path == "-":
        return sys.stdout.buffer, None
    if os.path.isdir(path):  # found now, not after the whole export was written beside it
        raise click.UsageError(f"cannot write {path}: it is a directory; name a file in it")
    tmp = f"{path}.part"
    try:
        return open(tmp, "wb"), tmp
    except OSError as exc:
        raise click.UsageError(f"cannot write {path}: {exc.strerror}") from None


def cmd_export(fmt: str, output: str, last: float | None, since: int | None, until: int | None,
               progress: bool | None, db: str | None, **filters: Any) -> None:
    """Write stored records to a file (or stdout) as JSON, JSON Lines, CSV or OTLP/JSON.

    Rows stream in id order in chunks, so memory stays bounded at any size; rows the collector
    stores after the export started are not included. Without --last/--since every stored record
    is exported. json is one array and jsonl one object per line, both keyed like
    ``query --format json``; csv has the same columns with a header row (data and metadata as
    JSON text); otlp-json writes one OTLP/JSON ExportTrace/Metrics/LogsServiceRequest per line
    (like the OpenTelemetry Collector's file exporter), which the collector's OTLP/HTTP receiver
    and other OTel tools re-ingest. The file appears only when the export is complete.

    \b
    Example:
      otel-telemetry export --format jsonl --last 7d -o last-week.jsonl
      otel-telemetry export --format csv --category error_patterns --since 2026-01-01 -o errors.csv
      otel-telemetry export --format otlp-json -o dump.otlp.jsonl
      otel-telemetry export --format json --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 -o -
    """
    if last is not None and since is not None:
        raise click.UsageError("use either --last or --since, not both")
    if last is not None:
        end = until if until is not None else time.time_ns()
        since = max(-(2**63), end - int(last * 1_000_000_000))
    if since is not None and until is not None and since >= until:
        raise click.UsageError("the window is empty: --since must be before --until")
    sel = _selection(filters, since, until)
    with _open(db) as conn:
        total, first, last_id = rx.bounds(conn, sel)
        out, tmp = _open_output(output)
        writer = rx.WRITERS[fmt](out)
        bar = _Progress(total, progress, "export")
        written = bad = 0
        try:
            writer.begin()
            for rows in rx.chunks(conn, sel, first, last_id):
                bad += writer.write(rows)
                written += len(rows)
                bar.update(len(rows))
            writer.end()
            out.flush()
        except BaseException:
            if tmp is not None:
                out.close()
                os.unlink(tmp)
            raise
        finally:
            bar.close()
    if tmp is not None:
        out.close()
        try:
            os.replace(tmp, output)
        except OSError as exc:  # e.g. the path became a directory meanwhile: no half-done file left
            os.unlink(tmp)
            raise click.UsageError(f"cannot write {output}: {exc.strerror}") from None
    if bad:
        raise click.ClickException(f"{bad} of {written} records could not be encoded as {fmt} and were "
                                   f"left out of {output}")
    if output != "-":
        click.echo(f"exported {written} records to {output}", err=True)


def _watch_line(rec: dict[str, Any]) -> str:
    cells = []
    for col in TABLE_COLUMNS:
        value = rec[col]
        text = "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        width = _WATCH_WIDTH[col]
        cells.append((text[: width - 1] + "…" if len(text) > width else text).ljust(width))
    return "  ".join(cells).rstrip()


def cmd_watch(interval: float, fmt: str, backlog: int, max_records: int | None, timeout: float | None,
              db: str | None, in_progress: bool, **filters: Any) -> None:
    """Live tail: print records as the collector stores them, until Ctrl-C.

    Polls the database read-only for rows newer than the last one seen (it never subscribes to
    the collector's socket, so a slow terminal cannot slow the applications down). Filters may be
    repeated to match any of several values. Ctrl-C, --max-records and --timeout all exit 0.

    With --in-progress: the spans started and not yet ended instead (apps with live spans on),
    with their elapsed time and state (running, or abandoned when the collector gave up on one);
    --format jsonl prints started/abandoned/ended events, --format json the current set once.

    \b
    Example:
      otel-telemetry watch
      otel-telemetry watch --category error_patterns --category ai_behavior --level error
      otel-telemetry watch --component llm --format jsonl --interval 2
      otel-telemetry watch --max-records 1 --timeout 30
      otel-telemetry watch --in-progress --service agent-app
    """
    if in_progress:
        from .watch_live import watch_in_progress

        watch_in_progress(db, fmt, interval, max_records, timeout, filters)
        return
    if fmt == "json":
        raise click.UsageError("--format json needs --in-progress (a live tail prints jsonl)")
    sel = _selection(filters)
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = 0
    out = sys.stdout  # read at call time: CliRunner swaps it

    def emit(rows: list[tuple[Any, ...]]) -> bool:
        nonlocal shown
        for row in rows:
            rec = rx.record(row)
            click.echo(orjson.dumps(rec).decode() if fmt == "jsonl" else _watch_line(rec), file=out)
            shown += 1
            if max_records is not None and shown >= max_records:
                out.flush()
                return True
        out.flush()
        return False

    try:
        with _open(db) as conn:
            seen = rx.max_id(conn)
            if fmt == "table":
                click.echo("  ".join(c.ljust(_WATCH_WIDTH[c]) for c in TABLE_COLUMNS).rstrip(), file=out)
            if backlog and emit(rx.latest(conn, sel, seen, backlog)):
                return
            while deadline is None or time.monotonic() < deadline:
                top = rx.max_id(conn)
                rows = rx.fetch(conn, sel, seen, top, rx.CHUNK_ROWS) if top > seen else []
                # Rows the filters skip are passed over too, so each poll reads only new rows.
                seen = rows[-1][0] if len(rows) == rx.CHUNK_ROWS else max(seen, top)
                if emit(rows):
                    return
                if len(rows) < rx.CHUNK_ROWS:
                    wait = interval if deadline is None else min(interval, deadline - time.monotonic())
                    time.sleep(max(0.0, wait))
    except KeyboardInterrupt:
        pass  # the normal way to stop a live tail


def cmd_completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Equivalent to click's ``_OTEL_TELEMETRY_COMPLETE=<shell>_source otel-telemetry``.

    \b
    Example:
      eval "$(otel-telemetry completion bash)"          # in ~/.bashrc
      otel-telemetry completion zsh > ~/.zfunc/_otel-telemetry
      otel-telemetry completion fish > ~/.config/fish/completions/otel-telemetry.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice only offers shells click supports
        raise click.UsageError(f"no completion support for {shell}")
    root = click.get_current_context().find_root().command
    click.echo(cls(root, {}, "otel-telemetry", COMPLETE_VAR).source())


def _export_command() -> click.Command:
    f: Any = cmd_export
    f = db_option(f)
    f = click.option("--progress/--no-progress", default=None,
                     help="Show a progress bar on stderr. Default: only when stderr is a terminal; "
                          "--progress elsewhere prints a progress line every few seconds.")(f)
    f = _filter_options(multiple=False)(f)
    f = window_options(until_default="no end", last_default="all stored records")(f)
    f = click.option("-o", "--output", required=True, metavar="FILE",
                     help="File to write (created when the export completes); - for stdout.")(f)
    f = click.option("--format", "fmt", type=click.Choice(rx.FORMATS), default="jsonl", show_default=True,
                     help="json: one array; jsonl: one record per line; csv: header and rows; "
                          "otlp-json: OTLP/JSON requests, one per line.")(f)
    return click.command("export")(f)


def _watch_command() -> click.Command:
    f: Any = cmd_watch
    f = db_option(f)
    f = click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     help="Exit (status 0) after this many seconds.")(f)
    f = click.option("--max-records", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Exit (status 0) after printing N records.")(f)
    f = click.option("--backlog", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
                     help="First print the N most recent matching records already stored.")(f)
    f = click.option("--format", "fmt", type=click.Choice(WATCH_FORMATS), default="table",
                     show_default=True, help="table: one aligned line per record; jsonl: one JSON "
                                             "object per line, keyed like query --format json; json: "
                                             "the spans in progress once (with --in-progress).")(f)
    f = click.option("--in-progress", "in_progress", is_flag=True, default=False,
                     help="Show the spans started and not yet ended (apps with live spans on) and their "
                          "elapsed time, instead of stored records.")(f)
    f = click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
                     metavar="SECONDS", help="How often to look for new records.")(f)
    f = _filter_options(multiple=True)(f)
    return click.command("watch")(f)


def _completion_command() -> click.Command:
    arg = click.argument("shell", type=click.Choice(SHELLS))
    return click.command("completion")(arg(cmd_completion))


def register(main: click.Group) -> None:
    """Add ``export``, ``watch`` and ``completion`` to the ``otel-telemetry`` group."""
    for cmd in (_export_command(), _watch_command(), _completion_command()):
        main.add_command(cmd)

