"""Alert notifications: generic JSON webhook, Slack, Discord and e-mail (``email.py``), signed, retried,
never blocking.

Every target has its own worker thread and bounded queue. ``Notifier.submit`` only enqueues (never
waits), so a slow or hanging endpoint costs the alert engine nothing: its queue fills, further
events for it are dropped and counted, and the other targets keep delivering.

Delivery: HTTP POST of a JSON body within one deadline per attempt (``timeout``, for the whole
attempt, not per read; the answer is read up to 64 KiB: ``webhook_post.py``); 5xx, 429 and
connection errors are retried a bounded number of times with exponential backoff and jitter;
other 4xx are not retried. Redirects are refused, so requests only ever go to URLs from the
configuration. An optional bearer token
(``Authorization: Bearer ...``) and HMAC-SHA256 signature (``X-Signature-256: sha256=<hex>`` over
the exact body bytes) come from environment variables named in the configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from . import email as email_channel
from . import webhook_post
from .email import EmailSettings

log = logging.getLogger("otel_telemetry.collector.alerts.notify")

TARGET_TYPES = ("webhook", "slack", "discord", "email")
SEVERITIES = ("critical", "error", "warning", "info")  # most severe first; 001 uses ERROR
TRIGGERED = "alert.triggered"
RESOLVED = "alert.resolved"
SUMMARY = "summary.daily"  # the daily summary (003 "Evening Broadcast"); details in AlertEvent.details
_COLORS = {"critical": 0xFF0000, "error": 0xE74C3C, "warning": 0xFFA500, "info": 0x3498DB, "resolved": 0x2ECC71}
_EMOJI = {"critical": "\U0001f6a8", "error": "\u274c",
          "warning": "\u26a0\ufe0f", "info": "\u2139\ufe0f", "resolved": "\u2705"}
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class NotifyTarget:
    """One destination from the ``alerts.notify`` list. Secrets are resolved from the environment
    at configuration time and kept out of ``repr``."""

    type: str
    url: str  # "" for email
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    min_severity: str = "info"
    send_resolved: bool = True
    queue_size: int = 100
    secret: str | None = field(default=None, repr=False)
    bearer: str | None = field(default=None, repr=False)
    name: str = ""  # what a rule's ``channels`` names (default: the type)
    email: EmailSettings | None = None  # type email only

    def wants(self, event: AlertEvent) -> bool:
        if event.channels and self.name not in event.channels and self.type not in event.channels:
            return False
        if event.event_type == SUMMARY:
            return True
        if event.event_type == RESOLVED and not self.send_resolved:
            return False
        return SEVERITIES.index(event.severity) <= SEVERITIES.index(self.min_severity)


@dataclass(frozen=True)
class AlertEvent:
    """A state change of one rule: ``alert.triggered`` when it starts firing, ``alert.resolved``."""

    event_type: str
    rule: str
    severity: str
    timestamp_ns: int
    metric: str
    current_value: float | None
    threshold: float
    op: str
    message: str
    service: str | None = None
    environment: str | None = None
    rule_id: str = ""
    channels: tuple[str, ...] = ()  # the rule's channels; () = every target
    metadata: tuple[tuple[str, str], ...] = ()  # ``alerts.metadata`` (region, ...)
    details: dict[str, Any] | None = None  # the daily summary's figures

    @property
    def iso_time(self) -> str:
        dt = datetime.fromtimestamp(self.timestamp_ns / 1e9, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def generic_payload(ev: AlertEvent) -> dict[str, Any]:
    """The design's webhook event (003: "Webhook Event Format"), plus the rule name and operator."""
    return {
        "event_type": ev.event_type, "severity": ev.severity, "timestamp": ev.iso_time,
        "metric": ev.metric, "current_value": ev.current_value, "threshold": ev.threshold,
        "message": ev.message, "rule": ev.rule, "rule_id": ev.rule_id, "op": ev.op,
        "metadata": {"service": ev.service, "environment": ev.environment, **dict(ev.metadata)},
        **({"summary": ev.details} if ev.details is not None else {}),
    }


def _headline(ev: AlertEvent) -> tuple[str, str]:
    if ev.event_type == SUMMARY:
        return _EMOJI["info"], f"DAILY SUMMARY: {ev.service or 'otel-telemetry'}"
    if ev.event_type == RESOLVED:
        return _EMOJI["resolved"], f"RESOLVED: {ev.rule}"
    return _EMOJI[ev.severity], f"{ev.severity.upper()} ALERT: {ev.rule}"


def _value_text(ev: AlertEvent) -> str:
    if ev.event_type == SUMMARY:
        return "Daily summary"
    value = "no data" if ev.current_value is None else f"{ev.current_value:g}"
    return f"Current: {value} | Threshold: {ev.op} {ev.threshold:g}"


def slack_payload(ev: AlertEvent) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` fallback plus Block Kit ``blocks``."""
    emoji, head = _headline(ev)
    return {
        "text": f"{emoji} {head}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{ev.message}*\n{_value_text(ev)}"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Service:*\n{ev.service or '-'}"},
                {"type": "mrkdwn", "text": f"*Environment:*\n{ev.environment or '-'}"},
                {"type": "mrkdwn", "text": f"*Severity:*\n{ev.severity}"},
                {"type": "mrkdwn", "text": f"*Time:*\n{ev.iso_time}"},
                *({"type": "mrkdwn", "text": f"*{k}:*\n{v}"} for k, v in ev.metadata),
            ]},
        ],
    }


def discord_payload(ev: AlertEvent) -> dict[str, Any]:
    """Discord webhook body: ``content`` line plus one embed with colour and fields."""
    emoji, head = _headline(ev)
    color = _COLORS["resolved" if ev.event_type == RESOLVED else ev.severity]  # a summary is "info"
    return {
        "content": f"{emoji} **{head}**",
        "embeds": [{
            "title": ev.message,
            "description": _value_text(ev),
            "color": color,
            "timestamp": ev.iso_time,
            "fields": [
                {"name": "Service", "value": ev.service or "-", "inline": True},
                {"name": "Environment", "value": ev.environment or "-", "inline": True},
                {"name": "Severity", "value": ev.severity, "inline": True},
                {"name": "Time", "value": ev.iso_time, "inline": True},
                *({"name": k, "value": v, "inline": True} for k, v in ev.metadata),
            ],
        }],
    }


_RENDER: dict[str, Callable[[AlertEvent], dict[str, Any]]] = {
    "webhook": generic_payload, "slack": slack_payload, "discord": discord_payload}


def render(target: NotifyTarget, ev: AlertEvent) -> bytes:
    return orjson.dumps(_RENDER[target.type](ev))


def email_text(ev: AlertEvent) -> tuple[str, str]:
    """(subject, plain-text body) of the e-mail for ``ev``: the message, the figures, the metadata,
    and the generic webhook payload as JSON for mail filters and scripts."""
    _, head = _headline(ev)
    meta = {"service": ev.service, "environment": ev.environment, **dict(ev.metadata)}
    lines = [ev.message, "", _value_text(ev), f"Severity: {ev.severity}", f"Time: {ev.iso_time}",
             *(f"{k}: {v}" for k, v in meta.items() if v is not None), "",
             orjson.dumps(generic_payload(ev), option=orjson.OPT_INDENT_2).decode()]
    return f"{head} ({_value_text(ev)})" if ev.event_type != SUMMARY else head, "\n".join(lines)


def signature(secret: str, body: bytes) -> str:
    """``X-Signature-256`` header value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()



class _Worker:
    """One target's queue and delivery thread."""

    def __init__(self, target: NotifyTarget, owner: Notifier) -> None:
        self.target = target
        self.owner = owner
        self.queue: queue.Queue[AlertEvent | None] = queue.Queue(maxsize=max(1, target.queue_size))
        self.thread = threading.Thread(target=self.run, name=f"otel-notify-{target.type}", daemon=True)

    def run(self) -> None:
        """Worker thread: deliver queued events in order until the ``None`` sentinel."""
        while True:
            if self.owner._stop.is_set() and self.queue.empty():
                return
            ev = self.queue.get()
            try:
                if ev is None:
                    return
                self.owner._deliver(self.target, ev)
            except Exception:  # a bug in delivery must not kill the worker
                log.exception("alert delivery to %s failed", self.target.type)
                self.owner._bump(failed=1)
            finally:
                self.queue.task_done()


class Notifier:
    """Fans alert events out to targets; ``submit`` never blocks (any thread)."""

    def __init__(self, targets: Sequence[NotifyTarget], *,
                 rand: Callable[[], float] = random.random) -> None:
        self._rand = rand
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        self._stats = dict.fromkeys(("submitted", "sent", "failed", "dropped", "retries"), 0)
        self._workers = [_Worker(t, self) for t in targets]

    @property
    def targets(self) -> list[NotifyTarget]:
        return [w.target for w in self._workers]

    def start(self) -> None:
        """Start one delivery thread per target (caller's thread). Idempotent."""
        with self._lock:
            if self._started or self._stop.is_set():
                return
            self._started = True
        for w in self._workers:
            w.thread.start()

    def submit(self, ev: AlertEvent) -> bool:
        """Queue ``ev`` for every target that wants it (any thread; never waits).

        False if any target's queue was full (that copy is dropped and counted) or after shutdown.
        """
        if self._stop.is_set():
            self._bump(dropped=1)
            return False
        ok = True
        for w in self._workers:
            if not w.target.wants(ev):
                continue
            try:
                w.queue.put_nowait(ev)
                self._bump(submitted=1)
            except queue.Full:
                self._bump(dropped=1)
                ok = False
        return ok

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was delivered or given up on (caller's thread)."""
        done = threading.Event()

        def wait_all() -> None:
            for w in self._workers:
                w.queue.join()
            done.set()

        threading.Thread(target=wait_all, name="otel-notify-flush", daemon=True).start()
        return done.wait(timeout)

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting events, let workers finish what is queued, join (caller's thread).

        Idempotent. Pending retries end early; a request already in flight runs to its own
        timeout, and if that outlasts ``timeout`` the daemon worker is left behind and False
        is returned.
        """
        self._stop.set()
        for w in self._workers:
            with contextlib.suppress(queue.Full):
                w.queue.put_nowait(None)  # wakes an idle worker; a busy one sees _stop when drained
        deadline = time.monotonic() + max(0.0, timeout)
        alive = False
        for w in self._workers:
            if w.thread.is_alive():
                w.thread.join(max(0.0, deadline - time.monotonic()))
                alive = alive or w.thread.is_alive()
        return not alive

    def stats(self) -> dict[str, int]:
        """Counter snapshot plus current queue depth (any thread)."""
        with self._lock:
            out = dict(self._stats)
        out["queued"] = sum(w.queue.qsize() for w in self._workers)
        return out

    def _bump(self, **deltas: int) -> None:
        with self._lock:
            for key, n in deltas.items():
                self._stats[key] += n

    def _deliver(self, target: NotifyTarget, ev: AlertEvent) -> None:
        """Worker thread: POST (or mail) with retries; must not raise for network failures."""
        if target.email is not None:
            subject, text = email_text(ev)
            settings = target.email

            def attempt() -> tuple[bool, str | None]:
                return email_channel.send(settings, subject, text, target.timeout)
        else:
            body = render(target, ev)
            headers = {"Content-Type": "application/json", "User-Agent": "otel-telemetry-alerts"}
            if target.bearer:
                headers["Authorization"] = f"Bearer {target.bearer}"
            if target.secret:
                headers["X-Signature-256"] = signature(target.secret, body)

            def attempt() -> tuple[bool, str | None]:
                return self._post(target, body, headers)
        where = "email" if target.email is not None else _safe_url(target.url)
        for n in range(target.retries + 1):
            retry, reason = attempt()
            if reason is None:
                self._bump(sent=1)
                return
            if not retry or n == target.retries or self._stop.is_set():
                log.warning("alert %s to %s %s failed: %s", ev.event_type, target.type, where, reason)
                self._bump(failed=1)
                return
            self._bump(retries=1)
            delay = min(_MAX_BACKOFF_S, target.backoff * 2 ** n) * (0.5 + self._rand())
            if self._stop.wait(delay):
                log.warning("alert %s to %s given up at shutdown", ev.event_type, target.type)
                self._bump(failed=1)
                return

    @staticmethod
    def _post(target: NotifyTarget, body: bytes, headers: dict[str, str]) -> tuple[bool, str | None]:
        """One attempt within ``target.timeout`` in all, the answer read up to 64 KiB (webhook_post)."""
        return webhook_post.post(target.url, body, headers, target.timeout)


def _safe_url(url: str) -> str:
    """URL without its path: Slack/Discord webhook paths are secrets and must not reach the log."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"
