"""Sentry: an unhandled route error reaches a stand-in Sentry endpoint on loopback."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sentry_sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.observability import LOG_FORMAT, init_sentry, setup_logging
from app.state import REQUEST_ID
from tests.servers import serve


class SentryProbeError(RuntimeError):
    """Raised by the test route; its name must show up in the envelope."""


class StandInSentry:
    """Records the envelopes posted to /api/<project>/envelope/."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.arrived = threading.Event()

    def app(self) -> Starlette:
        async def envelope(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.envelopes.append(body)
            self.arrived.set()
            return JSONResponse({})

        return Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])])

    def events(self) -> list[dict]:
        """Every error event item of every envelope (an envelope is JSON lines)."""
        events = []
        for body in self.envelopes:
            lines = body.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2]):
                if json.loads(header).get("type") == "event":
                    events.append(json.loads(payload))
        return events


@pytest.fixture
def stand_in() -> Iterator[tuple[StandInSentry, str]]:
    sentry = StandInSentry()
    with serve(sentry.app()) as url:
        try:
            yield sentry, url.replace("http://", "http://public@") + "/1"
        finally:
            # Leave no client behind for later tests: close it (sending what is queued while
            # the stand-in still listens), and unset it where init put it.
            sentry_sdk.get_client().close(timeout=5)
            sentry_sdk.get_global_scope().set_client(None)


def failing_app() -> Starlette:
    async def boom(request: Request) -> Response:
        raise SentryProbeError("probe")

    async def handled(request: Request, exc: Exception) -> Response:  # as the server's 500
        return JSONResponse({"error": {"message": "internal"}}, status_code=500)

    return Starlette(routes=[Route("/boom", boom, methods=["POST"])],
                     exception_handlers={Exception: handled})


def test_init_sentry_reports_unhandled_route_errors(stand_in):
    sentry, dsn = stand_in
    assert init_sentry(f"  {dsn}  ")
    with serve(failing_app()) as url:
        r = httpx.post(url + "/boom", json={"input": "words never reported"},
                       headers={"Authorization": "Bearer sk-never-reported"})
        assert r.status_code == 500
    sentry_sdk.flush(timeout=5)
    deadline = time.monotonic() + 5
    while not any(e.get("exception") for e in sentry.events()) and time.monotonic() < deadline:
        sentry.arrived.wait(0.1)
    errors = [(event, value) for event in sentry.events()
              for value in event.get("exception", {}).get("values", [])]
    probes = [(event, error) for event, error in errors if error["type"] == "SentryProbeError"]
    assert probes, sentry.events()
    event, error = probes[0]
    # Caught by the Starlette integration (not only logged), named after the endpoint.
    assert error["mechanism"]["type"] == "starlette"
    assert event["transaction"].endswith("failing_app.<locals>.boom")
    # Request bodies (the users' text) and API keys stay out of reports.
    assert event["request"]["method"] == "POST"
    assert not any(b"never reported" in body for body in sentry.envelopes)


def test_init_sentry_blank_dsn_sets_nothing_up(stand_in):
    sentry, _ = stand_in
    assert not init_sentry("   ")
    assert not sentry_sdk.get_client().is_active()
    sentry_sdk.capture_exception(SentryProbeError("nobody listens"))
    sentry_sdk.flush(timeout=1)
    assert sentry.envelopes == []


def test_setup_logging_puts_the_request_id_on_every_line(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        token = REQUEST_ID.set("req_abc")
        logging.getLogger("app.test").info("inside")
        REQUEST_ID.reset(token)
        logging.getLogger("app.test").info("outside")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert LOG_FORMAT.endswith("[%(request_id)s] %(message)s")
    assert lines[0].endswith("app.test [req_abc] inside")
    assert lines[1].endswith("app.test [-] outside")
