"""The session context: ``with session(id):`` / ``set_session_id(id)`` tag spans with ``session.id``.

Backed by a contextvar, so it follows threads' own contexts and asyncio tasks (a task created
inside the block inherits the session). ``SessionSpanProcessor`` (added by ``configure()``) copies
it onto every span at start; the collector stores it in the ``session_id`` column.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

log = logging.getLogger("otel_telemetry.sdk.sessions")

_session: ContextVar[str | None] = ContextVar("otel_telemetry_session_id", default=None)


@contextmanager
def session(session_id: str) -> Iterator[str]:
    """Tag every span started inside the block (this thread/task and tasks it creates) with
    ``session.id``; nests and restores the outer session on exit."""
    token = _session.set(str(session_id))
    try:
        yield str(session_id)
    finally:
        _session.reset(token)


def set_session_id(session_id: str | None) -> Token[str | None]:
    """Set (or clear, with None) the session of the current context; returns a token for
    ``reset_session_id``. Prefer ``with session(...)`` where a block exists."""
    return _session.set(None if session_id is None else str(session_id))


def reset_session_id(token: Token[str | None]) -> None:
    _session.reset(token)


def get_session_id() -> str | None:
    return _session.get()


def tag_span(span: Any) -> None:
    """``session.id`` from the session context onto a starting span; never raises (runs on the
    thread that starts the span)."""
    sid = _session.get()
    if sid is not None:
        try:
            span.set_attribute("session.id", sid)
        except Exception:
            log.debug("could not tag span with session.id", exc_info=True)


class SessionSpanProcessor(SpanProcessor):
    """Adds ``session.id`` from the session context to every span at start.

    ``on_start`` runs on the thread that starts the span: one contextvar read, never raises.
    """

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        tag_span(span)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


