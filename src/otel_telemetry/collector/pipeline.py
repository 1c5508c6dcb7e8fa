"""Receivers → map → consumers (the store writer, and the OTLP forwarder when configured).

Every receiver hands decoded batches (wire tuples, see ``otel_telemetry.wire``) to
:meth:`Pipeline.submit`; the one mapping in ``mapping`` turns them into rows. The store gets the
batch first; the forwarder only sees batches the store accepted, so a receiver that retries a
batch the store refused never forwards it twice.

Redaction (``collector.redaction``) comes first of all: receivers call :meth:`Pipeline.redact`
on each decoded batch before :meth:`map`, so rows, forwarded payloads and alerts only ever see
the redacted records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import categories as cats
from ..store.writer import StoreWriter, WriteBatch
from . import mapping
from .redaction import BatchRedactor


class Consumer(Protocol):
    """A downstream of the store (forwarder, alerts). ``consume`` runs on a receiver thread:
    it must not block or raise; it queues and counts."""

    def consume(self, kind: str, resource: dict[str, Any], records: list[Any]) -> None: ...


class Pipeline:
    def __init__(self, writer: StoreWriter, rules: Sequence[cats.Rule] = (),
                 consumers: Sequence[Consumer] = (), redaction: BatchRedactor | None = None) -> None:
        self.writer = writer
        self.rules = tuple(rules)
        self.consumers = list(consumers)
        self.redaction = redaction

    def redact(self, kind: str, resource: dict[str, Any], records: list[Any],
               source: str, requested: bool = False) -> tuple[dict[str, Any], list[Any], int]:
        """(resource, records, dropped) for one decoded batch from ``source`` ("otlp" or "zmq");
        ``requested``: a ZeroMQ frame flagged ``wire.FLAG_REDACT``. Receiver thread; never raises.
        ``dropped`` records failed redaction and are counted."""
        red = self.redaction
        if red is None or not red.applies(source, requested):
            return resource, records, 0
        return red.apply(kind, resource, records)

    def map(self, kind: str, resource: dict[str, Any], records: list[Any], topic: tuple[str, str] | None,
            uid_base: bytes) -> list[tuple[Any, ...]]:
        """Rows for one batch; raises (ValueError, TypeError, IndexError, …) on a malformed record."""
        return list(mapping.rows_from_batch(kind, resource, records, topic, uid_base, self.rules))

    def submit(self, kind: str, resource: dict[str, Any], records: list[Any], rows: list[tuple[Any, ...]], *,
               checkpoints: dict[tuple[bytes, str], int] | None = None, timeout: float = 0.1,
               on_commit: Callable[[], None] | None = None) -> bool:
        """Hand mapped rows to the store, then the records to the other consumers.

        Called on a receiver thread. False means the store's queue stayed full for ``timeout``:
        nothing was taken and the caller still owns the batch (retry, or answer 429/503).
        """
        batch = WriteBatch(rows=rows, checkpoints=dict(checkpoints or {}), received=len(records))
        if on_commit is not None:
            batch.on_commit = on_commit
        if not self.writer.submit(batch, timeout=timeout):
            return False
        for consumer in self.consumers:
            consumer.consume(kind, resource, records)
        return True
