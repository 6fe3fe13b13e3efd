"""Request ids and body limits, on tiny Starlette apps, in process and on real loopback."""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.errors import PayloadTooLarge, TTSError
from app.middleware import BodyLimitMiddleware, RequestIdLogFilter, RequestIdMiddleware
from app.state import REQUEST_ID, request_id_of
from tests.servers import serve

GENERATED_ID = re.compile(r"req_[0-9a-f]{32}")


async def whoami(request: Request) -> JSONResponse:
    logging.getLogger("tests.whoami").warning("handling")
    return JSONResponse({"state": request_id_of(request), "contextvar": REQUEST_ID.get()})


async def own_id(request: Request) -> Response:
    return PlainTextResponse("ok", headers={"X-Request-Id": "set-by-handler"})


async def refuse(request: Request) -> Response:
    raise HTTPException(409, "taken")


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"state": request_id_of(websocket), "contextvar": REQUEST_ID.get()})
    await websocket.close()


def request_id_app() -> Starlette:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return Starlette(
        routes=[Route("/whoami", whoami), Route("/own", own_id), Route("/refuse", refuse),
                WebSocketRoute("/ws", echo_socket)],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: http_error},
    )


@pytest.fixture(scope="module")
def ids():
    with TestClient(request_id_app()) as client:
        yield client


def test_request_id_is_generated_and_shared_with_handler(ids):
    r = ids.get("/whoami")
    sent = r.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(sent)
    assert r.json() == {"state": sent, "contextvar": sent}


def test_request_id_echoes_a_safe_client_id(ids):
    r = ids.get("/whoami", headers={"X-Request-Id": "client-42.retry_1"})
    assert r.headers["x-request-id"] == "client-42.retry_1"
    assert r.json()["state"] == "client-42.retry_1"


@pytest.mark.parametrize("unsafe", ["../../etc/passwd", "has space", "x" * 65, ".hidden"])
def test_request_id_replaces_an_unsafe_client_id(ids, unsafe):
    r = ids.get("/whoami", headers={"X-Request-Id": unsafe})
    assert GENERATED_ID.fullmatch(r.headers["x-request-id"])
    assert r.json()["state"] == r.headers["x-request-id"]


def test_request_id_is_added_to_router_404_and_error_responses(ids):
    missing = ids.get("/nowhere", headers={"X-Request-Id": "lost-1"})
    refused = ids.get("/refuse", headers={"X-Request-Id": "taken-1"})
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "lost-1")
    assert (refused.status_code, refused.headers["x-request-id"]) == (409, "taken-1")


def test_request_id_leaves_a_handler_set_header_alone(ids):
    r = ids.get("/own")
    assert r.headers.get_list("x-request-id") == ["set-by-handler"]


def test_request_id_is_sent_on_the_websocket_handshake(ids):
    with ids.websocket_connect("/ws", headers={"X-Request-Id": "socket-7"}) as ws:
        headers = dict(ws.extra_headers or [])
        body = ws.receive_json()
    assert headers[b"x-request-id"] == b"socket-7"
    assert body == {"state": "socket-7", "contextvar": "socket-7"}


async def test_request_id_does_not_outlive_the_request():
    transport = httpx.ASGITransport(app=request_id_app())  # runs the app in this task
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/whoami", headers={"X-Request-Id": "short-lived"})
    assert r.json()["contextvar"] == "short-lived"
    assert REQUEST_ID.get() == "-"


async def test_request_id_stays_set_for_handlers_outside_when_the_app_raises():
    async def fail(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    seen: list[str] = []

    async def server_error_handler(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await RequestIdMiddleware(fail)(scope, receive, send)
        except RuntimeError:
            seen.append(REQUEST_ID.get())  # what a 500 handler or the server would log

    scope = {**http_scope("/"), "headers": [(b"x-request-id", b"failing-1")]}
    await server_error_handler(scope, Client([]).receive, Client([]).send)
    assert seen == ["failing-1"]
    REQUEST_ID.set("-")


async def test_request_id_log_filter_stamps_every_record():
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(message)s"))
    logger = logging.getLogger("tests.whoami")
    logger.addHandler(handler)
    try:
        transport = httpx.ASGITransport(app=request_id_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/whoami", headers={"X-Request-Id": "logged-1"})
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    assert [handler.format(record) for record in records] == ["[logged-1] handling",
                                                              "[-] outside"]


# Body limits -------------------------------------------------------------------------------

class Recorder:
    """A raw ASGI app that reads the whole body, counting what reached it, and echoes the size."""

    def __init__(self) -> None:
        self.received = 0
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.received += len(message.get("body", b""))
            more = message.get("more_body", False)
        await PlainTextResponse(str(self.received))(scope, receive, send)


def http_scope(path: str = "/upload", content_length: int | None = None) -> Scope:
    headers = [(b"host", b"t")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("t", 80)}


class Client:
    """Feeds body chunks to an ASGI app and collects what it sends back."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.receives = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.receives += 1
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def test_body_limit_refuses_a_declared_length_without_reading_the_body():
    inner = Recorder()
    client = Client([b"x" * 1000])
    await BodyLimitMiddleware(inner, 100)(http_scope(content_length=1000), client.receive,
                                          client.send)
    assert client.status == 413 and client.receives == 0 and not inner.called
    assert client.json()["error"]["code"] == "payload_too_large"
    assert client.json()["error"]["type"] == "invalid_request_error"
    assert client.headers[b"connection"] == b"close"


async def test_body_limit_cuts_off_a_chunked_body_at_the_limit():
    inner = Recorder()
    client = Client([b"x" * 40] * 10)  # 400 bytes, no Content-Length
    await BodyLimitMiddleware(inner, 100)(http_scope(), client.receive, client.send)
    assert client.status == 413 and client.json()["error"]["code"] == "payload_too_large"
    assert inner.received == 80  # the chunk that would pass 100 never reached the app
    assert client.receives == 3
    assert client.headers[b"connection"] == b"close"


async def test_body_limit_lets_the_apps_handler_answer_a_cut_off_body():
    async def upload(request: Request) -> Response:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return PlainTextResponse(str(size))

    async def tts_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TTSError)
        return JSONResponse(exc.envelope(), status_code=exc.status,
                            headers={"X-Handled": "yes"})

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])],
                    exception_handlers={TTSError: tts_error})
    client = Client([b"x" * 40] * 10)
    await BodyLimitMiddleware(app, 100)(http_scope(), client.receive, client.send)
    assert client.status == 413 and client.headers[b"x-handled"] == b"yes"
    assert client.headers[b"connection"] == b"close"


async def test_body_limit_accepts_a_body_of_exactly_the_limit():
    inner = Recorder()
    client = Client([b"x" * 50, b"x" * 50])
    await BodyLimitMiddleware(inner, 100)(http_scope(content_length=100), client.receive,
                                          client.send)
    assert client.status == 200 and inner.received == 100
    assert b"connection" not in client.headers


@pytest.mark.parametrize("path_limits", [{"/upload": 1000},
                                         lambda path: 1000 if path == "/upload" else None])
async def test_body_limit_applies_a_path_own_limit(path_limits):
    limited = BodyLimitMiddleware(Recorder(), 100, path_limits=path_limits)
    upload, other = Client([b"x" * 500]), Client([b"x" * 500])
    await limited(http_scope("/upload", 500), upload.receive, upload.send)
    await limited(http_scope("/v1/audio/speech", 500), other.receive, other.send)
    assert (upload.status, other.status) == (200, 413)


async def test_body_limit_matches_paths_without_the_root_path():
    limited = BodyLimitMiddleware(Recorder(), 100, path_limits={"/upload": 1000})
    scope = {**http_scope("/tts/upload", 500), "root_path": "/tts"}
    client = Client([b"x" * 500])
    await limited(scope, client.receive, client.send)
    assert client.status == 200


async def test_body_limit_cannot_replace_a_response_already_started():
    async def answer_then_read(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    client = Client([b"x" * 60] * 3)
    with pytest.raises(PayloadTooLarge):
        await BodyLimitMiddleware(answer_then_read, 100)(http_scope(), client.receive,
                                                         client.send)
    assert [m["status"] for m in client.sent] == [200]


async def test_body_limit_passes_websockets_through():
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await BodyLimitMiddleware(app, 0)({"type": "websocket", "path": "/ws", "headers": []},
                                      Client([]).receive, Client([]).send)
    assert seen == ["websocket"]


# Body limits on a real server: the 413 must come back before the client sends the body.

@pytest.fixture(scope="module")
def limited_server():
    recorder = Recorder()
    app = Starlette(routes=[Route("/upload", recorder, methods=["POST"])],
                    middleware=[Middleware(RequestIdMiddleware),
                                Middleware(BodyLimitMiddleware, 1000)])
    with serve(app) as url:
        yield url.removeprefix("http://").split(":"), recorder


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_body_limit_answers_over_a_socket_before_the_body_is_sent(limited_server):
    (host, port), recorder = limited_server
    recorder.received = 0
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\nonly a few bytes")
        # A server that waited for the body would time out here (socket.timeout fails).
        response = read_until_closed(sock)
    assert time.monotonic() - started < 5
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"x-request-id: req_" in head.lower()
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert recorder.received == 0


def test_body_limit_cuts_off_a_chunked_upload_over_a_socket(limited_server):
    (host, port), recorder = limited_server
    recorder.received = 0
    chunk = b"%x\r\n%s\r\n" % (400, b"y" * 400)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 1200 bytes, and the request is never finished
            sock.sendall(chunk)
        response = read_until_closed(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert recorder.received <= 1000
