"""POST /v1/audio/normalize (what will be spoken) and seed 004's REST form, POST /synthesize."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.delivery.respond import respond_with_audio
from app.protocol import NormalizeRequest, NormalizeResponse, SpeechRequest, SynthesizeRequest
from app.routes.common import parse_json
from app.state import AppState, request_id_of
from app.text import normalize_details


async def normalize(request: Request) -> JSONResponse:
    body = await parse_json(request, NormalizeRequest)
    details = normalize_details(body.text)
    return JSONResponse(NormalizeResponse.model_validate(details).model_dump())


async def _synthesize(request: Request, *, stream: bool) -> Response:
    state: AppState = request.app.state.tts
    body = await parse_json(request, SynthesizeRequest)
    speech = state.speech
    speaker = (speech.resolve_speaker(body.voice) if body.voice
               else speech.speaker_for_description(body.voice_description))
    speech_request = SpeechRequest(input=body.text, voice=speaker,
                                   response_format=body.format, stream=stream)
    job = speech.prepare(speech_request, request_id_of(request))
    audio = await speech.open(job)
    return await respond_with_audio(request, state, audio, job)


async def synthesize(request: Request) -> Response:
    """The whole file, with `Content-Length` and `X-Sample-Rate`."""
    return await _synthesize(request, stream=False)


async def synthesize_stream(request: Request) -> Response:
    """Seed 004's streaming variant: the same audio, streamed as it is made."""
    return await _synthesize(request, stream=True)
