"""POST /v1/audio/speech."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from app.custom_voices import cloned_voice
from app.delivery.respond import respond_with_audio
from app.protocol import SpeechRequest, VoiceRef
from app.routes.common import parse_json
from app.state import AppState, request_id_of


async def create_speech(request: Request) -> Response:
    received_at = time.perf_counter()
    state: AppState = request.app.state.tts
    body = await parse_json(request, SpeechRequest)
    # A custom voice's stored frames; an unknown id leaves None and prepare answers 404.
    cloned = await cloned_voice(state, body.voice.id) if isinstance(body.voice, VoiceRef) else None
    job = state.speech.prepare(body, request_id_of(request), cloned=cloned)
    audio = await state.speech.open(job)
    audio.received_at = received_at
    return await respond_with_audio(request, state, audio, job, timing=audio.timing)
