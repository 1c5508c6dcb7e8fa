"""Validated request parameters for the dashboard API: every bad value is an :class:`ApiError` (400).

Each endpoint names the parameters it accepts; anything else, a repeated single-valued parameter,
an over-long value or a malformed number is refused before any SQL runs. All functions run on the
request's handler thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..query.filters import QueryError, parse_duration, parse_time

NS = 1_000_000_000
MAX_VALUE_CHARS = 256
MAX_VALUES = 16
WINDOW = ("last", "since", "until")


class ApiError(ValueError):
    """A client error: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Params:
    """Query-string values (``parse_qs`` shape) checked against the names an endpoint accepts."""

    raw: Mapping[str, Sequence[str]]
    allowed: Iterable[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        allowed = set(self.allowed)
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            raise ApiError(f"unknown parameter {unknown[0]!r}; accepted: {', '.join(sorted(allowed)) or 'none'}")
        for name, values in self.raw.items():
            if len(values) > MAX_VALUES:
                raise ApiError(f"parameter {name!r} is repeated more than {MAX_VALUES} times")
            for v in values:
                if len(v) > MAX_VALUE_CHARS:
                    raise ApiError(f"parameter {name!r} is longer than {MAX_VALUE_CHARS} characters")
                if "\x00" in v:
                    raise ApiError(f"parameter {name!r} contains a NUL character")

    def text(self, name: str) -> str | None:
        """The one value of ``name`` (None if absent); empty or repeated values are errors."""
        values = self.raw.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(f"parameter {name!r} given more than once")
        value = values[0].strip()
        if not value:
            raise ApiError(f"parameter {name!r} is empty")
        return value

    def many(self, name: str, choices: Sequence[str] | None = None) -> tuple[str, ...]:
        """All values of ``name`` (also comma-separated), each checked against ``choices``."""
        out: list[str] = []
        for raw in self.raw.get(name, ()):
            for v in raw.split(","):
                v = v.strip()
                if not v:
                    continue
                if choices is not None and v not in choices:
                    raise ApiError(f"{name} {v!r} is not one of {', '.join(choices)}")
                out.append(v)
        return tuple(dict.fromkeys(out))

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None:
            return default
        if value not in choices:
            raise ApiError(f"{name} {value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            n = int(value, 10)
        except ValueError:
            raise ApiError(f"{name} {value!r} is not an integer") from None
        if not lo <= n <= hi:
            raise ApiError(f"{name} {n} is not between {lo} and {hi}")
        return n

    def number(self, name: str, lo: float, hi: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            x = float(value)
        except ValueError:
            raise ApiError(f"{name} {value!r} is not a number") from None
        if not lo <= x <= hi:  # also refuses nan
            raise ApiError(f"{name} {value!r} is not between {lo:g} and {hi:g}")
        return x

    def window(self, default_last: str = "24h", now_ns: int | None = None) -> tuple[int, int]:
        """``[since, until)`` in ns from ``last``/``since``/``until`` the way the CLI reads them:
        ``until`` defaults to now and ``since`` to ``until - last`` (``last`` default ``default_last``)."""
        last, since, until = self.text("last"), self.text("since"), self.text("until")
        if last is not None and since is not None:
            raise ApiError("use either last or since, not both")
        try:
            end = parse_time(until) if until is not None else (time.time_ns() if now_ns is None else now_ns)
            if since is not None:
                start = parse_time(since)
            else:
                start = max(-(2**63), end - int(parse_duration(last or default_last) * NS))
        except QueryError as exc:
            raise ApiError(str(exc)) from None
        if start >= end:
            raise ApiError("the window is empty: since must be before until")
        return start, end
