"""Attribute filters (query/attr_search.py) on a real database file built from the schema."""

from __future__ import annotations

from typing import Any

import apsw
import orjson
import pytest

from otel_telemetry.query import attr_search
from otel_telemetry.query.filters import Filters, QueryError, query_records
from otel_telemetry.store import schema

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
INJECTIONS = ("' OR 1=1 --", '"; DROP TABLE records; --', "x'); DELETE FROM records; --", "%", "_", "*",
              "$", "$.attributes", '") OR 1=1 --', "a\\", "\\\"", "1 UNION SELECT name, sql FROM sqlite_master --",
              "ünïcødé ' 🙂 \u202e", "[0]", "a]b", "A" * 200)


def row(i: int, attrs: dict[str, Any], resource: dict[str, Any] | None = None, **kw: Any) -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(uid=i.to_bytes(16, "big"), timestamp=T0 + i * NS, type="span", category="component_interactions",
             component="c", event="op", name="op", service="svc", level="info",
             data=orjson.dumps({"attributes": attrs}).decode(),
             metadata=orjson.dumps({"resource": resource or {}, "scope": {"name": "s", "version": None}}).decode())
    v.update(kw)
    return tuple(v[c] for c in schema.COLUMNS)


ROWS = [
    row(1, {"http.route": "/a", "http.response.status_code": 500, "region": "eu-west", "flag": True},
        {"deployment.environment": "prod", "region": "us-east"}),
    row(2, {"http.route": "/b", "http.response.status_code": 200, "flag": False, "n": 1},
        {"deployment.environment": "dev"}, service="other", name="GET /b"),
    row(3, {"http": {"route": "/a"}, "http.response.status_code": "503", 'a"b': "quoted", "x[0]": "br",
            "ratio": 0.25}),
    row(4, {"region": "us-east", "n": 1.5}, {"deployment.environment": "prod"}),
    row(5, {}, type="event", data=orjson.dumps({"joy": 0.7, "state": "calm"}).decode()),
]
for j, text in enumerate(INJECTIONS):
    ROWS.append(row(100 + j, {text: text, "payload": text}))


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> apsw.Connection:
    path = tmp_path_factory.mktemp("attr") / "t.db"
    c = apsw.Connection(str(path))
    c.execute(schema.DDL)
    with c:
        marks = ", ".join("?" * len(schema.COLUMNS))
        c.executemany(f"INSERT INTO records({', '.join(schema.COLUMNS)}) VALUES ({marks})", ROWS)
    return c


def ids(conn: apsw.Connection, *texts: str) -> list[int]:
    found = query_records(conn, Filters(attrs=attr_search.parse_all(list(texts)), limit=1000, order="asc"))
    return [n for n in ((r["timestamp"] - T0) // NS for r in found) if n < 100]


@pytest.mark.parametrize(("filters", "want"), [
    (["http.route=/a"], [1]),            # the dotted key is one key, not the path http -> route
    (["http.response.status_code=500"], [1]),       # stored as a number, compared as one
    (["http.response.status_code=503"], [3]),       # stored as text "503"
    (["http.response.status_code>=500"], [1]),      # numeric comparisons only see numbers
    (["http.response.status_code<300"], [2]),
    (["n>1"], [4]), (["n>=1"], [2, 4]), (["ratio<=0.25"], [3]), (["n<1"], []),
    (["region=eu-west"], [1]),           # the span attribute wins over the resource one
    (["region=us-east"], [4]),
    (["deployment.environment=prod"], [1, 4]),      # resource attributes
    (["deployment.environment!=prod"], [2, 3, 5]),  # != includes rows without the key
    (["flag=true"], [1]), (["flag=false"], [2]),
    (['a"b=quoted'], [3]), (["x[0]=br"], [3]),
    (["joy>0.5"], [5]), (["state=calm"], [5]),      # record_telemetry events: their data fields
    (["service=other"], [2]), (["name=GET /b"], [2]), (["service!=other"], [1, 3, 4, 5]),
    (["deployment.environment=prod", "region!=eu-west"], [4]),
    (["  region = eu-west  "], [1]),
])
def test_filters(conn: apsw.Connection, filters: list[str], want: list[int]) -> None:
    assert ids(conn, *filters) == want


@pytest.mark.parametrize("text", ["region", "=x", "n>abc", "n>nan", "n<inf", "service>3", "name<=1", "a\x00b=1",
                                  "", "k=" + "v" * 2000])
def test_bad_filters_are_query_errors(text: str) -> None:
    with pytest.raises(QueryError):
        attr_search.parse(text)


def test_parse_takes_the_first_operator() -> None:
    f = attr_search.parse("url=http://x/?a=b&c!=d")
    assert (f.key, f.op, f.value) == ("url", "=", "http://x/?a=b&c!=d")
    f = attr_search.parse("latency >= 2.5")
    assert (f.key, f.op, f.value) == ("latency", ">=", "2.5")


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_data(conn: apsw.Connection, payload: str) -> None:
    before = conn.execute("SELECT count(*), (SELECT group_concat(sql) FROM sqlite_master) FROM records").fetchone()
    # As value, and as key where it holds no operator: exactly the row holding it literally.
    texts = [[f"payload={payload}"]]
    if not set(payload) & set("=!<>"):
        texts.append([f"{payload}={payload}"])
    for t in texts:
        found = query_records(conn, Filters(attrs=attr_search.parse_all(t), limit=1000))
        assert len(found) == 1 and found[0]["data"]["attributes"]["payload"] == payload, (t, found)
    assert not [r for r in query_records(conn, Filters(attrs=(attr_search.parse(f"payload!={payload}"),),
                                                       limit=1000)) if r["data"].get("attributes", {}).get("payload")
                == payload.strip()]
    after = conn.execute("SELECT count(*), (SELECT group_concat(sql) FROM sqlite_master) FROM records").fetchone()
    assert before == after
