"""The app's replay buffer (issue 15 item 2): bounded in records, oldest first out, acknowledged
per topic."""

from __future__ import annotations

from otel_telemetry.sdk.replay import ReplayBuffer


def test_acknowledged_messages_leave_and_the_rest_are_resent_in_order() -> None:
    r = ReplayBuffer(100)
    for seq in range(0, 30, 10):
        r.add(b"a", seq, 10, [b"a", b"h%d" % seq, b"p"])
    r.add(b"b", 0, 5, [b"b", b"h", b"p"])
    r.ack(b"a", 15)  # covers the first message only (a message leaves when all of it is covered)
    assert r.records == 25 and r.acked == 10 and r.acks_seen
    assert [(t, seq) for t, (seq, _, _) in r.pending()] == [(b"a", 10), (b"a", 20), (b"b", 0)]


def test_the_bound_forgets_the_oldest_first_and_zero_turns_it_off() -> None:
    r = ReplayBuffer(25)
    r.add(b"a", 0, 10, [])
    r.add(b"b", 0, 10, [])
    r.add(b"a", 10, 10, [])
    assert r.records == 20 and r.evicted == 10
    assert [(t, seq) for t, (seq, _, _) in r.pending()] == [(b"a", 10), (b"b", 0)]
    off = ReplayBuffer(0)
    off.add(b"a", 0, 10, [])
    assert not off.enabled and off.records == 0 and list(off.pending()) == []

