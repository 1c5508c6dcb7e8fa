"""Spans in progress on the central server (``sync:``): after each shipping round that caught up,
the shipping thread mirrors this collector's ``spans_in_progress`` rows into the server's table,
so the central dashboard and ``otel-telemetry watch --in-progress --db URL`` show every device's
running spans, not only its finished ones.

One transaction per change: this instance's rows on the server are replaced by the newest
``MAX_MIRRORED`` local ones (other instances' rows are never touched). Nothing is sent while the
local set is unchanged. The rows are previews, not records: never counted as shipped, and a
started row whose span is already on the server is hidden by the read side
(``query/in_progress.py``) until the next mirror removes it.

Runs on the shipping thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from ...store import libsql_http as lh
from ...store.db import has_table
from ...store.in_progress import TABLE
from ...store.schema import STORED_COLUMNS

MAX_MIRRORED = 1000  # the newest started rows per instance on the server (the local bound is larger)
_COLUMNS = (*STORED_COLUMNS, "received", "abandoned")
_LOCAL = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} ORDER BY id DESC LIMIT ?"
_CLEAR = f"DELETE FROM {TABLE} WHERE instance = ?"
_INSERT = (f"INSERT INTO {TABLE}({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
           "ON CONFLICT(uid) DO NOTHING")
_UID = STORED_COLUMNS.index("uid")
_INSTANCE = STORED_COLUMNS.index("instance")
_ABANDONED = len(_COLUMNS) - 1

Signature = tuple[tuple[Any, Any], ...]


class LiveMirror:
    """What the server holds of this instance's spans in progress, and the statements that bring
    it up to date."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._sent: Signature | None = None  # the local set the server holds (None: unknown)
        self.mirrored = 0  # rows on the server after the last mirror
        self.rounds = 0  # mirror transactions committed

    def statements(self, local: apsw.Connection) -> tuple[list[dict[str, Any]], Signature] | None:
        """The transaction that makes the server's rows of this instance equal the local ones, and
        the local set's signature to pass to :meth:`done` once it committed; None when nothing
        changed (or the local store never had a span in progress)."""
        if not has_table(local, TABLE):
            return None
        rows = local.execute(_LOCAL, (MAX_MIRRORED,)).fetchall()
        signature = tuple((r[_UID], r[_ABANDONED]) for r in rows)
        if signature == self._sent:
            return None
        stmts = [lh.stmt(_CLEAR, (self.instance,), want_rows=False)]
        stmts += lh.multi_row(_INSERT, [self._ours(r) for r in rows], 100)
        return stmts, signature

    def done(self, signature: Signature) -> None:
        self._sent = signature
        self.mirrored = len(signature)
        self.rounds += 1

    def forget(self) -> None:
        """The server may have changed (an error, a new server): send the whole set again."""
        self._sent = None

    def _ours(self, row: Sequence[Any]) -> tuple[Any, ...]:
        out = list(row)
        out[_INSTANCE] = self.instance  # the server keeps each instance's rows apart
        return tuple(out)
