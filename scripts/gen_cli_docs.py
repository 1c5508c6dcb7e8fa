"""Regenerate docs/cli.md, the reference of every ``otel-telemetry`` command and option.

Walks the click group, so the reference says exactly what ``--help`` says. Run after changing a
command: ``.venv/bin/python scripts/gen_cli_docs.py`` (``--check`` exits 1 when the file is stale).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from otel_telemetry.cli.commands import main

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

INTRO = """\
# `otel-telemetry` command reference

Generated from the commands' own help by `scripts/gen_cli_docs.py`; do not edit by hand. Every
command also answers `-h` / `--help`. Errors are one line on stderr (`Error: ...`) and exit 1
(2 for usage errors).

Settings shared by the commands that read the database: `--db PATH`, else `$OTEL_TELEMETRY_DB`,
else `~/.local/share/otel-telemetry/telemetry.db`. Times (`--since`, `--until`) take ISO-8601
times, dates, epoch seconds or a duration before now (`2h`); durations (`--last`) take a number
and a unit `s`, `m`, `h`, `d` or `w` (`30s`, `15m`, `24h`, `7d`, `1w`).

## Shell completion

click's built-in completion works for bash, zsh and fish; either source the script that
`otel-telemetry completion SHELL` prints, or ask click directly:

```sh
eval "$(_OTEL_TELEMETRY_COMPLETE=bash_source otel-telemetry)"     # bash, in ~/.bashrc
eval "$(_OTEL_TELEMETRY_COMPLETE=zsh_source otel-telemetry)"      # zsh, in ~/.zshrc
_OTEL_TELEMETRY_COMPLETE=fish_source otel-telemetry | source       # fish, in config.fish
eval "$(otel-telemetry completion bash)"                           # the same, via the command
```

Commands, subcommands, option names and choices (`--category <TAB>`, `--format <TAB>`) complete.

## Export, round trips and large databases

`export` streams rows in id order with a keyset cursor (`WHERE id > ? ORDER BY id LIMIT 1000`),
one short read per chunk, so its memory does not grow with the number of rows: the test suite
exports 20 000 and 200 000 rows and checks that peak RSS stays flat (1 M rows behaves the same;
only the time grows, linearly). The progress bar goes to stderr when it is a terminal;
`--progress` forces progress lines elsewhere (logs, CI), `--no-progress` hides it. The output file
is written as `FILE.part` and renamed when complete.

`--format otlp-json` writes OTLP/JSON export requests, one per line (JSON Lines, as the
OpenTelemetry Collector's file exporter writes): trace/span ids as hex, enums as integers,
64-bit integers as strings. POST each line to an OTLP/HTTP receiver's `/v1/traces`, `/v1/metrics`
or `/v1/logs` (by its top-level key `resourceSpans`, `resourceMetrics`, `resourceLogs`) with
`Content-Type: application/json`. Re-ingesting into this collector reproduces every record: ids,
names, kinds, status, attributes, events, links, resource, scope, timestamps, durations, metric
points and log records, and the derived columns (category, component, level, session, GenAI
tokens and cost). What a round trip cannot keep, because the database does not store it: the
start time of metric points (exported as 0), a log record's observed time (exported as its time)
and exact severity number (the lowest number of its level: 5, 9, 13, 17, 21), and the
subcategory of records that came in over ZeroMQ without a `telemetry.subcategory` attribute (the
receiver derives one). `record_telemetry` events become spans with the `telemetry.*` attributes
the API sets. Where this collector's rules would pick a different category or component than
the stored one, the exported record carries `telemetry.category` / `telemetry.component` so that
the original is kept.

```sh
otel-telemetry export --format otlp-json -o dump.otlp.jsonl
while IFS= read -r line; do
  case "$line" in
    '{"resourceSpans"'*) path=traces ;; '{"resourceMetrics"'*) path=metrics ;; *) path=logs ;;
  esac
  printf '%s' "$line" | curl -sf -H 'Content-Type: application/json' --data-binary @- \\
    "http://127.0.0.1:4318/v1/$path" > /dev/null
done < dump.otlp.jsonl
```

`watch` polls the database read-only (every `--interval` seconds) for rows with an id above the
last one it saw; it never subscribes to the collector's ZeroMQ socket, so it cannot back-pressure
applications. `watch --in-progress` reads the spans still running instead (apps with live spans
on): `--format table` prints them with their elapsed time whenever the set or a state changes (on a
terminal, redrawn every interval), `jsonl` one event per change (`started`, `abandoned`, `ended`
with the stored span's `duration_ms` and `status`, or `gone` when the collector evicted it), and
`json` the current set once, as the dashboard's `/api/in_progress` gives it.

# Commands
"""


def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))


def _help(text: str) -> str:
    """Docstring help → markdown: paragraphs as text, ``\\b`` blocks (examples) as shell code."""
    out: list[str] = []
    for para in text.strip().split("\n\n"):
        lines = para.strip("\n").splitlines()
        if lines and lines[0].strip() == "\b":
            body = lines[1:]
            title = body[0].strip() if body and body[0].strip().endswith(":") else None
            code = body[1:] if title else body
            indent = min((len(ln) - len(ln.lstrip()) for ln in code if ln.strip()), default=0)
            block = "```sh\n" + "\n".join(ln[indent:] for ln in code) + "\n```"
            out.append(f"{title}\n\n{block}" if title else block)
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section(path: tuple[str, ...], cmd: click.Command) -> str:
    ctx = click.Context(cmd, info_name=" ".join(path), help_option_names=["-h", "--help"])
    parts = [f"## `{' '.join(path)}`\n", _help(cmd.help or ""), "",
             f"Usage: `{' '.join(path)} {' '.join(cmd.collect_usage_pieces(ctx))}`", ""]
    if isinstance(cmd, click.Group):
        parts += ["Subcommands: " + ", ".join(f"`{' '.join((*path, n))}`" for n in sorted(cmd.commands)), ""]
    rows = []
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Argument):
            choices = f" one of {', '.join(param.type.choices)}" if isinstance(param.type, click.Choice) else ""
            rows.append((f"`{param.human_readable_name}` (argument)", f"Required.{choices}"))
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        rows.append((f"`{names}`", text))
    if rows:
        parts += ["| option | meaning |", "|---|---|"]
        parts += [f"| {_cell(a)} | {_cell(b)} |" for a, b in rows]
        parts.append("")
    return "\n".join(parts)


def render() -> str:
    return INTRO + "\n" + "\n".join(section(p, c) for p, c in walk(main, ("otel-telemetry",)))


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is not up to date")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale; run scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
