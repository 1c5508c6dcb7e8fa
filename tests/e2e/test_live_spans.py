"""Spans in progress (issue 16 item 2) across real processes: an app with live spans on
(``tests/apps/live_app.py``), a real collector and the CLI.

A running span shows in ``watch --in-progress`` before it ends, redacted like a span, with its
elapsed time; when it ends, the stored span replaces it. A span whose process is killed turns
abandoned after the collector's timeout. Started records are never records: the books close on the
spans alone. Off, the app sends no started record at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from conftest import HERE, CollectorProc, wait_for

import otel_telemetry
from otel_telemetry.cli.commands import main
from otel_telemetry.sdk.span_plans import speedups

APP = str(HERE / "apps" / "live_app.py")
QUICK = 150


def cli(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def in_progress(db: str) -> list[dict[str, Any]]:
    return orjson.loads(cli("watch", "--in-progress", "--db", db, "--format", "json"))["spans"]


def start_app(coll: CollectorProc, tmp: Path, *extra: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, APP, "--endpoint", coll.endpoint, "--quick", str(QUICK),
                             "--ready", str(tmp / "ready"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def ready(tmp: Path, app: subprocess.Popen[bytes]) -> dict[str, str]:
    wait_for(lambda: (tmp / "ready").exists() or app.poll() is not None, timeout=60, what="the app's tool span")
    assert app.poll() is None, app.stderr.read().decode() if app.stderr else ""
    return json.loads((tmp / "ready").read_text())


def finish(app: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, err = app.communicate(timeout=120)
    assert app.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_running_span_shows_then_its_span_replaces_it(tmp_path: Path) -> None:
    coll = CollectorProc(tmp_path).start()
    app = start_app(coll, tmp_path, "--release", str(tmp_path / "release"))
    try:
        ids = ready(tmp_path, app)
        wait_for(lambda: len(in_progress(coll.db)) == 2, what="the agent and tool spans in progress")
        running = {s["span_id"]: s for s in in_progress(coll.db)}
        assert set(running) == {ids["agent_span_id"], ids["tool_span_id"]}
        tool = running[ids["tool_span_id"]]
        assert tool["state"] == "running" and tool["name"] == "execute_tool search"
        assert tool["trace_id"] == ids["trace_id"] and tool["parent_span_id"] == ids["agent_span_id"]
        assert tool["duration_ms"] is None and tool["id"] is None and tool["elapsed_ms"] > 0
        assert tool["service"] == "agent-app" and tool["category"] == "ai_behavior"
        agent = running[ids["agent_span_id"]]
        # Redacted like the span itself (the collector redacts over ipc://, as for every record).
        assert agent["data"]["attributes"]["user.email"].startswith("[REDACTED")
        assert agent["agent"] == "planner"
        # Not records: the short spans and the chat span are stored; the running two are not.
        assert coll.rows("SELECT count(*) FROM records")[0][0] == QUICK + 1
        later = {s["span_id"]: s["elapsed_ms"] for s in in_progress(coll.db)}
        assert later[ids["tool_span_id"]] > tool["elapsed_ms"]  # the time runs
        # The live tail's text form and its events.
        table = cli("watch", "--in-progress", "--db", coll.db, "--timeout", "0")
        assert "execute_tool search" in table and "running" in table
        # The agent's steps: the finished LLM call and the two steps still running.
        conv = orjson.loads(cli("conversation", ids["trace_id"], "--db", coll.db, "--format", "json"))
        assert [(s["kind"], s["state"]) for s in conv["steps"]] == [("agent", "running"), ("llm", None),
                                                                    ("tool", "running")]
        assert conv["totals"]["in_progress"] == 2 and conv["steps"][2]["elapsed_ms"] > 0
        (tmp_path / "release").touch()
        out = finish(app)
    finally:
        if app.poll() is None:
            app.kill()
    assert out["shutdown_ok"], out
    c = out["counters"]
    # The two long spans were announced; the short ones ended first and never left the app (on a
    # loaded machine one may be preempted for 0.1 s mid-span: then it is announced and replaced too).
    live = c["live_spans"]
    assert live["announced"] >= 2 and live["dropped"] == live["untracked"] == live["waiting"] == 0
    assert live["announced"] + live["ended_first"] == QUICK + 3
    wait_for(lambda: in_progress(coll.db) == [], what="the started rows replaced by their spans")
    conv = orjson.loads(cli("conversation", ids["trace_id"], "--db", coll.db, "--format", "json"))
    assert [(s["kind"], s["state"]) for s in conv["steps"]] == [("agent", None), ("llm", None), ("tool", None)]
    stored = coll.rows("SELECT span_id, duration_ms FROM records WHERE trace_id = ?", (ids["trace_id"],))
    assert {s for s, _ in stored} >= {ids["agent_span_id"], ids["tool_span_id"]}
    assert all(d is not None and d > 0 for _, d in stored)
    assert coll.stop() == 0
    # The books: emitted == stored + drops, with the started records nowhere in them.
    total = coll.rows("SELECT count(*) FROM records")[0][0]
    assert c["emitted"] == out["spans"] == QUICK + 3 == total + sum(c["dropped"].values())
    status = coll.status()
    assert status["live_spans"]["started"] == status["live_spans"]["ended"] == live["announced"]
    assert status["zmq"]["live_spans"] == {"received": live["announced"], "rejected": 0, "dropped": 0}
    assert status["zmq"]["gaps"] == {} and status["zmq"]["rejected"] == {}


def test_killed_app_span_turns_abandoned(tmp_path: Path) -> None:
    coll = CollectorProc(tmp_path)
    coll.config.write_text("store: {flush_interval: 0.05}\nlive_spans: {abandon_after: 1.0, max_age: 3600}\n")
    coll.start()
    app = start_app(coll, tmp_path, "--hang")
    try:
        ids = ready(tmp_path, app)
        wait_for(lambda: len(in_progress(coll.db)) == 2, what="the spans in progress")
        app.kill()
        app.wait(10)
        wait_for(lambda: {s["state"] for s in in_progress(coll.db)} == {"abandoned"}, what="abandoned")
        spans = {s["span_id"]: s for s in in_progress(coll.db)}
        assert set(spans) == {ids["agent_span_id"], ids["tool_span_id"]}
        gone = spans[ids["tool_span_id"]]
        assert gone["abandoned_at"] is not None and gone["elapsed_ms"] >= 1000
        # The elapsed time of an abandoned span stops at the collector's timeout.
        assert in_progress(coll.db)[0]["elapsed_ms"] == next(iter(spans.values()))["elapsed_ms"]
        events = [orjson.loads(line) for line in cli(
            "watch", "--in-progress", "--db", coll.db, "--format", "jsonl", "--max-records", "2").splitlines()]
        assert [e["event"] for e in events] == ["abandoned", "abandoned"]
        # Everything the app finished before it died is stored; what never ended is not a record.
        wait_for(lambda: coll.rows("SELECT count(*) FROM records")[0][0] == QUICK + 1, what="the ended spans")
        assert coll.rows("SELECT count(*) FROM records WHERE span_id IN (?, ?)",
                         (ids["agent_span_id"], ids["tool_span_id"]))[0][0] == 0
    finally:
        if app.poll() is None:
            app.kill()
        assert coll.stop() == 0
    assert coll.status()["live_spans"]["abandoned"] >= 2


@pytest.mark.parametrize("how", ["off", "env"])
def test_live_spans_off_sends_nothing_and_env_turns_it_on(tmp_path: Path, how: str) -> None:
    coll = CollectorProc(tmp_path).start()
    env = {"OTEL_TELEMETRY_LIVE_SPANS": "true"} if how == "env" else {}
    app = start_app(coll, tmp_path, "--live", how if how == "off" else "env", "--release", str(tmp_path / "go"),
                    env=env)
    try:
        ready(tmp_path, app)
        if how == "env":
            wait_for(lambda: len(in_progress(coll.db)) == 2, what="spans in progress (env setting)")
        (tmp_path / "go").touch()
        out = finish(app)
    finally:
        if app.poll() is None:
            app.kill()
    assert coll.stop() == 0
    if how == "off":
        assert "live_spans" not in out["counters"]
        assert coll.status()["live_spans"]["started"] == 0
        assert in_progress(coll.db) == []
    else:
        assert out["counters"]["live_spans"]["announced"] >= 2
    assert coll.rows("SELECT count(*) FROM records")[0][0] == out["counters"]["emitted"] == QUICK + 3


def test_off_keeps_the_span_start_path_of_before() -> None:
    """Live spans off: no tracker, and the provider's on_start is the same callable as without the
    feature (the C one when the speed-ups are built): nothing of ours runs per span start."""
    tel = otel_telemetry.configure("off-check", endpoint="ipc:///tmp/otel-telemetry-live-off-check.ipc",
                                   set_global=False, metrics=False, logs=False, join_timeout=0)
    try:
        assert tel.transport.live_spans is None
        proc = tel.tracer_provider._active_span_processor
        if speedups() is not None:  # the C on_start of before, not a Python frame of ours
            assert type(proc.on_start).__name__ == "builtin_function_or_method", proc.on_start
        assert proc._live is None
    finally:
        tel.shutdown(5)


def test_a_failing_preview_never_stops_the_records(tmp_path: Path) -> None:
    """Whatever goes wrong with announcing spans in progress costs the preview only: the sender
    thread goes on and every span is stored."""
    coll = CollectorProc(tmp_path).start()
    tel = otel_telemetry.configure("broken-preview", endpoint=coll.endpoint, set_global=False, metrics=False,
                                   logs=False, join_timeout=10, live_spans=True)
    live = tel.transport.live_spans
    assert live is not None

    def broken() -> list[Any]:
        raise RuntimeError("a bug in the preview")

    live.due = broken  # type: ignore[method-assign]
    tracer = tel.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("slow"):
        wait_for(lambda: live.dropped > 0, what="the preview to fail")
        for i in range(50):
            with tracer.start_as_current_span("quick", attributes={"i": i}):
                pass
    assert tel.shutdown(30)
    c = tel.transport.counters()
    assert c["emitted"] == c["sent"] == 51 and c["dropped"] == {}
    wait_for(lambda: coll.rows("SELECT count(*) FROM records")[0][0] == 51, what="every span stored")
    assert coll.stop() == 0


def test_running_span_shows_on_the_central_server_with_sync(tmp_path: Path) -> None:
    """Separate processes: the app, a collector with ``sync:`` to a real sqld, and the CLI reading
    the server. The running spans show there with the collector's instance; once they end, the
    shipped spans replace them there too."""
    import yaml
    from sqld import Sqld

    from otel_telemetry.store import libsql_conn

    server = Sqld(tmp_path).start()
    coll = CollectorProc(tmp_path)
    cfg = yaml.safe_load(coll.config.read_text())
    cfg["instance"] = "kiosk-7"
    cfg["sync"] = {"url": server.url, "interval": 0.05}
    coll.config.write_text(yaml.safe_dump(cfg))
    coll.start()
    app = start_app(coll, tmp_path, "--release", str(tmp_path / "release"))
    try:
        ids = ready(tmp_path, app)
        wait_for(lambda: len(in_progress(server.url)) == 2, what="the spans in progress on the server")
        central = {s["span_id"]: s for s in in_progress(server.url)}
        assert set(central) == {ids["agent_span_id"], ids["tool_span_id"]}
        assert {s["instance"] for s in central.values()} == {"kiosk-7"}
        assert central[ids["tool_span_id"]]["state"] == "running"
        (tmp_path / "release").touch()
        out = finish(app)
        assert out["shutdown_ok"], out
        wait_for(lambda: in_progress(server.url) == [], what="the started rows replaced on the server")

        def left_on_server() -> int:
            conn = libsql_conn.Connection(server.url)
            try:
                return conn.execute("SELECT count(*) FROM spans_in_progress").fetchone()[0]
            finally:
                conn.close()

        # The read side hides a started row once its span is there; the mirror then removes it.
        wait_for(lambda: left_on_server() == 0, what="the mirror emptied the server's rows")
        wait_for(lambda: coll.status()["sync"]["live_spans_mirrored"] == 0, what="the status row updated")
        assert coll.status()["sync"]["last_error"] is None
    finally:
        if app.poll() is None:
            app.kill()
        if coll.proc is not None:
            coll.stop()
        server.stop()
