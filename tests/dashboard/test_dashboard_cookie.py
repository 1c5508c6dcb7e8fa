"""The dashboard's login cookie holds a value derived from the token and the port, never the token:
browsers send a host's cookies to every port on it. Two real dashboards on 127.0.0.1 with the same
token, over one real database file."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_seed import seed_db

from otel_telemetry.dashboard.server import Dashboard

TOKEN = "cookie-test-token-0123456789"


def _get(dash: Dashboard, path: str, cookie: str | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
    headers = {"Host": f"127.0.0.1:{dash.port}", **({"Cookie": cookie} if cookie else {})}
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Dashboard, Dashboard]]:
    db = str(tmp_path / "t.db")
    seed_db(db)
    a, b = Dashboard(db, TOKEN, "127.0.0.1", 0), Dashboard(db, TOKEN, "127.0.0.1", 0)
    a.start()
    b.start()
    yield a, b
    a.shutdown()
    b.shutdown()


def test_cookie_is_derived_and_port_bound(two: tuple[Dashboard, Dashboard]) -> None:
    a, b = two
    status, headers = _get(a, f"/?token={TOKEN}")
    assert status == 303
    set_cookie = headers["set-cookie"]
    name, _, value = set_cookie.split(";")[0].partition("=")
    assert TOKEN not in set_cookie and name == f"otel_dashboard_{a.port}"
    assert len(value) == 64 and value != TOKEN
    assert _get(a, "/api/overview", f"{name}={value}")[0] == 200
    # The raw token is not a cookie; a's cookie is no good on b, even under b's name.
    assert _get(a, "/api/overview", f"{name}={TOKEN}")[0] == 401
    assert _get(b, "/api/overview", f"{name}={value}")[0] == 401
    assert _get(b, "/api/overview", f"otel_dashboard_{b.port}={value}")[0] == 401
    # b's own login gives b's own value, which a refuses.
    b_cookie = _get(b, f"/?token={TOKEN}")[1]["set-cookie"].split(";")[0]
    assert b_cookie.partition("=")[2] not in (value, TOKEN)
    assert _get(b, "/api/overview", b_cookie)[0] == 200
    assert _get(a, "/api/overview", f"{name}={b_cookie.partition('=')[2]}")[0] == 401
