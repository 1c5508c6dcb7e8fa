"""OTLP/gRPC receiver: the official TraceService / MetricsService / LogsService ``Export`` methods.

The services are registered under the names from the official ``opentelemetry.proto`` service
descriptors, but with a raw-bytes request deserializer: with the generated
``add_*Servicer_to_server`` a body that fails to parse is answered INTERNAL by grpcio before our
code runs, whereas OTLP wants INVALID_ARGUMENT (not retried). Decoding then goes through the same
``otlp.decode`` as OTLP/HTTP.

Status codes: OK with ``partial_success`` when items were rejected; INVALID_ARGUMENT for a
malformed request; RESOURCE_EXHAUSTED when the (decompressed) message exceeds ``max_body_bytes``
(grpcio enforces ``grpc.max_receive_message_length`` after decompression; the handler checks
again); UNAVAILABLE with a ``google.rpc.retryinfo-bin`` trailer when the store cannot keep up, the
commit does not come in time or the collector is stopping (clients retry it). OK is answered only
after the store committed every row of the request.

With a ``bearer_token``, every call must carry ``authorization: Bearer <token>`` metadata (compared
in constant time), else UNAUTHENTICATED, counted as rejected ``unauthenticated``, before the
message is decoded or stored. With ``tls`` the port is bound with ``grpc.ssl_server_credentials``.

Threads: grpcio's own I/O threads plus a pool of ``max_workers`` handler threads; a handler thread
blocks on the store commit for at most ``submit_timeout + commit_timeout``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ...auth import UNAUTHENTICATED, bearer_matches
from ...otlp import decode as otlp
from ..config import OtlpTlsConfig, join_endpoint, split_endpoint
from ..pipeline import Pipeline
from . import otlp_ingest as oi

log = logging.getLogger("otel_telemetry.collector.receivers.otlp_grpc")

_SERVICES = {
    "traces": trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
}


class OtlpGrpcReceiver:
    """Lifecycle: ``start()`` binds and raises at start-up if it cannot; ``shutdown(timeout)`` is
    idempotent and safe before ``start()``. ``counters()`` may be called from any thread."""

    def __init__(self, endpoint: str, pipeline: Pipeline, *, max_body_bytes: int = oi.DEFAULT_MAX_BODY_BYTES,
                 submit_timeout: float = 0.25, commit_timeout: float = 5.0, max_workers: int = 8,
                 max_concurrent_rpcs: int = 64, bearer_token: str | None = None,
                 tls: OtlpTlsConfig | None = None) -> None:
        self.host, self.port = split_endpoint(endpoint)
        self._token = bearer_token
        self._credentials: grpc.ServerCredentials | None = None
        if tls is not None:  # read here so an unreadable file fails at start-up
            with open(tls.key_file, "rb") as key, open(tls.cert_file, "rb") as cert:
                self._credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        self.ingest = oi.Ingest("otlp_grpc", pipeline, max_body_bytes=max_body_bytes,
                                submit_timeout=submit_timeout, commit_timeout=commit_timeout)
        self._max_workers = max_workers
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = False
        self.listening = False  # bound and serving: only then is ``endpoint`` the real port

    @property
    def endpoint(self) -> str:
        """host:port actually bound (the real port when configured with port 0)."""
        return join_endpoint(self.host, self.port)

    def start(self) -> None:
        """Caller's thread: bind and start; raises RuntimeError if the address cannot be bound."""
        if self._server is not None or self._stopped:
            return
        cap = self.ingest.max_body_bytes
        self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="otel-otlp-grpc")
        server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", cap),
                # grpcio sets SO_REUSEPORT by default: a second collector would then share the
                # port silently instead of failing to start.
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=self._max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler(service, {
                "Export": grpc.unary_unary_rpc_method_handler(self._export_handler(signal)),
            })
            for signal, service in _SERVICES.items()
        ])
        try:
            if self._credentials is not None:
                port = server.add_secure_port(self.endpoint, self._credentials)
            else:
                port = server.add_insecure_port(self.endpoint)
        except RuntimeError as exc:
            self._executor.shutdown(wait=False)
            raise RuntimeError(f"OTLP/gRPC cannot bind {self.endpoint}: {exc}") from None
        if port == 0:  # older grpcio reports a failed bind this way
            self._executor.shutdown(wait=False)
            raise RuntimeError(f"OTLP/gRPC cannot bind {self.endpoint}")
        self.port = port
        server.start()
        self._server = server
        self.listening = True
        log.info("OTLP/gRPC listening on %s", self.endpoint)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Caller's thread: refuse new RPCs, let in-flight ones finish within ``timeout``.
        Idempotent; True if everything finished in time."""
        if self._stopped:
            return True
        self._stopped = True
        self.ingest.stopping = True
        server = self._server
        if server is None:
            return True
        ok = server.stop(grace=max(0.0, timeout)).wait(max(0.0, timeout) + 1.0)
        ok = self.ingest.drain(0.5) and ok
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        return bool(ok)

    def counters(self) -> dict[str, Any]:
        return self.ingest.counters(endpoint=self.endpoint, max_body_bytes=self.ingest.max_body_bytes)

    # -- handler threads ------------------------------------------------------------------------
    def _export_handler(self, signal: str) -> Any:
        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            """Handler thread: ingest one request; answers only through the return value or
            ``context.abort`` (which raises), never by letting another exception escape."""
            ingest = self.ingest
            ingest.count_request(signal)
            if self._token is not None:
                header = next((str(v) for k, v in (context.invocation_metadata() or ())
                               if k.lower() == "authorization"), None)
                if not bearer_matches(header, self._token):
                    ingest.count_rejected(UNAUTHENTICATED)
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            if len(body) > ingest.max_body_bytes:
                ingest.count_rejected("too_large")
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"message of {len(body)} bytes exceeds {ingest.max_body_bytes}")
            if not ingest.enter():
                ingest.count_overload(oi.SHUTTING_DOWN)
                self._unavailable(context, "collector is shutting down")
            error: str | None = None
            try:
                outcome = ingest.ingest(signal, body, json=False)
            except otlp.OtlpDecodeError as exc:
                error = str(exc)
            finally:
                ingest.leave()
            if error is not None:
                ingest.count_rejected("malformed")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
            if outcome.status != oi.OK:  # counted by Ingest
                self._unavailable(context, f"store cannot keep up ({outcome.status}); retry later")
            return oi.response(signal, outcome).SerializeToString()

        return export

    @staticmethod
    def _unavailable(context: grpc.ServicerContext, message: str) -> None:
        context.set_trailing_metadata((("google.rpc.retryinfo-bin", oi.retry_info_pb(oi.RETRY_AFTER_S)),))
        context.abort(grpc.StatusCode.UNAVAILABLE, message)
