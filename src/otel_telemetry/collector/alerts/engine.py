"""Alert engine: evaluates rules against the store on its own thread and runs each rule's lifecycle.

Lifecycle of one rule (``ok`` → ``pending`` → ``firing`` → ``ok``):

* condition met while ``ok``: ``pending`` from that evaluation's time;
* ``pending`` becomes ``firing`` once the condition has held for ``for`` AND at least ``cooldown``
  has passed since the rule's last resolve; only then is one ``alert.triggered`` sent;
* condition not met while ``pending``: back to ``ok`` silently; while ``firing``: ``resolved``,
  one ``alert.resolved`` sent.

So every firing episode notifies exactly once when it starts and once when it ends (dedupe), and a
flapping condition cannot re-notify within ``cooldown`` of a resolve; if it still holds when the
cooldown ends the rule fires then. State and history live in a separate SQLite file
(``<db>.alerts.db`` by default) written only by the engine, so the collector's single writer of
the main database is untouched; the main database is only read. Firing state survives a restart,
so a restarted collector does not notify again for an episode already announced.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from ...store.alert_state import LIST_STATES, STATE_DDL, list_alerts, open_state
from ...store.alert_state import default_path as default_state_path
from ...store.writer import open_reader
from . import callwindow, summary
from .callwindow import CallWindow
from .config import AlertConfig, parse_alert_config
from .notify import RESOLVED, SUMMARY, TRIGGERED, AlertEvent, Notifier
from .rules import AlertRule, rule_value

__all__ = ["LIST_STATES", "STATE_DDL", "AlertConfig", "AlertEngine", "AlertRule", "RuleResult", "list_alerts",
           "parse_alert_config", "preview", "preview_events", "state_path"]

log = logging.getLogger("otel_telemetry.collector.alerts.engine")
_NS = 1_000_000_000
def state_path(db_path: str, config: AlertConfig) -> str:
    """Where alert state lives: ``state_db`` from the config, else ``<db>.alerts.db`` (for a
    server URL: ``alert_state.default_path``)."""
    return config.state_db or default_state_path(db_path)


@dataclass
class _State:
    state: str = "ok"
    pending_since: int | None = None
    episode: int | None = None
    last_resolved: int | None = None


@dataclass(frozen=True)
class RuleResult:
    rule: AlertRule
    value: float | None
    met: bool
    state: str                       # after this evaluation: ok | pending | firing
    transition: str | None = None    # fired | resolved | None
    error: str | None = None


class AlertEngine:
    """Evaluates ``config.rules`` every ``config.interval_s`` on its own thread."""

    def __init__(self, db_path: str, config: AlertConfig, *, clock: Callable[[], int] = time.time_ns,
                 notifier: Notifier | None = None) -> None:
        """Open (creating) the alert state file and load saved state (caller's thread).

        Raises apsw.Error if the state file cannot be opened: a start-up error, not a silent one.
        ``notifier`` defaults to one built from ``config.notify``; the engine starts and stops a
        notifier it built, and only submits to one it was given.
        """
        self._db_path = db_path
        self._config = config
        self._clock = clock
        self._own_notifier = notifier is None
        self._notifier = notifier if notifier is not None else Notifier(config.notify)
        self._lock = threading.Lock()  # serialises evaluate_once
        self._stats_lock = threading.Lock()  # only the counters: stats() must not wait for a round
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._reader: apsw.Connection | None = None
        self._state_db = open_state(state_path(db_path, config))
        self._states = self._load_states()
        self._save_rules()
        # Rules over all GenAI calls (the defaults) read only new rows each round (callwindow.py).
        spans = [r.window_s for r in config.rules if callwindow.serves(
            r.source, r.kind, r.field, r.aggregation, bool(r.filter or r.attributes))]
        self._calls = CallWindow(max(spans)) if spans else None
        self._stats = dict.fromkeys(("rounds", "errors", "fired", "resolved", "notify_dropped", "no_db"), 0)

    # ---- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the notifier and the evaluation thread (caller's thread). Idempotent."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="otel-alerts", daemon=True)
        if self._own_notifier:
            self._notifier.start()
        self._thread.start()

    def shutdown(self, timeout: float) -> bool:
        """Stop evaluating, stop an owned notifier, close connections (caller's thread). Idempotent.

        True if everything stopped within ``timeout``. Never waits on a webhook beyond ``timeout``.
        """
        self._stop.set()
        thread = self._thread
        ok = True
        if thread is not None:
            thread.join(timeout)
            ok = not thread.is_alive()
        if self._own_notifier:
            ok = self._notifier.shutdown(timeout) and ok
        with self._lock:
            if not self._closed and (thread is None or not thread.is_alive()):
                self._closed = True
                for conn in (self._reader, self._state_db):
                    if conn is not None:
                        conn.close()
                self._reader = None
        return ok

    def stats(self) -> dict[str, Any]:
        """Engine counters plus the notifier's under ``notify`` (any thread). Never waits for a
        round: the store writer's thread calls it for every status row."""
        with self._stats_lock:
            out: dict[str, Any] = dict(self._stats)
        out["notify"] = self._notifier.stats()
        # Each rule's state (ok | pending | firing); list() copies in one step under the GIL.
        out["states"] = {rule: st.state for rule, st in list(self._states.items())}
        return out

    def evaluate_once(self, now_ns: int | None = None) -> list[RuleResult]:
        """Evaluate every rule at ``now_ns`` (default: the clock), advance lifecycles, persist state,
        queue notifications. Runs on the engine thread, or on the caller's when not started.

        Only reads the main database; never waits for a notification to be delivered.
        """
        now = self._clock() if now_ns is None else now_ns
        with self._lock:
            if self._closed:
                return []
            reader = self._main_reader()
            results: list[RuleResult] = []
            events: list[tuple[int | None, AlertEvent]] = []
            try:
                calls = self._update_calls(reader, now)
                with self._state_db:  # one transaction per round
                    for rule in self._config.rules:
                        results.append(self._step(reader, rule, now, events, calls))
                    self._daily_summary(reader, now, events)
            finally:
                # No connection to the store stays open between rounds: the writer's checkpoints
                # and its shutdown never meet a reader of ours.
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            self._bump("rounds")
        for episode, ev in events:
            if self._notifier.submit(ev):
                with self._lock:
                    if not self._closed and episode is not None:
                        self._state_db.execute("UPDATE alert_history SET notified = notified + 1 WHERE id = ?",
                                               (episode,))
            else:
                self._bump("notify_dropped")
        return results

    def _bump(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    # ---- engine thread (or evaluate_once's caller), under self._lock -------------------------------

    def _run(self) -> None:
        """Engine thread: evaluate, then sleep ``interval`` until shutdown."""
        while not self._stop.is_set():
            try:
                self.evaluate_once()
            except Exception:
                log.exception("alert evaluation round failed")
                self._bump("errors")
            self._stop.wait(self._config.interval_s)

    def _main_reader(self) -> apsw.Connection | None:
        if self._reader is None:
            if not os.path.exists(self._db_path):
                self._bump("no_db")
                return None
            try:
                self._reader = open_reader(self._db_path)
            except apsw.Error as exc:
                log.warning("alerts cannot open %s: %s", self._db_path, exc)
                self._bump("no_db")
                return None
        return self._reader

    def _load_states(self) -> dict[str, _State]:
        states: dict[str, _State] = {}
        names = {r.name for r in self._config.rules}
        now = self._clock()
        with self._state_db:
            for rule, state, since, episode, resolved in self._state_db.execute(
                    "SELECT rule, state, pending_since, episode, last_resolved FROM alert_state"):
                if rule in names:
                    states[rule] = _State(state, since, episode, resolved)
            # A rule removed from the config cannot resolve any more: close its episode quietly.
            for rule, episode in list(self._state_db.execute(
                    "SELECT rule, id FROM alert_history WHERE state = 'firing'")):
                if rule not in names:
                    self._state_db.execute(
                        "UPDATE alert_history SET state = 'resolved', resolved = ?, "
                        "message = message || ' [rule removed from config]' WHERE id = ?", (now, episode))
                    self._state_db.execute("DELETE FROM alert_state WHERE rule = ?", (rule,))
        return states

    def _update_calls(self, reader: apsw.Connection | None, now: int) -> CallWindow | None:
        """The call window brought up to ``now``; None (the rules fall back to SQL) if that failed."""
        if self._calls is None or reader is None:
            return None
        try:
            self._calls.update(reader, now)
            return self._calls
        except apsw.Error as exc:
            self._bump("errors")
            log.warning("alert call window: %s", exc)
            self._calls = CallWindow(self._calls.span_ns / _NS)  # start over next round
            return None

    def _step(self, reader: apsw.Connection | None, rule: AlertRule, now: int,
              events: list[tuple[int | None, AlertEvent]], calls: CallWindow | None = None) -> RuleResult:
        st = self._states.setdefault(rule.name, _State())
        if reader is None:
            return RuleResult(rule, None, False, st.state, error="no database yet")
        try:
            value = rule_value(reader, rule, now, calls)
        except apsw.Error as exc:
            self._bump("errors")
            log.warning("alert rule %s: %s", rule.name, exc)
            return RuleResult(rule, None, False, st.state, error=str(exc))
        met = rule.met(value)
        transition: str | None = None
        db = self._state_db
        if met:
            if st.state == "ok":
                st.state, st.pending_since = "pending", now
            if st.state == "pending":
                held = now - (st.pending_since or now) >= int(rule.for_s * _NS)
                cooled = st.last_resolved is None or now - st.last_resolved >= int(rule.cooldown_s * _NS)
                if held and cooled:
                    msg = rule.describe(value)
                    db.execute(
                        "INSERT INTO alert_history(rule, kind, severity, metric, state, pending_since, fired, "
                        "value, last_value, op, threshold, message) VALUES (?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?)",
                        (rule.name, rule.kind, rule.severity, rule.label, st.pending_since, now, value, value,
                         rule.op, rule.threshold, msg))
                    st.state, st.episode, transition = "firing", db.last_insert_rowid(), "fired"
                    self._bump("fired")
                    events.append((st.episode, self._event(TRIGGERED, rule, now, value, msg)))
            elif st.state == "firing" and st.episode is not None:
                db.execute("UPDATE alert_history SET last_value = ? WHERE id = ?", (value, st.episode))
        elif st.state == "firing":
            msg = f"resolved: {rule.describe(value)}"
            if st.episode is not None:
                db.execute("UPDATE alert_history SET state = 'resolved', resolved = ?, last_value = ? WHERE id = ?",
                           (now, value, st.episode))
                events.append((st.episode, self._event(RESOLVED, rule, now, value, msg)))
            st.state, st.pending_since, st.episode, st.last_resolved = "ok", None, None, now
            transition = "resolved"
            self._bump("resolved")
        elif st.state == "pending":
            st.state, st.pending_since = "ok", None
        db.execute(
            "INSERT OR REPLACE INTO alert_state(rule, state, pending_since, episode, last_resolved, value, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rule.name, st.state, st.pending_since, st.episode, st.last_resolved, value, now))
        return RuleResult(rule, value, met, st.state, transition)

    def _event(self, kind: str, rule: AlertRule, now: int, value: float | None, msg: str) -> AlertEvent:
        return AlertEvent(event_type=kind, rule=rule.name, severity=rule.severity, timestamp_ns=now,
                          metric=rule.label, current_value=value, threshold=rule.threshold, op=rule.op,
                          message=msg, service=self._config.service, environment=self._config.environment,
                          rule_id=rule.id, channels=rule.channels, metadata=self._config.metadata)

    def _save_rules(self) -> None:
        """The configured rules into the state file, for ``alerts list --state rules``, ``stats`` and
        the dashboard (which cannot read the collector's configuration)."""
        with self._state_db:
            self._state_db.execute("DELETE FROM alert_rules")
            for r in self._config.rules:
                self._state_db.execute(
                    "INSERT INTO alert_rules(rule, id, kind, severity, op, threshold, window_s, channels, "
                    "is_default, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.name, r.id, r.kind, r.severity, r.op, r.threshold, r.window_s, json.dumps(list(r.channels)),
                     int(r.default), r.message))

    def _daily_summary(self, reader: apsw.Connection | None, now: int,
                       events: list[tuple[int | None, AlertEvent]]) -> None:
        """Queue the daily summary once per UTC day, at or after ``daily_summary.at``."""
        cfg = self._config.daily_summary
        day = None if cfg is None or reader is None else summary.due(cfg.at_minutes, now)
        if day is None or reader is None or self._state_db.execute(
                "SELECT 1 FROM daily_summaries WHERE day = ?", (day,)).fetchone():
            return
        figures = summary.build(reader, self._state_db, now)
        self._state_db.execute("INSERT INTO daily_summaries(day, sent, body) VALUES (?, ?, ?)",
                               (day, now, json.dumps(figures)))
        events.append((None, AlertEvent(
            event_type=SUMMARY, rule="daily_summary", severity="info", timestamp_ns=now, metric="daily_summary",
            current_value=None, threshold=0.0, op="", message=summary.text(figures), service=self._config.service,
            environment=self._config.environment, rule_id="daily_summary", channels=cfg.channels if cfg else (),
            metadata=self._config.metadata, details=figures)))


def preview(conn: apsw.Connection, config: AlertConfig, now_ns: int) -> list[tuple[AlertRule, float | None, bool]]:
    """Each rule's current value and whether its condition holds, read through ``conn`` without
    touching any alert state (``alerts test``; caller's thread). Raises apsw.Error on SQL errors."""
    out = []
    for rule in config.rules:
        value = rule_value(conn, rule, now_ns)
        out.append((rule, value, rule.met(value)))
    return out


def preview_events(config: AlertConfig, results: list[tuple[AlertRule, float | None, bool]],
                now_ns: int) -> list[AlertEvent]:
    """``alert.triggered`` events for the rules whose condition holds now (``alerts test --notify``)."""
    return [AlertEvent(event_type=TRIGGERED, rule=r.name, severity=r.severity, timestamp_ns=now_ns,
                       metric=r.label, current_value=v, threshold=r.threshold, op=r.op,
                       message=f"[test] {r.describe(v)}", service=config.service,
                       environment=config.environment, rule_id=r.id, channels=r.channels,
                       metadata=config.metadata)
            for r, v, met in results if met]
