"""Alert rules in collector.yaml, evaluated by the running collector, delivered to a real webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import CollectorProc, run_producer, wait_for


def test_collector_fires_error_rate_alert_to_webhook(tmp_path: Path) -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = CollectorProc(tmp_path)
        c.config.write_text(
            "store:\n  flush_interval: 0.05\n"
            "alerts:\n  interval: 1s\n  service: e2e\n  environment: test\n  rules:\n"
            "    - {name: error_rate, kind: frequency, filter: {level: error}, window: 1m, op: '>', threshold: 5,"
            " severity: critical}\n"
            f"  notify:\n    - {{type: webhook, url: 'http://127.0.0.1:{server.server_port}/hook'}}\n"
        )
        c.start()
        run_producer(c.endpoint, "--spans", "600")  # 100 error spans + 1 error log
        wait_for(lambda: any(r.get("event_type") == "alert.triggered" for r in received), timeout=30,
                 what="alert.triggered webhook")
        assert c.stop() == 0
    finally:
        server.shutdown()
    fired = [r for r in received if r["event_type"] == "alert.triggered"]
    assert len(fired) == 1
    # Fired by the first evaluation past the threshold: on a loaded machine that can come while the
    # 101 error records are still being stored, so its value is anything above 5 up to 101.
    assert fired[0]["severity"] == "critical" and 5 < fired[0]["current_value"] <= 101
    assert fired[0]["threshold"] == 5 and fired[0]["metadata"] == {"service": "e2e", "environment": "test"}
    assert c.status()["alerts"]["fired"] == 1
