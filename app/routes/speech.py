"""POST /v1/audio/speech."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from app.audio import MEDIA_TYPES, to_pcm16, wav_header
from app.protocol import SpeechRequest, VoiceRef
from app.routes.common import AudioStreamingResponse, parse_json, run_until_disconnect
from app.routes.voices import cloned_voice
from app.state import AppState, request_id_of
from app.synthesis import AudioStream


async def encode_stream(audio: AudioStream, fmt: str, sample_rate: int) -> AsyncIterator[bytes]:
    if fmt == "wav":
        yield wav_header(sample_rate)
    async for chunk in audio.chunks():
        yield to_pcm16(chunk)


async def collect_pcm(audio: AudioStream) -> bytes:
    return b"".join([to_pcm16(chunk) async for chunk in audio.chunks()])


def audio_headers(state: AppState, request_id: str, sample_rate: int) -> dict[str, str]:
    headers = {"X-Request-Id": request_id, "X-Sample-Rate": str(sample_rate)}
    if state.demo:
        headers["X-TTS-Demo"] = "true"
    return headers


async def respond_with_audio(
    request: Request, state: AppState, audio: AudioStream, fmt: str, stream: bool
) -> Response:
    """Stream `audio` as pcm/wav, or collect it and answer with exact sizes."""
    rate = state.speech.sample_rate
    headers = audio_headers(state, audio.job.request_id, rate)
    if stream:
        return AudioStreamingResponse(
            encode_stream(audio, fmt, rate), on_close=audio.aclose,
            media_type=MEDIA_TYPES[fmt], headers=headers,
        )
    try:
        pcm = await run_until_disconnect(request, collect_pcm(audio))
    finally:
        await audio.aclose()
    if pcm is None:  # the client is gone; nobody will read this
        return Response(status_code=499)
    body = wav_header(rate, len(pcm)) + pcm if fmt == "wav" else pcm
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


async def create_speech(request: Request) -> Response:
    state: AppState = request.app.state.tts
    body = await parse_json(request, SpeechRequest)
    # A custom voice's stored frames; an unknown id leaves None and prepare answers 404.
    cloned = await cloned_voice(state, body.voice.id) if isinstance(body.voice, VoiceRef) else None
    job = state.speech.prepare(body, request_id_of(request), cloned=cloned)
    audio = await state.speech.open(job)
    return await respond_with_audio(request, state, audio, job.response_format, job.stream)
