"""Forwarding through the real collector process: ZeroMQ in → store + OTLP out to a real sink.

The downstream is down while the producer runs (local storage is unaffected), the collector is
restarted in between, and when the sink comes up everything arrives exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CollectorProc, run_producer, wait_for
from otlp_sink import Sink, free_port


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_outage_and_collector_restart_lose_nothing(tmp_path: Path, protocol: str) -> None:
    port = free_port()
    scheme = "grpc" if protocol == "grpc" else "http"
    c = CollectorProc(tmp_path)
    c.config.write_text(
        "store:\n  flush_interval: 0.05\n"
        f"forward:\n  - endpoint: {scheme}://127.0.0.1:{port}\n    protocol: {protocol}\n"
        f"    queue_dir: {tmp_path / 'fwdq'}\n    retry_initial: 0.05\n    retry_max: 0.2\n"
    )
    c.start()
    r = run_producer(c.endpoint, "--spans", "3000")
    assert c.stop() == 0  # downstream never came up: the queue is persisted
    stored = c.rows("SELECT count(*) FROM records")[0][0]
    assert stored == r["counters"]["sent"] == 3001  # type: ignore[index]  # local ingest unaffected
    fwd = c.status()["forward"]
    (counters,) = fwd.values()
    assert counters["sent"] == 0 and counters["queued"] == 3001 and not counters["dropped"]

    sink = Sink(tmp_path, grpc_port=port if scheme == "grpc" else 0,
                http_port=port if scheme == "http" else 0).start()
    try:
        c.start()
        wait_for(lambda: len(sink.items()) >= 3001, timeout=60, what="forwarded items")
        assert c.stop() == 0
    finally:
        sink.stop()
    items = sink.items()
    ids = [(x.get("trace_id"), x.get("span_id")) for x in items if x["signal"] in ("traces", "span")]
    logs = [x for x in items if x["signal"] in ("logs", "log")]
    assert len(ids) == 3000 and len(set(ids)) == 3000
    assert len(logs) == 1
    local = set(c.rows("SELECT trace_id, span_id FROM records WHERE type IN ('span', 'event')"))
    assert set(ids) == local
