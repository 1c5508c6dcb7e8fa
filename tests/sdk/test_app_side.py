"""App side against a real collector process: metrics, logs, fork safety, existing providers, settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CollectorProc

import otel_telemetry
from otel_telemetry import categories as cats
from otel_telemetry import settings


def _run(code: str, endpoint: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OTEL_TELEMETRY_ENDPOINT=endpoint,
                                                OTEL_SERVICE_NAME="env-service",
                                                OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_metrics_logs_and_env_resource(collector: CollectorProc) -> None:
    out = _run("""
        import json, logging, otel_telemetry
        from opentelemetry import metrics
        tel = otel_telemetry.configure(export_interval=3600)
        m = metrics.get_meter("host.monitor")
        m.create_counter("system.network.io", unit="By").add(1500, {"direction": "receive"})
        m.create_histogram("gen_ai.client.operation.duration", unit="s").record(0.25, {"gen_ai.request.model": "m"})
        log = logging.getLogger("app"); log.addHandler(otel_telemetry.logging_handler(tel)); log.setLevel(logging.INFO)
        log.warning("cache cold")
        tel.force_flush(10)
        ok = tel.shutdown(10)
        print(json.dumps(tel.counters() | {"ok": ok}))
    """, collector.endpoint)
    assert collector.stop() == 0
    assert out["ok"] and out["dropped"] == {}
    rows = collector.rows("SELECT type, category, name, metric_type, metric_value, metric_unit, service, level "
                          "FROM records ORDER BY type, name")
    assert ("metric", "ai_behavior", "gen_ai.client.operation.duration", "histogram", 0.25, "s", "env-service",
            "info") in rows
    assert ("metric", "system_performance", "system.network.io", "sum", 1500.0, "By", "env-service", "info") in rows
    logs = collector.rows("SELECT category, level, data, metadata FROM records WHERE type = 'log'")
    assert len(logs) == 1 and logs[0][:2] == ("component_interactions", "warning")
    assert json.loads(logs[0][2])["body"] == "cache cold"
    assert json.loads(logs[0][3])["resource"]["deployment.environment"] == "test"
    assert len(rows) == out["sent"]


def test_fork_child_gets_its_own_publisher(collector: CollectorProc) -> None:
    out = _run("""
        import json, os, otel_telemetry
        from opentelemetry import trace
        tel = otel_telemetry.configure("forky", metrics=False, logs=False, join_timeout=30)
        tr = trace.get_tracer("parent")
        with tr.start_as_current_span("before-fork"): pass
        tel.force_flush(10)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            t = trace.get_tracer("child")
            for _ in range(50):
                with t.start_as_current_span("in-child"): pass
            ok = tel.shutdown(10)
            os.write(w, json.dumps(tel.counters()).encode()); os._exit(0 if ok else 3)
        os.close(w)
        child = json.loads(os.read(r, 100000).decode())
        _, status = os.waitpid(pid, 0)
        for _ in range(20):
            with tr.start_as_current_span("after-fork"): pass
        tel.shutdown(10)
        print(json.dumps({"parent": tel.counters(), "child": child, "status": status}))
    """, collector.endpoint)
    assert collector.stop() == 0
    assert out["status"] == 0
    assert out["child"]["sent"] == 50 and out["child"]["dropped"] == {}
    assert out["parent"]["sent"] == 21
    names = dict(collector.rows("SELECT name, count(*) FROM records GROUP BY name"))
    assert names == {"before-fork": 1, "in-child": 50, "after-fork": 20}
    assert collector.status()["zmq"]["publishers"] == 2
    assert collector.status()["zmq"]["gaps_total"] == 0


def test_existing_provider_and_invalid_events(collector: CollectorProc) -> None:
    out = _run("""
        import json, otel_telemetry
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.resources import Resource
        tp = TracerProvider(resource=Resource.create({"service.name": "mine"}))
        tel = otel_telemetry.configure(tracer_provider=tp, metrics=False, logs=False, set_global=False)
        with tp.get_tracer("x").start_as_current_span("mine-span", attributes={"telemetry.category": "ai_research",
                                                                               "telemetry.component": "lab"}):
            pass
        otel_telemetry.record_telemetry("not_a_category", "s", "e")
        otel_telemetry.record_telemetry("ai_behavior", "s", "e", level="loud")
        otel_telemetry.record_telemetry("ai_behavior", "emotion", "transition", level="warning", data={"joy": 1})
        tel.shutdown(10)
        print(json.dumps(tel.counters()))
    """, collector.endpoint)
    assert collector.stop() == 0
    assert out["dropped"] == {"invalid_event": 2}
    rows = collector.rows("SELECT name, category, component, service, type, level FROM records ORDER BY name")
    assert rows == [("mine-span", "ai_research", "lab", "mine", "span", "info"),
                    ("transition", "ai_behavior", "mine", "mine", "event", "warning")]


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OTEL_TELEMETRY_QUEUE_SIZE", raising=False)
    assert settings.resolve("queue_size") == 8192
    assert settings.resolve("queue_size", file={"queue_size": 7}) == 7
    monkeypatch.setenv("OTEL_TELEMETRY_QUEUE_SIZE", "9")
    assert settings.resolve("queue_size", file={"queue_size": 7}) == 9
    assert settings.resolve("queue_size", 11, file={"queue_size": 7}) == 11
    monkeypatch.setenv("OTEL_TELEMETRY_QUEUE_SIZE", "lots")
    with pytest.raises(ValueError, match="OTEL_TELEMETRY_QUEUE_SIZE"):
        settings.resolve("queue_size")
    monkeypatch.setenv("OTEL_TELEMETRY_DB", str(tmp_path / "x.db"))
    assert settings.resolve("db") == str(tmp_path / "x.db")


@pytest.mark.parametrize("name, kind, code, attrs, expected", [
    ("x", 0, 0, {"telemetry.category": "ai_research"}, "ai_research"),
    ("x", 0, 2, {"gen_ai.request.model": "m"}, "error_patterns"),
    ("chat", 2, 0, {"gen_ai.operation.name": "chat"}, "ai_behavior"),
    ("q", 2, 0, {"db.system": "postgresql"}, "component_interactions"),
    ("GET /", 1, 0, {"http.request.method": "GET"}, "user_interaction"),
    ("GET", 2, 0, {"http.request.method": "GET"}, "component_interactions"),
    ("x", 0, 0, {"telemetry.category": "bogus"}, "component_interactions"),
])
def test_default_span_rules(name: str, kind: int, code: int, attrs: dict, expected: str) -> None:
    assert cats.categorise_span(name, kind, code, attrs)[0] == expected


def test_config_rules_override_defaults() -> None:
    rules = cats.parse_rules([{"category": "ai_research", "name_prefix": "eval."}])
    assert cats.categorise_span("eval.run", 1, 0, {}, rules=rules)[0] == "ai_research"
    assert cats.categorise_metric("system.cpu.utilization", {})[0] == "system_performance"
    assert cats.categorise_log(17, {})[0] == "error_patterns"
    assert cats.topic_for("ai_behavior", "my comp/1") == "telemetry.ai_behavior.my_comp_1"
    assert cats.parse_topic("telemetry.ai_behavior.my_comp_1") == ("ai_behavior", "my_comp_1")
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        cats.parse_rules([{"category": "ai_research", "colour": 1}])


def test_shut_down_transports_leave_no_descriptors_open(tmp_path: Path) -> None:
    """Each transport's socket and wake pipe are closed once its sender is gone: configuring and
    shutting down again and again does not grow the process's open descriptors."""
    def cycle(i: int) -> None:
        tel = otel_telemetry.configure("fds", endpoint=f"ipc://{tmp_path}/fds{i}.ipc", metrics=False, logs=False,
                                       set_global=False, join_timeout=0)
        tel.tracer_provider.get_tracer("t").start_span("op").end()
        tel.force_flush(0.2)  # no collector listens: the flush holds the span and runs out of time
        assert tel.shutdown(5)

    cycle(0)  # the first one may open what lives for the process (ZeroMQ's context)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(1, 11):
        cycle(i)
    assert len(os.listdir("/proc/self/fd")) == before


def _fork_script(code: str, endpoint: str) -> str:
    """Run ``code`` (it forks and prints "child <exit code>") with ``endpoint`` as argv[1]; its
    last line. A child hung by a bug is killed, not left behind (its command line holds the
    endpoint, a path of the test's own)."""
    try:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), endpoint], capture_output=True,
                           text=True, timeout=60)
    finally:
        subprocess.run(["pkill", "-f", endpoint], check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_fork_while_a_thread_holds_the_transport_lock(tmp_path: Path) -> None:
    """A fork can happen while another thread holds the transport's or the redactor's lock (the
    sender settling a send, say): the child gets fresh locks, so its transport starts, counts and
    shuts down instead of hanging."""
    code = """
        import os, sys, threading, otel_telemetry
        tel = otel_telemetry.configure("forklock", endpoint=sys.argv[1], metrics=False, logs=False,
                                       set_global=False, join_timeout=0)
        tel.tracer_provider.get_tracer("t").start_span("parent").end()
        redactor = tel.transport._convert.redactor
        held, done = threading.Event(), threading.Event()
        def hold():
            with tel.transport._lock, redactor._lock:
                held.set()
                done.wait()
        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            free = not tel.transport._lock.locked() and not redactor._lock.locked()
            tel.tracer_provider.get_tracer("t").start_span("child").end()
            redactor.counts()  # takes the redactor's lock
            ok = tel.shutdown(5)
            os._exit(0 if free and ok and tel.counters()["emitted"] == 1 else 3)
        done.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        tel.shutdown(5)
        print("child", os.waitstatus_to_exitcode(status))
    """
    assert _fork_script(code, f"ipc://{tmp_path}/forklock.ipc") == "child 0"


def test_a_transport_shut_down_before_fork_stays_shut_in_the_child(tmp_path: Path) -> None:
    """The child of a process whose telemetry was shut down gets no sender thread for it; a span
    ended there is counted as a shutdown drop, like in the parent."""
    code = """
        import os, sys, threading, otel_telemetry
        tel = otel_telemetry.configure("shut", endpoint=sys.argv[1], metrics=False, logs=False,
                                       set_global=False, join_timeout=0)
        tracer = tel.tracer_provider.get_tracer("t")
        tel.shutdown(5)
        pid = os.fork()
        if pid == 0:
            senders = [t for t in threading.enumerate() if t.name == "otel-telemetry-sender"]
            tracer.start_span("late").end()
            c = tel.counters()
            os._exit(0 if not senders and c["emitted"] == 1 and sum(c["dropped"].values()) == 1 else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """
    assert _fork_script(code, f"ipc://{tmp_path}/shut.ipc") == "child 0"
