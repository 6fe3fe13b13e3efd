"""One seed-004 WebSocket session (``/ws/synthesize``) as a load-test unit.

    config ──▶ ◀── ready;  {"text": piece} ──▶ (every ``piece_delay_s``)  ◀── audio (repeated)
    {"type": "end_of_stream"} ──▶ ◀── complete

The text goes out in ``piece_chars`` pieces, split anywhere (mid-word too), the way an LLM
streams tokens, while audio is received concurrently. The client runs the server's own
:class:`app.text.SentenceBuffer` over the pieces it sends, so it knows which piece completed
the first sentence; TTFA counts from when that piece was sent.

Errors, as ``RequestRecord.error``: ``ws_<code>`` when the server closes before ``complete``
(``ws_1013``: no slot; ``ws_1006``: the connection dropped without a close frame),
``ws_error`` for a protocol ``error`` message (the session is ended there: under load an
error is a failure, even though the protocol would let the session go on), ``http_<status>``
for a refused handshake, and ``connect_error``, ``timeout``, ``transport_error`` and
``invalid_body`` (audio that is not base64 PCM16 at the asked rate) as for HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from app.text import SentenceBuffer
from stress_test.report import SAMPLE_RATE, SAMPLE_WIDTH, RequestRecord

if TYPE_CHECKING:
    from stress_test.load import LoadConfig

logger = logging.getLogger(__name__)

ABNORMAL_CLOSURE = 1006  # RFC 6455: closed without a close frame
ERROR_DETAIL_CHARS = 300


class SessionError(Exception):
    """The session failed in a way the record names by ``kind``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def ws_url(base_url: str, path: str) -> str:
    """``http(s)://host`` (or ``ws(s)://host``) plus ``path``, as a WebSocket URL."""
    url = base_url.rstrip("/")
    for scheme, ws_scheme in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(scheme):
            url = ws_scheme + url[len(scheme):]
    return url + path


def split_pieces(text: str, piece_chars: int) -> list[str]:
    """``text`` cut every ``piece_chars`` characters, wherever that falls."""
    return [text[i:i + piece_chars] for i in range(0, len(text), piece_chars)] or [text]


def session_config(config: LoadConfig) -> dict[str, Any]:
    """The session's first message: the voice, the rate the report assumes, options."""
    message: dict[str, Any] = {"voice": config.voice, "sample_rate": SAMPLE_RATE,
                               "model": config.model}
    if config.max_tokens is not None:
        message["max_tokens"] = config.max_tokens
    if config.temperature is not None:
        message["temperature"] = config.temperature
    return message


def _decode(message: str | bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionError("invalid_body", "a server message is not JSON") from exc
    if not isinstance(decoded, dict):
        raise SessionError("invalid_body", "a server message is not a JSON object")
    return decoded


def _audio_bytes(message: dict[str, Any]) -> int:
    """PCM bytes of one audio message, checked for rate and sample alignment."""
    if message.get("sample_rate") != SAMPLE_RATE:
        raise SessionError("invalid_body", f"audio at {message.get('sample_rate')} Hz, "
                                           f"asked for {SAMPLE_RATE}")
    try:
        size = len(base64.b64decode(message.get("data") or "", validate=True))
    except (binascii.Error, TypeError) as exc:
        raise SessionError("invalid_body", "audio data is not base64") from exc
    if size % SAMPLE_WIDTH:
        raise SessionError("invalid_body", f"odd PCM byte count {size}")
    return size


async def _next(websocket: ClientConnection) -> dict[str, Any]:
    """The next server message that is not a keepalive; an ``error`` message raises."""
    while True:
        message = _decode(await websocket.recv())
        kind = message.get("type")
        if kind == "error":
            raise SessionError("ws_error", str(message.get("message"))[:ERROR_DETAIL_CHARS])
        if kind != "keepalive":
            return message


async def _send_text(
    websocket: ClientConnection,
    config: LoadConfig,
    clock: Callable[[], float],
    text: str,
    record: RequestRecord,
) -> None:
    """Send the pieces and ``end_of_stream``; note when the first sentence was complete."""
    buffer = SentenceBuffer()
    for number, piece in enumerate(split_pieces(text, config.piece_chars)):
        if number and config.piece_delay_s:
            await asyncio.sleep(config.piece_delay_s)
        await websocket.send(json.dumps({"text": piece}))
        if record.first_sentence_s is None and buffer.push(piece):
            record.first_sentence_s = clock()
    await websocket.send(json.dumps({"type": "end_of_stream"}))
    if record.first_sentence_s is None:
        record.first_sentence_s = clock()  # text without a sentence end: end_of_stream ends it


async def _converse(
    websocket: ClientConnection,
    config: LoadConfig,
    clock: Callable[[], float],
    text: str,
    record: RequestRecord,
) -> None:
    record.sent_s = clock()
    await websocket.send(json.dumps(session_config(config)))
    ready = await _next(websocket)
    if ready.get("type") != "ready":
        raise SessionError("invalid_body", f"expected ready, got {ready.get('type')!r}")
    sender = asyncio.create_task(_send_text(websocket, config, clock, text, record))
    try:
        while True:
            message = await _next(websocket)
            if message.get("type") == "audio":
                arrival_s = clock()
                size = _audio_bytes(message)
                if size:
                    record.chunks.append((arrival_s, size))
            elif message.get("type") == "complete":
                record.end_s = clock()  # the close handshake after this is not latency
                break
        await sender  # complete before the text was all sent would be the server's bug
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    if not record.chunks:
        raise SessionError("invalid_body", "no audio before complete")


async def run_session(
    config: LoadConfig, clock: Callable[[], float], index: int, text: str, start_s: float
) -> RequestRecord:
    """One session for ``text``; failures become the record's ``error``, never raise."""
    record = RequestRecord(index=index, text=text, stream=True, response_format="pcm",
                           start_s=start_s, end_s=start_s)
    url = ws_url(config.url, config.ws_path)
    try:
        async with asyncio.timeout(config.timeout_s):
            async with connect(url, max_size=None, open_timeout=None,
                               close_timeout=5) as websocket:
                record.status = 101  # Switching Protocols: the handshake succeeded
                await _converse(websocket, config, clock, text, record)
    except SessionError as exc:
        record.error, record.error_detail = exc.kind, exc.detail
    except InvalidStatus as exc:
        record.status = exc.response.status_code
        record.error = f"http_{exc.response.status_code}"
        record.error_detail = exc.response.body.decode("utf-8", "replace")[:ERROR_DETAIL_CHARS] \
            if exc.response.body else None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else ABNORMAL_CLOSURE
        record.error = f"ws_{code}"
        record.error_detail = (exc.rcvd.reason if exc.rcvd is not None else "") or str(exc)
    except TimeoutError as exc:
        record.error, record.error_detail = "timeout", str(exc) or "session timed out"
    except InvalidHandshake as exc:
        record.error, record.error_detail = "transport_error", str(exc)
    except OSError as exc:
        kind = "connect_error" if record.status is None else "transport_error"
        record.error, record.error_detail = kind, str(exc) or type(exc).__name__
    finally:
        if not record.ok or record.end_s == start_s:
            record.end_s = clock()
    if not record.ok:
        logger.warning("session %d failed: %s: %s", index, record.error, record.error_detail)
    return record
