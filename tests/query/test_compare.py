"""compare (query/compare.py) and ``otel-telemetry compare`` on a real database file."""

from __future__ import annotations

import random
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner

from otel_telemetry.cli.commands import main
from otel_telemetry.query import attr_search
from otel_telemetry.query import compare as qc
from otel_telemetry.query.filters import QueryError
from otel_telemetry.store import schema

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
N = 1000


def rows() -> list[tuple[Any, ...]]:
    rnd = random.Random(7)
    out = []
    for i in range(N):
        failed = i % 10 == 0                      # 100 failures
        # eu-west on 90 of the 100 failures and on 90 of the 900 successes (10 %).
        region = "eu-west" if (failed and i % 100 != 0) or (not failed and i % 10 == 5 and i % 100 != 95) else \
            rnd.choice(["us-east", "ap-south", "us-west"])
        slow = i % 7 == 0
        attrs = {"region": region, "http.route": f"/items/{i % 4}", "request.id": f"r{i}",
                 "big": "x" * 500, "tags": ["a", "b"], "retry": i % 3 == 0}
        v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
        v.update(uid=i.to_bytes(16, "big"), timestamp=T0 + i * NS, type="span", category="component_interactions",
                 component="c", event="op", name="GET /items" if i % 2 else "POST /items", service="api",
                 level="error" if failed else "info", status="error" if failed else "ok",
                 duration_ms=900.0 if slow else 20.0 + i % 50,
                 data=orjson.dumps({"attributes": attrs}).decode(),
                 metadata=orjson.dumps({"resource": {"service.name": "api", "host.name": f"h{i % 2}"},
                                        "scope": {"name": "s"}}).decode())
        out.append(tuple(v[c] for c in schema.COLUMNS))
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("cmp") / "t.db")
    c = apsw.Connection(path)
    c.execute(schema.DDL)
    with c:
        marks = ", ".join("?" * len(schema.COLUMNS))
        c.executemany(f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES ({marks})", rows())
    c.close()
    return path


@pytest.fixture(scope="module")
def conn(db: str) -> apsw.Connection:
    return apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)


def test_errors_name_the_planted_attribute(conn: apsw.Connection) -> None:
    r = qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS)
    assert r["selection"] == {"spans": 100, "read": 100} and r["rest"] == {"spans": 900, "read": 900}
    assert not r["sampled"]
    top = r["attributes"][0]
    assert (top["key"], top["value"], top["source"]) == ("region", "eu-west", "span")
    assert (top["selection"], top["selection_pct"], top["rest"], top["rest_pct"]) == (90, 90.0, 90, 10.0)
    assert top["score"] == 0.8 and top["ratio"] == 9.0
    keys = {a["key"] for a in r["attributes"]}
    assert "status" not in keys  # the selection's own trait
    # Per-span ids, long values and lists are no shared trait; nor is what both sides carry alike.
    assert not keys & {"request.id", "big", "tags", "service", "service.name"}
    # Every failure is an even i: POST /items is on all of them, and on half of the rest.
    post = next(a for a in r["attributes"] if a["key"] == "name")
    assert (post["value"], post["selection"], post["rest"]) == ("POST /items", 100, 400)


def test_duration_attribute_and_population_filters(conn: apsw.Connection) -> None:
    slow = qc.compare(conn, qc.parse_where("duration>=0.5s"), T0, T0 + N * NS)
    assert slow["selection"]["spans"] == len([i for i in range(N) if i % 7 == 0])
    same = qc.compare(conn, qc.parse_where("duration >= 500ms"), T0, T0 + N * NS)
    assert same["attributes"] == slow["attributes"]
    by_attr = qc.compare(conn, qc.parse_where("region=eu-west"), T0, T0 + N * NS)
    assert by_attr["selection"]["spans"] == 180
    # The selection's own attribute is trivially on all of it: not a finding.
    assert "region" not in {a["key"] for a in by_attr["attributes"]}
    assert {"key": "status", "value": "error"}.items() <= by_attr["attributes"][0].items()
    one_op = qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS, name="POST /items",
                        attrs=[attr_search.parse("retry!=true")])
    assert one_op["selection"]["spans"] + one_op["rest"]["spans"] == len(
        [i for i in range(N) if i % 2 == 0 and i % 3 != 0])


def test_large_window_is_sampled_repeatably(conn: apsw.Connection) -> None:
    r = qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS, max_spans=200)
    assert r["sampled"] and r["selection"]["read"] <= 100 and r["rest"]["read"] <= 100
    assert r["rest"]["read"] > 50 and r["rest"]["spans"] == 900
    assert r == qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS, max_spans=200)
    assert r["attributes"][0]["key"] == "region" and r["attributes"][0]["value"] == "eu-west"
    lines = qc.table_lines(r)
    assert any(line.startswith("sampled") for line in lines)


def test_window_larger_than_the_bound_is_read_in_runs_and_estimated(conn: apsw.Connection) -> None:
    r = qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS, max_spans=100)
    assert r["sampled"] and r["estimated"] and r["rows_read"] == 200
    assert 50 <= r["selection"]["spans"] <= 150 and 800 <= r["rest"]["spans"] <= 1000
    assert r["rest"]["read"] <= 50 and r["selection"]["read"] <= 50
    assert ("region", "eu-west") in [(a["key"], a["value"]) for a in r["attributes"]]
    assert r == qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS, max_spans=100)
    assert any("estimates" in line for line in qc.table_lines(r))


@pytest.mark.parametrize("text", ["", "slow", "duration>abc", "duration>5h", "region", "n>x"])
def test_bad_where(text: str) -> None:
    with pytest.raises(QueryError):
        qc.parse_where(text)


def test_cli_json_equals_library(db: str, conn: apsw.Connection) -> None:
    since, until = "2026-01-01T00:00:00Z", "2026-01-01T00:16:40Z"
    r = CliRunner().invoke(main, ["compare", "--where", "error", "--since", since, "--until", until, "--db", db,
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout) == qc.compare(conn, qc.parse_where("error"), T0, T0 + N * NS)
    t = CliRunner().invoke(main, ["compare", "--where", "error", "--since", since, "--until", until, "--db", db,
                                  "--max-spans", "200"])
    assert t.exit_code == 0 and "sampled" in t.stdout and "eu-west" in t.stdout
    bad = CliRunner().invoke(main, ["compare", "--where", "slow", "--db", db])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1
