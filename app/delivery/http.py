"""HTTP responses that stream audio and always stop the producer behind them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class SlowClient(Exception):
    """The client did not accept a chunk within the send timeout."""


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class AudioStreamingResponse(StreamingResponse):
    """Streams audio and, whatever happens, closes the producer.

    A client disconnect cancels the body generator at once (not at the next write), and
    `on_close` runs in every case so the engine request is aborted and codec work withdrawn.
    A failure after the status line was sent is logged and the connection is dropped without
    the final chunk, so the client sees an incomplete body rather than a short, valid file.

    `late_headers(first_byte_at)`: headers only known at the first body byte (`X-Timing`);
    the status line then waits for that byte (or for the end, if the body fails first).
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]],
        send_timeout_s: float | None = None,
        late_headers: Callable[[float], dict[str, str]] | None = None, **kwargs: object,
    ):
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self._on_close = on_close
        self._send_timeout_s = send_timeout_s
        self._late_headers = late_headers

    def _holding_start(self, send: Send) -> tuple[Send, Callable[[], Awaitable[None]]]:
        """`send` that holds the status line until the first body; and a flush for it."""
        held: list[Message] = []

        async def flush() -> None:
            if held:
                await send(held.pop())

        async def holding(message: Message) -> None:
            if message["type"] == "http.response.start" and self._late_headers is not None:
                held.append(message)
                return
            if held and message["type"] == "http.response.body":
                start = held.pop()
                extra = self._late_headers(time.perf_counter()) if self._late_headers else {}
                start = {**start, "headers": [*start["headers"], *(
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())]}
                await send(start)
            await send(message)
        return holding, flush

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout = self._send_timeout_s
        send, flush_start = self._holding_start(send)

        async def timed_send(message: Message) -> None:
            # The server's flow control holds `send` while the client's socket buffer is
            # full, so a client that stops reading costs no memory; past the timeout it is
            # dropped, which aborts its engine work.
            try:
                await asyncio.wait_for(send(message), timeout)
            except TimeoutError:
                raise SlowClient from None

        streaming = asyncio.ensure_future(
            self.stream_response(timed_send if timeout else send))
        listening = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, listening):
                task.cancel()
            await asyncio.gather(streaming, listening, return_exceptions=True)
            try:
                if listening.cancelled():  # the client is still there; the body failed
                    await flush_start()  # before its first byte: status line, then cut
            finally:
                await self._on_close()
        if streaming.done() and not streaming.cancelled() and streaming.exception() is None:
            return  # finished; uvicorn reports the connection's end as a disconnect too
        if listening.done() and not listening.cancelled():
            logger.info("client disconnected; generation aborted")
        elif not streaming.cancelled() and streaming.exception() is not None:
            exc = streaming.exception()
            if isinstance(exc, SlowClient):
                logger.warning("client read too slowly (send timeout %.0f s); dropped", timeout)
            elif isinstance(exc, OSError):
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
