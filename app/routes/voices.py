"""Custom voices: POST/GET /v1/audio/voices, GET/DELETE /v1/audio/voices/{voice_id}.

A voice is encoded once at creation; `/v1/audio/speech` with `voice={"id": ...}` then
prompts with the stored frames.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.errors import NotFound, Unsupported
from app.protocol import VoiceCreateForm, VoiceDeleted, VoiceObject
from app.routes.common import parse_model
from app.state import AppState
from app.uploads import read_multipart
from app.voice_store import CustomVoice, VoiceInfo

logger = logging.getLogger(__name__)

SAMPLE_FIELD = "audio_sample"


def _state(request: Request) -> AppState:
    return request.app.state.tts


def voice_object(info: VoiceInfo) -> VoiceObject:
    return VoiceObject(id=info.id, created_at=info.created_at, name=info.name)


def _not_found(voice_id: str) -> NotFound:
    return NotFound(f"Voice {voice_id!r} does not exist.", param="voice_id",
                    code="voice_not_found")


async def create_voice(request: Request) -> Response:
    state = _state(request)
    try:
        upload_form = await read_multipart(request, max_file_bytes=state.settings.max_upload_bytes)
    except ClientDisconnect:
        return Response(status_code=499)
    with upload_form:
        upload = upload_form.file(SAMPLE_FIELD)
        form = parse_model(VoiceCreateForm, upload_form.fields)
        if form.type != "audio_sample":
            raise Unsupported("only voices of type 'audio_sample' can be created here",
                              param="type")
        reference_text = state.references.reference_text(
            form.reference_text, normalize=form.normalize_malaysian, param="reference_text")
        frames = await state.references.encode(upload, param=SAMPLE_FIELD)
    voice = CustomVoice.new(form.name, reference_text, frames, state.codec_info.source,
                            form.consent, layout=state.codec_info.layout)
    await state.voices.add(voice)
    logger.info("created voice %s (%r, %d frames)", voice.info.id, voice.info.name,
                frames.shape[0])
    return JSONResponse(voice_object(voice.info).model_dump())


def builtin_voices(state: AppState) -> list[dict[str, object]]:
    data: list[dict[str, object]] = [
        {"id": s, "object": "audio.voice", "name": s, "type": "builtin"}
        for s in state.settings.speakers
    ]
    data += [
        {"id": alias, "object": "audio.voice", "name": alias, "type": "alias", "speaker": speaker}
        for alias, speaker in state.speech.voice_map.items()
    ]
    return data


async def list_voices(request: Request) -> JSONResponse:
    """Built-in speakers, OpenAI aliases, then custom voices (oldest first)."""
    state = _state(request)
    custom = [voice_object(info).model_dump() for info in await state.voices.list()]
    data = builtin_voices(state) + custom
    # `voices` is the peers' convention that Open WebUI's and Home Assistant's pickers read.
    voices = [{"id": voice["id"], "name": voice["name"]} for voice in data]
    return JSONResponse({"object": "list", "data": data, "voices": voices})


async def retrieve_voice(request: Request) -> JSONResponse:
    voice_id = request.path_params["voice_id"]
    voice = await _state(request).voices.get(voice_id)
    if voice is None:
        raise _not_found(voice_id)
    return JSONResponse(voice_object(voice.info).model_dump())


async def delete_voice(request: Request) -> JSONResponse:
    voice_id = request.path_params["voice_id"]
    if not await _state(request).voices.delete(voice_id):
        raise _not_found(voice_id)
    logger.info("deleted voice %s", voice_id)
    return JSONResponse(VoiceDeleted(id=voice_id).model_dump())
