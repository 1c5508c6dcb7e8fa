"""The ``alerts:`` configuration section: rules (``rules.parse_rule``), the built-in default AI
rules, notification targets (webhook, Slack, Discord, e-mail), payload metadata and the daily
summary. Validated at start-up; a ValueError names the offending key.

Default AI rules (004 "Alert Thresholds": success rate < 90 %, P95 latency > 3000 ms, daily cost
> $10) are active without any configuration, over GenAI calls whatever their category. They
deliver to every configured target, so to none until one is set. ``default_rules: false``
switches them off; a rule of the same name or id replaces one of them. They need
``min_samples`` calls in their window before they have a value, so a quiet system never fires.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from .email import EmailSettings
from .notify import SEVERITIES, TARGET_TYPES, NotifyTarget
from .rules import AlertRule, _check_keys, _choice, _duration, _number, parse_rule

DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"name": "AI success rate below 90%", "id": "default_ai_success_rate", "kind": "success_rate",
     "source": "calls", "op": "<", "threshold": 0.9, "window": "1h", "min_samples": 20, "cooldown": "1h",
     "severity": "warning", "message": "AI success rate (GenAI calls, failed ones included)"},
    {"name": "AI P95 latency above 3000 ms", "id": "default_ai_p95_latency", "kind": "threshold",
     "source": "calls", "aggregation": "p95", "op": ">", "threshold": 3000, "window": "1h", "min_samples": 20,
     "cooldown": "1h", "severity": "warning", "message": "AI call P95 latency ms"},
    {"name": "AI daily cost above $10", "id": "default_ai_daily_cost", "kind": "cost_budget", "source": "calls",
     "op": ">",
     "threshold": 10, "window": "1d", "cooldown": "6h", "severity": "warning", "message": "AI cost over 24 h (USD)"},
)

_TOP_KEYS = {"interval", "rules", "notify", "service", "environment", "state_db", "metadata", "default_rules",
             "daily_summary"}
_COMMON_TARGET_KEYS = {"name", "type", "timeout", "retries", "backoff", "min_severity", "send_resolved",
                       "queue_size"}
_HTTP_KEYS = {"url", "secret_env", "bearer_env"}
_EMAIL_KEYS = {"smtp_host", "smtp_port", "starttls", "username", "password_env", "password_file", "from", "to",
               "ca_file"}
_SUMMARY_KEYS = {"at", "channels"}
_AT_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DailySummary:
    """``daily_summary``: sent once a day at ``at`` (UTC, "HH:MM") to ``channels`` (() = every target)."""

    at_minutes: int
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertConfig:
    rules: tuple[AlertRule, ...] = ()
    notify: tuple[NotifyTarget, ...] = ()
    interval_s: float = 15.0
    service: str | None = None
    environment: str | None = None
    state_db: str | None = None  # default: "<db>.alerts.db" next to the main database
    metadata: tuple[tuple[str, str], ...] = ()  # extra payload metadata (003: region, ...)
    daily_summary: DailySummary | None = None


def _env_value(where: str, raw: Any, env: Mapping[str, str]) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{where}: expected an environment variable name, got {raw!r}")
    value = env.get(raw)
    if not value:
        raise ValueError(f"{where}: environment variable {raw} is not set")
    return value


def _email(where: str, raw: Mapping[str, Any], env: Mapping[str, str]) -> EmailSettings:
    host = raw.get("smtp_host")
    if not isinstance(host, str) or not host:
        raise ValueError(f"{where}.smtp_host: required for an email target")
    sender, to = raw.get("from"), raw.get("to")
    if not isinstance(sender, str) or "@" not in sender:
        raise ValueError(f"{where}.from: expected an e-mail address, got {sender!r}")
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise ValueError(f"{where}.to: expected an e-mail address or a list of them, got {raw.get('to')!r}")
    starttls = raw.get("starttls", True)
    if not isinstance(starttls, bool):
        raise ValueError(f"{where}.starttls: expected true or false")
    if "password_env" in raw and "password_file" in raw:
        raise ValueError(f"{where}: set one of password_env or password_file, not both")
    password = _env_value(f"{where}.password_env", raw.get("password_env"), env)
    if raw.get("password_file") is not None:
        path = raw["password_file"]
        try:
            with open(os.path.expanduser(str(path))) as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise ValueError(f"{where}.password_file: cannot read {path!r} ({exc.strerror})") from None
        if not password:
            raise ValueError(f"{where}.password_file: {path!r} is empty")
    username = raw.get("username")
    if username is not None and not isinstance(username, str):
        raise ValueError(f"{where}.username: expected text")
    if password and not username:
        raise ValueError(f"{where}.username: required with a password")
    if password and not starttls:
        raise ValueError(f"{where}.starttls: a password is only sent over STARTTLS")
    ca_file = raw.get("ca_file")
    if ca_file is not None and not (isinstance(ca_file, str) and os.path.isfile(ca_file)):
        raise ValueError(f"{where}.ca_file: no such file {ca_file!r}")
    return EmailSettings(host=host, port=int(_number(f"{where}.smtp_port", raw.get("smtp_port", 587), 1)),
                         starttls=starttls, sender=sender, to=tuple(to), username=username,
                         password=password, ca_file=ca_file)


def parse_target(raw: Any, where: str, env: Mapping[str, str]) -> NotifyTarget:
    _check_keys(where, raw, _COMMON_TARGET_KEYS | _HTTP_KEYS | _EMAIL_KEYS)
    kind = _choice(f"{where}.type", raw.get("type"), TARGET_TYPES)
    wrong = (_HTTP_KEYS if kind == "email" else _EMAIL_KEYS) & set(raw)
    if wrong:
        raise ValueError(f"{where}.{sorted(wrong)[0]}: not used by a {kind} target")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: expected text, got {name!r}")
    url, email = "", None
    if kind == "email":
        email = _email(where, raw, env)
    else:
        url = raw.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    send_resolved = raw.get("send_resolved", True)
    if not isinstance(send_resolved, bool):
        raise ValueError(f"{where}.send_resolved: expected true or false")
    return NotifyTarget(
        type=kind, url=url, name=name, email=email,
        timeout=_duration(f"{where}.timeout", raw.get("timeout", 5)),
        retries=int(_number(f"{where}.retries", raw.get("retries", 3), 0)),
        backoff=_number(f"{where}.backoff", raw.get("backoff", 0.5), 0),
        min_severity=_choice(f"{where}.min_severity", raw.get("min_severity", "info"), SEVERITIES),
        send_resolved=send_resolved,
        queue_size=int(_number(f"{where}.queue_size", raw.get("queue_size", 100), 1)),
        secret=_env_value(f"{where}.secret_env", raw.get("secret_env"), env),
        bearer=_env_value(f"{where}.bearer_env", raw.get("bearer_env"), env))


def _channels(where: str, channels: tuple[str, ...], targets: tuple[NotifyTarget, ...]) -> None:
    known = {t.name for t in targets} | {t.type for t in targets}
    for c in channels:
        if c not in known:
            raise ValueError(f"{where}: channel {c!r} is no notify target's name or type "
                             f"(configured: {', '.join(sorted(known)) or 'none'})")


def _summary(where: str, raw: Any, targets: tuple[NotifyTarget, ...]) -> DailySummary | None:
    if raw is None:
        return None
    _check_keys(where, raw, _SUMMARY_KEYS)
    at = raw.get("at")
    m = _AT_RE.match(at) if isinstance(at, str) else None
    if m is None:
        raise ValueError(f"{where}.at: expected a UTC time HH:MM, got {at!r}")
    channels = raw.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ValueError(f"{where}.channels: expected a list of notify target names or types")
    _channels(f"{where}.channels", tuple(channels), targets)
    return DailySummary(int(m.group(1)) * 60 + int(m.group(2)), tuple(channels))


def parse_alert_config(raw: Any, where: str = "alerts", env: Mapping[str, str] | None = None) -> AlertConfig:
    """The ``alerts:`` section (None or {} for none) → AlertConfig with the default rules unless
    ``default_rules: false``. ValueError names the offending key (start-up)."""
    env = os.environ if env is None else env
    raw = {} if raw is None else raw
    _check_keys(where, raw, _TOP_KEYS)
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise ValueError(f"{where}.rules: expected a list of rules")
    rules = [parse_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(rules_raw)]
    seen: set[str] = set()
    for r in rules:
        if r.name in seen or r.id in seen:
            raise ValueError(f"{where}.rules: duplicate rule name {r.name!r} (or its id {r.id})")
        seen.update((r.name, r.id))
    use_defaults = raw.get("default_rules", True)
    if not isinstance(use_defaults, bool):
        raise ValueError(f"{where}.default_rules: expected true or false, got {use_defaults!r}")
    if use_defaults:
        for d in DEFAULT_RULES:
            if d["name"] not in seen and d["id"] not in seen:
                rules.append(replace(parse_rule(d, f"{where}.default_rules"), default=True))
    notify_raw = raw.get("notify") or []
    if not isinstance(notify_raw, list):
        raise ValueError(f"{where}.notify: expected a list of targets")
    targets = tuple(parse_target(t, f"{where}.notify[{i}]", env) for i, t in enumerate(notify_raw))
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}.notify: targets of the same type need distinct names (name: ...)")
    for i, r in enumerate(rules):
        _channels(f"{where}.rules[{i}] ({r.name}).channels", r.channels, targets)
    for key in ("service", "environment", "state_db"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ValueError(f"{where}.{key}: expected text, got {raw[key]!r}")
    meta = raw.get("metadata") or {}
    if not isinstance(meta, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in meta.items()):
        raise ValueError(f"{where}.metadata: expected a mapping of names to text, e.g. {{region: us-east-1}}")
    return AlertConfig(rules=tuple(rules), notify=targets,
                       interval_s=_duration(f"{where}.interval", raw.get("interval", 15)),
                       service=raw.get("service"), environment=raw.get("environment"),
                       state_db=raw.get("state_db"), metadata=tuple((k, str(v)) for k, v in meta.items()),
                       daily_summary=_summary(f"{where}.daily_summary", raw.get("daily_summary"), targets))

