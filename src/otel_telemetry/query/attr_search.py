"""Attribute filters: ``key=value``, ``key!=value``, ``key>number`` (``<``, ``>=``, ``<=``) on the
attributes of a record and on its resource's attributes, plus ``service`` and ``name``.

A filter becomes one SQL condition over the JSON columns (``data.attributes`` of spans, logs and
metric points; ``data`` itself of ``record_telemetry`` events; ``metadata.resource``), with the key
path and the value as bound parameters: the key is written into the path as a JSON string
(``$.attributes."http.route"``), so dots, quotes and brackets in OTel keys are part of the key,
never path syntax. A span attribute wins over a resource attribute of the same key.

Semantics: ``=`` compares the value as text and, when it reads as a number, as a number (an
``http.response.status_code`` stored as 500 matches ``=500``); ``true``/``false`` also match JSON
booleans. ``!=`` matches records where the key is absent too. ``>``/``<``/``>=``/``<=`` take a
number and match numeric values only. ``service`` and ``name`` are the row's columns.

Pure functions; nothing here touches a connection. Errors are :class:`filters.QueryError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .filters import QueryError

OPS: tuple[str, ...] = ("=", "!=", ">", "<", ">=", "<=")
_NUMERIC_OPS = {">", "<", ">=", "<="}
# Keys that name a column rather than an attribute (identifier allow-list: never from input).
COLUMN_KEYS: dict[str, str] = {"service": "service", "name": "name"}
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 1024
# The operator is the first run of = ! < > after a key that holds none of them.
_FILTER_RE = re.compile(r"^\s*([^=!<>]+?)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$", re.DOTALL)


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


@dataclass(frozen=True)
class AttrFilter:
    """One parsed filter. Build with :func:`parse`; :meth:`clause` gives its SQL and parameters."""

    key: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise QueryError(f"operator {self.op!r} is not one of {' '.join(OPS)}")
        if not self.key or len(self.key) > MAX_KEY_CHARS:
            raise QueryError(f"attribute key must be 1 to {MAX_KEY_CHARS} characters")
        if "\x00" in self.key or "\x00" in self.value:
            raise QueryError("attribute filter contains a NUL character")
        if len(self.value) > MAX_VALUE_CHARS:
            raise QueryError(f"attribute value is longer than {MAX_VALUE_CHARS} characters")
        if self.op in _NUMERIC_OPS:
            if _number(self.value) is None:
                raise QueryError(f"{self.key}{self.op}{self.value!r}: {self.op} needs a number")
            if self.key in COLUMN_KEYS:
                raise QueryError(f"{self.key} is text; use = or != with it")

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def clause(self) -> tuple[str, list[Any]]:
        """One SQL condition (parenthesised) and its bound values, for ``WHERE ... AND <it>``."""
        column = COLUMN_KEYS.get(self.key)
        if column is not None:
            if self.op == "=":
                return f'("{column}" = ?)', [self.value]
            return f'coalesce("{column}" != ?, 1)', [self.value]
        quoted = orjson.dumps(self.key).decode()  # the key as stored: orjson wrote the column
        event_path, attr_path, res_path = f"$.{quoted}", f"$.attributes.{quoted}", f"$.resource.{quoted}"
        # json_extract over both places; data's path depends on the row type (events hold their fields at top).
        value = ("coalesce(json_extract(data, CASE WHEN type = 'event' THEN ? ELSE ? END), "
                 "json_extract(metadata, ?))")
        kind = ("coalesce(json_type(data, CASE WHEN type = 'event' THEN ? ELSE ? END), "
                "json_type(metadata, ?))")
        paths = [event_path, attr_path, res_path]
        if self.op in _NUMERIC_OPS:
            sql = f"({kind} IN ('integer', 'real') AND {value} {self.op} ?)"
            return self._prefiltered(sql, [*paths, *paths, _number(self.value)], quoted)
        tests, params = [f"{value} = ?"], [*paths, self.value]
        number = _number(self.value)
        if number is not None:
            tests.append(f"{value} = ?")
            params += [*paths, number]
        if self.value in ("true", "false"):
            tests.append(f"{kind} = ?")
            params += [*paths, self.value]
        equal = "(" + " OR ".join(tests) + ")"
        if self.op == "=":
            # A text value can only be stored as that JSON string: a second needle.
            needle = orjson.dumps(self.value).decode() if len(tests) == 1 else None
            return self._prefiltered(equal, params, quoted, needle)
        return f"coalesce(NOT {equal}, 1)", params

    @staticmethod
    def _prefiltered(sql: str, params: list[Any], quoted: str, value: str | None = None) -> tuple[str, list[Any]]:
        # A row whose JSON text does not contain the quoted key (and the quoted text value) cannot
        # match: instr() is a byte search, far cheaper than parsing the JSON, and it runs first
        # (AND evaluates left to right).
        if value is None:
            return (f"((instr(data, ?) > 0 OR instr(metadata, ?) > 0) AND {sql})", [quoted, quoted, *params])
        return (f"(((instr(data, ?) > 0 AND instr(data, ?) > 0) OR (instr(metadata, ?) > 0 AND instr(metadata, ?) > 0))"
                f" AND {sql})", [quoted, value, quoted, value, *params])


def parse(text: str) -> AttrFilter:
    """``key=value`` / ``key!=value`` / ``key>n`` / ``key<n`` / ``key>=n`` / ``key<=n``."""
    m = _FILTER_RE.match(text or "")
    if not m:
        raise QueryError(f"{text!r} is not an attribute filter; use key=value, key!=value or key>number "
                         "(also <, >=, <=)")
    return AttrFilter(m.group(1), m.group(2), m.group(3))


def parse_all(texts: tuple[str, ...] | list[str]) -> tuple[AttrFilter, ...]:
    return tuple(parse(t) for t in texts)


def clauses(filters: tuple[AttrFilter, ...] | list[AttrFilter]) -> tuple[str, list[Any]]:
    """`` AND ...`` conditions for every filter (empty string for none) and their bound values."""
    sql: list[str] = []
    params: list[Any] = []
    for f in filters:
        s, p = f.clause()
        sql.append(f" AND {s}")
        params += p
    return "".join(sql), params
