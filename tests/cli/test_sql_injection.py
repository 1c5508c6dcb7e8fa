"""SQL-injection payloads in every CLI filter of every command, on a real seeded database.

Every payload must be data, never SQL: only legitimate rows come back (none, or the rows whose
value is exactly the payload), the exit code is 0 or 2 (one line), and afterwards the schema
(``sqlite_master``) and every table's row count are unchanged and no attached file appeared.
Also: the query side's read-only connections refuse every kind of write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner, Result

from otel_telemetry.cli.commands import main
from otel_telemetry.store import db as dbmod
from otel_telemetry.store.alert_state import open_state as _open_state
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 10**9
NOW = time.time_ns()


def payloads(attach_target: Path) -> list[str]:
    return [
        "' OR 1=1 --",
        "' OR '1'='1",
        '"; DROP TABLE records; --',
        "x'); DELETE FROM records; --",
        "%",
        "_",
        "*",
        "a\x00b",
        "A" * 100_000,
        "ünïcødé ' 🙂 \u202e",
        f"1; ATTACH DATABASE '{attach_target}' AS pwn; --",
        "1 UNION SELECT name, sql FROM sqlite_master --",
        "comp' /*",
        "\\' OR 1=1 #",
    ]


# Rows whose text columns hold some payloads literally: an exact-match filter must find exactly them.
LITERAL = ["' OR 1=1 --", "%", "_", "ünïcødé ' 🙂 \u202e"]


def make_row(n: int, **kw: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(uid=n.to_bytes(16, "big"), timestamp=NOW - (n + 1) * NS, type="span",
                  category="ai_behavior", component="llm", event="chat", level="info", name="op",
                  service="svc", session_id=f"s{n}", data='{"attributes": {}}', metadata="{}",
                  model="gpt-4o", agent="planner", duration_ms=1.0)
    values.update(kw)
    return tuple(values[c] for c in COLUMNS)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("inj") / "t.db"
    rows = [make_row(i, component=f"c{i % 3}", category=("ai_behavior", "error_patterns")[i % 2])
            for i in range(40)]
    for j, text in enumerate(LITERAL):
        rows.append(make_row(100 + j, component=text, event=text, service=text, session_id=text,
                             agent=text, model=text))
    w = StoreWriter(str(path), flush_interval=0.01)
    w.start()
    assert w.submit(WriteBatch(rows, received=len(rows)), 10)
    assert w.shutdown(10)
    state = _open_state(f"{path}.alerts.db")
    with state:
        for j, text in enumerate(["ok-rule", *LITERAL]):
            state.execute(
                "INSERT INTO alert_history(rule, kind, severity, metric, state, pending_since, fired, op, "
                "threshold, message) VALUES (?, 'threshold', 'warning', 'm', 'firing', 1, ?, '>', 1, 'msg')",
                (text, j + 1))
    state.close()
    yield path


def snapshot(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in (str(path), f"{path}.alerts.db"):
        conn = dbmod.open_reader(p)
        try:
            master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
            counts = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                      for t, name, _, _ in master if t == "table"}
            out[p] = (master, counts, conn.execute("PRAGMA database_list").fetchall())
        finally:
            conn.close()
    return out


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def check_exit(r: Result, what: Any) -> None:
    assert r.exit_code in (0, 2), (what, r.exit_code, r.stderr[-300:], r.exception)
    if r.exit_code == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), (what, r.stderr[-300:])


def _exact(rows: list[dict[str, Any]], column: str, payload: str) -> None:
    for row in rows:
        assert row[column] == payload, (column, payload[:40], row[column])


TEXT_FILTERS = {"--component": "component", "--event": "event", "--service": "service",
                "--session-id": "session_id"}
OTHER_FILTERS = ("--category", "--level", "--type", "--trace-id", "--last", "--since", "--until")


def expected(column: str, payload: str) -> int:
    return 1 if payload in LITERAL else 0


@pytest.fixture(scope="module")
def before(seeded: Path) -> dict[str, Any]:
    return snapshot(seeded)


@pytest.fixture(autouse=True)
def _unchanged(seeded: Path, before: dict[str, Any], tmp_path: Path) -> Iterator[None]:
    yield
    assert snapshot(seeded) == before


def _attach(seeded: Path) -> Path:
    return seeded.parent / "pwn.db"


def test_query(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        for opt, col in TEXT_FILTERS.items():
            r = run("query", opt, p, "--last", "30d", "--db", str(seeded), "--format", "json", "--limit", "1000")
            check_exit(r, (opt, p[:30]))
            if r.exit_code == 0:
                rows = orjson.loads(r.stdout)
                _exact(rows, col, p)
                assert len(rows) == expected(col, p), (opt, p[:30], len(rows))
        for opt in OTHER_FILTERS:
            r = run("query", opt, p, "--db", str(seeded), "--format", "json")
            check_exit(r, (opt, p[:30]))
            assert r.exit_code == 2, (opt, p[:30])  # none of the payloads is a valid value
    assert not _attach(seeded).exists()


def test_query_attr(seeded: Path) -> None:
    """``--attr``: the payload as key, as value, and as the value of the ``service`` column key."""
    for p in payloads(_attach(seeded)):
        for spec, col in ((f"{p}=x", None), (f"k={p}", None), (f"k!={p}", "all"), (f"{p}>1", None),
                          (f"service={p}", "service")):
            r = run("query", "--attr", spec, "--last", "30d", "--db", str(seeded), "--format", "json",
                    "--limit", "1000")
            check_exit(r, (spec[:30],))
            if r.exit_code != 0:
                continue
            rows = orjson.loads(r.stdout)
            if col == "service" and "=" not in p:
                _exact(rows, "service", p.strip())
                assert len(rows) == expected("service", p), (spec[:30], len(rows))
            elif col == "all":
                assert len(rows) == 40 + len(LITERAL)  # no row has the attribute k: != keeps them all
            elif col is None:
                assert rows == [], spec[:30]
    assert not _attach(seeded).exists()


def test_stats(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        for args in (["--category", p], ["--agent", p], ["--model", p], ["--agent", p, "--model", p],
                     ["--period", p], ["--last", p], ["--since", p], ["--until", p], ["--alerts-db", p]):
            if "\x00" in p and args[0] == "--alerts-db":
                continue  # a file path: a NUL cannot reach argv (the OS passes C strings)
            r = run("stats", *args, "--db", str(seeded), "--format", "json")
            check_exit(r, (args[0], p[:30]))
            if r.exit_code == 0 and args[0] in ("--agent", "--model"):
                report = orjson.loads(r.stdout)
                text = r.stdout
                calls = report.get("calls", report.get("total"))
                if p not in LITERAL:
                    assert "planner" not in text and "gpt-4o" not in text, (args, p[:30], calls)
    assert not _attach(seeded).exists()


def test_export(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        for opt, col in TEXT_FILTERS.items():
            r = run("export", opt, p, "--db", str(seeded), "-o", "-", "--format", "jsonl", "--no-progress")
            check_exit(r, (opt, p[:30]))
            assert r.exit_code == 0
            rows = [orjson.loads(line) for line in r.stdout.splitlines() if line.strip()]
            _exact(rows, col, p)
            assert len(rows) == expected(col, p)
        for opt in OTHER_FILTERS:
            r = run("export", opt, p, "--db", str(seeded), "-o", "-")
            check_exit(r, (opt, p[:30]))
            assert r.exit_code == 2
    assert not _attach(seeded).exists()


def test_watch_bounded(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        for opt, col in TEXT_FILTERS.items():
            r = run("watch", opt, p, "--backlog", "1000", "--timeout", "0.05", "--interval", "0.01",
                    "--format", "jsonl", "--db", str(seeded))
            check_exit(r, (opt, p[:30]))
            assert r.exit_code == 0
            rows = [orjson.loads(line) for line in r.stdout.splitlines() if line.strip()]
            _exact(rows, col, p)
            assert len(rows) == expected(col, p)
        # repeated filters (an IN list): the payload and a legitimate value
        r = run("watch", "--component", p, "--component", "c1", "--backlog", "1000", "--timeout", "0.05",
                "--interval", "0.01", "--format", "jsonl", "--db", str(seeded))
        check_exit(r, p[:30])
        rows = [orjson.loads(line) for line in r.stdout.splitlines() if line.strip()]
        assert {row["component"] for row in rows} <= {p, "c1"} and len(rows) == 13 + expected("component", p)
        for opt in ("--category", "--level", "--type", "--trace-id", "--interval", "--backlog"):
            r = run("watch", opt, p, "--timeout", "0.05", "--db", str(seeded))
            check_exit(r, (opt, p[:30]))
            assert r.exit_code == 2
    assert not _attach(seeded).exists()


def test_retention_and_purge(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        for args in (["retention", "set", "--category", p, "--days", "5"],
                     ["retention", "set", "--category", "ai_behavior", "--days", p],
                     ["retention", "show", "--config", p],
                     ["retention", "purge", "--dry-run", "--config", p],
                     ["purge", "--category", p],
                     ["purge", "--category", p, "--dry-run"],
                     ["purge", "--before", p],
                     ["purge", "--older-than", p, "--dry-run"],
                     ["purge", "--category", "ai_behavior", "--before", p]):
            if "\x00" in p and "--config" in args:
                continue  # a file path: a NUL cannot reach argv (the OS passes C strings)
            r = run(*args, "--db", str(seeded))
            check_exit(r, (args, p[:30]))
            assert r.exit_code == 2, (args, p[:30], r.stdout)
    assert not _attach(seeded).exists()


def test_alerts_list(seeded: Path) -> None:
    for p in payloads(_attach(seeded)):
        r = run("alerts", "list", "--rule", p, "--db", str(seeded), "--format", "json")
        check_exit(r, p[:30])
        assert r.exit_code == 0
        items = orjson.loads(r.stdout)
        assert [a["rule"] for a in items] == ([p] if p in LITERAL else [])
        for state in ("pending", "firing"):
            r = run("alerts", "list", "--state", state, "--rule", p, "--db", str(seeded), "--format", "json")
            check_exit(r, p[:30])
        r = run("alerts", "list", "--state", p, "--db", str(seeded))
        assert r.exit_code == 2
    assert not _attach(seeded).exists()


def test_alert_rule_filters(seeded: Path, tmp_path: Path) -> None:
    """Payloads as alert-rule filter values (evaluated read-only): counts only exact matches."""
    import yaml

    for p in [x for x in payloads(_attach(seeded)) if "\x00" not in x]:
        cfg = tmp_path / "a.yaml"
        cfg.write_text(yaml.safe_dump({"alerts": {"rules": [
            {"name": "inj", "kind": "frequency", "threshold": 0, "window": "30d",
             "filter": {"component": p, "service": [p, "svc"]}}], "default_rules": False}}))
        r = run("alerts", "test", "--config", str(cfg), "--db", str(seeded), "--format", "json")
        check_exit(r, p[:30])
        if r.exit_code == 0:
            (item,) = orjson.loads(r.stdout)
            assert item["value"] == expected("component", p), (p[:30], item)
    assert not _attach(seeded).exists()


@pytest.mark.parametrize("sql", [
    "INSERT INTO records(uid, timestamp, type, category, level, data, metadata) "
    "VALUES (x'00', 1, 'span', 'ai_behavior', 'info', '{}', '{}')",
    "DELETE FROM records",
    "UPDATE records SET component = 'x'",
    "DROP TABLE records",
    "CREATE TABLE pwn(x)",
    "DELETE FROM retention",
    "PRAGMA user_version = 7",
    "VACUUM",
])
def test_reader_connections_refuse_writes(seeded: Path, sql: str) -> None:
    conn = dbmod.open_reader(str(seeded))
    try:
        with pytest.raises(apsw.ReadOnlyError):
            conn.execute(sql).fetchall()
        attach = seeded.parent / "attached-by-reader.db"
        with pytest.raises(apsw.CantOpenError):
            conn.execute("ATTACH DATABASE ? AS pwn", (str(attach),)).fetchall()
        assert not attach.exists()
    finally:
        conn.close()
