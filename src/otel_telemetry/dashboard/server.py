"""The dashboard's HTTP server: stdlib ``ThreadingHTTPServer``, one handler thread per connection.

Every request, in this order: Host header against the allow-list (421, against DNS rebinding), then
the token (401): ``?token=`` on a page load sets an HttpOnly SameSite=Strict cookie (named for the
port, holding an HMAC of the token and the port, never the token) and redirects to the same URL
without it; after that the cookie, or ``Authorization: Bearer <token>``, authenticates
every route — page, static files and API alike. Tokens are compared with ``hmac.compare_digest``
and never logged (logged request lines carry no query string). Every response carries the CSP and
the other security headers. Two tokens, two roles: the admin token (``--token``) may do
everything, an optional viewer token (``--viewer-token``) only read; the one write
(``POST /api/retention``) needs the admin role, a JSON body with a confirmation field and a header
token: ``Authorization: Bearer`` or ``X-CSRF-Token`` (an HMAC of the token the page fetches from
``/api/csrf``), so a cookie alone never writes. Every API call leaves an entry in the audit log
(``store/audit.py``): role, route, parameters, rows. Bad parameters are
400 with a JSON error; unexpected failures 500 with a generic message, logged by exception type
only, never with record values.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import logging
import socket
import threading
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import apsw
import orjson

from ..auth import is_loopback_host
from ..categories import CATEGORIES
from ..query import export as rx
from ..query import filters as query
from ..store import audit, location
from ..store import db as store_db
from ..store.alert_state import default_path as default_state_path
from ..store.retention import RetentionPolicy
from . import api, explore_api, records_api, views_api
from .access import Access, _rows
from .params import ApiError, Params
from .tail import DbTail, TooManyClients, tail_record

log = logging.getLogger("otel_telemetry.dashboard")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
                    ("Cross-Origin-Opener-Policy", "same-origin"), ("Cross-Origin-Resource-Policy", "same-origin"))
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
KEEPALIVE_S = 5.0
ENDPOINTS = {**api.PANELS, **records_api.RECORDS, **explore_api.EXPLORE, **views_api.VIEWS}


def load_static() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, content type) for every file shipped in ``static/`` (read once at start);
    only these exact paths are ever served, so no request can reach the file system."""
    out: dict[str, tuple[bytes, str]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                ext = child.name[child.name.rfind("."):]
                if ext in _TYPES:
                    out[f"{prefix}{child.name}"] = (child.read_bytes(), _TYPES[ext])

    walk(resources.files(__package__).joinpath("static"), "/")
    out["/"] = out["/index.html"]
    return out


class Dashboard:
    """One dashboard: the HTTP server, its live-tail poller and settings. ``start``/``shutdown`` from
    any one thread; request handling runs on the server's handler threads."""

    def __init__(self, db_path: str, token: str, host: str = "127.0.0.1", port: int = 8000, *,
                 alerts_path: str | None = None, policy: RetentionPolicy | None = None,
                 allow_hosts: tuple[str, ...] = (), tail_interval: float = 0.5, tail_buffer: int = 1000,
                 max_tail_clients: int = 16, keepalive_s: float = KEEPALIVE_S,
                 viewer_token: str | None = None) -> None:
        if not token:
            raise ValueError("the dashboard needs a token")
        if viewer_token is not None and (not viewer_token or hmac.compare_digest(viewer_token, token)):
            raise ValueError("the viewer token must be set and differ from the admin token")
        self.db_path = db_path
        # On a server, read connections outlive a request (see libsql_conn.ReaderPool).
        self._pool: Any = None
        loc = location.parse(db_path)
        if loc.url is not None:
            from ..store.libsql_conn import ReaderPool

            self._pool = ReaderPool(lambda: store_db.open_remote(str(loc.url)))
        self.token = token
        self.tokens = {"admin": token, **({"viewer": viewer_token} if viewer_token else {})}
        self.audit_path = audit.path_for(db_path)
        self.host = host
        self.ctx = api.Context(db_path=db_path, alerts_path=alerts_path or default_state_path(db_path),
                               policy=policy or RetentionPolicy())
        self.csrf = hmac.new(token.encode(), b"otel-telemetry dashboard csrf", hashlib.sha256).hexdigest()
        self.static = load_static()
        self.tail = DbTail(db_path, interval=tail_interval, buffer=tail_buffer, max_clients=max_tail_clients)
        self.stopping = threading.Event()
        self.keepalive_s = keepalive_s  # also how soon a vanished live-tail client is noticed
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("_Server", (http.server.ThreadingHTTPServer,), {"address_family": family,
                                                                          "daemon_threads": True})
        self.httpd = server_cls((host.strip("[]"), port), _Handler)
        self.httpd.dashboard = self  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.cookie_name = f"otel_dashboard_{self.port}"  # cookies are not per port; names are
        # Browsers send a host's cookies to every port on it, so the cookie never carries the token
        # (which also works as a bearer token, perhaps elsewhere): a value derived from it and this
        # port, good only as this dashboard's cookie.
        self.cookies = {role: hmac.new(t.encode(), f"otel-telemetry dashboard cookie {self.port}".encode(),
                                       hashlib.sha256).hexdigest() for role, t in self.tokens.items()}
        self.cookie_value = self.cookies["admin"]
        names = {"127.0.0.1", "localhost", "[::1]", *allow_hosts}
        if not is_loopback_host(host.strip("[]")):
            names.add(f"[{host.strip('[]')}]" if ":" in host else host)
        self.allowed_hosts = {f"{n.lower()}:{self.port}" for n in names}
        if self.port == 80:
            self.allowed_hosts |= {n.lower() for n in names}
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """The URL to open: it carries the token once; the page then lives on a cookie."""
        return f"{self.base_url}?{urlencode({'token': self.token})}"

    def start(self) -> None:
        self.tail.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dashboard-http", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting requests, end live-tail streams, close the socket. Idempotent."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.tail.shutdown(timeout)
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout)
        self.httpd.server_close()
        if self._pool is not None:
            self._pool.close()

    def reader(self) -> Any:
        """A read connection for one request (handler thread); give it back with :meth:`release`."""
        return self._pool.get() if self._pool is not None else store_db.open_reader(self.db_path)

    def release(self, conn: Any, ok: bool) -> None:
        if self._pool is not None:
            self._pool.put(conn, ok)
        else:
            conn.close()


class _Handler(Access, http.server.BaseHTTPRequestHandler):
    """Runs on one handler thread per connection (keep-alive: several requests in a row)."""

    protocol_version = "HTTP/1.1"
    role: str | None = None  # "admin" or "viewer" once the request is authenticated
    server_version = "otel-telemetry-dashboard"
    sys_version = ""
    timeout = 60

    def setup(self) -> None:
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK add ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard  # type: ignore[attr-defined,no-any-return]

    # ---- plumbing ------------------------------------------------------------------------------

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        log.debug("%s %s %s", getattr(self, "command", "-"), path[:200], code)  # never the query (token)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the stdlib would print the request line, query string (and token) included

    def _send(self, code: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str),
                   "application/json")

    def _text(self, code: int, text: str) -> None:
        self._send(code, text.encode(), "text/plain; charset=utf-8")

    # ---- checks --------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        return (self.headers.get("Host") or "").strip().lower() in self.dash.allowed_hosts

    # ---- entry points --------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        try:
            if not self._host_ok():
                self._text(421, "421 misdirected request: unknown Host header\n")
                return
            try:
                qs = parse_qs(parts.query, keep_blank_values=True, max_num_fields=64)
            except ValueError:
                self._json(400, {"error": "malformed query string"})
                return
            if "token" in qs and not path.startswith("/api/") and self.command in ("GET", "HEAD"):
                self._token_login(path, qs)
                return
            self.role = self._bearer_role() or self._cookie_role()
            if self.role is None:
                self._text(401, "401 unauthorized: open the URL printed by `otel-telemetry dashboard` "
                                "(it carries ?token=...), or send Authorization: Bearer <token>\n")
                return
            self._route(path, qs)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except ApiError as exc:
            self._json(exc.status, {"error": str(exc)})
        except query.QueryError as exc:
            self._json(400, {"error": str(exc)})
        except apsw.CantOpenError:
            log.warning("dashboard %s: database not available", path[:200])
            self._json(503, {"error": "database not available"})
        except Exception as exc:
            log.error("dashboard %s %s failed: %s", self.command, path[:200], type(exc).__name__)
            self._json(500, {"error": "internal error (see the dashboard's log)"})

    def _route(self, path: str, qs: dict[str, list[str]]) -> None:
        method = self.command
        if method == "POST" and path == "/api/retention":
            self._post_retention()
            return
        if method not in ("GET", "HEAD"):
            self._json(405, {"error": f"{method} not allowed here"})
            return
        if path in self.dash.static:
            if qs:
                raise ApiError("static files take no parameters")
            body, ctype = self.dash.static[path]
            self._send(200, body, ctype)
            return
        if not path.startswith("/api/"):
            self._json(404, {"error": "not found"})
            return
        name = path[len("/api/"):]
        if name == "csrf":
            Params(qs, ())
            self._json(200, {"csrf": self.dash.csrf, "role": self.role})
        elif name == "tail":
            self._audit("GET /api/tail", {k: v for k, v in qs.items()}, None)
            self._tail(Params(qs, ("category", "level", "backlog", "instance")))
        elif name in ENDPOINTS:
            fn, allowed = ENDPOINTS[name]
            params = Params(qs, allowed)
            conn = self.dash.reader()
            ok = False
            try:
                out = fn(conn, params, self.dash.ctx)
                ok = True
            finally:
                self.dash.release(conn, ok)
            self._audit(f"GET /api/{name}", {k: v[0] if len(v) == 1 else v for k, v in qs.items()}, _rows(out))
            self._json(200, out)
        else:
            self._json(404, {"error": f"no API endpoint {name[:64]!r}"})

    def _tail(self, p: Params) -> None:
        """Server-Sent Events on this handler thread until the client leaves or the server stops."""
        categories, levels = p.many("category", CATEGORIES), p.many("level", query.LEVELS)
        backlog = p.integer("backlog", 0, 0, 500)
        instance = p.text("instance")
        try:
            sub, seen = self.dash.tail.subscribe(categories, levels, instance)
        except TooManyClients as exc:
            self._json(503, {"error": str(exc)})
            return
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            first = [b"retry: 2000\n\n"]
            if backlog:
                equal = {k: v for k, v in (("category", categories), ("level", levels),
                                           ("instance", (instance,) if instance else ())) if v}
                conn = store_db.open_reader(self.dash.db_path)
                try:
                    rows = rx.latest(conn, rx.Selection(equal), seen, backlog)
                finally:
                    conn.close()
                first += [_event("record", tail_record(r), r[0]) for r in rows]
            self.wfile.write(b"".join(first))
            self.wfile.flush()
            while not self.dash.stopping.is_set():
                recs, drops = sub.get(self.dash.keepalive_s)
                if sub.closed:
                    break
                out = [_event("dropped", {"dropped": drops, "total": sub.dropped})] if drops else []
                out += [_event("record", r, r["id"]) for r in recs]
                self.wfile.write(b"".join(out) or b": keepalive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the browser went away
        finally:
            self.dash.tail.unsubscribe(sub)


def _event(kind: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
