"""`otel-telemetry collector run`: owns the store writer, receivers, signals, orderly shutdown.

Start downstream first (store writer), then upstream (receivers); stop in the reverse order so
each component drains into the next before it goes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import apsw

from ..store import db as dbmod
from ..store import preflight
from ..store.preflight import StoreFileError
from ..store.retention import RetentionPolicy
from ..store.writer import StoreWriter
from .alerts.engine import AlertEngine
from .config import CollectorConfig, ConfigError, check_otlp_exposure, load
from .forward.forwarder import Forwarder
from .genai import normalise as genai
from .genai import prices
from .metrics import MetricsServer
from .pipeline import Pipeline
from .private import make_private
from .receivers.zmq import EndpointInUse, ZmqReceiver
from .redaction import BatchRedactor

log = logging.getLogger("otel_telemetry.collector")


class Collector:
    """The assembled pipeline. ``start()``/``shutdown(timeout)`` may be called from any one thread."""

    def __init__(self, cfg: CollectorConfig, clock: Any = None) -> None:
        self.cfg = cfg
        self.started_at = time.time()
        prices.set_price_overrides(cfg.prices or None)
        dbmod.set_key_file(cfg.store.key_file)  # encryption at rest: every connection this process opens
        policy = RetentionPolicy(
            days=dict(cfg.retention.days),
            max_size_bytes=int(cfg.retention.max_size_mb * 1024 * 1024) if cfg.retention.max_size_mb else None,
        )
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.writer = StoreWriter(
            cfg.db, synchronous=cfg.store.synchronous, batch_rows=cfg.store.batch_rows,
            flush_interval=cfg.store.flush_interval, queue_batches=cfg.store.queue_batches,
            retention=policy, retention_interval=cfg.retention.interval, status_source=self.status,
            instance=cfg.instance or None, live_spans=cfg.live_spans, **kwargs,
        )
        # Ships committed rows to a central server from its own cursor; nudged like a consumer.
        self.sync: Any = None
        if cfg.sync is not None:
            from .sync.shipper import SyncShipper  # its HTTP client is loaded only when sync is on

            self.sync = SyncShipper(cfg.db, cfg.sync, cfg.instance, retention=policy,
                                    retention_interval=cfg.retention.interval, **kwargs)
        # Forwarders are consumers beside the store: a slow or dead downstream only fills their queues.
        self.forwarders = [Forwarder(target) for target in cfg.forward]
        # Redaction of OTLP input (and ZeroMQ input with redaction.redact_zmq) before any consumer.
        self.redaction = BatchRedactor(cfg.redaction)
        consumers: list[Any] = [*self.forwarders, *([self.sync] if self.sync is not None else [])]
        self.pipeline = Pipeline(self.writer, cfg.rules, consumers=consumers, redaction=self.redaction,
                                 volume=cfg.volume)
        self.alerts: AlertEngine | None = None
        self.zmq: ZmqReceiver | None = None
        self.otlp_http: Any = None  # OtlpHttpReceiver, imported when enabled
        self.otlp_grpc: Any = None  # OtlpGrpcReceiver, imported when enabled (needs grpcio)
        self.metrics: MetricsServer | None = None  # the opt-in Prometheus /metrics
        self._stopped = False

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "pid": os.getpid(), "endpoint": self.cfg.endpoint, "db": self.cfg.db, "instance": self.cfg.instance,
            "started_at": self.started_at, "uptime_s": round(time.time() - self.started_at, 3),
        }
        if self.zmq is not None:
            body["zmq"] = self.zmq.counters()
        if self.forwarders:
            body["forward"] = {f.target.label: f.counters() for f in self.forwarders}
        if self.alerts is not None:
            body["alerts"] = self.alerts.stats()
        if self.sync is not None:
            body["sync"] = self.sync.stats()
        body["genai_unknown_models"] = genai.unknown_models()
        body["redaction"] = self.redaction.counters()
        body["adjusted"] = self.pipeline.adjusted()  # future timestamps clamped, absurd durations set aside
        if self.pipeline.volume is not None:
            body["volume"] = self.pipeline.volume.counters()
        for name in ("otlp_http", "otlp_grpc"):
            receiver = getattr(self, name)
            # Named once it listens: a status row written while it binds would say port 0 (':0'
            # with a configured port 0), which a reader would take for the port to send to.
            if receiver is not None and receiver.listening:
                body[name] = receiver.counters()
        if self.metrics is not None:
            body["metrics_endpoint"] = self.metrics.endpoint
        return body

    def _metrics_body(self) -> dict[str, Any]:
        """The status row's body as it would be written now (the metrics server's thread)."""
        return {**self.status(), **self.writer.stats(), "store_state": self.writer.state}

    def start(self) -> None:
        """Caller's thread: store writer first, then the receivers (OTLP, then ZeroMQ). A receiver
        that cannot bind raises here, after what was already started has been stopped again."""
        checkpoints = self.writer.load_checkpoints()
        self.writer.start()
        try:
            for forwarder in self.forwarders:
                forwarder.start()
            if self.sync is not None:
                self.sync.start()
            if self.pipeline.volume is not None:
                self.pipeline.volume.start()  # the tail sampler: between receivers and the store
            if self.cfg.alerts is not None:  # the default AI rules are on unless switched off
                # Reads the store only; its state lives in its own file (single-writer rule).
                self.alerts = AlertEngine(self.cfg.db, self.cfg.alerts)
                self.alerts.start()
            if self.cfg.metrics_endpoint is not None:
                self.metrics = MetricsServer(self.cfg.metrics_endpoint, self._metrics_body)
                self.metrics.start()
            # OTLP binds first: the ZeroMQ socket subscribes as it binds, and apps hand records to a
            # subscription as sent. A collector that then failed on an OTLP port lost them silently.
            self._start_otlp()
            if self.cfg.zmq.enabled:
                self.zmq = ZmqReceiver(
                    self.cfg.endpoint, self.pipeline, checkpoints=checkpoints,
                    max_message_bytes=self.cfg.zmq.max_message_bytes, rcvhwm=self.cfg.zmq.rcvhwm,
                    curve=self.cfg.zmq.curve,
                )
                self.zmq.start()
        except BaseException:
            self._stop_receivers(time.monotonic() + 2.0)
            self._stop_consumers(time.monotonic() + self.cfg.shutdown_timeout)
            if self.metrics is not None:
                self.metrics.shutdown(1.0)
            raise

    def _start_otlp(self) -> None:
        http, grpc_cfg = self.cfg.otlp_http, self.cfg.otlp_grpc
        # Both checked before either binds: off loopback, TLS and a bearer token are mandatory.
        check_otlp_exposure("receivers.otlp_http", http)
        check_otlp_exposure("receivers.otlp_grpc", grpc_cfg)
        if http.enabled:
            from .receivers.otlp_http import OtlpHttpReceiver

            self.otlp_http = OtlpHttpReceiver(http.endpoint, self.pipeline, max_body_bytes=http.max_body_bytes,
                                              bearer_token=http.bearer_token, tls=http.tls)
            self.otlp_http.start()
        if grpc_cfg.enabled:
            try:
                from .receivers.otlp_grpc import OtlpGrpcReceiver
            except ImportError as exc:  # grpcio is optional; OTLP/HTTP and ZeroMQ still work
                log.warning("OTLP/gRPC receiver disabled: %s (install grpcio)", exc)
                return
            self.otlp_grpc = OtlpGrpcReceiver(grpc_cfg.endpoint, self.pipeline,
                                              max_body_bytes=grpc_cfg.max_body_bytes,
                                              bearer_token=grpc_cfg.bearer_token, tls=grpc_cfg.tls)
            self.otlp_grpc.start()

    def _stop_receivers(self, deadline: float) -> bool:
        """Upstream first: every receiver stops taking data and answers what it holds."""
        ok = True
        for receiver in (self.otlp_grpc, self.otlp_http, self.zmq):
            if receiver is not None:
                ok = receiver.shutdown(max(0.0, min(5.0, deadline - time.monotonic()))) and ok
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Idempotent: stop receivers, then drain and close the store within ``timeout``."""
        if self._stopped:
            return True
        self._stopped = True
        deadline = time.monotonic() + (self.cfg.shutdown_timeout if timeout is None else timeout)
        ok = self._stop_receivers(deadline)
        ok = self._stop_consumers(deadline) and ok
        if self.metrics is not None:
            ok = self.metrics.shutdown(1.0) and ok
        return ok

    def _stop_consumers(self, deadline: float) -> bool:
        ok = True
        if self.pipeline.volume is not None:
            # Held traces are decided now and the kept ones stored before the writer drains.
            ok = self.pipeline.volume.shutdown(max(0.0, deadline - time.monotonic() - 1.0))
        ok = self.writer.shutdown(max(0.0, deadline - time.monotonic())) and ok
        if self.alerts is not None:
            ok = self.alerts.shutdown(max(0.0, min(5.0, deadline - time.monotonic()))) and ok
        for forwarder in self.forwarders:
            # Forwarders persist what they still hold (queue_dir) and cut retries short.
            ok = forwarder.shutdown(max(0.0, deadline - time.monotonic())) and ok
        if self.sync is not None:  # after the writer: its last commits get shipped too
            ok = self.sync.shutdown(max(0.0, deadline - time.monotonic())) and ok
        return ok


def check_store(path: str, budget_s: float = 10.0) -> None:
    """Main thread, before any thread opens the store: a regular file (never open a FIFO), on a
    writable file system, and not damaged (``PRAGMA quick_check`` on its own read-only connection,
    closed again so the writer starts with a cold cache). StoreFileError says why in one line."""
    preflight.check_regular(path)
    preflight.check_writable(path)
    if not os.path.isfile(path) or os.path.getsize(path) == 0 or budget_s <= 0:
        return  # created by the writer, or the check is off (store.check_seconds: 0)
    started = time.monotonic()
    try:
        conn = dbmod.open_sqlite(path, apsw.SQLITE_OPEN_READONLY)
    except dbmod.DatabaseKeyError:
        raise
    except apsw.Error as exc:
        raise StoreFileError(f"{path} cannot be opened as a database ({exc})") from None
    try:
        whole = preflight.quick_check(conn, path, budget_s)
    finally:
        conn.close()
    if whole:
        log.info("store %s checked (quick_check) in %.1f s", path, time.monotonic() - started)
    else:
        log.warning("store %s: quick_check stopped after store.check_seconds (%g s); the rest of the file "
                    "was not checked", path, budget_s)


def run_collector(config_path: str | None = None, db: str | None = None, endpoint: str | None = None) -> int:
    """Foreground collector; logs to stderr; SIGTERM/SIGINT stop it cleanly. Returns an exit code."""
    try:
        cfg = load(config_path, db=db, endpoint=endpoint)
    except ConfigError as exc:
        print(f"otel-telemetry: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if cfg.nice and hasattr(os, "nice"):
        # Before any thread starts (threads inherit it): on a device the collector shares its
        # cores with the apps it observes, and they come first; bounded queues absorb the lag.
        try:
            os.nice(cfg.nice)
        except OSError as exc:
            log.warning("could not lower the collector's CPU priority (nice %d): %s", cfg.nice, exc)
    try:  # before anything touches the path: chmod and stat only, never an open of a FIFO
        preflight.check_regular(cfg.db)
        preflight.check_writable(cfg.db)
    except StoreFileError as exc:
        print(f"otel-telemetry: {exc}", file=sys.stderr)
        return 2
    make_private(cfg)  # before the first file is opened or created
    collector = Collector(cfg)
    try:  # a bad key file is a one-line start-up error, before any thread opens the database
        dbmod.resolve_key()
        check_store(cfg.db, cfg.store.check_seconds)
    except (dbmod.DatabaseKeyError, StoreFileError) as exc:
        print(f"otel-telemetry: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        collector.start()
    except EndpointInUse as exc:
        print(f"otel-telemetry: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"otel-telemetry: cannot start collector: {exc}", file=sys.stderr)
        return 1
    log.info("collector running: endpoint=%s db=%s otlp_http=%s otlp_grpc=%s", cfg.endpoint, cfg.db,
             collector.otlp_http.endpoint if collector.otlp_http else "off",
             collector.otlp_grpc.endpoint if collector.otlp_grpc else "off")
    failure = None
    while not stop.wait(0.5):
        failure = collector.writer.failure
        if failure is not None:  # a dead writer must not leave receivers answering 429 forever
            log.error("collector stopping: the store writer stopped: %s", failure)
            break
    ok = collector.shutdown()
    stats = collector.writer.stats()
    # The last word on what was lost, also when the status could not be written (a server that
    # is down at shutdown, direct mode): rows the store dropped, records the ZeroMQ receiver could
    # not hand over, and sequence gaps.
    zmq_c = collector.zmq.counters() if collector.zmq is not None else {}
    log.info("collector stopped: stored=%s duplicates=%s dropped_rows=%s zmq_dropped=%s zmq_gaps=%s clean=%s",
             stats.get("stored"), stats.get("duplicates"), stats.get("dropped_rows"),
             sum((zmq_c.get("dropped") or {}).values()), zmq_c.get("gaps_total", 0), ok and failure is None)
    return 0 if ok and failure is None else 1
