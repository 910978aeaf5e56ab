"""Serving the WSGI app from twistd with one thread hand-off per request.

``twisted.web.wsgi.WSGIResource`` runs the app on a pool thread and hands
every ``write`` back to the reactor with ``blockingCallFromThread``: four
thread switches for a one-chunk JSON reply.  Popeye's replies are small JSON
documents, so this container runs the app on the pool, collects the whole
reply there, and returns it to the reactor in one hop (B4 in ``bench/``:
about 1.6 times the requests per second).  Routes whose handlers only
compute (``/dev/ping``) run on the reactor thread itself, with no hop.

It also keeps the query string out of the access log, since Brewtus may
send the notify token there.
"""

import logging
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.threads import deferToThreadPool
from twisted.python.components import proxyForInterface
from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

log = logging.getLogger("popeye.web")

Reply = tuple[int, bytes, list[tuple[str, str]], bytes]


def run_app(app, environ: dict[str, Any]) -> Reply:
    """Call a WSGI app and collect its whole reply: (code, reason, headers, body)."""
    started: list = []
    chunks: list[bytes] = []

    def start_response(status: str, headers, exc_info=None):
        # Nothing is sent before the app returns, so a later call (an error
        # page, with exc_info) simply replaces the status and headers.
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    status, headers = started
    code, _, reason = status.partition(" ")
    return int(code), reason.encode("latin-1"), headers, b"".join(chunks)


class WSGIContainer(Resource):
    isLeaf = True

    def __init__(self, reactor, pool, app, inline: Callable[[str], bool]):
        super().__init__()
        self.reactor = reactor
        self.pool = pool
        self.app = app
        self.inline = inline

    def render(self, request) -> int:
        environ = self.environ(request)
        if self.inline(environ["PATH_INFO"]):
            self.respond(request, run_app(self.app, environ))
            return NOT_DONE_YET
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))  # the client went away
        reply = deferToThreadPool(self.reactor, self.pool, run_app, self.app, environ)
        reply.addCallback(lambda r: gone or self.respond(request, r))
        reply.addErrback(self.fail, request, gone)
        return NOT_DONE_YET

    def environ(self, request) -> dict[str, Any]:
        """The PEP 3333 environ (native strings are latin-1-decoded bytes)."""
        path, _, query = request.uri.partition(b"?")
        host = request.getHost()
        client = request.getClientAddress()
        environ = {
            "REQUEST_METHOD": request.method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": getattr(host, "host", "localhost"),  # a UNIX socket has neither
            "SERVER_PORT": str(getattr(host, "port", 0)),
            "SERVER_PROTOCOL": request.clientproto.decode("latin-1"),
            "REMOTE_ADDR": getattr(client, "host", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if request.isSecure() else "http",
            "wsgi.input": request.content,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = name.decode("latin-1").upper().replace("-", "_")
            value = ",".join(v.decode("latin-1") for v in values)
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ["HTTP_" + key] = value
        return environ

    @staticmethod
    def respond(request, reply: Reply) -> None:
        code, reason, headers, body = reply
        request.setResponseCode(code, reason)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        request.write(body)
        request.finish()

    def fail(self, failure, request, gone: list[bool]) -> None:
        """The app itself failed (it answers its own errors as JSON): log it
        and answer a bare 500, never a traceback."""
        log.error("WSGI app failed: %s", failure.getTraceback())
        if not gone:
            self.respond(request, (500, b"Internal Server Error", [("Content-Type", "application/json")],
                                   b'{"error": true, "message": "Internal error; see the server log"}'))


class _WithoutQuery(proxyForInterface(IRequest, "_request")):  # type: ignore[misc]
    """The request as the access log sees it: its URI and its Referer
    (a dashboard URL carrying the token) without their query strings."""

    @property
    def uri(self) -> bytes:
        return self._request.uri.partition(b"?")[0]

    def getHeader(self, name: bytes) -> bytes | None:
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return value.partition(b"?")[0]
        return value

    # Not part of IRequest, but read by the combined log format.
    clientproto = property(lambda self: self._request.clientproto)
    code = property(lambda self: self._request.code)
    sentLength = property(lambda self: self._request.sentLength)


def access_log_line(timestamp: str, request) -> str:
    """The combined log format, without the query string (it may carry the token)."""
    return combinedLogFormatter(timestamp, _WithoutQuery(request))


class PopeyeSite(Site):
    """A Site whose access log is a file of its own (``access_log``), or
    nothing, as under the legacy vhost; never a line per request in the
    service log, which costs a fifth of the throughput."""

    def __init__(self, resource, access_log: str):
        super().__init__(resource, logPath=access_log or None, logFormatter=access_log_line)

    def log(self, request) -> None:
        if self.logPath:
            super().log(request)
