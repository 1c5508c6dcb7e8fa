"""What the app has sent and the collector has not yet acknowledged, kept to send again.

A collector acknowledges records once they are committed to its store (``wire.encode_ack``).
Until then the sent messages stay here, as the exact frames that went out (sequence numbers
included), so that after a collector crash or restart the next collector gets them again. The
store is idempotent on ``uid`` and the receiver counts a resent range it already has as
``replayed``, so a resend never duplicates a row; a range the old collector had lost is filled
(``recovered``), and a gap the new collector counted for it is taken back.

The buffer is bounded in records (``replay_buffer``). Beyond the bound the oldest unacknowledged
message is forgotten: it was sent and may well be stored, so it is not a drop; if it was lost
the collector counts it as a gap. ``evicted`` says how many records lost their protection so.

All methods run with the transport's socket lock held (the sender thread, or an app thread that
sends a batch it encoded): no lock of its own, no blocking, no raising.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

# (seq, count, frames): one message as it went out
Entry = tuple[int, int, list[bytes]]
_Held = tuple[int, int, int, list[bytes]]  # (send order, seq, count, frames)


class ReplayBuffer:
    def __init__(self, max_records: int) -> None:
        self.max_records = max(0, max_records)
        self._by_topic: dict[bytes, deque[_Held]] = {}
        self._n = 0  # messages added so far: the send order, to evict the oldest first
        self.records = 0  # unacknowledged records held
        self.evicted = 0  # records forgotten unacknowledged (bound reached)
        self.acked = 0  # records acknowledged
        self.acks_seen = False  # the collector acknowledges (an older one never does)
        self.acks_promised = False  # a collector subscribed saying it will (wire.ACKS_SUBSCRIPTION)

    @property
    def enabled(self) -> bool:
        return self.max_records > 0

    def add(self, topic: bytes, seq: int, count: int, frames: list[bytes]) -> None:
        """A message was handed to the socket."""
        if not self.max_records:
            return
        q = self._by_topic.get(topic)
        if q is None:
            q = self._by_topic[topic] = deque()
        self._n += 1
        q.append((self._n, seq, count, frames))
        self.records += count
        while self.records > self.max_records:
            # The oldest message of any topic (a handful of topics per app: a short scan).
            oldest = min((d for d in self._by_topic.values() if d), key=lambda d: d[0][0])
            _, _, n, _ = oldest.popleft()
            self.records -= n
            self.evicted += n

    def ack(self, topic: bytes, next_seq: int) -> None:
        """The collector committed every record of ``topic`` below ``next_seq``."""
        self.acks_seen = True
        q = self._by_topic.get(topic)
        while q and q[0][1] + q[0][2] <= next_seq:
            _, _, count, _ = q.popleft()
            self.records -= count
            self.acked += count

    def pending(self) -> Iterator[tuple[bytes, Entry]]:
        """Every unacknowledged message, per topic in sequence order (to send again)."""
        for topic, q in list(self._by_topic.items()):
            for _, seq, count, frames in list(q):
                yield topic, (seq, count, frames)

    def clear(self) -> int:
        """Forget everything (after fork, at exit); returns the records that were unacknowledged."""
        n = self.records
        self._by_topic.clear()
        self.records = 0
        return n
