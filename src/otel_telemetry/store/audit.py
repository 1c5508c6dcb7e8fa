"""The audit log: who read, exported, purged or changed what, and how many rows it touched.

AICO 002 asks for "audit logging of all telemetry data access". Every CLI command that opens the
store and every dashboard API call appends one JSON line here: ``ts`` (unix ns), ``time``
(ISO-8601, UTC), ``who`` (the OS user, or ``dashboard:<token name>``), ``what`` (command or
route), ``params`` (its filters; never a token), ``rows`` (rows returned or touched, when known)
and ``outcome``.

The log is a file beside the database (``<db>.audit.jsonl``; for a libSQL server URL or a database
on read-only media, one file per store under the data directory), not a table: purge and retention
never touch it, and a reader needs no write access to the store. It is 0600, appended under an
``flock`` (the collector, the dashboard and CLI processes may write at once), and bounded: past
``audit_max_mb`` the oldest entries go first, down to three quarters of the bound. Purging it is
itself an entry.

Appending never raises into the caller: an audit log that cannot be written is logged once per
process and the command goes on (the operator sees why on stderr).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from .. import settings
from . import location

log = logging.getLogger("otel_telemetry.store.audit")

_SECRET_PARAM = re.compile(r"token|password|secret|key", re.IGNORECASE)
_warned = False


def path_for(db: str) -> Path:
    """The audit log of the store ``db`` (a file path or a server URL)."""
    configured = settings.resolve("audit_log")
    if configured:
        return Path(configured)
    loc = location.parse(db)
    if loc.url is None:
        beside = Path(db + ".audit.jsonl")
        if os.access(beside.parent, os.W_OK) or not beside.parent.exists():
            return beside
        # Read-only media (a copied database read in place): the log goes to our data directory.
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(Path(db).resolve()))[-120:]
    else:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", loc.url.split("://", 1)[-1])[:120]
    return Path(settings.default_db_path()).parent / "audit" / f"{name}.jsonl"


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): the number says as much
        return f"uid:{os.getuid()}"


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None or v == () or v is False:
            continue
        out[str(k)] = "(hidden)" if _SECRET_PARAM.search(str(k)) else v
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def append(path: Path, who: str, what: str, params: Mapping[str, Any] | None = None,
           rows: int | None = None, outcome: str = "ok", now_ns: int | None = None) -> None:
    """Add one entry (any thread, any process); never raises."""
    global _warned
    ts = now_ns if now_ns is not None else time.time_ns()
    entry = {"ts": ts, "time": _iso(ts), "who": who, "what": what, "params": _clean_params(params or {}),
             "rows": rows, "outcome": outcome}
    line = orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    try:
        with _locked(path) as fd:
            os.write(fd, line)
            limit = int(settings.resolve("audit_max_mb") * 1024 * 1024)
            if os.fstat(fd).st_size > limit:
                _trim(path, fd, limit * 3 // 4)
    except (OSError, ValueError) as exc:
        if not _warned:
            _warned = True
            log.warning("audit log %s cannot be written (%s); data access is not being audited", path, exc)


def _trim(path: Path, fd: int, keep_bytes: int) -> None:
    """Keep the newest entries that fit in ``keep_bytes`` (lock held; whole lines only)."""
    data = path.read_bytes()
    tail = data[-keep_bytes:]
    cut = tail.find(b"\n") + 1 if len(data) > keep_bytes else 0
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(tail[cut:])
    os.replace(tmp, path)  # later appenders reopen the path; ours is closed right after


def read(path: Path, since_ns: int | None = None, until_ns: int | None = None,
         limit: int | None = None) -> list[dict[str, Any]]:
    """Entries oldest first within [since, until); the newest ``limit`` of them. A line that is not
    an entry (a torn write) is skipped."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for line in f:
            try:
                e = orjson.loads(line)
                ts = int(e["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if (since_ns is None or ts >= since_ns) and (until_ns is None or ts < until_ns):
                out.append(e)
    return out[-limit:] if limit else out


def purge(path: Path, before_ns: int | None, who: str) -> int:
    """Remove the entries older than ``before_ns`` (all when None), then record the purge; returns
    how many went."""
    removed = 0
    if path.exists():
        with _locked(path):
            kept: list[bytes] = []
            for line in path.read_bytes().splitlines(keepends=True):
                try:
                    ts = int(orjson.loads(line)["ts"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    ts = None
                if before_ns is None or (ts is not None and ts < before_ns):
                    removed += 1
                else:
                    kept.append(line)
            tmp = path.with_name(path.name + ".tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(b"".join(kept))
            os.replace(tmp, path)
    append(path, who, "audit purge", {"before": _iso(before_ns) if before_ns is not None else "all"}, removed)
    return removed


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
