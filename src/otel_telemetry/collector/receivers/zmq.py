"""ZeroMQ receiver: bytes in → validated, sequence-checked, mapped batches out to the store writer.

One thread owns the XSUB socket. A full writer queue makes this loop wait with the message in
hand: the socket's high-water mark then pushes back to the apps, whose transports count what they
cannot hold. Nothing is dropped here except frames that are rejected (counted by reason).

Once the writer has committed a batch, the same thread acknowledges it upstream
(``wire.encode_ack``: XSUB can send to every connected publisher); apps keep what is not yet
acknowledged and send it again to the next collector, so a crash loses nothing the apps still
hold. A range a publisher skipped is counted as a gap when it is seen missing, and taken back
(``recovered``) when a resend fills it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from ... import categories as cats
from ... import wire
from ..pipeline import Pipeline
from .sequence import Acks, Sequences
from .zmq_endpoint import (  # noqa: F401  # EndpointInUse, InsecureEndpoint, is_loopback_tcp: this module's API too
    EndpointInUse,
    InsecureEndpoint,
    _ipc_path,
    _tcp_host,
    is_loopback_tcp,
    setup_curve,
)

if TYPE_CHECKING:
    from ..config import CurveConfig

log = logging.getLogger("otel_telemetry.collector.zmq")

ACK_EVERY = 0.05  # seconds between acknowledgement rounds while messages keep arriving
# libzmq drops the connection of a peer whose frame passes ZMQ_MAXMSGSIZE, and says nothing. Up to
# this many times ``max_message_bytes`` a frame is taken and rejected (``too_large``, counted) and its
# sender stays connected; past it the disconnect shows in ``disconnects_without_goodbye`` (from the
# socket monitor), with apps that died without saying goodbye.
OVERSIZE_FACTOR = 2


class ZmqReceiver:
    """Lifecycle: ``start()`` binds (errors raise here, at start-up); the receive loop runs on its
    own thread; ``shutdown(timeout)`` is idempotent and safe before ``start()``."""

    def __init__(self, endpoint: str, pipeline: Pipeline, *, checkpoints: dict[tuple[bytes, str], int],
                 max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES, rcvhwm: int = 10000,
                 curve: CurveConfig | None = None) -> None:
        self.endpoint = endpoint
        self._curve = curve
        self._auth: ThreadAuthenticator | None = None
        self._pipeline = pipeline
        self._seq = Sequences(checkpoints)
        self._acks = Acks()
        self._max_bytes = max_message_bytes
        self._rcvhwm = rcvhwm
        self._lock = threading.Lock()
        self.received = 0
        self.messages = 0
        self.rejected: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.byes = 0
        self.live_spans = {"received": 0, "rejected": 0, "dropped": 0}  # started records: not records
        self.acks_sent = 0
        self.disconnects = 0
        self.disconnects_without_goodbye = 0
        self._bye_fds: set[int] = set()  # connections (their fd) whose publisher said goodbye
        # With CURVE: publisher id -> the client key (ZAP user id) that first used it in this process.
        self._owners: dict[bytes, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._lockfile: Any = None
        self._drain_until = 0.0
        # Set when a batch could not be handed to the store at shutdown: nothing after it may be
        # committed, or its checkpoint (and acknowledgement) would pass the records not stored.
        self._cut_off = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Called on the service's main thread; raises EndpointInUse / InsecureEndpoint / zmq errors.

        tcp:// needs ``receivers.zmq.curve`` (CURVE + a ZAP allow-list of client keys): CURVE alone
        accepts any client key (FINDINGS §2). A loopback tcp:// endpoint without it is allowed with
        a warning (only local processes can reach it, as with ipc://); any other is refused.
        """
        if _tcp_host(self.endpoint) is not None and self._curve is None:
            if not is_loopback_tcp(self.endpoint):
                raise InsecureEndpoint(
                    f"{self.endpoint} is reachable from other hosts but receivers.zmq.curve is not configured; "
                    "configure CURVE (otel-telemetry keys generate) or bind tcp://127.0.0.1 / ipc://")
            log.warning("%s: plaintext ZeroMQ without CURVE (loopback only); any local process may publish",
                        self.endpoint)
        path = _ipc_path(self.endpoint)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # A second bind() on an ipc path silently steals it (FINDINGS §2): hold a lock instead.
            self._lockfile = open(str(path) + ".lock", "w")  # noqa: SIM115 - held for our lifetime
            try:
                fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lockfile.close()
                self._lockfile = None
                raise EndpointInUse(f"{self.endpoint} is held by another running collector") from None
            if path.exists():
                path.unlink()  # stale socket of a collector that died; we hold the lock now
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-zmq-receiver", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._start_error is not None:
            self._release_lock()
            raise self._start_error

    def shutdown(self, timeout: float = 5.0) -> bool:
        # What the socket already holds is processed before it closes (bounded by the timeout):
        # closing with LINGER 0 alone would throw away records the apps counted as sent.
        self._drain_until = time.monotonic() + max(0.0, timeout) * 0.8
        self._stop.set()
        ok = True
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            ok = not self._thread.is_alive()
        self._release_lock()
        return ok

    def _release_lock(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def counters(self) -> dict[str, Any]:
        """Snapshot for the status table (any thread)."""
        with self._lock:
            mine = {"received": self.received, "messages": self.messages, "rejected": dict(self.rejected),
                    "dropped": dict(self.dropped), "byes": self.byes, "acks_sent": self.acks_sent,
                    "disconnects": self.disconnects,
                    "disconnects_without_goodbye": self.disconnects_without_goodbye,
                    "live_spans": dict(self.live_spans)}
        return {**mine, **self._seq.counters()}

    # -- receive thread -------------------------------------------------------------------------
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.XSUB)  # XSUB: it can also send (acknowledgements) to the publishers
        try:
            if self._curve is not None:
                self._auth = setup_curve(ctx, sock, self._curve, self.endpoint)
            sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
            sock.setsockopt(zmq.MAXMSGSIZE, OVERSIZE_FACTOR * self._max_bytes + 4096)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(self.endpoint)
            path = _ipc_path(self.endpoint)
            if path is not None:
                os.chmod(path, 0o600)
            sock.send(b"\x01" + cats.TOPIC_PREFIX.encode())  # subscribe (XSUB: a message)
            sock.send(b"\x01" + wire.ACKS_SUBSCRIPTION)  # apps then wait for our acknowledgements at exit
        except Exception as exc:
            self._start_error = exc
            self._ready.set()
            sock.close(0)
            self._stop_auth()
            ctx.term()
            return
        self._ready.set()
        log.info("listening on %s", self.endpoint)
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                self._send_acks(sock)
                if not poller.poll(int(ACK_EVERY * 1000)):
                    continue
                self._receive(sock)
                # After the data socket is drained: a goodbye sent before a disconnect is seen first.
                while not self._stop.is_set():
                    try:
                        event = recv_monitor_message(monitor, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._receive(sock)
                    self._disconnected(int(event["value"]))
            self._drain(sock)
            self._send_acks(sock)
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)
            self._stop_auth()
            ctx.term()

    def _receive(self, sock: zmq.Socket) -> None:
        """Receive thread: handle every message the socket holds now (acknowledging as it goes)."""
        next_acks = time.monotonic() + ACK_EVERY
        while not self._stop.is_set() and self._receive_one(sock):
            if time.monotonic() >= next_acks:
                self._send_acks(sock)
                next_acks = time.monotonic() + ACK_EVERY

    def _receive_one(self, sock: zmq.Socket) -> bool:
        """Receive thread: handle one message if there is one."""
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        first = frames[0]
        # The connection (its fd) ties a goodbye to a disconnect; with CURVE, the ZAP user id
        # (the client's public key) ties a publisher id to the key that may use it.
        user = fd = None
        with contextlib.suppress(zmq.ZMQError):
            fd = first.get(zmq.SRCFD)
        if self._curve is not None:
            try:
                user = first.get("User-Id")
            except zmq.ZMQError:
                user = ""  # CURVE without a user id: never matches a key, so it cannot take one's publisher id
        self.handle([f.bytes for f in frames], user=user, fd=fd)
        return True

    def _disconnected(self, fd: int) -> None:
        with self._lock:
            self.disconnects += 1
            if fd in self._bye_fds:
                self._bye_fds.discard(fd)
            else:  # an app that died, or a frame past OVERSIZE_FACTOR x the limit (libzmq cut it off)
                self.disconnects_without_goodbye += 1

    def _drain(self, sock: zmq.Socket) -> None:
        """Receive thread, at shutdown: handle every message already queued in the socket."""
        drained = 0
        while time.monotonic() < self._drain_until:
            if not self._receive_one(sock):
                break
            drained += 1
        if drained:
            log.info("drained %d queued messages before closing", drained)

    def _send_acks(self, sock: zmq.Socket) -> None:
        """Receive thread: one acknowledgement per publisher with news (XSUB sends it to every
        connected app; a full pipe drops it for that app, and the next one covers it)."""
        for publisher, seqs in self._acks.take().items():
            try:
                sock.send(wire.encode_ack(publisher, seqs), zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            self.acks_sent += 1

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def _reject(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + n

    def handle(self, frames: list[bytes], user: str | None = None, fd: int | None = None) -> None:
        """Process one message; never raises (every failure is a counted rejection). ``user``: the
        CURVE client key it came with (ZAP user id); ``fd``: its connection."""
        try:
            self._handle(frames, user, fd)
        except Exception:
            log.exception("unexpected error handling a message; rejected")
            self._reject("internal_error")

    def _handle(self, frames: list[bytes], user: str | None = None, fd: int | None = None) -> None:
        try:
            header = wire.decode_header(frames)
        except wire.WireError as exc:
            self._reject(exc.reason)
            log.debug("rejected frame: %s", exc)
            return
        # A count from an undecoded header is a claim: a record takes at least one byte of payload,
        # so no frame can make a counter grow by more than its own size.
        claimed = max(1, min(header.count, len(frames[2])))
        if user is not None:
            with self._lock:
                owner = self._owners.setdefault(header.publisher, user)
            if owner != user:  # another key using this publisher id: forged sequences, goodbyes, uids
                self._reject("publisher_key_mismatch", claimed)
                return
        live = header.kind == wire.KIND_SPAN_STARTED  # a preview, outside the numbered records
        if len(frames[2]) > self._max_bytes:
            if live:
                self._reject_started(claimed)
            else:
                self._reject("too_large", claimed)
            self._settled(header, frames[0], claimed)
            return
        try:
            decoded = wire.decode_payload(header, frames[2])
        except wire.WireError as exc:
            if live:
                self._reject_started(claimed)
            else:
                self._reject(exc.reason, claimed)
            self._settled(header, frames[0], claimed)
            return
        topic = frames[0].decode("utf-8", "replace")
        if header.kind == wire.KIND_BYE:
            assert isinstance(decoded, dict)
            self._bye(header.publisher, decoded)
            if fd is not None:
                with self._lock:
                    self._bye_fds.add(fd)
            return
        parsed = cats.parse_topic(topic)
        if parsed is None:
            if live:
                self._reject_started(header.count)
            else:
                self._reject("bad_topic", header.count)
            return
        resource, records = decoded  # type: ignore[misc]
        if live:
            self._started(header, parsed, resource, records)
            return
        key = (header.publisher, topic)
        # The checkpoint, and what may be acknowledged once this batch is committed (batches
        # commit in order): everything below the first range still missing (sequence.py).
        safe = self._seq.observe(key, parsed[0], header.seq, header.count)
        if safe is None:
            # More records than every buffer between an app and us can hold: not a loss but a
            # forged or corrupt sequence number (counted, and the publisher's numbering kept).
            self._reject("bad_sequence", header.count)
            return
        with self._lock:
            self.messages += 1
            self.received += header.count
        kind = wire.KIND_NAMES[header.kind]
        # Flagged frames: the app left redaction to us. Others were redacted in the app (redacted
        # again only with redaction.redact_zmq).
        resource, records, dropped = self._pipeline.redact(kind, resource, records, "zmq", header.redact)
        if dropped:
            self._reject("redaction_error", dropped)
        rows, records, bad, first = self._pipeline.map_each(
            kind, resource, records, parsed, header.publisher + frames[0] + header.seq.to_bytes(8, "big"))
        if bad:  # only the records that cannot be stored (e.g. a start time past 2^63 ns)
            log.debug("invalid records in %s: %s", topic, first)
            self._reject("invalid_record", bad)
        # An empty batch still carries the checkpoint, so the rejected range is not a gap later.
        self._submit(kind, resource, records, rows, {key: safe}, lambda: self._acks.committed({key: safe}))

    def _settled(self, header: wire.Header, topic_frame: bytes, count: int) -> None:
        """A data message rejected whole (and counted so): its numbers are taken, so the records are
        not counted a second time as a gap, and acknowledged once committed (no resend for ever)."""
        if header.kind in (wire.KIND_BYE, wire.KIND_SPAN_STARTED):  # never numbered
            return
        topic = topic_frame.decode("utf-8", "replace")
        parsed = cats.parse_topic(topic)
        if parsed is None:
            return  # no topic to number it under: the next message's gap says nothing about it
        key = (header.publisher, topic)
        safe = self._seq.observe(key, parsed[0], header.seq, count)
        if safe is not None:
            self._submit(wire.KIND_NAMES.get(header.kind, "span"), {}, [], [], {key: safe},
                         lambda: self._acks.committed({key: safe}))

    def _started(self, header: wire.Header, topic: tuple[str, str], resource: dict[str, Any],
                 records: list[Any]) -> None:
        """Started spans (live spans): redacted and mapped like spans, kept by the store until
        their span arrives. Never numbered, acknowledged or counted as records; a full store
        queue drops them (counted) rather than slowing the apps."""
        resource, records, failed = self._pipeline.redact("span", resource, records, "zmq", header.redact)
        rows, bad = self._pipeline.started(resource, records, topic)
        ok = bool(rows) and self._pipeline.submit_started(rows)
        with self._lock:
            c = self.live_spans
            c["received"] += len(records) + failed
            c["rejected"] += failed + bad
            if rows and not ok:
                c["dropped"] += len(rows)

    def _reject_started(self, n: int) -> None:
        with self._lock:
            self.live_spans["rejected"] += n

    def _bye(self, publisher: bytes, next_seqs: dict[str, int]) -> None:
        with self._lock:
            self.byes += 1
        for topic, final in next_seqs.items():
            parsed = cats.parse_topic(topic)
            if parsed is not None and not self._seq.bye((publisher, topic), parsed[0], final):
                self._reject("bad_sequence")
        log.debug("publisher %s said goodbye", publisher.hex()[:8])

    def _submit(self, kind: str, resource: dict[str, Any], records: list[Any], rows: list[tuple[Any, ...]],
                checkpoints: dict[tuple[bytes, str], int], on_commit: Any = None) -> None:
        # Wait with the batch in hand while the writer is behind: the socket's HWM does the rest.
        submit = self._pipeline.submit
        if self._cut_off:  # an earlier batch was not stored: neither is this one, nor acknowledged
            self._count_shutdown_drop(len(rows))
            return
        while not submit(kind, resource, records, rows, checkpoints=checkpoints, timeout=0.1, on_commit=on_commit):
            if self._stop.is_set():
                # Give the writer one last bounded chance before counting the loss.
                if not submit(kind, resource, records, rows, checkpoints=checkpoints, timeout=1.0,
                              on_commit=on_commit):
                    # Not acknowledged, so the app sends it again to the next collector; and no
                    # later batch may be committed past it (this collector is stopping anyway).
                    self._cut_off = True
                    self._count_shutdown_drop(len(rows))
                return

    def _count_shutdown_drop(self, n: int) -> None:
        with self._lock:
            self.dropped["shutdown"] = self.dropped.get("shutdown", 0) + n
