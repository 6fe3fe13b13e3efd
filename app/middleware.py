"""Pure ASGI middleware: a request id on every connection, and a cap on request bodies.

Pure ASGI rather than `BaseHTTPMiddleware`, so that WebSocket connections pass through the same
code, no body is ever buffered here and streamed responses go out untouched.

- `RequestIdMiddleware`: every HTTP request and WebSocket connection gets an id (the client's
  `X-Request-Id` when it is in the safe alphabet of `app.state`, else `req_<uuid hex>`). It is
  stored where `request_id_of` finds it, set in the `REQUEST_ID` context variable for the
  connection's task (so `RequestIdLogFilter` puts it on every log line), and sent back as
  `X-Request-Id` on every response and WebSocket handshake that does not already carry one.
  Starlette's 500 handler runs outside all user middleware: it must add the header itself
  (`request_id_of(request)` returns the same id there).
- `BodyLimitMiddleware`: an HTTP request whose declared `Content-Length` is over its path's
  limit gets 413 before a byte of the body is read; a body without one (chunked) is counted as
  it streams and the app never receives more than the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, TTSError, error_headers
from app.state import REQUEST_ID, request_id_of

REQUEST_ID_HEADER = b"x-request-id"
# Messages that open a response: the HTTP status line, the WebSocket handshake, or the HTTP
# response that refuses a handshake (ASGI's websocket.http.response extension).
_RESPONSE_STARTS = frozenset({"http.response.start", "websocket.accept",
                              "websocket.http.response.start"})

PathLimits = Mapping[str, int] | Callable[[str], int | None]


def app_path(scope: Scope) -> str:
    """The path the app routes on: `scope["path"]` without the `root_path` servers prepend."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


def error_response(exc: TTSError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """`exc` as OpenAI's error envelope, with `Retry-After` when it says when to retry."""
    return JSONResponse(exc.envelope(), status_code=exc.status,
                        headers={**error_headers(exc), **(headers or {})})


def _with_header(message: Message, name: bytes, value: bytes) -> Message:
    """`message` with the header added, unless one of that name (any case) is there already."""
    headers = list(message.get("headers", ()))
    if any(key.lower() == name for key, _ in headers):
        return message
    return {**message, "headers": [*headers, (name, value)]}


class RequestIdMiddleware:
    """Gives every HTTP request and WebSocket connection an id; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        outer = REQUEST_ID.get()
        # request_id_of keeps the one definition of a sane client id; it stores the id in
        # scope["state"] (what `request.state` wraps) and sets REQUEST_ID.
        request_id = request_id_of(HTTPConnection(scope)).encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] in _RESPONSE_STARTS:
                message = _with_header(message, REQUEST_ID_HEADER, request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)
        # Under uvicorn each request is a task of its own; in-process callers (tests, ASGI
        # transports) share the caller's context, so the id must not outlive the request. It
        # is left set when the app raises, so that the error handlers outside this middleware
        # (Starlette's 500 handler, the server's traceback) still log it.
        REQUEST_ID.set(outer)


class RequestIdLogFilter(logging.Filter):
    """Sets `record.request_id` (the connection's id, "-" outside one) for `%(request_id)s`.

    Attach it to handlers, not loggers: a logger's filters do not see records propagated from
    its children, a handler's see every record it formats.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class BodyLimitMiddleware:
    """413 for HTTP request bodies over `max_bytes`, or over their path's own limit.

    `path_limits` maps an app path (without root_path) to its limit in bytes, or is a callable
    returning the limit for a path, None for the default: multipart upload routes need more
    than JSON routes. A declared `Content-Length` over the limit is answered at once, without
    reading the body. Otherwise the body is counted as the app receives it: the chunk that
    would pass the limit is not delivered, `receive` raises `PayloadTooLarge` instead, and the
    app's handler (or, when the error escapes the app before it started responding, this
    middleware) answers 413. Responses to a cut-off body carry `Connection: close`, so the
    server drops the rest of the upload instead of reading it to keep the connection alive.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, *,
                 path_limits: PathLimits | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes
        self._path_limits = path_limits

    def limit_for(self, path: str) -> int:
        """Most bytes of request body accepted on `path`."""
        if self._path_limits is None:
            return self.max_bytes
        if callable(self._path_limits):
            limit = self._path_limits(path)
        else:
            limit = self._path_limits.get(path)
        return self.max_bytes if limit is None else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(app_path(scope))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(_too_large(limit), {"Connection": "close"})
            await response(scope, receive, send)
            return

        received = 0
        cut_off = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, cut_off
            if cut_off:
                raise _too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut_off = True
                    raise _too_large(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if cut_off:
                    message = _with_header(message, b"connection", b"close")
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not cut_off or response_started:
                raise
            await error_response(exc, {"Connection": "close"})(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects malformed framing; count the body instead
    return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
