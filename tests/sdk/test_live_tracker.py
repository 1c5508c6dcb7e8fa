"""The app-side tracker of spans in progress (``sdk/live.py``), on its own."""

from __future__ import annotations


def test_live_spans_tracker_never_raises_into_the_app() -> None:
    """``on_start`` runs on the app's thread: a span that cannot be weakly referenced is not
    tracked (counted), and a full tracker counts instead of growing."""
    from otel_telemetry.sdk.live import LiveSpans

    class Slotted:  # no __weakref__ slot
        __slots__ = ("end_time",)

    live = LiveSpans(max_tracked=1)
    live.on_start(Slotted())
    assert live.untracked == 1 and not live.waiting()

    class Plain:
        end_time = None

    kept = [Plain(), Plain()]
    live.on_start(kept[0])
    live.on_start(kept[1])  # over the bound
    assert live.untracked == 2 and live.counters()["waiting"] == 1
