"""The dashboard on a libSQL server shows what it shows on the local file, panel for panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import SESSION_ID, TRACE_ID, seed_db
from sqld import Sqld, ship
from test_dashboard_api import TOKEN, Client

from otel_telemetry.dashboard.server import Dashboard


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Client, Any]]:
    tmp = tmp_path_factory.mktemp("dash-libsql")
    path = str(tmp / "t.db")
    seed = seed_db(path, alerts=False)
    server = Sqld(Path(tmp)).start()
    stats = ship(path, server.url, "dev-a")
    assert stats["shipped"] == seed.rows
    dashes = [Dashboard(db, TOKEN, "127.0.0.1", 0, tail_interval=0.05, keepalive_s=0.3) for db in (path, server.url)]
    for d in dashes:
        d.start()
    try:
        yield Client(dashes[0]), Client(dashes[1]), seed
    finally:
        for d in dashes:
            d.shutdown()
        server.stop()


def _without_instance(obj: Any, seen: set[str]) -> Any:
    """The seed's rows predate ``instance`` (NULL locally); the shipper tags them on the server."""
    if isinstance(obj, dict):
        if "instance" in obj:
            seen.add(str(obj["instance"]))
        return {k: _without_instance(v, seen) for k, v in obj.items() if k != "instance"}
    if isinstance(obj, list):
        return [_without_instance(v, seen) for v in obj]
    return obj


def test_every_panel_is_the_same_on_the_server(pair: Any) -> None:
    local, remote, seed = pair
    until = str(seed.now_ns // 1_000_000_000 + 1)
    panels: list[tuple[str, dict[str, Any]]] = [
        ("ai", {"last": "1h", "until": until}),
        ("ai", {"last": "24h", "until": until}),  # rollups (the heaviest panel)
        ("ai", {"last": "7d", "until": until}),  # daily rollups
        ("ai", {"last": "1h", "until": until, "agent": "planner"}),
        ("errors", {"last": "24h", "until": until, "limit": 50}),
        ("system", {"last": "6h", "until": until}),
        ("traces", {"limit": 200, "until": until}),
        ("traces", {"status": "error", "min_duration_ms": 50}),
        ("trace", {"trace_id": TRACE_ID}),
        ("session", {"session_id": SESSION_ID}),
        ("sessions", {}),
        ("retention", {}),
    ]
    for name, params in panels:
        tags: set[str] = set()
        a = _without_instance(local.json(name, **params), set())
        b = _without_instance(remote.json(name, **params), tags)
        assert a == b, (name, params)
        assert tags <= {"dev-a"}
    rec = local.json("trace", trace_id=TRACE_ID)["spans"][0]["id"]
    assert remote.json("record", id=rec)["record"]["instance"] == "dev-a"
    assert _without_instance(local.json("record", id=rec), set()) == \
        _without_instance(remote.json("record", id=rec), set())
    # The overview's totals agree (its collector counters live in the device's own file).
    ov_local, ov_remote = local.json("overview", last="7d"), remote.json("overview", last="7d")
    assert ov_local["total"] == ov_remote["total"] == seed.rows
    # Per instance: the seed's rows predate the column locally; on the server they are dev-a's.
    assert ov_local["by_instance"] == []
    assert [(r["instance"], r["records"]) for r in ov_remote["by_instance"]] == [("dev-a", seed.rows)]  # all < 24 h old
