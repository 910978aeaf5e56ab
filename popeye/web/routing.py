"""web.py-style url tables on plain WSGI.

The legacy service mounted sub-applications by prefix (``('/dev', dev_app)``)
and each had its own ``(regex, handler)`` table; the same shape is kept so the
routes read as they did.  A handler is a callable taking the :class:`Request`
(the per-request context: query, ORM session, logger, like web.py's
``web.ctx``) and returning a JSON-able object, or raising :class:`HTTPError`.
"""

import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("popeye.web")

Handler = Callable[["Request"], Any]

#: Far above any legitimate request (Brewtus sends a path of ~100 characters),
#: far below what would make parsing a hostile request costly.
MAX_PATH = 1024
MAX_QUERY = 4096


def accepts_post(handler: Handler) -> Handler:
    """Marks a handler that changes state: it answers POST, not GET."""
    handler.methods = ("POST",)
    return handler


def computes_only(handler: Handler) -> Handler:
    """Marks a handler that neither blocks nor touches the database or the
    disk, so a host may run it on its event loop (see popeye.web.container)."""
    handler.inline = True
    return handler


class HTTPError(Exception):
    """A refusal the client should see: ``{"error": true, "message": ...}``.

    The status defaults to 200 because that is how the legacy app reported
    handled errors (``/dev/error/exception``, ``Missing path param``).
    """

    def __init__(self, message: str, status: int = 200, **extra: Any):
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": True, "message": self.message, **self.extra}


@dataclass
class Request:
    """What a handler may use: the request, one ORM session and a logger."""

    environ: dict[str, Any]
    session_factory: sessionmaker[Session] | None
    log: logging.Logger = log
    _orm: Session | None = field(default=None, repr=False)

    @property
    def orm(self) -> Session:
        """The request's ORM session, opened on first use."""
        if self._orm is None:
            if self.session_factory is None:
                raise RuntimeError("this application has no database")
            self._orm = self.session_factory()
        return self._orm

    @cached_property
    def query(self) -> dict[str, str]:
        """The query string as a dict; a repeated key keeps its last value."""
        return dict(parse_qsl(self.environ.get("QUERY_STRING", ""), keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def finish(self, ok: bool) -> None:
        """Commit when the handler finished or refused, roll back when it crashed;
        close always (SPEC section 1)."""
        if self._orm is None:
            return
        try:
            if ok:
                self._orm.commit()
            else:
                self._orm.rollback()
        finally:
            self._orm.close()


Route = tuple[str, "Handler | Application"]


class Application:
    """A table of ``(regex, handler)`` or ``(prefix, sub-application)`` rows.

    A row whose target is an Application matches by prefix and hands over the
    rest of the path; any other row must match the whole path.
    """

    def __init__(self, routes: Sequence[Route]):
        self.routes = [(re.compile(pattern), target) for pattern, target in routes]

    def resolve(self, path: str) -> Handler | None:
        for pattern, target in self.routes:
            if isinstance(target, Application):
                match = pattern.match(path)
                if match:
                    found = target.resolve(path[match.end():])
                    if found is not None:
                        return found
            elif pattern.fullmatch(path):
                return target
        return None


@dataclass
class Response:
    """What a handler returns when a plain JSON-able object (200) will not do:
    another status, or a body that is not JSON (``bytes`` with its type)."""

    body: Any
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(start_response, status: int, body: Any, content_type: str = "application/json",
                  headers: list[tuple[str, str]] = ()) -> list[bytes]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", content_type), ("Content-Length", str(len(payload))), *headers],
    )
    return [payload]


def same_origin(environ: dict[str, Any]) -> bool:
    """A browser's POST from another site carries an Origin naming that site:
    state-changing routes refuse it, whatever the token."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return True  # not from a browser page (curl, popeye-admin)
    return urlsplit(origin).netloc == environ.get("HTTP_HOST")


def check_token(request: "Request", expected: str) -> None:
    """``notify_token``, when set, must arrive as ``token`` or ``X-Popeye-Token``
    (compared in constant time)."""
    if not expected:
        return
    given = request.query.get("token") or request.header("X-Popeye-Token") or ""
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPError("Missing or wrong token", status=403)


class WSGIApp:
    """The WSGI callable: dispatch, per-request context, errors as JSON.

    No exception reaches the client as a traceback: an unexpected one is
    logged with its traceback and answered 500 with a JSON error.
    """

    def __init__(self, routes: Application, session_factory: sessionmaker[Session] | None):
        self.routes = routes
        self.session_factory = session_factory

    def runs_inline(self, path: str) -> bool:
        """Whether the handler for ``path`` is marked :func:`computes_only`."""
        return len(path) <= MAX_PATH and getattr(self.routes.resolve(path), "inline", False)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if len(path) > MAX_PATH or len(environ.get("QUERY_STRING", "")) > MAX_QUERY:
            return json_response(start_response, 414, HTTPError("Request URI too long").body())
        handler = self.routes.resolve(path)
        if handler is None:
            return json_response(start_response, 404, HTTPError(f"No route for {path}").body())
        allowed = getattr(handler, "methods", ("GET",))
        if environ.get("REQUEST_METHOD") not in allowed:
            return json_response(start_response, 405, HTTPError(f"Only {', '.join(allowed)} is supported").body(),
                                 headers=[("Allow", ", ".join(allowed))])
        if "POST" in allowed and not same_origin(environ):
            return json_response(start_response, 403, HTTPError("Cross-site request refused").body())
        request = Request(environ, self.session_factory)
        try:
            body = handler(request)
        except HTTPError as refusal:
            ok, status, body = True, refusal.status, refusal.body()
        except Exception:
            log.exception("%s %s failed", environ.get("REQUEST_METHOD"), path)
            ok, status, body = False, 500, HTTPError("Internal error; see the server log").body()
        else:
            ok, status = True, 200
        content_type, headers = "application/json", []
        if isinstance(body, Response):
            body, status, content_type, headers = body.body, body.status, body.content_type, body.headers
        try:
            request.finish(ok)
        except Exception:
            log.exception("%s %s: closing the database session failed", environ.get("REQUEST_METHOD"), path)
            status, body, content_type = 500, HTTPError("Internal error; see the server log").body(), "application/json"
        return json_response(start_response, status, body, content_type, headers)
