"""The component map of telemetry that real producers sent to a real collector process: a
three-service trace set over ZeroMQ (the SDK with our exporter, one process per service), and the
Jaeger multi-service fixtures posted over OTLP/HTTP. ``map --format json`` shows the right nodes,
edges and counts; expected figures come from what the producers emitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from conftest import CollectorProc, otlp_fixture_collector, run_chain, wait_for

from otel_telemetry.cli.commands import main


def cli_json(*args: str) -> Any:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return orjson.loads(r.stdout)


def test_three_service_chain_map(collector: CollectorProc) -> None:
    n, fail_every = 20, 5
    result = run_chain(collector.endpoint, n, fail_every)
    emitted = sum(r["emitted"]["spans"] for r in result.values())
    wait_for(lambda: collector.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0] >= emitted,
             what="every span stored")
    assert collector.stop() == 0
    m = cli_json("map", "--db", collector.db, "--last", "1h", "--format", "json")
    failed = len(range(0, n, fail_every))
    assert {(e["source"], e["target"]): (e["calls"], e["errors"]) for e in m["edges"]} == {
        ("frontend", "payments"): (n, failed), ("payments", "ledger"): (n, 0)}
    assert all(e["p50_ms"] is not None and e["p95_ms"] >= e["p50_ms"] for e in m["edges"])
    assert {x["name"]: (x["calls"], x["errors"]) for x in m["nodes"]} == {
        "frontend": (2 * n, 0), "payments": (3 * n, failed), "ledger": (n, 0)}
    # Component map: scope names (frontend.handlers -> payments.handlers -> ledger.handlers).
    c = cli_json("map", "--db", collector.db, "--last", "1h", "--by", "component", "--format", "json")
    assert {(e["source"], e["target"]): e["calls"] for e in c["edges"]} == {
        ("frontend.handlers", "payments.handlers"): n, ("payments.handlers", "ledger.handlers"): n}
    # Filtered by the called span's category: server spans are user_interaction, the consumer's
    # span is component_interactions (messaging), so each filter keeps one edge.
    cats = {cat: cli_json("map", "--db", collector.db, "--last", "1h", "--category", cat, "--format", "json")
            for cat in ("user_interaction", "component_interactions")}
    assert [(e["source"], e["target"]) for e in cats["user_interaction"]["edges"]] == [("frontend", "payments")]
    assert [(e["source"], e["target"]) for e in cats["component_interactions"]["edges"]] == [("payments", "ledger")]


def test_jaeger_fixtures_over_otlp_http(tmp_path: Path) -> None:
    c = otlp_fixture_collector(tmp_path, ("jaeger-example_trace.json", "jaeger-ui-multi-resource.json"))
    # jaeger-example_trace.json: three services in one trace, 2017; its spans carry no parent ids
    # (Jaeger's fixture keeps references outside OTLP), so the map has its nodes and no edges.
    old = cli_json("map", "--db", c.db, "--since", "2017-01-26", "--until", "2017-01-27", "--format", "json")
    assert {x["name"]: x["calls"] for x in old["nodes"]} == {
        "example-service-1": 3, "example-service-2": 1, "example-service-3": 1}
    assert old["edges"] == []
    # jaeger-ui-multi-resource.json: one service over four resources, 2024; two scopes: main and
    # info in "widgets", the two ohboy.do children of info in "ohboy".
    multi = cli_json("map", "--db", c.db, "--since", "2024-03-22", "--until", "2024-03-23", "--format", "json")
    assert multi["nodes"] == [{"name": "example-trace", "calls": 4, "errors": 0}] and multi["edges"] == []
    comp = cli_json("map", "--db", c.db, "--since", "2024-03-22", "--until", "2024-03-23", "--by", "component",
                    "--format", "json")
    assert [(e["source"], e["target"], e["calls"]) for e in comp["edges"]] == [("widgets", "ohboy", 2)]
    assert {x["name"]: x["calls"] for x in comp["nodes"]} == {"widgets": 2, "ohboy": 2}
