"""The collector's own counters for Prometheus: an opt-in ``GET /metrics`` (text format 0.0.4).

Off unless ``metrics_endpoint`` is set (collector.yaml, ``$OTEL_TELEMETRY_METRICS_ENDPOINT``); like
the OpenTelemetry Collector's own telemetry on :8888 it binds loopback unless told otherwise. It
serves what the status row holds (``Collector.status`` plus the store writer's counters), read
when scraped: received, stored, rejected and dropped by reason, gaps, queue depths, forward and
sync lag, the store's state and the alert rules' states. A Grafana dashboard for it:
``deploy/grafana/dashboards/otel-telemetry-collector.json``.

One server thread (stdlib ``ThreadingHTTPServer``); a scrape only reads counters, never the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import split_endpoint

log = logging.getLogger("otel_telemetry.collector.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: list[Sample]) -> Iterator[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"
    for labels, value in samples:
        inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        yield f"{name}{{{inner}}} {float(value)!r}" if inner else f"{name} {float(value)!r}"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _by(mapping: Any, label: str, **fixed: str) -> list[Sample]:
    """Samples from a {label value: number} mapping."""
    if not isinstance(mapping, dict):
        return []
    pairs = ((k, _num(v)) for k, v in sorted(mapping.items(), key=lambda kv: str(kv[0])))
    return [({**fixed, label: str(k)}, n) for k, n in pairs if n is not None]


def render(s: dict[str, Any]) -> str:
    """The status body ``s`` in Prometheus text format."""
    receivers = {"zmq": s.get("zmq") or {}, "otlp_http": s.get("otlp_http") or {},
                 "otlp_grpc": s.get("otlp_grpc") or {}}
    received, rejected, dropped, overload = [], [], [], []
    for source, r in receivers.items():
        if not r:
            continue
        n = _num(r.get("received", r.get("accepted")))
        if n is not None:
            received.append(({"source": source}, n))
        rejected += _by(r.get("rejected"), "reason", source=source)
        dropped += _by(r.get("dropped"), "reason", source=source)
        overload += _by(r.get("overload_by_reason"), "reason", source=source)
    if _num(s.get("dropped_rows")):
        dropped.append(({"source": "store", "reason": "store_error"}, float(s["dropped_rows"])))
    volume = s.get("volume") or {}
    for reason, per_category in sorted((volume.get("dropped") or {}).items()):
        dropped += _by(per_category, "category", source="volume", reason=reason)
    queues: list[Sample] = [({"queue": "store"}, float(s.get("queue_depth") or 0))]
    fwd_sent, fwd_failed, fwd_dropped, fwd_queued = [], [], [], []
    for target, f in sorted((s.get("forward") or {}).items()):
        fwd_sent.append(({"target": target}, float(f.get("sent") or 0)))
        fwd_failed.append(({"target": target}, float(f.get("failed") or 0)))
        fwd_queued.append(({"target": target}, float(f.get("queued") or 0)))
        fwd_dropped += _by(f.get("dropped"), "reason", target=target)
    alerts = s.get("alerts") or {}
    notify = alerts.get("notify") or {}
    if "queued" in notify:
        queues.append(({"queue": "alert_notifications"}, float(notify["queued"] or 0)))
    sync = s.get("sync") or {}
    state = str(s.get("store_state") or "running")
    out: list[str] = []
    out += _family("otel_telemetry_up", "gauge", "1 while the collector serves this endpoint.", [({}, 1)])
    out += _family("otel_telemetry_uptime_seconds", "gauge", "Seconds since the collector started.",
                   [({}, float(s.get("uptime_s") or 0))])
    out += _family("otel_telemetry_received_total", "counter", "Records received, by receiver.", received)
    out += _family("otel_telemetry_stored_total", "counter", "Rows committed to the store.",
                   [({}, float(s.get("stored") or 0))])
    out += _family("otel_telemetry_duplicates_total", "counter", "Rows already stored (redelivery), skipped.",
                   [({}, float(s.get("duplicates") or 0))])
    out += _family("otel_telemetry_rejected_total", "counter", "Records or frames rejected, by receiver and reason.",
                   rejected)
    out += _family("otel_telemetry_dropped_total", "counter", "Records dropped, by where and why.", dropped)
    out += _family("otel_telemetry_overload_total", "counter", "OTLP requests answered 429/503, by reason.",
                   overload)
    out += _family("otel_telemetry_gaps_total", "counter",
                   "Records lost between apps and the collector (sequence gaps), by category.",
                   _by((s.get("zmq") or {}).get("gaps"), "category"))
    out += _family("otel_telemetry_adjusted_total", "counter",
                   "Rows stored with a future timestamp clamped or an absurd duration set aside.",
                   _by(s.get("adjusted"), "reason"))
    out += _family("otel_telemetry_queue_depth", "gauge", "Items waiting in the collector's queues.", queues)
    out += _family("otel_telemetry_store_state", "gauge", "1 for the store writer's current state.",
                   [({"state": st}, float(st == state)) for st in ("running", "disk_full", "failed")])
    out += _family("otel_telemetry_store_last_commit_timestamp_seconds", "gauge",
                   "Unix time of the store's last commit.", [({}, float(s.get("last_commit_ns") or 0) / 1e9)])
    out += _family("otel_telemetry_forward_sent_total", "counter", "Records forwarded, by target.", fwd_sent)
    out += _family("otel_telemetry_forward_failed_total", "counter", "Forward attempts failed, by target.",
                   fwd_failed)
    out += _family("otel_telemetry_forward_dropped_total", "counter", "Records the forwarder dropped.", fwd_dropped)
    out += _family("otel_telemetry_forward_queued", "gauge",
                   "Records waiting to be forwarded, by target (the forward lag).", fwd_queued)
    # Declared whether or not ``sync:`` is on (no samples then), like the other families.
    out += _family("otel_telemetry_sync_shipped_total", "counter", "Rows shipped to the central server.",
                   [({}, float(sync.get("shipped") or 0))] if sync else [])
    out += _family("otel_telemetry_sync_pending_rows", "gauge",
                   "Committed rows not yet on the central server (the sync lag).",
                   [({}, float(sync.get("pending") or 0))] if sync else [])
    live = s.get("live_spans") or {}
    out += _family("otel_telemetry_spans_in_progress", "gauge",
                   "Spans started and not yet ended (apps with live spans on), kept by the store.",
                   [({}, float(live.get("open") or 0))])
    out += _family("otel_telemetry_spans_in_progress_removed_total", "counter",
                   "Spans in progress the store gave up on, by why (evicted: over max_spans; expired: max_age).",
                   [({"reason": r}, float(live.get(r) or 0)) for r in ("evicted", "expired")])
    states = alerts.get("states") or {}
    out += _family("otel_telemetry_alert_state", "gauge", "1 for each alert rule's current state.",
                   [({"rule": rule, "state": st}, float(st == cur))
                    for rule, cur in sorted(states.items()) for st in ("ok", "pending", "firing")])
    out += _family("otel_telemetry_alerts_fired_total", "counter", "Alert episodes started.",
                   [({}, float(alerts.get("fired") or 0))])
    out += _family("otel_telemetry_alert_notifications_failed_total", "counter", "Notifications given up on.",
                   [({}, float(notify.get("failed") or 0))])
    return "\n".join(out) + "\n"


class MetricsServer:
    """``start()`` binds (errors raise there); ``shutdown(timeout)`` is idempotent."""

    def __init__(self, endpoint: str, source: Callable[[], dict[str, Any]]) -> None:
        self._host, self._port = split_endpoint(endpoint)
        self._source = source
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        source = self._source

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                try:
                    body = render(source()).encode()
                except Exception:
                    log.exception("rendering /metrics failed")
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass  # a scrape every few seconds is not news

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otel-metrics", daemon=True)
        self._thread.start()
        log.info("Prometheus metrics on http://%s/metrics", self.endpoint)

    def shutdown(self, timeout: float) -> bool:
        server, self._server = self._server, None
        if server is None:
            return True
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            return not self._thread.is_alive()
        return True
