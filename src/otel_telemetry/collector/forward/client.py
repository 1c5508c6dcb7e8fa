"""One OTLP export attempt over HTTP/protobuf or gRPC, classified as ok / retryable / permanent.

Classification follows the OTLP specification ("OTLP/HTTP Response", "OTLP/gRPC Response"):

* HTTP 2xx is success (its ``partial_success`` counts rejected items); 429, 502, 503 and 504 are
  retryable, honouring ``Retry-After`` (seconds or an HTTP date); every other status (400, 401,
  403, 404, 413, 500, …) is permanent: the data is dropped and counted under ``http_<status>``.
* gRPC UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE and DATA_LOSS are
  retryable; RESOURCE_EXHAUSTED is retryable only when the server attached a
  ``google.rpc.RetryInfo`` (otherwise it means "too large", the gRPC form of 413); every other
  code (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, …) is permanent
  (``grpc_<code name>``). A RetryInfo delay is honoured like Retry-After.
* Connection refused/reset, DNS failure and timeouts are retryable (reason ``connection``).

Clients are used by the forwarder's sender thread only; :meth:`abort` may be called from another
thread (shutdown) to cut a hanging attempt short.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ...otlp.encode import SIGNAL_OF_KIND

_RESPONSE = {"span": ExportTraceServiceResponse, "metric": ExportMetricsServiceResponse,
             "log": ExportLogsServiceResponse}
_REJECTED_FIELD = {"span": "rejected_spans", "metric": "rejected_data_points", "log": "rejected_log_records"}
_GRPC_METHOD = {
    "span": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metric": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "log": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
_GRPC_RETRYABLE = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                             grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one attempt. ``reason`` names the drop counter for a permanent failure."""

    ok: bool
    retryable: bool = False
    reason: str = ""
    retry_after: float | None = None
    rejected: int = 0  # partial_success: items the downstream refused although it answered OK
    detail: str = ""


class Client(Protocol):
    def send(self, kind: str, body: bytes, timeout: float) -> Outcome: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


def _rejected(kind: str, data: bytes) -> tuple[int, str]:
    """(rejected count, error message) from a serialized Export*ServiceResponse; (0, "") if none."""
    if not data:
        return 0, ""
    try:
        resp = _RESPONSE[kind].FromString(data)
    except Exception:
        return 0, ""
    if not resp.HasField("partial_success"):
        return 0, ""
    ps = resp.partial_success
    return int(getattr(ps, _REJECTED_FIELD[kind])), ps.error_message


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpClient:
    """OTLP/HTTP protobuf: POST ``<endpoint path>/v1/<signal>`` on one kept-alive connection."""

    def __init__(self, endpoint: str, headers: dict[str, str], compression: str) -> None:
        url = urlsplit(endpoint)
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        self._base = url.path.rstrip("/")
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": "otel-telemetry-forwarder",
                         **headers}
        self._gzip = compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                if self._https:
                    self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                             context=ssl.create_default_context())
                else:
                    self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            conn = self._conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def send(self, kind: str, body: bytes, timeout: float) -> Outcome:
        """Sender thread. One POST; never raises."""
        path = f"{self._base}/v1/{SIGNAL_OF_KIND[kind]}"
        payload = gzip.compress(body, 6) if self._gzip else body
        for fresh in (False, True):
            reused = False
            try:
                conn = self._connection(timeout)
                reused = conn.sock is not None
                conn.request("POST", path, payload, self._headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.close()
                # A kept-alive connection the server closed while idle: one immediate retry on a
                # new connection, so an idle period does not cost a failure and a backoff.
                if reused and not fresh and isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    continue
                return Outcome(False, True, "connection", detail=f"{type(exc).__name__}: {exc}")
        if resp.will_close:
            self.close()
        status = resp.status
        if 200 <= status < 300:
            rejected, message = _rejected(kind, data) if "json" not in (resp.getheader("Content-Type") or "") \
                else (0, "")
            return Outcome(True, rejected=rejected, detail=message)
        detail = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
        if status in _HTTP_RETRYABLE:
            delay = parse_retry_after(resp.getheader("Retry-After"))
            return Outcome(False, True, f"http_{status}", delay, detail=detail)
        return Outcome(False, False, f"http_{status}", detail=detail)

    def abort(self) -> None:
        """Any thread: break a hanging request (its send then fails as ``connection``)."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _retry_info_delay(err: grpc.RpcError) -> float | None:
    """The RetryInfo delay in the status details, if the server sent one."""
    try:
        from google.rpc import error_details_pb2, status_pb2

        for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:
        return None
    return None


class GrpcClient:
    """OTLP/gRPC: the three Export methods on one channel, requests sent as pre-serialized bytes."""

    def __init__(self, endpoint: str, headers: dict[str, str], compression: str) -> None:
        url = urlsplit(endpoint)
        target = url.netloc or url.path
        # Cap gRPC's own reconnect backoff (default up to 120 s) so a downstream that comes back
        # after a long outage is reached within seconds; our retry loop does the pacing.
        options = [("grpc.primary_user_agent", "otel-telemetry-forwarder"),
                   ("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 5000)]
        if url.scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._calls: dict[str, Any] = {
            kind: self._channel.unary_unary(method, request_serializer=None,
                                            response_deserializer=_RESPONSE[kind].FromString)
            for kind, method in _GRPC_METHOD.items()
        }
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        self._inflight: Any = None

    def send(self, kind: str, body: bytes, timeout: float) -> Outcome:
        """Sender thread. One Export call; never raises."""
        try:
            fut = self._calls[kind].future(body, timeout=timeout, metadata=self._metadata,
                                           compression=self._compression)
            self._inflight = fut
            try:
                resp = fut.result()
            finally:
                self._inflight = None
        except grpc.FutureCancelledError:
            return Outcome(False, True, "connection", detail="cancelled by shutdown")
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            detail = f"gRPC {code.name}: {err.details()}"  # type: ignore[attr-defined]
            delay = _retry_info_delay(err)
            reason = f"grpc_{code.name.lower()}"
            if code in _GRPC_RETRYABLE or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
                return Outcome(False, True, reason, delay, detail=detail)
            return Outcome(False, False, reason, detail=detail)
        except Exception as exc:  # anything odd from the channel: treat as transient
            return Outcome(False, True, "connection", detail=f"{type(exc).__name__}: {exc}")
        ps = resp.partial_success if resp.HasField("partial_success") else None
        rejected = int(getattr(ps, _REJECTED_FIELD[kind])) if ps is not None else 0
        return Outcome(True, rejected=rejected, detail=ps.error_message if ps is not None else "")

    def abort(self) -> None:
        """Any thread: cancel the call in flight, if any."""
        fut = self._inflight
        if fut is not None:
            fut.cancel()

    def close(self) -> None:
        self._channel.close()


def make_client(protocol: str, endpoint: str, headers: dict[str, str], compression: str) -> Client:
    if protocol == "grpc":
        return GrpcClient(endpoint, headers, compression)
    return HttpClient(endpoint, headers, compression)
