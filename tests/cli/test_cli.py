"""The ``otel-telemetry`` command line against real SQLite files; no mocks."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import apsw
import click
import orjson
import pytest
from click.testing import CliRunner, Result

from otel_telemetry.categories import DEFAULT_RETENTION_DAYS
from otel_telemetry.cli.commands import main
from otel_telemetry.query.filters import OUTPUT_COLUMNS
from otel_telemetry.store import schema

NS = 1_000_000_000
DAY = 86400 * NS


def _row(i: int, ts: int, **kw: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {c: None for c in schema.COLUMNS}
    values.update(uid=i.to_bytes(16, "big"), timestamp=ts, type="span",
                  category="component_interactions", component="comp", event="ev", level="info",
                  data='{"k": 1}', metadata="{}")
    values.update(kw)
    return tuple(values[c] for c in schema.COLUMNS)


def _make_db(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute(schema.DDL)
    cols = ", ".join(schema.COLUMNS)
    with conn:
        conn.executemany(f"INSERT INTO records({cols}) VALUES ({', '.join('?' * len(schema.COLUMNS))})",
                         rows)
    conn.close()
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_TELEMETRY_DB", "OTEL_TELEMETRY_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    now = time.time_ns()
    rows = [
        _row(1, now - 3600 * NS, category="ai_behavior", component="llm", event="chat", name="chat",
             duration_ms=10.0, trace_id="a" * 32, service="svc"),
        _row(2, now - 1800 * NS, category="ai_behavior", component="llm", event="chat", name="chat",
             duration_ms=30.0),
        _row(3, now - 600 * NS, category="error_patterns", component="db", level="error",
             duration_ms=20.0),
        _row(4, now - 60 * NS, type="log", category="user_interaction", component="ui", level="warning"),
        # Old rows: system_performance (30 days by default) is expired, ai_behavior (90) is not.
        _row(5, now - 40 * DAY, type="metric", category="system_performance", component="host"),
        _row(6, now - 40 * DAY, category="ai_behavior", component="llm", duration_ms=1.0),
    ]
    return _make_db(tmp_path / "t.db", rows)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_query_json_is_array_with_schema_columns(db: Path) -> None:
    r = run("query", "--db", str(db), "--format", "json")
    assert r.exit_code == 0, r.stderr
    records = orjson.loads(r.stdout)
    assert isinstance(records, list) and [x["id"] for x in records] == [4, 3, 2, 1]
    assert all(tuple(x) == OUTPUT_COLUMNS for x in records)
    assert set(OUTPUT_COLUMNS) >= set(schema.COLUMNS) - {"uid"}
    assert records[-1]["data"] == {"k": 1} and records[-1]["trace_id"] == "a" * 32


def test_query_filters_and_window(db: Path) -> None:
    r = run("query", "--db", str(db), "--format", "json", "--category", "ai_behavior", "--last", "45m")
    assert [x["id"] for x in orjson.loads(r.stdout)] == [2]
    r = run("query", "--db", str(db), "--format", "json", "--last", "60d", "--limit", "2",
            "--order", "asc")
    assert [x["id"] for x in orjson.loads(r.stdout)] == [5, 6]
    r = run("query", "--db", str(db), "--format", "json", "--trace-id", "A" * 32)
    assert [x["id"] for x in orjson.loads(r.stdout)] == [1]
    r = run("query", "--db", str(db), "--format", "json", "--component", "x' OR '1'='1")
    assert orjson.loads(r.stdout) == []


def test_query_csv_header(db: Path) -> None:
    r = run("query", "--db", str(db), "--format", "csv", "--level", "error")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert tuple(rows[0]) == OUTPUT_COLUMNS
    assert len(rows) == 2 and rows[1][0] == "3"


def test_query_table(db: Path) -> None:
    r = run("query", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["time", "type", "category", "component", "event", "level", "name",
                                "duration_ms", "trace_id"]
    assert len(lines) == 5 and "a" * 32 in lines[-1] and "10.000" in lines[-1]
    empty = run("query", "--db", str(db), "--service", "nobody")
    assert empty.exit_code == 0 and empty.stdout == "" and "no matching records" in empty.stderr


def test_stats_json_one_object(db: Path) -> None:
    r = run("stats", "--db", str(db), "--format", "json", "--last", "24h")
    assert r.exit_code == 0, r.stderr
    s = orjson.loads(r.stdout)
    assert isinstance(s, dict)
    assert s["total"] == 4 and s["errors"] == 1
    assert s["by_category"] == {"ai_behavior": 2, "error_patterns": 1, "user_interaction": 1}
    assert s["by_type"] == {"log": 1, "span": 3}
    overall = s["latency_ms"]["overall"]
    assert (overall["count"], overall["p50"], overall["p95"], overall["p99"]) == (3, 20.0, 30.0, 30.0)
    assert s["latency_ms"]["by_category"]["ai_behavior"]["p50"] == 10.0

    one = orjson.loads(run("stats", "--db", str(db), "--format", "json", "--category",
                           "error_patterns").stdout)
    assert one["total"] == 1 and one["by_category"] == {"error_patterns": 1}


def test_stats_table_and_csv(db: Path) -> None:
    table = run("stats", "--db", str(db))
    assert table.exit_code == 0 and "records  4  (errors 1)" in table.stdout
    rows = list(csv.reader(io.StringIO(run("stats", "--db", str(db), "--format", "csv").stdout)))
    assert rows[0] == ["section", "key", "value"] and ["total", "", "4"] in rows


def _by_category(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``retention show`` has a row per category × type; with no type settings a category's types agree."""
    out: dict[str, dict[str, Any]] = {}
    for x in rows:
        c = out.setdefault(x["category"], {"category": x["category"], "days": x["days"], "source": x["source"],
                                           "expired": 0})
        assert (c["days"], c["source"], x["key"]) == (x["days"], x["source"], x["category"]), x
        c["expired"] += x["expired"]
    return out


def _show(db: Path) -> dict[str, dict[str, Any]]:
    r = run("retention", "show", "--db", str(db), "--format", "json")
    assert r.exit_code == 0, r.stderr
    return _by_category(orjson.loads(r.stdout))


def _count(db: Path) -> int:
    conn = apsw.Connection(str(db))
    try:
        return conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        conn.close()


def test_retention_show_set_purge(db: Path) -> None:
    shown = _show(db)
    assert {c: x["days"] for c, x in shown.items()} == DEFAULT_RETENTION_DAYS
    assert all(x["source"] == "default" for x in shown.values())
    assert shown["system_performance"]["expired"] == 1 and shown["ai_behavior"]["expired"] == 0

    r = run("retention", "set", "--db", str(db), "--category", "ai_behavior", "--days", "10")
    assert r.exit_code == 0, r.stderr
    shown = _show(db)
    assert shown["ai_behavior"] == {"category": "ai_behavior", "days": 10, "source": "override",
                                    "expired": 1}

    dry = run("retention", "purge", "--dry-run", "--db", str(db), "--format", "json")
    assert dry.exit_code == 0, dry.stderr
    out = orjson.loads(dry.stdout)
    assert out["total"] == 2 and out["would_delete"]["system_performance"] == 1
    assert _count(db) == 6

    table = run("retention", "purge", "--dry-run", "--db", str(db))
    assert "would_delete" in table.stdout and "(total)" in table.stdout

    real = run("retention", "purge", "--db", str(db), "--format", "json")
    assert real.exit_code == 0, real.stderr
    done = orjson.loads(real.stdout)
    assert done["deleted"]["system_performance"] == 1 and done["deleted"]["ai_behavior"] == 1
    assert done["total"] == 2 and done["bytes_reclaimed"] >= 0
    assert _count(db) == 4
    assert sum(x["expired"] for x in _show(db).values()) == 0


def test_retention_set_rejects_bad_values(db: Path) -> None:
    for args in (("--category", "nope", "--days", "3"), ("--category", "ai_behavior", "--days", "0")):
        r = run("retention", "set", "--db", str(db), *args)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1


def test_status_without_and_with_row(db: Path) -> None:
    r = run("status", "--db", str(db))
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "no collector" in r.stderr

    conn = apsw.Connection(str(db))
    with conn:
        conn.execute("INSERT INTO collector_status(id, updated, body) VALUES (1, ?, ?)",
                     (time.time_ns(), orjson.dumps({"received": 7, "stored": 6,
                                                    "receivers": {"zmq": 7}}).decode()))
    conn.close()
    j = run("status", "--db", str(db), "--format", "json")
    assert j.exit_code == 0, j.stderr
    s = orjson.loads(j.stdout)
    assert s["received"] == 7 and s["stored"] == 6 and 0 <= s["age_s"] < 60 and "updated" in s
    t = run("status", "--db", str(db))
    assert t.exit_code == 0 and "receivers.zmq" in t.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("query", "--last", "3x"),
        ("query", "--category", "nope"),
        ("query", "--limit", "0"),
        ("query", "--bogus"),
        ("query", "--trace-id", "xyz"),
        ("query", "--since", "yesterday"),
        ("query", "--last", "1h", "--since", "2h"),
        ("query", "--since", "1h", "--until", "2h"),
        ("stats", "--last", "0s"),
        ("stats", "--category", "nope"),
        ("retention", "purge", "--force"),
        ("nonsense",),
    ],
)
def test_bad_arguments_exit_2_one_line(db: Path, args: tuple[str, ...]) -> None:
    r = run(*args, "--db", str(db)) if args[0] != "nonsense" else run(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("command", [("query",), ("stats",), ("status",), ("retention", "show"),
                                     ("retention", "purge"), ("retention", "purge", "--dry-run")])
def test_missing_db_is_exit_2_and_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "sub" / "none.db"
    r = run(*command, "--db", str(missing))
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"Error: otel-telemetry {' '.join(c for c in command if not c.startswith('-'))}: "
        f"no database at {missing}; start the collector first or pass --db"]
    assert not missing.exists() and not missing.parent.exists()


def test_missing_db_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "env.db"
    monkeypatch.setenv("OTEL_TELEMETRY_DB", str(missing))
    r = run("query")
    assert r.exit_code == 2 and str(missing) in r.stderr and not missing.exists()


def _walk(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            found += _walk(sub, (*path, name))
    return found


def test_every_command_and_option_has_help_and_example() -> None:
    commands = _walk(main)
    assert {" ".join(p) for p, _ in commands} >= {"", "query", "stats", "status", "retention",
                                                  "retention show", "retention set",
                                                  "retention purge", "collector", "collector run"}
    for path, cmd in commands:
        assert cmd.help and cmd.help.strip(), path
        assert "Example" in cmd.help, path
        ctx = click.Context(cmd, info_name=path[-1] if path else "otel-telemetry")
        for param in cmd.get_params(ctx):
            if isinstance(param, click.Option):
                assert param.help and param.help.strip(), (path, param.name)
        r = run(*path, "--help")
        assert r.exit_code == 0 and "Example" in r.stdout, path


def test_version() -> None:
    r = run("--version")
    assert r.exit_code == 0 and "otel-telemetry" in r.stdout


def test_bare_group_prints_help() -> None:
    r = run("retention")
    assert "show" in r.output and "purge" in r.output


def test_retention_uses_collector_config_days(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text("retention:\n  days:\n    ai_behavior: 10\n")
    r = run("retention", "show", "--db", str(db), "--config", str(cfg), "--format", "json")
    assert r.exit_code == 0, r.stderr
    shown = _by_category(orjson.loads(r.stdout))
    assert shown["ai_behavior"] == {"category": "ai_behavior", "days": 10, "source": "config",
                                    "expired": 1}
    cfg.write_text("retention:\n  dayz: 1\n")
    bad = run("retention", "show", "--db", str(db), "--config", str(cfg))
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "dayz" in bad.stderr


def test_collector_run_reports_bad_config(tmp_path: Path) -> None:
    target = tmp_path / "c.db"
    cfg = tmp_path / "collector.yaml"
    cfg.write_text("nonsense_key: 1\n")
    r = run("collector", "run", "--config", str(cfg), "--db", str(target))
    assert r.exit_code == 2 and "nonsense_key" in r.stderr and not target.exists()
    missing = run("collector", "run", "--config", str(tmp_path / "none.yaml"))
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
