"""Receivers → map → consumers (the store writer, and the OTLP forwarder when configured).

Every receiver hands decoded batches (wire tuples, see ``otel_telemetry.wire``) to
:meth:`Pipeline.submit`; the one mapping in ``mapping`` turns them into rows. The store gets the
batch first; the forwarder only sees batches the store accepted, so a receiver that retries a
batch the store refused never forwards it twice.

Volume control (``collector.volume``: minimum levels, tail sampling) sits between the mapping and
the store: rows below their category's level are dropped and counted, spans wait in the tail
sampler, and what it keeps reaches the store and the forwarders later from its own thread.

Redaction (``collector.redaction``) comes first of all: receivers call :meth:`Pipeline.redact`
on each decoded batch before :meth:`map`, so rows, forwarded payloads and alerts only ever see
the redacted records.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import categories as cats
from ..store.writer import StoreWriter, WriteBatch
from . import mapping
from .redaction import BatchRedactor
from .volume import Volume, VolumeConfig


class Consumer(Protocol):
    """A downstream of the store (forwarder, alerts). ``consume`` runs on a receiver thread (or,
    for spans the tail sampler kept, on its thread): it must not block or raise; it queues and
    counts."""

    def consume(self, kind: str, resource: dict[str, Any], records: list[Any]) -> None: ...


class Pipeline:
    def __init__(self, writer: StoreWriter, rules: Sequence[cats.Rule] = (),
                 consumers: Sequence[Consumer] = (), redaction: BatchRedactor | None = None,
                 volume: VolumeConfig | None = None) -> None:
        self.writer = writer
        self.rules = tuple(rules)
        self.consumers = list(consumers)
        self.redaction = redaction
        self.volume = Volume(volume, self._deliver) if volume is not None and volume.active else None
        self._lock = threading.Lock()
        self._adjusted: dict[str, int] = {}

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
        adjusted: dict[str, int] = {}
        rows = list(mapping.rows_from_batch(kind, resource, records, topic, uid_base, self.rules, adjusted))
        if adjusted:  # rare: a future timestamp or an absurd duration (mapping._sane)
            with self._lock:
                for reason, n in adjusted.items():
                    self._adjusted[reason] = self._adjusted.get(reason, 0) + n
        return rows

    def adjusted(self) -> dict[str, int]:
        """Rows stored with their timestamp clamped or their duration set aside, by reason (any thread)."""
        with self._lock:
            return dict(self._adjusted)

    def map_each(self, kind: str, resource: dict[str, Any], records: list[Any], topic: tuple[str, str] | None,
                 uid_base: bytes) -> tuple[list[tuple[Any, ...]], list[Any], int, str | None]:
        """(rows, kept records, rejected, first error) for one batch; receiver thread, never raises.
        If the batch fails as a whole, it is mapped record by record and only the bad ones are
        rejected (their uids then come from uid_base + index: still deterministic per content)."""
        with contextlib.suppress(Exception):  # else one record is bad: find it below
            return self.map(kind, resource, records, topic, uid_base), records, 0, None
        rows: list[tuple[Any, ...]] = []
        kept: list[Any] = []
        bad, first = 0, None
        for i, rec in enumerate(records):
            try:
                rows.extend(self.map(kind, resource, [rec], topic, uid_base + i.to_bytes(4, "big")))
                kept.append(rec)
            except Exception as exc:
                bad += 1
                first = first or f"record {i}: {type(exc).__name__}: {exc}"[:500]
        return rows, kept, bad, first

    def started(self, resource: dict[str, Any], records: list[Any],
                topic: tuple[str, str] | None) -> tuple[list[tuple[Any, ...]], int]:
        """(rows, rejected) for started spans (live spans; ``store.in_progress``), mapped like
        spans. Receiver thread; never raises."""
        rows: list[tuple[Any, ...]] = []
        bad = 0
        for rec in records:
            try:
                rows.extend(mapping.rows_from_batch("span", resource, [rec], topic, b"", self.rules, {}))
            except Exception:
                bad += 1
        return rows, bad

    def submit_started(self, rows: list[tuple[Any, ...]]) -> bool:
        """Hand started rows to the store without waiting (receiver thread): a preview is never
        worth pushing back on the apps. False: the store's queue was full (the caller counts it)."""
        return self.writer.submit(WriteBatch(rows=[], started=rows), timeout=0)

    def submit(self, kind: str, resource: dict[str, Any], records: list[Any], rows: list[tuple[Any, ...]], *,
               checkpoints: dict[tuple[bytes, str], int] | None = None, timeout: float = 0.1,
               on_commit: Callable[[], None] | None = None) -> bool:
        """Hand mapped rows to the store, then the records to the other consumers.

        Called on a receiver thread. False means the store's queue (or the tail sampler) stayed
        full for ``timeout``: nothing was taken and the caller still owns the batch (retry, or
        answer 429/503). With volume control, ``on_commit`` means the rows that were not dropped
        or held are committed.
        """
        volume = self.volume
        split = volume.split(kind, rows) if volume is not None and len(rows) == len(records) else None
        if split is not None:
            assert volume is not None
            if not volume.reserve(split):
                return False
            kept_rows, kept_records = [rows[i] for i in split.keep], [records[i] for i in split.keep]
        else:
            kept_rows, kept_records = rows, records
        batch = WriteBatch(rows=kept_rows, checkpoints=dict(checkpoints or {}), received=len(records))
        if on_commit is not None:
            batch.on_commit = on_commit
        if not self.writer.submit(batch, timeout=timeout):
            if split is not None:
                volume.unreserve(split)  # type: ignore[union-attr]
            return False
        if split is not None:
            volume.commit(split, resource, records, rows)  # type: ignore[union-attr]
        if kept_records:
            for consumer in self.consumers:
                consumer.consume(kind, resource, kept_records)
        return True

    def _deliver(self, resource: dict[str, Any], records: list[Any], rows: list[tuple[Any, ...]],
                 timeout: float) -> bool:
        """The tail sampler's kept spans → store, then forwarders (sampler thread). False: the
        store's queue stayed full for ``timeout``; nothing taken."""
        if not self.writer.submit(WriteBatch(rows=rows), timeout=timeout):
            return False
        for consumer in self.consumers:
            consumer.consume("span", resource, records)
        return True
