"""HTTP delivery of one synthesis: a raw audio body, SSE events, or one whole file.

- `stream_format: "audio"`, streamed: chunked bytes of the chosen format. A failure after
  the status line was sent drops the connection without the final chunk, so the client
  sees a truncated body, never a short valid file.
- `stream_format: "sse"`: `speech.audio.delta` events (base64 of the format's bytes), then
  `speech.audio.done` with the engine's token counts; a failure after the first byte sends
  an `error` event and ends the stream.
- `stream: false`: the whole file with `Content-Length` (exact WAV and FLAC headers).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response

from app.delivery.formats import MEDIA_TYPES
from app.delivery.http import AudioStreamingResponse, run_until_disconnect
from app.delivery.pipeline import AudioPipeline, AudioSource, encoded
from app.errors import TTSError
from app.state import AppState
from app.synthesis import SpeechJob

logger = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"
_HEADER_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_IGNORED_NAMED = 20


def sse_event(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def audio_headers(state: AppState, job: SpeechJob) -> dict[str, str]:
    headers = {"X-Request-Id": job.request_id,
               "X-Sample-Rate": str(state.speech.sample_rate)}
    if state.demo:
        headers["X-TTS-Demo"] = "true"
    if job.ignored_fields:
        names = [_HEADER_SAFE.sub("_", name)[:64] for name in job.ignored_fields]
        headers["X-Ignored-Fields"] = ", ".join(names[:MAX_IGNORED_NAMED])
    if job.instructions_ignored:
        headers["X-Instructions-Ignored"] = "true"
    return headers


def _error_payload(exc: Exception) -> dict[str, object]:
    if isinstance(exc, TTSError):
        error = exc.envelope()["error"]
    else:
        error = {"message": "synthesis failed after the stream started",
                 "type": "server_error", "param": None, "code": "stream_failed"}
    return {"type": "error", "error": error}


async def sse_body(source: AudioSource, pipeline: AudioPipeline) -> AsyncIterator[bytes]:
    try:
        async for data in encoded(source, pipeline):
            yield sse_event({"type": "speech.audio.delta",
                             "audio": base64.b64encode(data).decode("ascii")})
    except Exception as exc:  # noqa: BLE001 - every failure becomes the stream's error event
        logger.error("stream failed after it started: %r", exc)
        yield sse_event(_error_payload(exc))
        return
    yield sse_event({"type": "speech.audio.done", "usage": source.usage()})


def _count(state: AppState, pipeline: AudioPipeline) -> None:
    state.metrics.clipped(pipeline.conditioner.clipped)


async def _counted(state: AppState, pipeline: AudioPipeline,
                   body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for data in body:
            yield data
    finally:
        _count(state, pipeline)


def timing_header(timing: Callable[[float], dict[str, float]]
                  ) -> Callable[[float], dict[str, str]]:
    """`X-Timing: parse=0.4;admission=0.5;...;first_byte=212.0`: ms since the request came."""
    def headers(first_byte_at: float) -> dict[str, str]:
        marks = timing(first_byte_at)
        return {"X-Timing": ";".join(f"{name}={ms:g}" for name, ms in marks.items())}
    return headers


async def respond_with_audio(
    request: Request, state: AppState, source: AudioSource, job: SpeechJob, *,
    timing: Callable[[float], dict[str, float]] | None = None,
) -> Response:
    """Deliver `source` as `job` asks: streamed audio, SSE events, or one whole file.

    `timing(first_byte_at)`: marks towards the first audio, sent as `X-Timing` (streamed
    responses hold their status line until the first body byte for it).
    """
    headers = audio_headers(state, job)
    late = timing_header(timing) if timing else None
    rate = state.speech.sample_rate
    if job.stream_format == "sse":
        pipeline = AudioPipeline(job.response_format, rate, speed=job.speed)
        headers["Cache-Control"] = "no-cache"
        headers["X-Audio-Format"] = job.response_format
        return AudioStreamingResponse(
            _counted(state, pipeline, sse_body(source, pipeline)), on_close=source.aclose,
            send_timeout_s=state.settings.send_timeout_s, media_type=SSE_MEDIA_TYPE,
            headers=headers, late_headers=late)
    media_type = MEDIA_TYPES[job.response_format]
    if job.stream:
        pipeline = AudioPipeline(job.response_format, rate, speed=job.speed)
        return AudioStreamingResponse(
            _counted(state, pipeline, encoded(source, pipeline)), on_close=source.aclose,
            send_timeout_s=state.settings.send_timeout_s, media_type=media_type,
            headers=headers, late_headers=late)
    pipeline = AudioPipeline(job.response_format, rate, speed=job.speed, whole_file=True)

    async def collect() -> bytes:
        return b"".join([data async for data in _counted(state, pipeline,
                                                         encoded(source, pipeline))])

    try:
        body = await run_until_disconnect(request, collect())
    finally:
        await source.aclose()
    if body is None:  # the client is gone; nobody will read this
        return Response(status_code=499)
    if late:
        headers.update(late(time.perf_counter()))
    return Response(body, media_type=media_type, headers=headers)
