"""Agent/dev metrics and rollups: figures checked against values computed here from known inputs.

Rows go through the real ``StoreWriter`` (so the real writer maintains the rollups) after being
mapped by the real ``mapping.span_row``/``log_row``; expected numbers are computed in this file from
the input specs, never read back from the database. No mocks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner

from otel_telemetry.cli.commands import main
from otel_telemetry.collector import mapping
from otel_telemetry.query import ai_stats
from otel_telemetry.store import rollups, schema
from otel_telemetry.store.alert_state import STATE_DDL
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 1_000_000_000
H = 3600 * NS
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
NOW = T0 + 3 * 86400 * NS + 17 * 60 * NS + 13 * NS  # not on an hour boundary
AGENTS = ("planner", "coder", "reviewer")
MODELS = ("test-model-a", "test-model-b")  # unpriced: cost only from the producer
ERRORS = ("TimeoutError", "openai.RateLimitError", "ValueError")


@dataclass
class Call:
    ts: int
    dur_ns: int
    kind: str  # model_call | tool_call
    agent: str
    model: str | None
    failed: bool
    etype: str | None  # None: no error.type attribute
    via_exception: bool  # error type only on an exception event
    tokens: tuple[int, int, int, int]  # input, output, cache_read, reasoning
    cost: float | None  # dyadic, so sums are exact in any order

    @property
    def ms(self) -> float:
        return (self.ts + self.dur_ns - self.ts) / 1e6

    @property
    def error_type(self) -> str:
        return (self.etype or "unknown") if self.failed else ""


def make_calls(n: int, seed: int = 7) -> list[Call]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        ts = NOW - rnd.randrange(3 * 86400 * NS)
        kind = rnd.choice(("model_call", "model_call", "tool_call"))
        failed = rnd.random() < 0.2
        etype = rnd.choice((*ERRORS, None)) if failed else None
        out.append(Call(
            ts=ts, dur_ns=int(math.exp(rnd.uniform(0, 8.5)) * 1e6) + rnd.randrange(1000), kind=kind,
            agent=rnd.choice(AGENTS), model=rnd.choice(MODELS) if kind == "model_call" else None,
            failed=failed, etype=etype, via_exception=failed and etype is not None and rnd.random() < 0.5,
            tokens=(rnd.randrange(100, 5000), rnd.randrange(10, 900), rnd.randrange(0, 50), rnd.randrange(0, 30))
            if kind == "model_call" else (0, 0, 0, 0),
            cost=rnd.randrange(1, 200) / 1024 if kind == "model_call" and rnd.random() < 0.9 else None))
    return out


def call_row(i: int, c: Call) -> tuple[Any, ...]:
    attrs: dict[str, Any] = {"telemetry.event": c.kind, "gen_ai.agent.name": c.agent,
                             "gen_ai.operation.name": "chat" if c.kind == "model_call" else "execute_tool"}
    if c.model:
        i_t, o_t, cr, rs = c.tokens
        attrs.update({"gen_ai.request.model": c.model, "gen_ai.usage.input_tokens": i_t,
                      "gen_ai.usage.output_tokens": o_t, "gen_ai.usage.cache_read.input_tokens": cr,
                      "gen_ai.usage.reasoning.output_tokens": rs})
    if c.cost is not None:
        attrs["gen_ai.usage.cost"] = c.cost
    events: list[Any] = []
    if c.failed and c.etype:
        if c.via_exception:
            events = [("exception", c.ts, {"exception.type": c.etype, "exception.message": "x"})]
        else:
            attrs["error.type"] = c.etype
    rec = (f"fn_{c.kind}", i.to_bytes(16, "big"), (i + 1).to_bytes(8, "big"), None, c.ts, c.ts + c.dur_ns,
           2, 2 if c.failed else 1, "boom" if c.failed else "", attrs, events, [], "otel_telemetry.traced", "1")
    return mapping.span_row(rec, {"service.name": "app"}, "ai_behavior", "llm", "app")


def other_rows(n: int, seed: int = 3) -> list[tuple[Any, ...]]:
    """Non-call records: plain spans (some failed) and logs, in other categories/components."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        ts = NOW - rnd.randrange(3 * 86400 * NS)
        if i % 2:
            rec = ("GET /x", (10**6 + i).to_bytes(16, "big"), (10**6 + i).to_bytes(8, "big"), None, ts,
                   ts + rnd.randrange(10**5, 10**9), 1, 2 if rnd.random() < 0.1 else 1, "", {"http.route": "/x"},
                   [], [], "web", None)
            rows.append(mapping.span_row(rec, {"service.name": "web"}, "user_interaction", "http", "web"))
        else:
            rec = (ts, ts, rnd.choice((9, 17)), None, "hello", {}, None, None, None, "logger", None)
            rows.append(mapping.log_row(rec, {"service.name": "web"}, "component_interactions", "log", "web",
                                       None, (2 * 10**6 + i).to_bytes(16, "big")))
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Call], list[tuple[Any, ...]]]:
    db = tmp_path_factory.mktemp("ai") / "t.db"
    calls = make_calls(3000)
    rows = [call_row(i, c) for i, c in enumerate(calls)] + other_rows(1500)
    random.Random(1).shuffle(rows)
    w = StoreWriter(str(db), batch_rows=700, flush_interval=0.01)
    w.start()
    for k in range(0, len(rows), 500):
        assert w.submit(WriteBatch(rows[k:k + 500]), 10)
    assert w.flush(30)
    # Redelivery: already stored rows, and a batch repeating one uid, must not be counted twice.
    assert w.submit(WriteBatch(rows[:300]), 10)
    assert w.submit(WriteBatch([rows[400], rows[400], *rows[450:460]]), 10)
    assert w.flush(30)
    s = w.stats()
    assert s["stored"] == len(rows) and s["errors"] == 0
    assert w.shutdown(10)
    return db, calls, rows


def reader(db: Path) -> apsw.Connection:
    return apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)


def nearest(values: list[float], p: int) -> float:
    v = sorted(values)
    return v[max(math.ceil(p * len(v) / 100), 1) - 1]


def expected(calls: list[Call], since: int, until: int, agent: str | None = None,
             model: str | None = None) -> dict[str, Any]:
    sel = [c for c in calls if since <= c.ts < until and (agent is None or c.agent == agent)
           and (model is None or c.model == model)]
    failed = [c for c in sel if c.failed]
    by_type: dict[str, int] = {}
    for c in failed:
        by_type[c.error_type] = by_type.get(c.error_type, 0) + 1
    by_agent: dict[str, int] = {}
    for c in sel:
        by_agent[c.agent] = by_agent.get(c.agent, 0) + 1
    cost_by_model: dict[str, float] = {}
    for c in sel:
        if c.cost is not None:
            cost_by_model[c.model or "(none)"] = cost_by_model.get(c.model or "(none)", 0.0) + c.cost
    return {
        "total": len(sel), "failed": len(failed), "rate": (len(sel) - len(failed)) / len(sel),
        "cost": sum(c.cost for c in sel if c.cost is not None),
        "priced": sum(1 for c in sel if c.cost is not None),
        "unpriced": sum(1 for c in sel if c.cost is None and c.model is not None),
        "input": sum(c.tokens[0] for c in sel),  # >= cache reads, so already inclusive (OTel)
        "output": sum(c.tokens[1] + c.tokens[3] if c.tokens[1] < c.tokens[3] else c.tokens[1] for c in sel),
        "cache_read": sum(c.tokens[2] for c in sel), "reasoning": sum(c.tokens[3] for c in sel),
        "by_type": by_type, "by_agent": by_agent, "cost_by_model": cost_by_model,
        "top": min(by_agent.items(), key=lambda t: (-t[1], t[0])),
        "pcts": {p: nearest([c.ms for c in sel], p) for p in (50, 95, 99)},
        "max": max(c.ms for c in sel),
    }


def check(r: dict[str, Any], e: dict[str, Any], exact: bool) -> None:
    assert (r["calls"]["total"], r["calls"]["failed"]) == (e["total"], e["failed"])
    assert r["calls"]["success_rate"] == e["rate"]
    assert r["cost_usd"]["total"] == e["cost"] and r["cost_usd"]["priced_calls"] == e["priced"]
    assert r["cost_usd"]["unpriced_model_calls"] == e["unpriced"]
    assert r["tokens"]["input"] == e["input"] and r["tokens"]["cache_read"] == e["cache_read"]
    assert r["tokens"]["reasoning"] == e["reasoning"] and r["tokens"]["output"] == e["output"]
    assert r["tokens"]["total"] == e["input"] + e["output"]
    assert r["failed_calls"]["by_error_type"] == e["by_type"]
    assert {a: v["calls"] for a, v in r["by_agent"].items()} == e["by_agent"]
    assert {m: v["cost_usd"] for m, v in r["by_model"].items() if v["cost_usd"]} == e["cost_by_model"]
    assert (r["top_agent"]["agent"], r["top_agent"]["calls"]) == e["top"]
    assert r["latency_ms"]["max"] == e["max"]
    for p, want in e["pcts"].items():
        got = r["latency_ms"][f"p{p}"]
        if exact:
            assert got == want
        else:
            assert abs(got - want) <= rollups.ALPHA * want, (p, got, want)


def test_rollups_agree_with_records(dataset: tuple[Path, list[Call], list[Any]]) -> None:
    db, _, rows = dataset
    conn = reader(db)
    n = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    assert n == len(rows)
    for table in rollups.TABLES:
        assert conn.execute(f"SELECT sum(count) FROM {table}").fetchone()[0] == n
    by_hour = dict(conn.execute("SELECT timestamp - timestamp % ?, count(*) FROM records GROUP BY 1", (H,)))
    assert dict(conn.execute("SELECT bucket_start_ns, sum(count) FROM rollup_hourly GROUP BY 1")) == by_hour


@pytest.mark.parametrize("hours", [27, 49, 72])
def test_long_window_uses_rollups(dataset: tuple[Path, list[Call], list[Any]], hours: int) -> None:
    db, calls, _ = dataset
    since = NOW - hours * H - 7 * NS
    r = ai_stats.report(reader(db), since, NOW - 5 * NS)
    assert r["source"] == "rollups" and r["latency_ms"]["exact"] is False
    check(r, expected(calls, since, NOW - 5 * NS), exact=False)


def test_short_window_raw_exact(dataset: tuple[Path, list[Call], list[Any]]) -> None:
    db, calls, _ = dataset
    since, until = NOW - 5 * H - 11 * NS, NOW - 3 * NS
    r = ai_stats.report(reader(db), since, until)
    assert r["source"] == "raw" and r["latency_ms"]["exact"] is True
    check(r, expected(calls, since, until), exact=True)


@pytest.mark.parametrize("hours", [4, 30])
def test_agent_and_model_filters(dataset: tuple[Path, list[Call], list[Any]], hours: int) -> None:
    db, calls, _ = dataset
    since = NOW - hours * H
    r = ai_stats.report(reader(db), since, NOW, agent="coder", model="test-model-a")
    e = expected(calls, since, NOW, agent="coder", model="test-model-a")
    check(r, e, exact=hours < 6)
    assert set(r["by_agent"]) == {"coder"} and set(r["by_model"]) == {"test-model-a"}
    assert set(r["calls"]["by_kind"]) == {"model_call"}
    none = ai_stats.report(reader(db), since, NOW, agent="nobody")
    assert none["calls"]["total"] == 0 and none["top_agent"] is None and none["calls"]["success_rate"] is None


def test_hourly_and_daily_listings(dataset: tuple[Path, list[Call], list[Any]]) -> None:
    db, calls, rows = dataset
    since = NOW - 2 * 86400 * NS
    r = ai_stats.report(reader(db), since, NOW)
    ts_i, cat_i, comp_i, lvl_i = (schema.COLUMNS.index(c) for c in ("timestamp", "category", "component", "level"))
    for name, size, start in (("hourly", H, NOW - 86400 * NS), ("daily", 86400 * NS, since)):
        lo, hi = start // size * size, -(-NOW // size) * size
        want: dict[tuple[Any, ...], list[int]] = {}
        for row in rows:
            if lo <= row[ts_i] < hi:
                w = want.setdefault((row[ts_i] // size * size, row[cat_i], row[comp_i]), [0, 0])
                w[0] += 1
                w[1] += row[lvl_i] in ("error", "critical")
        got = {(i["bucket_start_ns"], i["category"], i["component"]): [i["count"], i["errors"]]
               for i in r["rollups"][name]}
        assert got == want
    # p95 of one hourly bucket of calls, within the histogram bound.
    item = max((i for i in r["rollups"]["hourly"] if i["category"] == "ai_behavior"), key=lambda i: i["count"])
    durs = [c.ms for c in calls if item["bucket_start_ns"] <= c.ts < item["bucket_start_ns"] + H]
    assert abs(item["p95_ms"] - nearest(durs, 95)) <= rollups.ALPHA * nearest(durs, 95)


def test_backfill_of_a_database_without_rollups(tmp_path: Path,
                                                dataset: tuple[Path, list[Call], list[Any]]) -> None:
    _, calls, rows = dataset
    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    conn.execute(schema.DDL)
    with conn:
        conn.executemany(f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(schema.COLUMNS))})", rows)
    conn.close()
    assert not ai_stats.has_rollups(reader(db))
    since = NOW - 40 * H
    raw_only = ai_stats.report(reader(db), since, NOW)  # no rollup tables: raw path, exact
    assert raw_only["source"] == "raw"
    check(raw_only, expected(calls, since, NOW), exact=True)
    w = StoreWriter(str(db))
    w.start()  # opening the writer rebuilds the rollups from every record
    assert w.shutdown(10)
    r = ai_stats.report(reader(db), since, NOW)
    assert r["source"] == "rollups"
    check(r, expected(calls, since, NOW), exact=False)


def test_histogram_bound() -> None:
    rnd = random.Random(5)
    for _ in range(20000):
        d = math.exp(rnd.uniform(-10, 15))
        est = rollups.bin_value(rollups.bin_of(d))
        assert abs(est - d) <= rollups.ALPHA * d * (1 + 1e-12)
    assert rollups.bin_value(rollups.bin_of(0.0)) == 0.0


def test_cli_json_table_alerts_and_help(dataset: tuple[Path, list[Call], list[Any]], tmp_path: Path) -> None:
    db, calls, _ = dataset
    state = tmp_path / "alerts.db"
    conn = apsw.Connection(str(state))
    conn.execute(STATE_DDL)
    conn.execute("INSERT INTO alert_history(rule, kind, severity, metric, state, pending_since, fired, value, "
                 "last_value, op, threshold, message) VALUES ('p95', 'threshold', 'warning', 'p95', 'firing', "
                 "1, 2, 3500, 3600, '>', 3000, 'p95 latency 3600 > 3000')")
    conn.close()
    until = str(NOW / NS)
    runner = CliRunner()
    res = runner.invoke(main, ["stats", "--period", "1d", "--until", until, "--db", str(db), "--alerts-db",
                               str(state), "--format", "json"])
    assert res.exit_code == 0, res.output
    r = orjson.loads(res.output)
    assert set(r) >= {"since", "until", "period", "filters", "source", "calls", "latency_ms", "cost_usd", "tokens",
                      "by_model", "by_agent", "top_agent", "failed_calls", "alerts", "rollups"}
    assert r["period"] == "1d" and r["source"] == "rollups"
    assert r["calls"]["total"] == expected(calls, NOW - 86400 * NS, NOW)["total"]
    assert [a["rule"] for a in r["alerts"]["firing"]] == ["p95"]
    res = runner.invoke(main, ["stats", "--period", "7d", "--until", until, "--db", str(db), "--agent", "planner"])
    assert res.exit_code == 0, res.output
    assert "Success rate" in res.output and "Top agent      planner" in res.output
    res = runner.invoke(main, ["stats", "--period", "7d", "--last", "2h", "--db", str(db)])
    assert res.exit_code == 2 and "--period" in res.output
    legacy = runner.invoke(main, ["stats", "--last", "4d", "--until", until, "--db", str(db), "--format", "json"])
    assert orjson.loads(legacy.output)["total"] == 4500
    helptext = runner.invoke(main, ["stats", "--help"]).output
    assert "Example:" in helptext and "--period" in helptext and "--agent" in helptext
