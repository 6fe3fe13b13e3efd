"""Seed 004's streaming protocol over a WebSocket (`/ws/synthesize`), and seed 000's raw mode.

Seed 004, one session:

    client                                   server
    {"voice"|"voice_description",       ──▶
     "sample_rate", generation fields}  ◀──  {"type": "ready", "message", "sample_rate", "voice"}
    {"text": "Hel"} {"text": "lo. Ho"}  ──▶  (text may split anywhere; sentences are found
                                              as they complete and spoken at once)
                                        ◀──  {"type": "audio", "data": <base64 PCM16>,
                                              "sample_rate"}                       (repeated)
                                        ◀──  {"type": "keepalive"}           (every few seconds)
    {"type": "cancel"}                  ──▶  current audio and its engine requests stopped;
                                        ◀──  {"type": "cancelled"}
    {"type": "end_of_stream"}           ──▶  the rest of the text is flushed and spoken;
                                        ◀──  {"type": "complete", "message", "usage"}
    anything malformed                  ──▶  {"type": "error", "message"}; the session goes on

A session holds one admission slot for its whole life; its sentences are synthesised in
order, the next one's engine request opened while the current one streams (one ahead).
Closing the socket aborts every engine request of the session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from app.delivery.pipeline import AudioPipeline
from app.errors import TTSError
from app.protocol import SpeechRequest, StreamConfig, VoiceRef
from app.routes.common import validation_message
from app.streams import SpeechStream
from app.synthesis import ClonedVoice, SpeechService
from app.text import SentenceBuffer

logger = logging.getLogger(__name__)

SendJson = Callable[[dict[str, Any]], Awaitable[None]]


class ProtocolError(Exception):
    """A client message the session cannot use; reported as an `error` message."""


class StreamSession:
    """One `/ws/synthesize` session after its config was accepted."""

    def __init__(self, service: SpeechService, config: StreamConfig, speaker: str | None,
                 cloned: ClonedVoice | None, send_json: SendJson, request_id: str):
        self.service = service
        self.config = config
        self.speaker = speaker
        self.cloned = cloned
        self.send_json = send_json
        self.request_id = request_id
        self.buffer = SentenceBuffer()
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._opened: deque[SpeechStream] = deque()  # the current stream and the next one
        self._speaker_task: asyncio.Task[None] | None = None
        self._count = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        self.sentences_spoken = 0

    def _request(self, sentence: str) -> SpeechRequest:
        config = self.config
        voice: str | VoiceRef | None = None if self.cloned is not None else self.speaker
        return SpeechRequest(
            input=sentence, voice=voice, model=config.model, response_format="pcm",
            temperature=config.temperature, repetition_penalty=config.repetition_penalty,
            max_tokens=config.max_tokens, speed=config.speed,
            playback_speed=config.playback_speed,
            playback_overlap_speed=config.playback_overlap_speed,
            normalize_malaysian=config.normalize_malaysian)

    def check(self) -> None:
        """Validate the config as a request once, so a bad one fails before `ready`."""
        self.service.prepare(self._request("Hello."), self.request_id, cloned=self.cloned,
                             max_input_chars=0)

    def start(self) -> None:
        self._speaker_task = asyncio.ensure_future(self._speak_all())

    async def push_text(self, piece: str) -> None:
        for sentence in self.buffer.push(piece):
            await self._sentences.put(sentence)

    async def end_of_stream(self) -> None:
        """Flush the buffer, wait for everything queued to be spoken, report completion."""
        for sentence in self.buffer.flush():
            await self._sentences.put(sentence)
        await self._sentences.put(None)
        task, self._speaker_task = self._speaker_task, None
        if task is not None:
            await task
        await self.send_json({"type": "complete", "message": "Synthesis completed",
                              "usage": dict(self.usage)})
        self.start()

    async def cancel(self) -> None:
        """Barge-in: drop pending text and sentences, stop the audio and its engine work."""
        self.buffer = SentenceBuffer()
        task, self._speaker_task = self._speaker_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_opened()
        self._sentences = asyncio.Queue()
        self.start()

    async def close(self) -> None:
        task, self._speaker_task = self._speaker_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_opened()

    async def _close_opened(self) -> None:
        while self._opened:
            await self._opened.popleft().aclose()

    async def _open(self, sentence: str) -> SpeechStream | None:
        self._count += 1
        job = self.service.prepare(self._request(sentence),
                                   f"{self.request_id}-{self._count}", cloned=self.cloned,
                                   max_input_chars=0)
        return await self.service.open(job, admit=False)

    async def _next_stream(self) -> SpeechStream | None:
        """The stream of the next sentence (opened ahead when it was already queued)."""
        if self._opened:
            return self._opened.popleft()
        while True:
            sentence = await self._sentences.get()
            if sentence is None:
                return None
            try:
                return await self._open(sentence)
            except TTSError as exc:
                await self.send_json({"type": "error", "message": exc.message})

    async def _open_ahead(self) -> None:
        """Start the next sentence's generation while this one streams (one ahead)."""
        if self._opened or self._sentences.empty():
            return
        sentence = self._sentences.get_nowait()
        if sentence is None:
            self._sentences.put_nowait(None)  # keep the end marker for _next_stream
            return
        try:
            stream = await self._open(sentence)
        except TTSError as exc:
            await self.send_json({"type": "error", "message": exc.message})
            return
        if stream is not None:
            self._opened.append(stream)

    async def _speak_all(self) -> None:
        while True:
            stream = await self._next_stream()
            if stream is None:
                return
            try:
                await self._speak(stream)
            except TTSError as exc:
                await self.send_json({"type": "error", "message": exc.message})
            except Exception as exc:  # noqa: BLE001 - one sentence fails, the session goes on
                logger.error("sentence failed: %r", exc)
                await self.send_json({"type": "error", "message": "synthesis failed"})
            finally:
                await stream.aclose()

    async def _speak(self, stream: SpeechStream) -> None:
        config = self.config
        rate = self.service.sample_rate
        pipeline = AudioPipeline("pcm", rate, speed=config.speed,
                                 output_rate=config.sample_rate)
        try:
            async for chunk in stream.chunks():
                await self._open_ahead()
                data = await pipeline.run(pipeline.push, chunk)
                if data:
                    await self._send_audio(data)
            tail = await pipeline.run(pipeline.finish)
            if tail:
                await self._send_audio(tail)
        finally:
            pipeline.close()
        for key, value in stream.usage().items():
            self.usage[key] += value
        self.sentences_spoken += 1

    async def _send_audio(self, data: bytes) -> None:
        await self.send_json({"type": "audio", "data": base64.b64encode(data).decode("ascii"),
                              "sample_rate": self.config.sample_rate})


def parse_message(raw: str | bytes | None) -> dict[str, Any]:
    if raw is None:
        raise ProtocolError("send text messages holding JSON objects")
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    return message


def parse_config(message: dict[str, Any]) -> StreamConfig:
    try:
        return StreamConfig.model_validate(message)
    except ValidationError as exc:
        text, _ = validation_message(exc)
        raise ProtocolError(f"invalid config: {text}") from None


async def run_keepalive(send_json: SendJson, interval_s: float) -> None:
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(interval_s)
            await send_json({"type": "keepalive"})
