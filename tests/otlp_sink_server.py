"""A small real OTLP receiver for forwarding tests, run as its own process.

    python tests/otlp_sink_server.py --out FILE [--grpc-port N] [--http-port N]
        [--fail-status CODE] [--fail-first N] [--retry-after S] [--reject-prefix P]

Serves OTLP/gRPC (the official TraceService/MetricsService/LogsService servicers) and OTLP/HTTP
protobuf (/v1/traces, /v1/metrics, /v1/logs, gzip accepted) on 127.0.0.1; port 0 picks a free one.
When ready it prints one JSON line ``{"grpc_port": .., "http_port": ..}`` on stdout.

Every received span / metric data point / log record is appended to FILE as one JSON line (ids
hex) BEFORE the response is sent, so the test reads back exactly what arrived. Every request also
appends an ``{"attempt": n, ...}`` line with its answer and time.

``--fail-status`` answers that HTTP status (gRPC: the matching code) to every request, or to the
first ``--fail-first`` ones, with ``Retry-After`` (gRPC: RetryInfo) if ``--retry-after`` is given.
Items whose name (spans, metrics) or string body (logs) starts with ``--reject-prefix`` are not
recorded and are reported in ``partial_success`` instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lsp
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as lsg
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as msp
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as msg
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsg

_GRPC_CODE = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
              403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.UNIMPLEMENTED,
              413: grpc.StatusCode.RESOURCE_EXHAUSTED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
              500: grpc.StatusCode.INTERNAL, 502: grpc.StatusCode.UNAVAILABLE,
              503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}


def _any(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any(kv.value) for kv in kvs}


def _spans(req: Any, reject: str | None) -> tuple[list[dict[str, Any]], int]:
    out, rejected = [], 0
    for rs in req.resource_spans:
        res = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                if reject and s.name.startswith(reject):
                    rejected += 1
                    continue
                out.append({
                    "signal": "span", "name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(), "kind": s.kind, "status_code": s.status.code,
                    "status_message": s.status.message, "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano, "attributes": _attrs(s.attributes), "resource": res,
                    "scope": ss.scope.name, "scope_version": ss.scope.version,
                    "events": [{"name": e.name, "time": e.time_unix_nano, "attributes": _attrs(e.attributes)}
                               for e in s.events],
                    "links": [{"trace_id": lk.trace_id.hex(), "span_id": lk.span_id.hex(),
                               "attributes": _attrs(lk.attributes)} for lk in s.links],
                })
    return out, rejected


def _points(req: Any, reject: str | None) -> tuple[list[dict[str, Any]], int]:
    out, rejected = [], 0
    for rm in req.resource_metrics:
        res = _attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                mtype = m.WhichOneof("data")
                data = getattr(m, mtype)
                for dp in data.data_points:
                    if reject and m.name.startswith(reject):
                        rejected += 1
                        continue
                    row: dict[str, Any] = {
                        "signal": "metric", "name": m.name, "type": mtype, "unit": m.unit,
                        "description": m.description, "time": dp.time_unix_nano,
                        "start": dp.start_time_unix_nano, "attributes": _attrs(dp.attributes), "resource": res,
                        "scope": sm.scope.name, "flags": dp.flags,
                    }
                    if mtype in ("gauge", "sum"):
                        which = dp.WhichOneof("value")
                        row["value"] = getattr(dp, which) if which else None
                    if mtype == "sum":
                        row.update(monotonic=data.is_monotonic, temporality=data.aggregation_temporality)
                    if mtype in ("histogram", "exponential_histogram"):
                        row.update(count=dp.count, sum=dp.sum, min=dp.min, max=dp.max,
                                   temporality=data.aggregation_temporality)
                    if mtype == "histogram":
                        row.update(bounds=list(dp.explicit_bounds), counts=list(dp.bucket_counts))
                    if mtype == "exponential_histogram":
                        row.update(scale=dp.scale, zero_count=dp.zero_count,
                                   positive={"offset": dp.positive.offset, "counts": list(dp.positive.bucket_counts)})
                    if mtype == "summary":
                        row.update(count=dp.count, sum=dp.sum,
                                   quantiles=[[q.quantile, q.value] for q in dp.quantile_values])
                    out.append(row)
    return out, rejected


def _logs(req: Any, reject: str | None) -> tuple[list[dict[str, Any]], int]:
    out, rejected = [], 0
    for rl in req.resource_logs:
        res = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                body = _any(r.body) if r.HasField("body") else None
                if reject and isinstance(body, str) and body.startswith(reject):
                    rejected += 1
                    continue
                out.append({
                    "signal": "log", "time": r.time_unix_nano, "observed": r.observed_time_unix_nano,
                    "severity_number": r.severity_number, "severity_text": r.severity_text, "body": body,
                    "attributes": _attrs(r.attributes), "trace_id": r.trace_id.hex(), "span_id": r.span_id.hex(),
                    "event_name": r.event_name, "resource": res, "scope": sl.scope.name,
                })
    return out, rejected


# signal: (request class, response class, partial_success field, item extractor)
_SIGNALS: dict[str, tuple[Any, Any, str, Any]] = {
    "traces": (tsp.ExportTraceServiceRequest, tsp.ExportTraceServiceResponse, "rejected_spans", _spans),
    "metrics": (msp.ExportMetricsServiceRequest, msp.ExportMetricsServiceResponse, "rejected_data_points", _points),
    "logs": (lsp.ExportLogsServiceRequest, lsp.ExportLogsServiceResponse, "rejected_log_records", _logs),
}


class Sink:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.attempts = 0
        self.out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115 - open for the process lifetime

    def handle(self, proto: str, signal_name: str, body: bytes) -> tuple[int, Any, float | None]:
        """(HTTP-style status, response message or None, retry_after) for one request."""
        with self.lock:
            self.attempts += 1
            n = self.attempts
            a = self.args
            failing = a.fail_status and (a.fail_first == 0 or n <= a.fail_first)
            status, resp = (a.fail_status, None) if failing else (200, None)
            lines: list[str] = []
            if not failing:
                req_cls, resp_cls, field, extract = _SIGNALS[signal_name]
                try:
                    items, rejected = extract(req_cls.FromString(body), a.reject_prefix)
                except Exception:
                    status = 400
                else:
                    lines = [json.dumps(item) for item in items]
                    resp = resp_cls()
                    if rejected:
                        setattr(resp.partial_success, field, rejected)
                        resp.partial_success.error_message = f"{rejected} rejected by prefix"
            lines.append(json.dumps({"attempt": n, "proto": proto, "signal": signal_name, "status": status,
                                     "t": time.time()}))
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        return status, resp, a.retry_after if failing else None


def _http_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            signal_name = self.path.rsplit("/", 1)[-1]
            if not self.path.startswith("/v1/") or signal_name not in _SIGNALS:
                self._answer(404, b"not found", "text/plain")
                return
            status, resp, retry_after = sink.handle("http", signal_name, body)
            extra = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            if resp is not None:
                self._answer(status, resp.SerializeToString(), "application/x-protobuf", extra)
            else:
                self._answer(status, f"status {status}".encode(), "text/plain", extra)

        def _answer(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _grpc_export(sink: Sink, signal_name: str) -> Any:
    def export(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        status, resp, retry_after = sink.handle("grpc", signal_name, request.SerializeToString())
        if resp is not None:
            return resp
        code = _GRPC_CODE.get(status, grpc.StatusCode.UNKNOWN)
        if retry_after is not None:
            info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=int(retry_after)))
            st = status_pb2.Status(code=getattr(code_pb2, code.name), message=f"status {status}")
            st.details.add().Pack(info)
            context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
        context.abort(code, f"status {status}")

    return export


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=0)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--retry-after", type=float, default=None)
    p.add_argument("--reject-prefix", default=None)
    args = p.parse_args()
    sink = Sink(args)
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    for servicer, adder, name in (
        (tsg.TraceServiceServicer, tsg.add_TraceServiceServicer_to_server, "traces"),
        (msg.MetricsServiceServicer, msg.add_MetricsServiceServicer_to_server, "metrics"),
        (lsg.LogsServiceServicer, lsg.add_LogsServiceServicer_to_server, "logs"),
    ):
        cls = type(f"{name}Sink", (servicer,), {"Export": _grpc_export(sink, name)})
        adder(cls(), server)
    grpc_port = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    server.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.http_port), _http_handler(sink))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"grpc_port": grpc_port, "http_port": httpd.server_address[1]}), flush=True)
    stop.wait()
    httpd.shutdown()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
