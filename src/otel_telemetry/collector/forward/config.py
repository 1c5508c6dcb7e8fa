"""collector.yaml ``forward:`` entries → validated :class:`ForwardTarget` (one per OTLP downstream)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PROTOCOLS = ("grpc", "http/protobuf")
SIGNALS = ("traces", "metrics", "logs")
MEMORY_QUEUE_BATCHES = 10_000
DISK_QUEUE_BATCHES = 1_000_000  # a 10 min outage at 1k spans/s is ~12k ZeroMQ batches per topic


@dataclass(frozen=True)
class ForwardTarget:
    """One ``forward:`` entry of collector.yaml, validated."""

    endpoint: str
    protocol: str = "http/protobuf"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    compression: str = "none"
    queue_dir: str | None = None
    max_queue_batches: int | None = None  # None: 10_000 in memory, 1_000_000 with queue_dir
    max_batch_items: int = 2048
    retry_initial: float = 1.0
    retry_max: float = 30.0
    name: str = ""
    # What this downstream takes: a trace store (Jaeger, Tempo) only traces, a metrics backend
    # (VictoriaMetrics) only metrics, a log store (Loki) only logs.
    signals: tuple[str, ...] = SIGNALS

    @property
    def label(self) -> str:
        return self.name or self.endpoint

    @property
    def queue_limit(self) -> int:
        """Consumed batches that may wait (inbox + queue) before new ones are dropped."""
        if self.max_queue_batches is not None:
            return self.max_queue_batches
        return DISK_QUEUE_BATCHES if self.queue_dir else MEMORY_QUEUE_BATCHES


_KEYS = {"endpoint", "protocol", "headers", "timeout", "compression", "queue_dir", "max_queue_batches",
         "max_batch_items", "retry_initial", "retry_max", "name", "signals"}


def _number(where: str, value: Any, kind: type, minimum: float, strict: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{where}: must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return kind(value)


def _target(where: str, raw: Any) -> ForwardTarget:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(_KEYS))})")
    endpoint = raw.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"{where}: endpoint is required (e.g. http://127.0.0.1:4318 or grpc://127.0.0.1:4317)")
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https", "grpc") or not url.hostname:
        raise ValueError(f"{where}: endpoint {endpoint!r} must be http://, https:// or grpc://host:port")
    protocol = raw.get("protocol", "grpc" if url.scheme == "grpc" else "http/protobuf")
    if protocol not in PROTOCOLS:
        raise ValueError(f"{where}: protocol must be {' or '.join(PROTOCOLS)}, got {protocol!r}")
    if url.scheme == "grpc" and protocol != "grpc":
        raise ValueError(f"{where}: protocol {protocol!r} does not match a grpc:// endpoint")
    if protocol == "grpc" and url.path not in ("", "/"):
        raise ValueError(f"{where}: endpoint {endpoint!r}: a gRPC endpoint has no path")
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in headers.items()):
        raise ValueError(f"{where}: headers must map strings to strings")
    compression = raw.get("compression", "none")
    if compression not in ("none", "gzip"):
        raise ValueError(f"{where}: compression must be none or gzip, got {compression!r}")
    queue_dir = raw.get("queue_dir")
    if queue_dir is not None and (not isinstance(queue_dir, str) or not queue_dir):
        raise ValueError(f"{where}: queue_dir must be a directory path, got {queue_dir!r}")
    kwargs: dict[str, Any] = {}
    for key, kind, lo, strict in (("timeout", float, 0, True), ("max_queue_batches", int, 1, False),
                                  ("max_batch_items", int, 1, False), ("retry_initial", float, 0, True),
                                  ("retry_max", float, 0, True)):
        if key in raw:
            kwargs[key] = _number(f"{where}: {key}", raw[key], kind, lo, strict)
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise ValueError(f"{where}: name must be a string, got {name!r}")
    signals = raw.get("signals", list(SIGNALS))
    if not isinstance(signals, list) or not signals or any(s not in SIGNALS for s in signals):
        raise ValueError(f"{where}: signals must be a non-empty list of {', '.join(SIGNALS)}, got {signals!r}")
    return ForwardTarget(endpoint=endpoint, protocol=protocol, headers=dict(headers), compression=compression,
                         queue_dir=queue_dir, name=name, signals=tuple(dict.fromkeys(signals)), **kwargs)


def parse_forward_config(raw: list[dict[str, Any]] | None, where: str) -> list[ForwardTarget]:
    """Validate the ``forward:`` list of collector.yaml; ValueError names the entry and key."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a list of targets, got {type(raw).__name__}")
    targets = [_target(f"{where}[{i}]", item) for i, item in enumerate(raw)]
    dirs = [t.queue_dir for t in targets if t.queue_dir]
    if len(dirs) != len(set(dirs)):
        raise ValueError(f"{where}: two targets share a queue_dir; each needs its own")
    return targets
