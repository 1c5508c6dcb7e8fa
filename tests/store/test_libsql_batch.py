"""The writer's connection to a server: BEGIN..COMMIT held and sent as one request; a read inside
the transaction flushes what is held (same stream, same transaction); errors undo everything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqld import Sqld

from otel_telemetry.store import libsql_batch as lb
from otel_telemetry.store import libsql_http as lh
from otel_telemetry.store import retention as ret


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sqld]:
    s = Sqld(tmp_path_factory.mktemp("sqld")).start()
    yield s
    s.stop()


@pytest.fixture
def conn(server: Sqld) -> Iterator[lb.BufferedConnection]:
    c = lb.BufferedConnection(server.url)
    c.execute("DROP TABLE IF EXISTS t")
    c.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
    yield c
    c.close()


def _count(c: lb.BufferedConnection) -> int:
    return int(c.execute("SELECT count(*) FROM t").fetchone()[0])  # type: ignore[index]


def test_a_transaction_is_one_request(conn: lb.BufferedConnection) -> None:
    before = conn.client.round_trips
    with ret.transaction(conn):  # type: ignore[arg-type]
        conn.executemany("INSERT INTO t(k, v) VALUES (?, ?)", [(i, str(i)) for i in range(1000)])
        conn.execute("INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (1, "x"))
        assert conn.in_transaction
    assert conn.client.round_trips - before == 1
    assert not conn.in_transaction and _count(conn) == 1000
    assert conn.execute("SELECT v FROM t WHERE k = 1").fetchone() == ("x",)


def test_a_read_inside_flushes_and_the_transaction_goes_on(conn: lb.BufferedConnection) -> None:
    before = conn.client.round_trips
    with ret.transaction(conn):  # type: ignore[arg-type]
        conn.executemany("INSERT INTO t(k, v) VALUES (?, ?)", [(i, "a") for i in range(10)])
        cur = conn.execute("SELECT count(*) FROM t")
        assert conn.client.round_trips == before  # not yet: nothing read
        assert cur.fetchone() == (10,)  # the held inserts went first, in the same transaction
        assert conn.total_changes() >= 10
        conn.execute("DELETE FROM t WHERE k < 5")
        assert conn.changes() == 5
    assert conn.client.round_trips - before == 3 and _count(conn) == 5


def test_errors_and_rollback_leave_nothing(conn: lb.BufferedConnection) -> None:
    with pytest.raises(lh.StatementError), ret.transaction(conn):  # type: ignore[arg-type]
        conn.execute("INSERT INTO t(k, v) VALUES (1, 'a')")
        conn.execute("INSERT INTO nowhere VALUES (1)")
    assert _count(conn) == 0 and not conn.in_transaction
    with pytest.raises(RuntimeError), ret.transaction(conn):  # type: ignore[arg-type]
        conn.execute("INSERT INTO t(k, v) VALUES (1, 'a')")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)  # on the server, uncommitted
        raise RuntimeError("the caller changes its mind")
    assert _count(conn) == 0


def test_insert_new_guard(conn: lb.BufferedConnection) -> None:
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS t_v ON t(v)")
    sql = "INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT DO NOTHING"
    with ret.transaction(conn):  # type: ignore[arg-type]
        conn.insert_new(sql, [(i, f"v{i}") for i in range(500)])
    with pytest.raises(lb.NotAllNew), ret.transaction(conn):  # type: ignore[arg-type]
        conn.insert_new(sql, [(i, f"v{i}") for i in range(499, 800)])
    assert _count(conn) == 500  # the whole transaction was undone


def test_reader_pool_reuses_a_connection_and_its_stream(server: Sqld) -> None:
    from otel_telemetry.store import db as dbmod
    from otel_telemetry.store.libsql_conn import ReaderPool

    pool = ReaderPool(lambda: dbmod.open_remote(server.url), idle_s=3600)
    a = pool.get()
    assert a.execute("SELECT 1").fetchone() == (1,)
    before = a.client.round_trips
    pool.put(a)
    b = pool.get()
    assert b is a and b.execute("SELECT 2").fetchone() == (2,)
    assert b.client.round_trips - before == 1  # no opening probe, no close: the query alone
    pool.put(b, ok=False)  # a failed request: its connection is not reused
    assert pool.get() is not a
    old = ReaderPool(lambda: dbmod.open_remote(server.url), idle_s=3600, max_age_s=0)
    c = old.get()
    old.put(c)
    assert old.get() is not c  # too old: opened afresh (its table list renewed)
    pool.close()
    old.close()
