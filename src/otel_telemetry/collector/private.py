"""Telemetry files readable by their owner only (issue 15 item 3).

The collector runs with umask 077, so everything it creates (the database and its WAL and SHM, the
alert state file, forward queues, their directories) is 0600 / 0700. Files an older version left
group- or world-readable are tightened at start-up, with one log line; a group- or
world-readable directory holding the database is reported, not changed (it may be the user's own
directory, shared on purpose).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..store import location
from ..store.alert_state import ack_path
from .alerts.engine import state_path
from .config import CollectorConfig

log = logging.getLogger("otel_telemetry.collector")

PRIVATE_UMASK = 0o077


def telemetry_paths(cfg: CollectorConfig) -> list[str]:
    """Every file and directory the collector keeps telemetry in, whether it exists yet or not."""
    remote = location.parse(cfg.db).is_remote  # direct to a server: no database file here
    paths = [] if remote else [cfg.db + suffix for suffix in ("", "-wal", "-shm")]
    if cfg.alerts is not None:
        state = state_path(cfg.db, cfg.alerts)
        paths += [state + suffix for suffix in ("", "-wal", "-shm")]
        paths += [ack_path(state) + suffix for suffix in ("", "-wal", "-shm")]
    for target in cfg.forward:
        if target.queue_dir:
            paths.append(target.queue_dir)
            qdir = Path(target.queue_dir)
            if qdir.is_dir():
                paths += [str(p) for p in qdir.iterdir()]
    return paths


def tighten(paths: Iterable[str]) -> list[str]:
    """Remove group and other permissions from those of ``paths`` that exist; the changed ones."""
    changed = []
    for path in paths:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:  # not there (yet): created private under the umask
            continue
        if mode & 0o077:
            try:
                os.chmod(path, mode & 0o700)
            except OSError as exc:
                log.warning("cannot make %s private (%s)", path, exc.strerror)
                continue
            changed.append(path)
    return changed


def make_private(cfg: CollectorConfig) -> None:
    """Start-up, before any file is opened: the umask, then the files already there."""
    os.umask(PRIVATE_UMASK)
    changed = tighten(telemetry_paths(cfg))
    if changed:
        log.info("made %d telemetry file(s) readable by their owner only: %s", len(changed), ", ".join(changed))
    if location.parse(cfg.db).is_remote:
        return
    parent = os.path.dirname(os.path.abspath(cfg.db))
    with contextlib.suppress(OSError):  # not there: created (0700) when the store opens
        if stat.S_IMODE(os.stat(parent).st_mode) & 0o077:
            log.warning("%s (holding the database) is readable by other users: `chmod 700` it unless that "
                        "is meant", parent)
