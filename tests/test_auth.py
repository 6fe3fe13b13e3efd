"""API keys, open paths, WebSocket handshakes and rate limits, on a tiny Starlette app."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.auth import ApiKeyMiddleware, ApiKeys, RateLimiter
from tests.servers import serve

KEYS = ApiKeys.load(["sk-alpha", "sk-beta"])
BEARER = {"Authorization": "Bearer sk-beta"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def ok(request: Request) -> Response:
    return PlainTextResponse(request.scope.get("state", {}).get("api_key_id", "none"))


async def preflight(request: Request) -> Response:
    return Response(status_code=204)


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def keyed_app(keys: ApiKeys = KEYS, **options) -> Starlette:
    routes: list[BaseRoute] = [Route(path, ok) for path in ("/health", "/metrics",
                                                            "/v1/audio/speech", "/static/app.js")]
    routes += [Route("/v1/audio/voices", preflight, methods=["OPTIONS"]),
               WebSocketRoute("/v1/audio/speech/ws", echo_socket)]
    options.setdefault("open_paths", {"/metrics"})
    return Starlette(routes=routes, middleware=[Middleware(ApiKeyMiddleware, keys, **options)])


@pytest.fixture(scope="module")
def client():
    with TestClient(keyed_app()) as test_client:
        yield test_client


def test_api_keys_load_from_list_and_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# production keys\n\n  sk-from-file  \n#sk-commented-out\nsk-alpha\n")
    keys = ApiKeys.load([" sk-alpha ", ""], file=path)
    assert len(keys) == 2  # sk-alpha once, sk-from-file; the comment and blanks ignored
    assert keys.identify("sk-from-file") is not None
    assert keys.identify("sk-alpha") is not None
    assert keys.identify("sk-commented-out") is None
    assert not ApiKeys.load([], file=None)


def test_api_keys_identify_names_keys_without_revealing_them():
    alpha, beta = KEYS.identify("sk-alpha"), KEYS.identify("sk-beta")
    assert alpha is not None and beta is not None and alpha != beta
    assert re.fullmatch(r"[0-9a-f]{12}", alpha) and "alpha" not in alpha
    assert KEYS.identify("sk-alph") is None and KEYS.identify("") is None
    assert "sk-alpha" not in repr(KEYS)


def test_api_keys_missing_file_refuses_to_start(tmp_path):
    with pytest.raises(OSError):
        ApiKeys.load(file=tmp_path / "absent")


def test_api_key_middleware_refuses_a_request_without_a_key(client):
    r = client.get("/v1/audio/speech")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert "didn't provide an API key" in error["message"]


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer sk-wrong"},
                                     {"Authorization": "Basic c2stYmV0YQ=="},
                                     {"Authorization": "Bearer sk-bet"},
                                     {"X-API-Key": "sk-alpha-and-more"}])
def test_api_key_middleware_refuses_a_wrong_key(client, headers):
    r = client.get("/v1/audio/speech", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert "sk-" not in r.text  # the offered key is never echoed


@pytest.mark.parametrize("headers", [BEARER, {"Authorization": "bearer sk-alpha"},
                                     {"X-API-Key": "sk-alpha"}])
def test_api_key_middleware_admits_a_configured_key(client, headers):
    r = client.get("/v1/audio/speech", headers=headers)
    assert r.status_code == 200
    assert r.text.startswith("key:") and r.text != "key:"  # handlers learn which key


def test_api_key_middleware_keeps_health_and_open_paths_open(client):
    assert client.get("/health").status_code == 200  # always, though not in open_paths
    assert client.get("/metrics").status_code == 200
    assert client.get("/static/app.js").status_code == 401


def test_api_key_middleware_opens_prefixes():
    with TestClient(keyed_app(open_prefixes=("/static/",))) as test_client:
        assert test_client.get("/static/app.js").status_code == 200
        assert test_client.get("/v1/audio/speech").status_code == 401


def test_api_key_middleware_passes_cors_preflight_without_a_key(client):
    preflight_headers = {"Origin": "https://app.example",
                         "Access-Control-Request-Method": "POST"}
    assert client.options("/v1/audio/voices", headers=preflight_headers).status_code == 204
    assert client.options("/v1/audio/voices").status_code == 401  # not a preflight


def test_api_key_middleware_is_off_without_keys():
    with TestClient(keyed_app(ApiKeys())) as test_client:
        r = test_client.get("/v1/audio/speech")
    assert r.status_code == 200 and r.text == "ip:testclient"


def test_api_key_middleware_closes_a_websocket_without_a_key(client):
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect("/v1/audio/speech/ws"):
        pass
    assert closed.value.code == 1008


@pytest.mark.parametrize("how", ["query", "header"])
def test_api_key_middleware_accepts_a_websocket_key(client, how):
    if how == "query":
        session = client.websocket_connect("/v1/audio/speech/ws?api_key=sk-alpha")
    else:
        session = client.websocket_connect("/v1/audio/speech/ws", headers=dict(BEARER))
    with session as ws:
        assert ws.receive_text() == "hello"


def test_api_key_middleware_wrong_websocket_key_is_http_403_under_uvicorn():
    with serve(keyed_app()) as url:
        ws_url = url.replace("http://", "ws://") + "/v1/audio/speech/ws"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url + "?api_key=sk-wrong", open_timeout=5).close()
        with connect(ws_url + "?api_key=sk-beta", open_timeout=5) as ws:
            greeting = ws.recv(timeout=5)
    assert refused.value.response.status_code == 403
    assert greeting == "hello"


def test_rate_limiter_allows_the_burst_then_refills():
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock)
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(1.0)
    assert limiter.check("b") is None  # buckets are per identity
    clock.now += 1.0
    assert limiter.check("a") is None
    assert limiter.check("a") is not None


def test_rate_limiter_forgets_only_refilled_buckets():
    clock = FakeClock()
    limiter = RateLimiter(60, burst=1, clock=clock, max_identities=2)
    assert limiter.check("drained") is None
    clock.now += 5  # "drained" has refilled: forgetting it changes nothing
    limiter.check("busy-1")
    limiter.check("busy-2")
    assert len(limiter) == 2
    assert limiter.check("busy-1") is not None  # a drained bucket is remembered


def test_api_key_middleware_rate_limits_each_key():
    clock = FakeClock()
    app = keyed_app(rate_limiter=RateLimiter(30, burst=1, clock=clock))
    with TestClient(app) as test_client:
        assert test_client.get("/v1/audio/speech", headers=BEARER).status_code == 200
        limited = test_client.get("/v1/audio/speech", headers=BEARER)
        other_key = test_client.get("/v1/audio/speech", headers={"X-API-Key": "sk-alpha"})
        health = [test_client.get("/health").status_code for _ in range(3)]
        clock.now += 2.0
        refilled = test_client.get("/v1/audio/speech", headers=BEARER)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert other_key.status_code == 200 and refilled.status_code == 200
    assert health == [200, 200, 200]


def test_api_key_middleware_rate_limits_by_client_without_keys():
    app = keyed_app(ApiKeys(), rate_limiter=RateLimiter(1, burst=1, clock=FakeClock()))
    with TestClient(app) as test_client:
        codes = [test_client.get("/v1/audio/speech").status_code for _ in range(2)]
    assert codes == [200, 429]
