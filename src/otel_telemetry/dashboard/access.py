"""Who is asking, and what they may do: the dashboard's two roles and its one write.

A mixin of the dashboard's request handler (``server._Handler``), run on its handler threads. The
admin token (``--token``) may read and change retention; the viewer token (``--viewer-token``) may
only read. Either arrives as ``Authorization: Bearer`` or as the port's cookie, which holds an
HMAC of the role's token and the port, never the token (``Dashboard.cookies``). Tokens are compared
with ``hmac.compare_digest``. Every API call is appended to the audit log (``store/audit.py``).
"""

from __future__ import annotations

import hmac
import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlencode

import orjson

from ..auth import bearer_matches
from ..store import audit
from . import records_api
from .params import ApiError

MAX_BODY = 16 * 1024
log = logging.getLogger("otel_telemetry.dashboard")


class Access:
    """Role checks, token login, the audit entry and ``POST /api/retention`` for ``_Handler``."""

    dash: Any
    headers: Any
    rfile: Any
    role: str | None
    close_connection: bool
    _json: Any
    _text: Any
    _send: Any

    def _cookie_role(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie") or "").get(self.dash.cookie_name)
        except CookieError:
            return None
        if morsel is None:
            return None
        for role, value in self.dash.cookies.items():  # every one compared: no early exit to time
            if hmac.compare_digest(morsel.value.encode(), value.encode()):
                return role
        return None

    def _bearer_role(self) -> str | None:
        header = self.headers.get("Authorization")
        found = [role for role, t in self.dash.tokens.items() if bearer_matches(header, t)]
        return found[0] if found else None

    def _cookie_ok(self) -> bool:
        return self._cookie_role() == "admin"

    def _bearer_ok(self) -> bool:
        return self._bearer_role() == "admin"

    def _audit(self, what: str, params: dict[str, Any], rows: int | None, outcome: str = "ok") -> None:
        audit.append(self.dash.audit_path, f"dashboard:{self.role}", what, params, rows, outcome)

    def _origin_ok(self) -> bool:
        origin = self.headers.get("Origin")
        return origin is None or origin.lower().removeprefix("http://") in self.dash.allowed_hosts

    def _token_login(self, path: str, qs: dict[str, list[str]]) -> None:
        given = qs.get("token") or [""]
        roles = [r for r, t in self.dash.tokens.items()
                 if len(given) == 1 and hmac.compare_digest(given[0].encode(), t.encode())]
        if not roles:
            self._text(401, "401 unauthorized: wrong token\n")
            return
        rest = {k: v for k, v in qs.items() if k != "token"}
        location = path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
        cookie = f"{self.dash.cookie_name}={self.dash.cookies[roles[0]]}; HttpOnly; SameSite=Strict; Path=/"
        self._send(303, b"", "text/plain", (("Location", location), ("Set-Cookie", cookie)))

    def _post_retention(self) -> None:
        if not self._origin_ok():
            self._json(403, {"error": "cross-origin request refused"})
            return
        if self.role != "admin":
            self._audit("POST /api/retention", {}, None, "refused: viewer")
            self._json(403, {"error": "retention changes need the admin token (this is the viewer's)"})
            return
        csrf = self.headers.get("X-CSRF-Token") or ""
        if not (self._bearer_ok() or (self._cookie_ok() and hmac.compare_digest(csrf.encode(),
                                                                                self.dash.csrf.encode()))):
            self._json(403, {"error": "a write needs Authorization: Bearer <token> or the X-CSRF-Token header"})
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self._json(415, {"error": "send the body as application/json"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise ApiError("Content-Length is required") from None
        if not 0 < length <= MAX_BODY:
            self.close_connection = True
            raise ApiError(f"body must be 1..{MAX_BODY} bytes", 413)
        try:
            body = orjson.loads(self.rfile.read(length))
        except orjson.JSONDecodeError:
            raise ApiError("body is not valid JSON") from None
        out = records_api.set_retention(body, self.dash.ctx)
        log.info("dashboard: retention of %s set to %s days", out["category"], out["days"])
        self._audit("POST /api/retention", {"category": out.get("category"), "days": out.get("days")}, None)
        self._json(200, out)


def _rows(out: Any) -> int | None:
    """How many records an API answer carries, for the audit log (None when it is not a list)."""
    if isinstance(out, list):
        return len(out)
    if isinstance(out, dict):
        for key in ("records", "rows", "spans", "items", "sessions", "traces"):
            if isinstance(out.get(key), list):
                return len(out[key])
    return None
