"""Storage security costs at the SQL layer: encryption at rest and secure_delete.

Inserts ``--rows`` records (about 450 bytes each, 1000-row transactions, WAL, synchronous=NORMAL,
the store's schema), then deletes half of them the way ``otel-telemetry purge`` does (5000-row
batches, then incremental vacuum and a TRUNCATE checkpoint). One JSON line per run::

    python bench/bench_encryption.py                       # sqlite3mc, no key
    python bench/bench_encryption.py --key k               # encrypted (ChaCha20-Poly1305)
    python bench/bench_encryption.py --secure-delete OFF   # purge without zeroing
    PYTHONPATH=/path/to/plain/apsw python bench/bench_encryption.py   # plain apsw, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import apsw

from otel_telemetry.store import schema


def _row(i: int) -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(uid=i.to_bytes(16, "big"), timestamp=1_800_000_000 * 10**9 + i * 10**6, type="span",
             category=("ai_behavior", "user_interaction")[i % 2], component="comp", event="ev", level="info",
             name=f"name-{i}", service="svc", session_id=f"s{i % 100}",
             data='{"attributes": {"k": "' + "x" * 200 + '"}}', metadata="{}")
    return tuple(v[c] for c in schema.COLUMNS)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--key", default=None)
    ap.add_argument("--secure-delete", choices=("ON", "OFF", "FAST"), default="ON")
    args = ap.parse_args()
    rows = [_row(i) for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as d:
        conn = apsw.Connection(os.path.join(d, "b.db"))
        if args.key:
            conn.execute(f"PRAGMA hexkey='{args.key.encode().hex()}'")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")
        schema.apply_ddl(conn)
        sql = f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES ({', '.join('?' * len(schema.COLUMNS))})"
        t = time.perf_counter()
        for i in range(0, len(rows), 1000):
            with conn:
                conn.executemany(sql, rows[i:i + 1000])
        insert_s = time.perf_counter() - t
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        conn.execute(f"PRAGMA secure_delete={args.secure_delete}")
        t = time.perf_counter()
        while True:
            with conn:
                ids = conn.execute("SELECT id FROM records WHERE category = 'user_interaction' LIMIT 5000").fetchall()
                if not ids:
                    break
                conn.executemany("DELETE FROM records WHERE id = ?", ids)
        delete_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in conn.execute("PRAGMA incremental_vacuum"):
            pass
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        vacuum_s = time.perf_counter() - t
        conn.close()
    try:
        c = apsw.Connection(":memory:")
        lib = c.execute("SELECT sqlite3mc_version()").fetchone()[0]
    except apsw.SQLError:
        lib = f"SQLite {apsw.sqlite_lib_version()} (plain)"
    print(json.dumps({"lib": lib, "key": bool(args.key), "secure_delete": args.secure_delete, "rows": args.rows,
                      "insert_rows_per_s": round(args.rows / insert_s), "purge_delete_s": round(delete_s, 3),
                      "vacuum_checkpoint_s": round(vacuum_s, 3)}))


if __name__ == "__main__":
    main()
