"""Async load generator for ``POST /v1/audio/speech`` and seed 004's ``/ws/synthesize``.

Three modes (``LoadConfig.mode``), each one unit of work per text:

- ``http``: one ``POST /v1/audio/speech`` per text.
- ``ws``: one WebSocket session per text, the text sent in pieces the way an LLM streams
  tokens (see :mod:`stress_test.ws`).
- ``sentences``: one conversation per text, split into sentences sent one per HTTP request,
  ``pause_s`` apart, as voice agents (LiveKit, Pipecat, Home Assistant) do; one record per
  sentence request, grouped by ``RequestRecord.session``.

Closed loop (no rate): ``concurrency`` workers each start their next unit as soon as the
previous one ends. Open loop (a rate): units arrive as a seeded Poisson process whatever
the server does; ``concurrency`` caps the units in flight and a unit waiting for a slot
has that wait counted in its latency. Either way exactly ``requests`` units are run.

Failures never raise out of :func:`run_load`; each becomes a :class:`RequestRecord` whose
``error`` names the kind (see :mod:`stress_test.report`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import logging
import random
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from app.text import split_sentences
from stress_test.clock import Clock as _Clock
from stress_test.report import SAMPLE_RATE, SAMPLE_WIDTH, RequestRecord, parse_timing
from stress_test.ws import run_session

logger = logging.getLogger(__name__)

SPEECH_PATH = "/v1/audio/speech"
WAV_HEADER_BYTES = 44
WAV_UNKNOWN_SIZE = 0xFFFFFFFF
ERROR_DETAIL_CHARS = 300

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
StreamMode = Literal["on", "off", "mix"]
StreamFormat = Literal["audio", "sse"]
LoadMode = Literal["http", "ws", "sentences"]
WS_PATH = "/ws/synthesize"

_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


@dataclass(frozen=True)
class LoadConfig:
    """One run's parameters. ``rate`` is units (requests, sessions or conversations) per
    second (``None``: closed loop); ``timeout_s`` bounds each HTTP exchange, from send to the
    last body byte, and each WebSocket session, from connect to ``complete``.

    ``piece_chars`` and ``piece_delay_s`` shape the text of a ``ws`` session (pieces of that
    many characters, that many seconds apart); ``pause_s`` is the pause between the sentence
    requests of a ``sentences`` conversation, from one response's end to the next request.
    """

    url: str
    requests: int
    concurrency: int
    rate: float | None = None
    response_format: ResponseFormat = "pcm"
    stream_mode: StreamMode = "on"
    stream_format: StreamFormat = "audio"
    voice: str = "husein"
    model: str = "TTS-model"
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float = 300.0
    seed: int = 0
    mode: LoadMode = "http"
    piece_chars: int = 20
    piece_delay_s: float = 0.05
    pause_s: float = 0.3
    ws_path: str = WS_PATH

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.piece_chars < 1:
            raise ValueError("piece_chars must be at least 1")
        if self.piece_delay_s < 0 or self.pause_s < 0:
            raise ValueError("piece_delay_s and pause_s must not be negative")
        if self.mode == "ws" and (self.response_format != "pcm" or self.stream_mode != "on"
                                  or self.stream_format != "audio"):
            raise ValueError("a WebSocket session streams raw PCM: keep the format options")

    def stream_for(self, index: int) -> bool:
        """Whether request ``index`` streams; ``mix`` alternates, starting with streaming."""
        if self.stream_mode == "mix":
            return index % 2 == 0
        return self.stream_mode == "on"

    def payload_for(self, index: int, text: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "input": text,
            "voice": self.voice,
            "model": self.model,
            "response_format": self.response_format,
            "stream": self.stream_for(index),
        }
        if self.stream_format == "sse":
            payload["stream_format"] = "sse"
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        return payload


class InvalidBody(Exception):
    """A 2xx response whose body is not the audio the request asked for."""


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival offsets in seconds of a Poisson process at ``rate`` per second."""
    rng = random.Random(seed)
    return list(itertools.accumulate(rng.expovariate(rate) for _ in range(count)))


def check_wav_header(header: bytes) -> int | None:
    """Validate a 44-byte RIFF header for 16-bit mono 24 kHz PCM.

    Returns the declared data size in bytes, or ``None`` when the header marks the length
    as unknown (0xFFFFFFFF, as a streamed WAV does). Raises :class:`InvalidBody` otherwise.
    """
    fields = _WAV_HEADER.unpack(header)
    riff, riff_size, wave, fmt, fmt_size, audio_format, channels, rate = fields[:8]
    bits, data, data_size = fields[10:]  # skipping byte rate and block align
    if (riff, wave, fmt, data) != (b"RIFF", b"WAVE", b"fmt ", b"data") or fmt_size != 16:
        raise InvalidBody("bad RIFF header")
    if (audio_format, channels, rate, bits) != (1, 1, SAMPLE_RATE, SAMPLE_WIDTH * 8):
        raise InvalidBody(
            f"WAV is format {audio_format}, {channels} channel(s), {rate} Hz, {bits}-bit;"
            f" expected 16-bit mono {SAMPLE_RATE} Hz PCM"
        )
    if data_size == WAV_UNKNOWN_SIZE:
        if riff_size != WAV_UNKNOWN_SIZE:
            raise InvalidBody("RIFF size is known but data size is not")
        return None
    if riff_size != data_size + WAV_HEADER_BYTES - 8:
        raise InvalidBody("RIFF size disagrees with data size")
    return int(data_size)


def _error_detail(body: bytes) -> str:
    """The message of an OpenAI error envelope, else the start of the body."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", errors="replace")
    return str(message)[:ERROR_DETAIL_CHARS]


class _SseReader:
    """Incremental `text/event-stream` parser: audio bytes of each `speech.audio.delta`."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        audio = b""
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                try:
                    payload = json.loads(line[5:])
                except ValueError as exc:
                    raise InvalidBody("malformed SSE event") from exc
                if payload.get("type") == "error":
                    raise InvalidBody(f"error event: {payload.get('error')}")
                if payload.get("type") == "speech.audio.delta":
                    audio += base64.b64decode(payload.get("audio") or payload.get("delta") or "")
        return audio


async def _send(
    client: httpx.AsyncClient,
    config: LoadConfig,
    clock: _Clock,
    index: int,
    text: str,
    start_s: float,
) -> RequestRecord:
    stream = config.stream_for(index)
    record = RequestRecord(
        index=index,
        text=text,
        stream=stream,
        response_format=config.response_format,
        start_s=start_s,
        end_s=start_s,
    )
    pieces: list[tuple[float, bytes]] = []  # (arrival, bytes of the audio format)
    record.sent_s = clock()
    try:
        async with asyncio.timeout(config.timeout_s):
            async with client.stream(
                "POST", SPEECH_PATH, json=config.payload_for(index, text)
            ) as response:
                record.status = response.status_code
                record.timing = parse_timing(response.headers.get("x-timing"))
                content_type = response.headers.get("content-type", "")
                sse = content_type.startswith("text/event-stream")
                reader = _SseReader()
                if not response.is_success:
                    record.error = f"http_{response.status_code}"
                    record.error_detail = _error_detail(await response.aread())
                elif content_type.startswith("application/json"):
                    raise InvalidBody("JSON body on a successful response")
                elif sse != (config.stream_format == "sse"):
                    raise InvalidBody(f"content type {content_type!r} for stream_format "
                                      f"{config.stream_format!r}")
                else:
                    async for data in response.aiter_bytes():
                        arrival_s = clock()
                        audio = reader.feed(data) if sse else data
                        if audio:
                            pieces.append((arrival_s, audio))
        if record.ok:
            record.chunks = audio_chunks(config.response_format, pieces)
    except (TimeoutError, httpx.TimeoutException) as exc:
        record.error, record.error_detail = "timeout", str(exc) or type(exc).__name__
    except httpx.ConnectError as exc:
        record.error, record.error_detail = "connect_error", str(exc) or type(exc).__name__
    except httpx.TransportError as exc:
        record.error, record.error_detail = "transport_error", str(exc) or type(exc).__name__
    except (InvalidBody, httpx.DecodingError) as exc:
        record.error, record.error_detail = "invalid_body", str(exc)
    finally:
        record.end_s = clock()
    if not record.ok:
        logger.warning("request %d failed: %s: %s", index, record.error, record.error_detail)
    return record


def decoded_seconds(data: bytes) -> float:
    """Duration of a compressed body, decoded with FFmpeg (PyAV); undecodable raises."""
    import av  # only the compressed formats need FFmpeg

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            return samples / stream.rate
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise InvalidBody(f"audio does not decode: {exc}") from exc


def audio_chunks(fmt: str, pieces: list[tuple[float, bytes]]) -> list[tuple[float, int]]:
    """(arrival, PCM-equivalent bytes) per body piece that carried audio.

    pcm and wav are counted exactly (the WAV header is not audio). A compressed format is
    decoded whole and its duration shared out over the pieces by their byte counts (exact
    for CBR mp3, close for the others), so TTFA, RTF and stalls mean the same for every format.
    """
    body = b"".join(data for _, data in pieces)
    if not body:
        raise InvalidBody("no audio in the body")
    if fmt in ("pcm", "wav"):
        header_needed = WAV_HEADER_BYTES if fmt == "wav" else 0
        if len(body) < header_needed:
            raise InvalidBody(f"body ended after {len(body)} bytes, inside the WAV header")
        declared = check_wav_header(body[:header_needed]) if header_needed else None
        chunks, skip = [], header_needed
        for arrival_s, data in pieces:
            taken = min(skip, len(data))
            skip -= taken
            if len(data) > taken:
                chunks.append((arrival_s, len(data) - taken))
        audio_bytes = len(body) - header_needed
        if declared is not None and declared != audio_bytes:
            raise InvalidBody(f"WAV declares {declared} data bytes, body has {audio_bytes}")
        if audio_bytes == 0:
            raise InvalidBody("no audio in the body")
        if audio_bytes % SAMPLE_WIDTH:
            raise InvalidBody(f"odd PCM byte count {audio_bytes}")
        return chunks
    pcm_bytes = decoded_seconds(body) * SAMPLE_RATE * SAMPLE_WIDTH
    if pcm_bytes <= 0:
        raise InvalidBody("no audio in the body")
    chunks, done, seen = [], 0, 0
    for arrival_s, data in pieces:
        seen += len(data)
        upto = round(pcm_bytes * seen / len(body) / SAMPLE_WIDTH) * SAMPLE_WIDTH
        if upto > done:
            chunks.append((arrival_s, upto - done))
            done = upto
    return chunks


def conversation_sentences(text: str) -> list[str]:
    """The sentences a voice agent would send one by one: the server's own splitter."""
    return split_sentences(text) or [text]


def planned_requests(config: LoadConfig, texts: Sequence[str]) -> int:
    """How many records a run will return (a conversation returns one per sentence)."""
    if config.mode != "sentences":
        return config.requests
    return sum(
        len(conversation_sentences(texts[index % len(texts)])) for index in range(config.requests)
    )


async def run_load(
    config: LoadConfig,
    texts: Sequence[str],
    *,
    on_complete: Callable[[RequestRecord], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[RequestRecord]:
    """Run ``config.requests`` units of ``config.mode``, cycling through ``texts``; return
    their records in order (by conversation, then sentence, in ``sentences`` mode, indexed
    afresh). ``on_complete`` is called once per finished record (a progress bar)."""
    if not texts:
        raise ValueError("texts must not be empty")
    limits = httpx.Limits(
        max_connections=config.concurrency, max_keepalive_connections=config.concurrency
    )
    records: list[RequestRecord] = []

    def done(record: RequestRecord) -> None:
        records.append(record)
        if on_complete is not None:
            on_complete(record)

    async with httpx.AsyncClient(
        base_url=config.url,
        timeout=httpx.Timeout(config.timeout_s),
        limits=limits,
        transport=transport,
    ) as client:
        clock = _Clock()

        async def send(index: int, start_s: float) -> None:
            text = texts[index % len(texts)]
            if config.mode == "ws":
                done(await run_session(config, clock, index, text, start_s))
            elif config.mode == "sentences":
                await _converse(client, config, clock, index, text, start_s, done)
            else:
                done(await _send(client, config, clock, index, text, start_s))

        if config.rate is None:
            await _closed_loop(config, clock, send)
        else:
            await _open_loop(config, config.rate, clock, send)
    if config.mode != "sentences":
        return sorted(records, key=lambda record: record.index)
    records.sort(key=lambda record: (record.session, record.start_s))
    for index, record in enumerate(records):
        record.index = index
    return records


async def _converse(
    client: httpx.AsyncClient,
    config: LoadConfig,
    clock: _Clock,
    session: int,
    text: str,
    start_s: float,
    done: Callable[[RequestRecord], None],
) -> None:
    """One conversation: its sentences in order, each request ``pause_s`` after the last
    response ended; a failed sentence does not end the conversation."""
    for number, sentence in enumerate(conversation_sentences(text)):
        if number:
            await asyncio.sleep(config.pause_s)
            start_s = clock()
        record = await _send(client, config, clock, session, sentence, start_s)
        record.session = session
        done(record)


_Send = Callable[[int, float], Awaitable[None]]


async def _closed_loop(config: LoadConfig, clock: _Clock, send: _Send) -> None:
    indices = iter(range(config.requests))  # shared: each worker takes the next index

    async def worker() -> None:
        for index in indices:
            await send(index, clock())

    async with asyncio.TaskGroup() as group:
        for _ in range(min(config.concurrency, config.requests)):
            group.create_task(worker())


async def _open_loop(config: LoadConfig, rate: float, clock: _Clock, send: _Send) -> None:
    slots = asyncio.Semaphore(config.concurrency)

    async def arrive(index: int, due_s: float) -> None:
        await asyncio.sleep(max(0.0, due_s - clock()))
        async with slots:
            await send(index, due_s)

    arrivals = poisson_arrivals(config.requests, rate, config.seed)
    async with asyncio.TaskGroup() as group:
        for index, due_s in enumerate(arrivals):
            group.create_task(arrive(index, due_s))
