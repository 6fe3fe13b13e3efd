"""Helpers shared by routes: body parsing, audio responses that abort work on disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.errors import InvalidRequest

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """First validation error as (client message, param)."""
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
    param = loc[0] if loc else None
    where = ".".join(loc)
    return (f"{where}: {error['msg']}" if where else error["msg"]), param


def parse_model(model: type[M], data: object) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise InvalidRequest(message, param=param) from None


async def parse_json(request: Request, model: type[M]) -> M:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("request body is not valid JSON") from None
    return parse_model(model, data)


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class AudioStreamingResponse(StreamingResponse):
    """Streams audio and, whatever happens, closes the producer.

    A client disconnect cancels the body generator at once (not at the next write), and
    `on_close` runs in every case so the engine request is aborted and codec work withdrawn.
    A failure after the status line was sent is logged and the connection is dropped without
    the final chunk, so the client sees an incomplete body rather than a short, valid file.
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]],
        **kwargs: object,
    ):
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        listening = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, listening):
                task.cancel()
            await asyncio.gather(streaming, listening, return_exceptions=True)
            await self._on_close()
        if streaming.done() and not streaming.cancelled() and streaming.exception() is None:
            return  # finished; uvicorn reports the connection's end as a disconnect too
        if listening.done() and not listening.cancelled():
            logger.info("client disconnected; generation aborted")
        elif not streaming.cancelled() and streaming.exception() is not None:
            exc = streaming.exception()
            if isinstance(exc, OSError):
                logger.info("client went away mid-stream")
            else:
                logger.error("stream failed after it started: %r", exc)


async def run_until_disconnect(request: Request, work: Awaitable[bytes]) -> bytes | None:
    """Await `work` unless the client disconnects first (then cancel it and return None)."""
    task = asyncio.ensure_future(work)
    listening = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listening.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, listening, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()
