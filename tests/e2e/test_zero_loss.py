"""Zero loss across collector crashes and restarts (issue 15 items 2, 9, 10, 11).

The collector acknowledges what it has committed; the app keeps what it sent and the collector
has not acknowledged, holds what it emits while no collector listens (both bounded by
``replay_buffer``), and sends it all to the next collector. The store is idempotent on uid, so
nothing is stored twice. A real app process emits at 3,000 spans/s while a real collector process
is killed or restarted under it; every span must be stored exactly once, with no drop, no gap
and nothing left unacknowledged.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import CollectorProc, producer_result, run_producer, wait_for

pytestmark = pytest.mark.heavy  # see tests/conftest.py: never next to another heavy test

RATE = 3000


def _stored(c: CollectorProc) -> int:
    return c.rows("SELECT count(*) FROM records")[0][0] if Path(c.db).exists() else 0


def _check_exact(c: CollectorProc, r: dict) -> None:
    counters = r["counters"]
    # The app's shutdown waits for the collector's confirmation; on a machine loaded enough that
    # the collector falls far behind 3,000 spans/s it may run out of time (shutdown_ok false, the
    # rest reported unacknowledged). What counts is below: every record is in the store once.
    assert r["shutdown_ok"] or counters["replay"]["unacknowledged"], counters["replay"]
    assert counters["dropped"] == {}, counters
    assert counters["replay"]["unacknowledged"] == 0, counters["replay"]
    assert c.rows("SELECT count(*) - count(DISTINCT uid) FROM records") == [(0,)]  # no duplicates
    z = c.status()["zmq"]
    why = (counters["replay"], {k: z.get(k) for k in ("gaps", "gaps_total", "recovered", "received", "rejected")})
    assert _stored(c) == counters["emitted"] == sum(r["emitted"].values()), why  # 0 lost
    assert c.status()["zmq"]["gaps_total"] == 0


@pytest.mark.timeout(900)  # five collector start-ups: slow on a loaded machine, never timed
@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_collector_killed_or_restarted_five_times_loses_nothing(tmp_path: Path, how: str) -> None:
    c = CollectorProc(tmp_path).start()
    ready = tmp_path / "ready"
    stop = tmp_path / "stop"
    # What is tested here is the resend across crashes, not the replay bound: on a machine loaded
    # enough that the collector falls behind 3,000 spans/s, the unconfirmed backlog can pass the
    # default 65,536 records, and the oldest are then given up and counted (evicted, then gaps:
    # seen with two CPU hogs, books exact). A bound that covers the whole run keeps that apart.
    proc = run_producer(c.endpoint, "--spans", str(RATE * 600), "--rate", str(RATE), "--ready-file", str(ready),
                        "--stop-file", str(stop), "--shutdown-timeout", "240", "--replay-buffer", str(1 << 19),
                        wait=False)
    wait_for(ready.exists, what="producer running")
    for _ in range(5):
        # About two seconds of traffic reach the store, then the collector dies (or stops).
        mark = _stored(c)
        wait_for(lambda m=mark: _stored(c) >= m + 2 * RATE, timeout=60,  # type: ignore[misc]
                 what="two seconds of traffic stored")
        if how == "kill9":
            c.kill9()
        else:
            assert c.stop(signal.SIGTERM) == 0
        c.start()
    mark = _stored(c)
    wait_for(lambda: _stored(c) >= mark + RATE, timeout=60, what="traffic after the last restart")
    stop.touch()
    r = producer_result(proc, timeout=300)  # type: ignore[arg-type]
    # The last acknowledgements reach the app before it exits (shutdown waits for them).
    assert c.stop() == 0
    _check_exact(c, r)


@pytest.mark.timeout(600)
def test_collector_down_for_ten_seconds_within_the_bound(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path).start()
    ready = tmp_path / "ready"
    proc = run_producer(c.endpoint, "--spans", str(RATE * 16), "--rate", str(RATE), "--ready-file", str(ready),
                        "--shutdown-timeout", "120", wait=False)
    wait_for(ready.exists, what="producer running")
    wait_for(lambda: _stored(c) >= RATE, what="a second of traffic stored")
    c.kill9()
    time.sleep(10)  # the outage itself (30,000 spans at 3,000/s: within the 65,536-record bound)
    assert proc.poll() is None
    c.start()
    r = producer_result(proc, timeout=300)  # type: ignore[arg-type]
    assert c.stop() == 0
    _check_exact(c, r)
    assert r["counters"]["replay"]["resent"] > 0  # what the dead collector had not committed


def test_app_exits_while_no_collector_listens_counts_what_it_could_not_deliver(tmp_path: Path) -> None:
    """Item 10: the collector stops, the app keeps emitting and exits before any collector
    returns. What it emitted meanwhile is counted (no_collector), never reported as sent."""
    c = CollectorProc(tmp_path).start()
    ready = tmp_path / "ready"
    proc = run_producer(c.endpoint, "--spans", str(RATE * 4), "--rate", str(RATE), "--ready-file", str(ready),
                        "--join-timeout", "0.5", "--shutdown-timeout", "2", wait=False)  # no collector returns
    wait_for(ready.exists, what="producer running")
    wait_for(lambda: _stored(c) >= RATE, what="a second of traffic stored")
    assert c.stop() == 0
    r = producer_result(proc)  # type: ignore[arg-type]
    counters = r["counters"]
    assert set(counters["dropped"]) == {"no_collector"} and counters["dropped"]["no_collector"] > 0
    # What came after the collector left was held for the next one and counted when the app
    # exited without one; what had been sent is stored, or still reported unacknowledged (a
    # message the collector did not take before it closed): never both, never neither.
    stored, unconfirmed = _stored(c), counters["replay"]["unacknowledged"]
    assert stored <= counters["sent"] <= stored + unconfirmed
    assert counters["sent"] + counters["dropped"]["no_collector"] == counters["emitted"] == sum(r["emitted"].values())
