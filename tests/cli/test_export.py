"""``export``, ``watch``, ``completion`` and the CLI's help/docs coverage; real processes, no mocks.

The round trip seeds a real collector over ZeroMQ (``tests/producer.py``) and OTLP/HTTP (the
OTel proto examples plus spans with links, events, nested attributes and GenAI usage), exports
``otlp-json``, POSTs every line to a second collector's OTLP/HTTP receiver and compares the two
databases record by record.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import click
import orjson
import pytest
from click.testing import CliRunner
from conftest import CollectorProc, run_producer, wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.query import export as records_export
from otel_telemetry.query.filters import OUTPUT_COLUMNS
from otel_telemetry.store import schema
from otel_telemetry.store import writer as store

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data" / "otlp"
NS = 1_000_000_000
SIGNAL_PATH = {"resourceSpans": "/v1/traces", "resourceMetrics": "/v1/metrics", "resourceLogs": "/v1/logs"}
# Every stored column but the row id, the internal uid and the subcategory (see docs/cli.md).
COMPARED = tuple(c for c in schema.COLUMNS if c not in ("uid", "subcategory"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_TELEMETRY_DB", "OTEL_TELEMETRY_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def _post(port: int, path: str, body: bytes) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, payload[:500]
    return json.loads(payload or b"{}")


def _http_port(c: CollectorProc) -> int:
    wait_for(lambda: "otlp_http" in c.status(), what="collector status with the OTLP endpoint")
    return int(c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [_kv("", x)["value"] for x in value]}}
    elif isinstance(value, dict):
        v = {"kvlistValue": {"values": [_kv(k, x) for k, x in value.items()]}}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def _rich_traces(now: int) -> dict[str, Any]:
    """Spans of every kind and status, with links, events, nested attributes and GenAI usage."""
    trace = "5b8efff798038103d269b633813fc60c"
    spans = []
    for i, kind in enumerate(range(1, 6)):
        spans.append({
            "traceId": trace, "spanId": f"{i + 1:016x}", "parentSpanId": "" if i == 0 else f"{1:016x}",
            "name": f"op-{i}", "kind": kind, "startTimeUnixNano": str(now + i * 1000),
            "endTimeUnixNano": str(now + i * 1000 + 123_456_789 * (i + 1)),
            "status": {"code": i % 3, "message": "boom" if i % 3 == 2 else ""},
            "attributes": [_kv("k.str", "v"), _kv("k.int", 42 + i), _kv("k.float", 0.25), _kv("k.bool", True),
                           _kv("k.list", [1, 2, 3]), _kv("k.map", {"a": "b", "n": 1}), _kv("session.id", "sess-1")],
            "events": [{"timeUnixNano": str(now + 5), "name": "exception" if i == 2 else "note",
                        "attributes": [_kv("exception.message", "bad")]}],
            "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                       "attributes": [_kv("link.why", "retry")]}],
        })
    spans.append({"traceId": "1" * 32, "spanId": "2" * 16, "name": "chat claude", "kind": 3,
                  "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 2 * NS),
                  "attributes": [_kv("gen_ai.request.model", "gpt-4o"), _kv("gen_ai.usage.input_tokens", 1000),
                                 _kv("gen_ai.usage.output_tokens", 50), _kv("gen_ai.agent.name", "planner")]})
    return {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", "rich"), _kv("host.name", "h1")]},
        "scopeSpans": [{"scope": {"name": "rich.scope", "version": "2.1"}, "spans": spans}],
    }]}


def _rich_metrics(now: int) -> dict[str, Any]:
    point = {"timeUnixNano": str(now), "attributes": [_kv("m.attr", "x")]}
    return {"resourceMetrics": [{
        "resource": {"attributes": [_kv("service.name", "rich")]},
        "scopeMetrics": [{"scope": {"name": "rich.meter"}, "metrics": [
            {"name": "rich.exp", "unit": "ms", "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [
                {**point, "count": "6", "sum": 12.5, "min": 0.5, "max": 4.0, "scale": 1, "zeroCount": "1",
                 "positive": {"offset": 1, "bucketCounts": ["2", "3"]}, "negative": {}}]}},
            {"name": "rich.summary", "summary": {"dataPoints": [
                {**point, "count": "3", "sum": 9.0, "quantileValues": [{"quantile": 0.5, "value": 3.0}]}]}},
            {"name": "system.cpu.utilization", "unit": "1", "gauge": {"dataPoints": [{**point, "asInt": "7"}]}},
        ]}],
    }]}


def _rows(db: str) -> list[dict[str, Any]]:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cols = ", ".join(COMPARED)
        out = []
        for row in conn.execute(f"SELECT {cols} FROM records ORDER BY id"):
            rec = dict(zip(COMPARED, row, strict=True))
            rec["data"], rec["metadata"] = orjson.loads(rec["data"]), orjson.loads(rec["metadata"])
            # OTLP cannot tell an empty scope name/version from none; ZeroMQ rows may store "".
            scope = rec["metadata"].get("scope") or {}
            rec["metadata"]["scope"] = {k: v or None for k, v in scope.items()}
            out.append(rec)
        return out
    finally:
        conn.close()


def _key(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)


def _diff(source: list[dict[str, Any]], copy: list[dict[str, Any]]) -> str:
    """Field differences between records paired by (type, ids, name, timestamp), for failures."""
    def ident(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["type"], r["trace_id"], r["span_id"], r["name"], r["timestamp"], r["metric_value"]
    by_id = {ident(r): r for r in copy}
    out = []
    for r in source:
        other = by_id.get(ident(r))
        if other is None:
            out.append(f"missing {ident(r)}")
        elif other != r:
            out.append(f"{ident(r)}: " + "; ".join(f"{k}: {str(r[k])[:300]} -> {str(other[k])[:300]}"
                                             for k in r if r[k] != other[k]))
    return "\n".join(out[:20])


def _export(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", "--db", db, *args])
    return result.exit_code, result.output


def test_otlp_json_round_trip_preserves_every_record(tmp_path: Path) -> None:
    a = CollectorProc(tmp_path, "a").start()
    b = CollectorProc(tmp_path, "b").start()
    try:
        produced = run_producer(a.endpoint, "--spans", "60")
        port_a = _http_port(a)
        now = time.time_ns()
        for name, path in (("trace.json", "/v1/traces"), ("metrics.json", "/v1/metrics"),
                           ("logs.json", "/v1/logs"), ("events.json", "/v1/logs"),
                           ("collector-contrib-empty-ids.json", "/v1/traces"),
                           ("jaeger-example_trace.json", "/v1/traces")):
            _post(port_a, path, (DATA / name).read_bytes())
        _post(port_a, "/v1/traces", orjson.dumps(_rich_traces(now)))
        _post(port_a, "/v1/metrics", orjson.dumps(_rich_metrics(now)))
        expected_zmq = sum(produced["emitted"].values())  # type: ignore[index]
        wait_for(lambda: a.rows("SELECT count(*) FROM records WHERE service = 'producer'")[0][0] >= expected_zmq,
                 what="producer records stored")
        a.stop()  # everything in flight is committed; the export reads a settled database
        source = _rows(a.db)
        types = Counter(r["type"] for r in source)
        assert {"span", "event", "metric", "log"} <= types.keys(), types

        out = tmp_path / "dump.otlp.jsonl"
        code, msg = _export(a.db, "--format", "otlp-json", "-o", str(out))
        assert code == 0, msg
        lines = out.read_bytes().splitlines()
        port_b = _http_port(b)
        for line in lines:
            doc = orjson.loads(line)
            (top,) = doc.keys()
            answer = _post(port_b, SIGNAL_PATH[top], line)
            assert not answer.get("partialSuccess"), answer
        copy = _rows(b.db)
    finally:
        for c in (a, b):
            if c.proc is not None:
                c.stop()
    assert len(copy) == len(source)
    assert Counter(map(_key, copy)) == Counter(map(_key, source)), _diff(source, copy)
    # Spot checks of what the multiset equality covers, for a readable failure story.
    rich = [r for r in copy if r["service"] == "rich" and r["type"] == "span"]
    assert {r["kind"] for r in rich} == {"internal", "server", "client", "producer", "consumer"}
    linked = next(r for r in rich if r["name"] == "op-0")
    assert linked["data"]["links"][0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert linked["data"]["attributes"]["k.map"] == {"a": "b", "n": 1}
    assert linked["metadata"] == {"resource": {"service.name": "rich", "host.name": "h1"},
                                  "scope": {"name": "rich.scope", "version": "2.1"}}
    assert next(r for r in copy if r["name"] == "chat claude")["cost_usd"] is not None


def test_otlp_json_lines_follow_the_otlp_json_encoding(tmp_path: Path) -> None:
    db = _seed_small(tmp_path / "s.db")
    out = tmp_path / "o.jsonl"
    code, msg = _export(db, "--format", "otlp-json", "-o", str(out))
    assert code == 0, msg
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {next(iter(d)) for d in docs} == {"resourceSpans", "resourceMetrics", "resourceLogs"}
    span = next(d for d in docs if "resourceSpans" in d)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert re.fullmatch("[0-9a-f]{32}", span["traceId"]) and re.fullmatch("[0-9a-f]{16}", span["spanId"])
    assert span["kind"] == 2 and span["status"]["code"] == 2  # enums as integers (server, error)
    assert span["endTimeUnixNano"] == str(int(span["startTimeUnixNano"]) + 1_500_000)


def test_otlp_export_keeps_a_category_and_component_the_receiver_would_not_derive() -> None:
    stored = _row(1, time.time_ns(), category="ai_research", subcategory="memory", component="recall")
    rec = records_export.record((1, *stored[1:], None))  # RECORD_COLUMNS: id, the columns but uid, instance
    resource, [span] = records_export.to_wire(rec)
    attrs = span[9]
    assert resource == {"service.name": "svc"} and attrs["i"] == 1
    assert (attrs["telemetry.category"], attrs["telemetry.subcategory"], attrs["telemetry.component"]) == \
        ("ai_research", "memory", "recall")
    plain = records_export.to_wire(records_export.record((2, *_row(2, 5)[1:], None)))[1][0][9]
    assert not any(k.startswith("telemetry.") for k in plain)  # derivable: nothing added


# --- json / jsonl / csv ------------------------------------------------------------------------------

def _insert(db: str, rows: Iterator[tuple[Any, ...]]) -> None:
    conn = store.open_writer(db)
    cols = ", ".join(schema.COLUMNS)
    with conn:
        conn.executemany(f"INSERT INTO records({cols}) VALUES ({', '.join('?' * len(schema.COLUMNS))})", rows)
    conn.close()


def _row(i: int, ts: int, **kw: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    values.update(uid=i.to_bytes(16, "big"), timestamp=ts, type="span", category="component_interactions",
                  component="comp", event=f"ev-{i}", level="info", name=f"op-{i}", kind="internal",
                  status="unset", trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", duration_ms=1.5,
                  data=orjson.dumps({"attributes": {"i": i, "text": "x" * 200}}).decode(),
                  metadata='{"resource": {"service.name": "svc"}, "scope": {"name": "comp", "version": null}}',
                  service="svc")
    values.update(kw)
    return tuple(values[c] for c in schema.COLUMNS)


def _seed_small(path: Path) -> str:
    now = time.time_ns()
    _insert(str(path), iter([
        _row(1, now - 3 * 3600 * NS, kind="server", status="error", level="error", category="error_patterns",
             status_message="bad, \"quoted\"\nnewline"),
        _row(2, now - 2 * 3600 * NS, type="metric", trace_id=None, span_id=None, kind=None, status=None,
             duration_ms=None, metric_type="gauge", metric_value=3.5, metric_unit="ms", name="system.x",
             category="system_performance", data='{"attributes": {"cpu": 1}}'),
        _row(3, now - 3600 * NS, type="log", kind=None, status=None, duration_ms=None, name=None,
             data='{"body": "hello", "attributes": {}, "severity_text": "WARN"}', level="warning"),
    ]))
    return str(path)


def test_json_jsonl_csv_shapes_and_filters(tmp_path: Path) -> None:
    db = _seed_small(tmp_path / "s.db")
    out = tmp_path / "o"
    code, msg = _export(db, "--format", "json", "-o", str(out))
    assert code == 0 and "exported 3 records" in msg, msg
    records = orjson.loads(out.read_bytes())
    assert [r["id"] for r in records] == [1, 2, 3] and list(records[0]) == list(OUTPUT_COLUMNS)
    assert records[0]["data"]["attributes"]["i"] == 1 and records[0]["time"].endswith("Z")

    code, msg = _export(db, "--format", "jsonl", "--type", "metric", "-o", str(out))
    lines = out.read_text().splitlines()
    assert code == 0 and len(lines) == 1 and orjson.loads(lines[0])["metric_value"] == 3.5

    code, msg = _export(db, "--format", "csv", "--last", "150m", "-o", str(out))
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert code == 0 and table[0] == list(OUTPUT_COLUMNS) and [r[0] for r in table[1:]] == ["2", "3"]
    code, msg = _export(db, "--format", "csv", "--category", "error_patterns", "-o", "-")
    table = list(csv.reader(io.StringIO(msg)))
    assert code == 0 and len(table) == 2
    assert table[1][OUTPUT_COLUMNS.index("status_message")] == "bad, \"quoted\"\nnewline"

    code, msg = _export(db, "--format", "json", "--component", "nope", "-o", str(out))
    assert code == 0 and orjson.loads(out.read_bytes()) == []
    code, msg = _export(db, "--last", "1h", "--since", "2h", "-o", str(out))
    assert code != 0 and msg.count("\n") == 1 and "either --last or --since" in msg
    code, msg = _export(db, "-o", str(tmp_path / "missing-dir" / "x"))
    assert code != 0 and "cannot write" in msg and not (tmp_path / "missing-dir").exists()


# --- large export: progress and bounded memory ------------------------------------------------------

_MEASURE = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    kb = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "    sys.stderr.write(f'VMHWM_KB={kb}\\n')\n"
    "atexit.register(hwm)\n"
    "from otel_telemetry.cli import main\n"
    "main(sys.argv[1:], prog_name='otel-telemetry')\n"
)


def _measured_export(db: str, out: Path, fmt: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, "export", "--db", db, "--format", fmt, "-o",
                           str(out), "--progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(re.search(r"VMHWM_KB=(\d+)", proc.stderr).group(1)), proc.stderr  # type: ignore[union-attr]


def _bulk(path: Path, n: int) -> str:
    base = time.time_ns() - n * 1000
    _insert(str(path), (_row(i, base + i * 1000) for i in range(n)))
    return str(path)


@pytest.mark.heavy
@pytest.mark.timeout(600)  # five exports, two of 100k rows: a minute on a loaded machine, never timed
def test_large_export_shows_progress_and_runs_in_bounded_memory(tmp_path: Path) -> None:
    """10k vs 100k rows: peak RSS stays flat (1M rows behaves the same, only slower)."""
    small, large = _bulk(tmp_path / "small.db", 10_000), _bulk(tmp_path / "large.db", 100_000)
    for fmt in ("json", "otlp-json"):
        hwm_small, _ = _measured_export(small, tmp_path / "small.out", fmt)
        hwm_large, err = _measured_export(large, tmp_path / "large.out", fmt)
        progress = re.findall(r"export: (\d+)/100000 records \((\d+)%\)", err)
        assert progress and progress[-1] == ("100000", "100"), err
        # Ten times the rows; a copy of the data in memory would be >= 30 MB more here.
        assert hwm_large < hwm_small * 1.3 and hwm_large - hwm_small < 15_000, (fmt, hwm_small, hwm_large)
        assert (tmp_path / "large.out").stat().st_size > 100_000 * 200
    with open(tmp_path / "large.out", "rb") as fh:
        assert sum(1 for _ in fh) >= 100  # otlp-json: one request per chunk of 1000 rows
    _measured_export(small, tmp_path / "small.out", "jsonl")
    with open(tmp_path / "small.out", "rb") as fh:
        assert sum(1 for _ in fh) == 10_000


# --- watch -------------------------------------------------------------------------------------------

def _watch(db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "otel_telemetry", "watch", "--db", db, "--interval", "0.05",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_prints_a_record_stored_after_it_started(tmp_path: Path) -> None:
    db = _seed_small(tmp_path / "w.db")
    proc = _watch(db, "--category", "ai_behavior", "--category", "error_patterns", "--level", "error",
                  "--max-records", "1", "--timeout", "60")
    try:
        header = proc.stdout.readline()  # type: ignore[union-attr]
        assert header.split()[:3] == ["time", "type", "category"], header
        now = time.time_ns()
        # Written on another connection while watch runs: two rows the filters skip, then the one it shows.
        _insert(db, iter([_row(10, now, category="ai_behavior", event="not-this"),
                          _row(11, now, category="user_interaction", level="error", event="nor-this"),
                          _row(12, now, category="ai_behavior", level="error", event="the-new-one")]))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and "the-new-one" in lines[0] and "ai_behavior" in lines[0], out


def test_watch_jsonl_backlog_timeout_and_ctrl_c(tmp_path: Path) -> None:
    db = _seed_small(tmp_path / "w.db")
    proc = _watch(db, "--format", "jsonl", "--backlog", "2", "--timeout", "0.3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [orjson.loads(line)["id"] for line in out.splitlines()] == [2, 3]

    proc = _watch(db, "--timeout", "60")
    try:
        assert proc.stdout.readline().startswith("time")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err


# --- completion and documentation -------------------------------------------------------------------

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0 and "_OTEL_TELEMETRY_COMPLETE" in result.output
    assert f"_OTEL_TELEMETRY_COMPLETE={shell}_source otel-telemetry" in (ROOT / "docs" / "cli.md").read_text()


def test_click_completion_offers_commands_and_choices() -> None:
    env = {**os.environ, "_OTEL_TELEMETRY_COMPLETE": "bash_complete", "COMP_WORDS": "otel-telemetry ex",
           "COMP_CWORD": "1"}
    exe = str(Path(sys.executable).parent / "otel-telemetry")  # the installed console script
    proc = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,export" in proc.stdout.splitlines(), proc.stdout + proc.stderr
    env.update(COMP_WORDS="otel-telemetry export --format o", COMP_CWORD="3")
    proc = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,otlp-json" in proc.stdout.splitlines(), proc.stdout + proc.stderr


def _commands(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def _doc_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "cli.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^## `([^`]+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S)}


def test_every_command_and_option_has_help_and_is_documented() -> None:
    sections = _doc_sections()
    readme = (ROOT / "README.md").read_text()
    missing: list[str] = []
    for path, cmd in _commands(main, ("otel-telemetry",)):
        name = " ".join(path)
        if not (cmd.help or "").strip():
            missing.append(f"{name}: no help text")
        if "Example" not in (cmd.help or ""):
            missing.append(f"{name}: no Example block")
        section = sections.get(name)
        if section is None:
            missing.append(f"{name}: not in docs/cli.md (run scripts/gen_cli_docs.py)")
            continue
        for param in cmd.params:
            if isinstance(param, click.Argument):
                if param.human_readable_name not in section:
                    missing.append(f"{name} {param.human_readable_name}: argument not documented")
                continue
            if not getattr(param, "help", None):
                missing.append(f"{name} {param.opts[0]}: no help text")
            for opt in (*param.opts, *param.secondary_opts):
                if opt not in section and f"{name} {opt}" not in readme:
                    missing.append(f"{name} {opt}: not in docs/cli.md or README.md")
    assert not missing, "\n".join(missing)
