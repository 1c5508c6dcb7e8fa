"""Every setting in one declared table, with precedence argument > env > config file > default.

Both sides read this table: the app side through :func:`resolve` (arguments to ``configure()``),
the collector through its config loader, which passes the YAML values as the ``file`` layer.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import categories as cats

log = logging.getLogger("otel_telemetry.settings")


def _runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.access(base, os.W_OK):
        return Path(base) / "otel-telemetry"
    return Path("/tmp") / f"otel-telemetry-{os.getuid()}"


def runtime_dir() -> Path:
    """Per-user runtime directory (ipc socket, alert state of a collector without a database file)."""
    return _runtime_dir()


def _data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "otel-telemetry"


def default_endpoint() -> str:
    return f"ipc://{_runtime_dir() / 'collector.ipc'}"


def default_db_path() -> str:
    return str(_data_dir() / "telemetry.db")


def _float(v: Any) -> float:
    return float(v)


def _int(v: Any) -> int:
    return int(v)


def _str(v: Any) -> str:
    return str(v)


def truthy(raw: Any, what: str = "OTEL_TELEMETRY_REDACT") -> bool:
    """on/off words; anything not understood keeps redaction ON (the safe side), with a warning."""
    if isinstance(raw, bool):
        return raw
    v = str(raw).strip().lower()
    if v in ("0", "false", "no", "off", "disabled"):
        return False
    if v not in ("1", "true", "yes", "on", "enabled", ""):
        log.warning("%s=%r not understood; redaction stays on", what, raw)
    return True


def _on_off(v: Any) -> bool:
    return truthy(v)  # not understood -> on (the safe side), with a warning


def _redact_in_app(v: Any) -> str:
    v = str(v).strip().lower()
    if v not in ("auto", "always"):
        raise ValueError(f"expected auto or always, got {v!r}")
    return v


def _positive(v: Any) -> float:
    f = float(v)
    if not f > 0 or f == float("inf"):
        raise ValueError(f"expected a number > 0, got {v!r}")
    return f


def _count(v: Any) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"expected a whole number >= 0, got {v!r}")
    return n


def _level(v: Any) -> str:
    v = str(v).strip().lower()
    if v not in cats.LEVEL_RANK:
        raise ValueError(f"expected one of {'|'.join(cats.LEVELS)}, got {v!r}")
    return v


def _min_level(v: Any) -> dict[str, str]:
    return cats.per_category(v, _level, "min_level")


def _rate(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"expected a fraction from 0 to 1, got {v!r}")
    r = float(v)
    if not 0.0 <= r <= 1.0:  # also refuses nan
        raise ValueError(f"expected a fraction from 0 to 1, got {v!r}")
    return r


def _sampling(v: Any) -> dict[str, float]:
    return cats.per_category(v, _rate, "sampling")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    w = str(v).strip().lower()
    if w in ("1", "true", "yes", "on"):
        return True
    if w in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "otel-telemetry"


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Callable[[], Any]
    parse: Callable[[Any], Any]
    doc: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("endpoint", "OTEL_TELEMETRY_ENDPOINT", default_endpoint, _str,
                "ZeroMQ endpoint: ipc://PATH (default, local) or tcp://HOST:PORT"),
        Setting("db", "OTEL_TELEMETRY_DB", default_db_path, _str,
                "SQLite database file the collector writes and the CLI reads, or (CLI, dashboard) a "
                "libSQL server URL: http://, https:// or libsql://"),
        Setting("instance", "OTEL_TELEMETRY_INSTANCE", socket.gethostname, _str,
                "collector: this collector's name, stamped on every row it stores (default: host name)"),
        Setting("sync_url", "OTEL_TELEMETRY_SYNC_URL", lambda: None, _str,
                "collector: central libSQL server to ship every stored row to (sync.url)"),
        Setting("queue_size", "OTEL_TELEMETRY_QUEUE_SIZE", lambda: 8192, _int,
                "app side: most spans/records waiting for the sender thread; beyond it, counted drops"),
        Setting("batch_size", "OTEL_TELEMETRY_BATCH_SIZE", lambda: 512, _int,
                "app side: most records in one ZeroMQ message"),
        Setting("join_timeout", "OTEL_TELEMETRY_JOIN_TIMEOUT", lambda: 2.0, _float,
                "app side: seconds to hold records at start-up while waiting for a collector"),
        Setting("send_hwm", "OTEL_TELEMETRY_SEND_HWM", lambda: 1000, _int,
                "app side: ZeroMQ send high-water mark, in messages"),
        Setting("speedups", "OTEL_TELEMETRY_SPEEDUPS", lambda: True, _on_off,
                "the C speed-ups when they were built: the app's span fast path, the collector's OTLP trace "
                "decoder (off = their pure-Python versions)"),
        Setting("export_interval", "OTEL_TELEMETRY_METRIC_INTERVAL", lambda: 10.0, _float,
                "app side: seconds between metric exports"),
        Setting("replay_buffer", "OTEL_TELEMETRY_REPLAY_BUFFER", lambda: 65536, _count,
                "app: records kept until the collector confirms them stored, and held while no "
                "collector listens; sent again to the next collector (0: off)"),
        Setting("audit_log", "OTEL_TELEMETRY_AUDIT_LOG", lambda: None, _str,
                "CLI/dashboard: the audit log file (default: beside the database, <db>.audit.jsonl)"),
        Setting("audit_max_mb", "OTEL_TELEMETRY_AUDIT_MAX_MB", lambda: 8.0, _positive,
                "CLI/dashboard: the audit log's bound; past it the oldest entries go first"),
        Setting("min_level", "OTEL_TELEMETRY_MIN_LEVEL", dict, _min_level,
                "app: records below their category's level are dropped, counted below_level "
                "('warning' or 'system_performance=warning,*=info')"),
        Setting("sampling", "OTEL_TELEMETRY_SAMPLING", dict, _sampling,
                "app: head sampling of traces per category, by the root span's category, kept or "
                "dropped whole, counted sampled_out ('0.1' or 'user_interaction=0.1,*=1')"),
        Setting("sample_logs", "OTEL_TELEMETRY_SAMPLE_LOGS", lambda: False, _bool,
                "app: logs and record_telemetry events follow their trace's sampling decision"),
        Setting("live_spans", "OTEL_TELEMETRY_LIVE_SPANS", lambda: False, _bool,
                "app: announce spans still running after 0.1 s, so the dashboard and `watch "
                "--in-progress` show them before they end (off: no cost)"),
        Setting("curve_server_key", "OTEL_TELEMETRY_CURVE_SERVER_KEY", lambda: None, _str,
                "app side: the collector's CURVE public key (its .key file or the Z85 text); with "
                "curve_client_key_file, the app connects with CURVE (needed for a tcp:// collector)"),
        Setting("curve_client_key_file", "OTEL_TELEMETRY_CURVE_CLIENT_KEY", lambda: None, _str,
                "app side: this app's CURVE secret-key file (.key_secret from `otel-telemetry keys generate`)"),
        Setting("redact", "OTEL_TELEMETRY_REDACT", lambda: True, _on_off,
                "redaction of personal data and secrets (app: before sending; collector: OTLP input); "
                "on by default"),
        Setting("redact_in_app", "OTEL_TELEMETRY_REDACT_IN_APP", lambda: "auto", _redact_in_app,
                "app side: where records are redacted. auto: in the collector when the endpoint stays on "
                "this device (ipc://, loopback tcp://), in the app when it leaves it; always: in the app"),
        Setting("redact_key", "OTEL_TELEMETRY_REDACT_KEY", lambda: None, _str,
                "HMAC-SHA256 key (>= 16 bytes) for pseudonymised ids (user.id, enduser.id, ...)"),
        Setting("redact_key_file", "OTEL_TELEMETRY_REDACT_KEY_FILE", lambda: str(_config_dir() / "redact.key"),
                _str, "file holding the pseudonym key when redact_key is unset; created (0600, random) "
                "on first use"),
        Setting("config", "OTEL_TELEMETRY_CONFIG", lambda: None, _str,
                "collector: path of collector.yaml"),
        Setting("compare_max_spans", "OTEL_TELEMETRY_COMPARE_MAX_SPANS", lambda: 10_000, _int,
                "compare (CLI, dashboard): most spans read; a larger window is sampled, and the answer says so"),
        Setting("metrics_endpoint", "OTEL_TELEMETRY_METRICS_ENDPOINT", lambda: None, _str,
                "collector: HOST:PORT for an opt-in Prometheus /metrics of its own counters (off by default; "
                "e.g. 127.0.0.1:8888)"),
    )
}


def resolve(name: str, argument: Any = None, file: Mapping[str, Any] | None = None) -> Any:
    """Value of setting ``name``: argument, else env var, else config-file value, else default.

    Raises ValueError naming the setting and its source when a value does not parse.
    """
    s = SETTINGS[name]
    for source, value in (("argument", argument), (s.env, os.environ.get(s.env) or None),
                          ("config file", (file or {}).get(name))):
        if value is not None:
            try:
                return s.parse(value)
            except (TypeError, ValueError) as exc:
                why = f" ({exc})" if str(exc) and "could not convert" not in str(exc) \
                    and "invalid literal" not in str(exc) else ""
                raise ValueError(f"setting {name!r} from {source}: cannot use {value!r}{why}") from None
    return s.default()
