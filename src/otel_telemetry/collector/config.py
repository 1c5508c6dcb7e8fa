"""collector.yaml → validated dataclasses. Unknown keys are errors naming the key."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import categories as cats
from .. import settings
from ..auth import is_loopback_host
from ..store import location
from ..store.in_progress import Limits as LiveSpanLimits
from ..store.retention import KEYS as RETENTION_KEYS
from ..store.retention import MAX_DAYS as RETENTION_MAX_DAYS
from ..store.retention import TYPES as RETENTION_TYPES
from ..wire import DEFAULT_MAX_MESSAGE_BYTES
from .alerts.config import AlertConfig, parse_alert_config
from .forward.config import ForwardTarget, parse_forward_config
from .redaction import CollectorRedaction, parse_redaction
from .sync.config import SyncConfig, parse_sync
from .volume import VolumeConfig, parse_volume


class ConfigError(ValueError):
    """Bad collector configuration; the message names the file, key and problem."""


@dataclass
class StoreConfig:
    synchronous: str = "normal"
    batch_rows: int = 4096  # one transaction of 4096 rows: ~5 % more spans/s than 1000 (fewer commits, rollup upserts)
    flush_interval: float = 0.2
    queue_batches: int = 64
    key_file: str | None = None  # encryption at rest; $OTEL_TELEMETRY_DB_KEY(_FILE) win over it
    # PRAGMA quick_check at start, stopped after this many seconds (~3 s per 1M rows; 0 = off)
    check_seconds: float = 10.0


@dataclass
class RetentionConfig:
    interval: float = 60.0
    max_size_mb: float | None = None
    # by category, record type or category.type (most specific wins: store/retention.py)
    days: dict[str, int] = field(default_factory=lambda: dict(cats.DEFAULT_RETENTION_DAYS))


@dataclass
class ZmqReceiverConfig:
    enabled: bool = True
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rcvhwm: int = 10000
    curve: CurveConfig | None = None  # required for a non-loopback tcp:// endpoint


@dataclass
class CurveConfig:
    """``receivers.zmq.curve``: the collector's secret-key file and the allow-list of client keys."""

    secret_key_file: str
    allowed_clients_dir: str


DEFAULT_OTLP_MAX_BODY_BYTES = 8 * 1024 * 1024
_MAX_OTLP_BODY_BYTES = 2**31 - 1  # gRPC's max_receive_message_length is an int32


@dataclass
class OtlpTlsConfig:
    """``receivers.otlp_*.tls``: PEM certificate (chain) and private key, checked at load."""

    cert_file: str
    key_file: str


@dataclass
class OtlpReceiverConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4318"
    max_body_bytes: int = DEFAULT_OTLP_MAX_BODY_BYTES  # measured after decompression
    tls: OtlpTlsConfig | None = None
    # Read at load from ``auth.bearer_token_env`` / ``auth.bearer_token_file``; never in the YAML.
    bearer_token: str | None = field(default=None, repr=False)


def check_otlp_exposure(where: str, rc: OtlpReceiverConfig) -> None:
    """Start-up rule: an enabled receiver bound to anything but loopback needs TLS AND a bearer
    token; raises ConfigError naming the missing keys."""
    from ..auth import is_loopback_host

    if not rc.enabled or is_loopback_host(split_endpoint(rc.endpoint)[0]):
        return
    missing = [f"{where}.{key}" for key, value in (("tls", rc.tls), ("auth", rc.bearer_token)) if value is None]
    if missing:
        raise ConfigError(f"{where}.endpoint {rc.endpoint!r} is not loopback: refusing to start without "
                          f"{' and '.join(missing)} (TLS and a bearer token are required off loopback)")


def _otlp_grpc_default() -> OtlpReceiverConfig:
    return OtlpReceiverConfig(endpoint="127.0.0.1:4317")


@dataclass
class CollectorConfig:
    endpoint: str
    db: str
    log_level: str = "info"
    shutdown_timeout: float = 10.0
    nice: int = 10  # added to the process's niceness at start: the apps it observes come first
    store: StoreConfig = field(default_factory=StoreConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    zmq: ZmqReceiverConfig = field(default_factory=ZmqReceiverConfig)
    otlp_grpc: OtlpReceiverConfig = field(default_factory=_otlp_grpc_default)
    otlp_http: OtlpReceiverConfig = field(default_factory=OtlpReceiverConfig)
    rules: list[cats.Rule] = field(default_factory=list)
    forward: list[ForwardTarget] = field(default_factory=list)
    alerts: AlertConfig | None = None
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # user price overrides, USD/Mtok
    redaction: CollectorRedaction = field(default_factory=CollectorRedaction)  # collector/redaction.py
    volume: VolumeConfig = field(default_factory=VolumeConfig)  # min levels, tail sampling (collector/volume.py)
    instance: str = ""  # stamped on every stored row; settings "instance" (host name by default)
    sync: SyncConfig | None = None  # collector/sync: ship stored rows to a central libSQL server
    metrics_endpoint: str | None = None  # host:port of the opt-in Prometheus /metrics (collector/metrics.py)
    live_spans: LiveSpanLimits = field(default_factory=LiveSpanLimits)  # spans in progress (store/in_progress.py)


_TOP = {"endpoint", "db", "log_level", "shutdown_timeout", "nice", "store", "retention", "receivers", "categories",
        "forward", "alerts", "prices", "redaction", "volume", "instance", "sync", "metrics_endpoint",
        "live_spans"}


def _check_prices(raw: Any) -> None:
    """Validate ``prices:`` without leaving it applied (the collector applies it when it starts)."""
    from .genai import prices

    try:
        prices.set_price_overrides(raw)
    except ValueError as exc:
        raise ValueError(f"prices: {exc}") from None
    finally:
        prices.set_price_overrides(None)


def _check_keys(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _num(where: str, value: Any, kind: type, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value!r}")
    return kind(value)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """"host:port" or "[v6addr]:port" → (host, port); raises ValueError. Port 0 = any free port."""
    if not isinstance(endpoint, str):
        raise ValueError(f"expected host:port, got {endpoint!r}")
    host, sep, port = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535 or "/" in host:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:4318), got {endpoint!r}")
    return host, int(port)


def join_endpoint(host: str, port: int) -> str:
    """Inverse of :func:`split_endpoint` (brackets an IPv6 host)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _curve(where: str, raw: Any) -> CurveConfig:
    _check_keys(where, raw, {"secret_key_file", "allowed_clients_dir"})
    for key in ("secret_key_file", "allowed_clients_dir"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}.{key}: required (a path), got {raw.get(key)!r}")
    if not Path(raw["secret_key_file"]).is_file():
        raise ConfigError(f"{where}.secret_key_file: no such file {raw['secret_key_file']!r}")
    if not Path(raw["allowed_clients_dir"]).is_dir():
        raise ConfigError(f"{where}.allowed_clients_dir: no such directory {raw['allowed_clients_dir']!r}")
    return CurveConfig(raw["secret_key_file"], raw["allowed_clients_dir"])


def _otlp_tls(where: str, raw: Any) -> OtlpTlsConfig:
    from ..auth import server_ssl_context

    _check_keys(where, raw, {"cert_file", "key_file"})
    for key in ("cert_file", "key_file"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}.{key}: required (a path), got {raw.get(key)!r}")
        if not Path(raw[key]).is_file():
            raise ConfigError(f"{where}.{key}: no such file {raw[key]!r}")
    try:
        server_ssl_context(raw["cert_file"], raw["key_file"])
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"{where}: cannot load cert_file/key_file ({exc})") from None
    return OtlpTlsConfig(raw["cert_file"], raw["key_file"])


def _otlp_token(where: str, raw: Any) -> str:
    """``auth: {bearer_token_env: NAME}`` or ``auth: {bearer_token_file: PATH}``, exactly one."""
    _check_keys(where, raw, {"bearer_token_env", "bearer_token_file"})
    if len(raw) != 1:
        raise ConfigError(f"{where}: set exactly one of bearer_token_env or bearer_token_file")
    (key, value), = raw.items()
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    if key == "bearer_token_env":
        token = os.environ.get(value, "").strip()
        if not token:
            raise ConfigError(f"{where}.bearer_token_env: environment variable {value} is not set or empty")
    else:
        try:
            token = Path(value).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.bearer_token_file: cannot read {value!r} ({exc})") from None
        if not token:
            raise ConfigError(f"{where}.bearer_token_file: {value!r} is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"{where}.{key}: the token must not contain whitespace or control characters")
    return token


def _otlp_receiver(where: str, raw: Any, cfg: OtlpReceiverConfig) -> None:
    raw = {} if raw is None else raw
    _check_keys(where, raw, {"enabled", "endpoint", "max_body_bytes", "auth", "tls"})
    if raw.get("auth") is not None:
        cfg.bearer_token = _otlp_token(f"{where}.auth", raw["auth"])
    if raw.get("tls") is not None:
        cfg.tls = _otlp_tls(f"{where}.tls", raw["tls"])
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise ConfigError(f"{where}.enabled: expected true or false, got {raw['enabled']!r}")
        cfg.enabled = raw["enabled"]
    if "endpoint" in raw:
        try:
            split_endpoint(raw["endpoint"])
        except ValueError as exc:
            raise ConfigError(f"{where}.endpoint: {exc}") from None
        cfg.endpoint = raw["endpoint"]
    if "max_body_bytes" in raw:
        value = raw["max_body_bytes"]
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}.max_body_bytes: expected a whole number of bytes, got {value!r}")
        cfg.max_body_bytes = _num(f"{where}.max_body_bytes", value, int, 1)
        if cfg.max_body_bytes > _MAX_OTLP_BODY_BYTES:
            raise ConfigError(f"{where}.max_body_bytes: must be <= {_MAX_OTLP_BODY_BYTES}, got {value!r}")


def _live_spans(where: str, raw: Any) -> LiveSpanLimits:
    """``live_spans: {max_spans, abandon_after, max_age}`` (seconds): the bounds of the spans in
    progress the store keeps."""
    _check_keys(where, raw, {"max_spans", "abandon_after", "max_age"})
    d = LiveSpanLimits()
    max_spans = _num(f"{where}.max_spans", raw.get("max_spans", d.max_spans), int, 1)
    abandon = _num(f"{where}.abandon_after", raw.get("abandon_after", d.abandon_after), float, 0.1)
    max_age = _num(f"{where}.max_age", raw.get("max_age", max(d.max_age, abandon)), float, abandon)
    return LiveSpanLimits(max_spans, abandon, max_age)


def load(path: str | None = None, *, db: str | None = None, endpoint: str | None = None) -> CollectorConfig:
    """Read and validate; arguments win over env, env over the file, the file over defaults."""
    raw: dict[str, Any] = {}
    path = path or settings.resolve("config")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    where = path or "config"
    _check_keys(where, raw, _TOP)
    try:
        cfg = CollectorConfig(endpoint=settings.resolve("endpoint", endpoint, raw),
                              db=settings.resolve("db", db, raw))
        db_loc = location.parse(cfg.db)
        if db_loc.is_remote:
            cfg.db = str(db_loc.url)  # direct to a server: the writer's transactions go there
        cfg.instance = str(settings.resolve("instance", None, raw)).strip()
        if not cfg.instance or len(cfg.instance) > 255:
            raise ValueError("instance must be a name of 1 to 255 characters")
        cfg.sync = parse_sync(raw.get("sync"), settings.resolve("sync_url"), "sync")
        if cfg.sync is not None and db_loc.is_remote:
            raise ValueError(f"db {cfg.db!r} is a server already (direct mode): sync ships a local "
                             "file to a server; drop sync, or give db a file path")
        cfg.metrics_endpoint = settings.resolve("metrics_endpoint", None, raw)
        if cfg.metrics_endpoint is not None:
            host, _ = split_endpoint(cfg.metrics_endpoint)
            if not is_loopback_host(host):
                logging.getLogger("otel_telemetry.collector").warning(
                    "metrics_endpoint %s is reachable from other hosts (no TLS, no token): the counters say "
                    "how much telemetry this device makes", cfg.metrics_endpoint)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if "log_level" in raw:
        if raw["log_level"] not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{where}: log_level must be debug|info|warning|error")
        cfg.log_level = raw["log_level"]
    if "shutdown_timeout" in raw:
        cfg.shutdown_timeout = _num(f"{where}: shutdown_timeout", raw["shutdown_timeout"], float, 0)
    if "nice" in raw:
        nice = raw["nice"]
        if type(nice) is not int or not 0 <= nice <= 19:
            raise ConfigError(f"{where}: nice must be an integer from 0 to 19, got {nice!r}")
        cfg.nice = nice
    if raw.get("live_spans") is not None:
        cfg.live_spans = _live_spans(f"{where}: live_spans", raw["live_spans"])
    st = raw.get("store") or {}
    _check_keys(f"{where}: store", st, {"synchronous", "batch_rows", "flush_interval", "queue_batches",
                                        "key_file", "check_seconds"})
    if st.get("key_file") is not None:
        if not isinstance(st["key_file"], str) or not st["key_file"]:
            raise ConfigError(f"{where}: store.key_file must be a file path")
        cfg.store.key_file = os.path.expanduser(st["key_file"])
    if "synchronous" in st:
        if st["synchronous"] not in ("normal", "full"):
            raise ConfigError(f"{where}: store.synchronous must be normal|full, got {st['synchronous']!r}")
        cfg.store.synchronous = st["synchronous"]
    for key, kind, lo in (("batch_rows", int, 1), ("flush_interval", float, 0.001), ("queue_batches", int, 1),
                          ("check_seconds", float, 0)):
        if key in st:
            setattr(cfg.store, key, _num(f"{where}: store.{key}", st[key], kind, lo))
    rt = raw.get("retention") or {}
    _check_keys(f"{where}: retention", rt, {"interval", "max_size_mb", "days"})
    if "interval" in rt:
        cfg.retention.interval = _num(f"{where}: retention.interval", rt["interval"], float, 0.01)
    if rt.get("max_size_mb") is not None:
        cfg.retention.max_size_mb = _num(f"{where}: retention.max_size_mb", rt["max_size_mb"], float, 0.001)
    days = rt.get("days") or {}
    if not isinstance(days, Mapping):
        raise ConfigError(f"{where}: retention.days: expected a mapping of category, type or category.type to days")
    for key, n in days.items():
        if key not in RETENTION_KEYS:  # a category, a record type, or category.type (store/retention.py)
            raise ConfigError(f"{where}: retention.days: unknown key {key!r} (a category: "
                              f"{', '.join(cats.CATEGORIES)}; a type: {', '.join(RETENTION_TYPES)}; "
                              "or category.type, e.g. ai_behavior.span)")
        cfg.retention.days[key] = _num(f"{where}: retention.days.{key}", n, int, 1)
        if n > RETENTION_MAX_DAYS:
            raise ConfigError(f"{where}: retention.days.{key}: must be at most "
                              f"{RETENTION_MAX_DAYS}, got {n!r}")
    rc = raw.get("receivers") or {}
    _check_keys(f"{where}: receivers", rc, {"zmq", "otlp_grpc", "otlp_http"})
    zr = rc.get("zmq") or {}
    _check_keys(f"{where}: receivers.zmq", zr, {"enabled", "max_message_bytes", "rcvhwm", "curve"})
    if zr.get("curve") is not None:
        cfg.zmq.curve = _curve(f"{where}: receivers.zmq.curve", zr["curve"])
    if "enabled" in zr:
        cfg.zmq.enabled = bool(zr["enabled"])
    for key in ("max_message_bytes", "rcvhwm"):
        if key in zr:
            setattr(cfg.zmq, key, _num(f"{where}: receivers.zmq.{key}", zr[key], int, 1))
    _otlp_receiver(f"{where}: receivers.otlp_grpc", rc.get("otlp_grpc"), cfg.otlp_grpc)
    _otlp_receiver(f"{where}: receivers.otlp_http", rc.get("otlp_http"), cfg.otlp_http)
    cg = raw.get("categories") or {}
    _check_keys(f"{where}: categories", cg, {"rules"})
    try:
        cfg.rules = cats.parse_rules(cg.get("rules") or [])
        cfg.forward = parse_forward_config(raw.get("forward"), f"{where}: forward")
        if raw.get("prices"):
            _check_prices(raw["prices"])
            cfg.prices = dict(raw["prices"])
        # Always: the default AI rules are on without an ``alerts:`` section (alerts/config.py).
        cfg.alerts = parse_alert_config(raw.get("alerts"), f"{where}: alerts")
        cfg.redaction = parse_redaction(raw.get("redaction"), f"{where}: redaction")
        cfg.volume = parse_volume(raw.get("volume"), f"{where}: volume")
    except ValueError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    return cfg
