"""POST /v1/audio/vc: speak `generate_text` in the voice of an uploaded reference clip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.delivery.respond import respond_with_audio
from app.errors import InvalidRequest
from app.protocol import VoiceCloneForm
from app.routes.common import parse_model
from app.state import AppState, request_id_of
from app.synthesis import ClonedVoice, SpeechJob
from app.uploads import read_multipart

REFERENCE_FIELD = "reference_audio"


def _prepare(state: AppState, form: VoiceCloneForm, request_id: str, reference_text: str,
             frames: np.ndarray) -> SpeechJob:
    try:
        job = state.speech.prepare(form.speech_request(), request_id,
                                   cloned=ClonedVoice(reference_text, frames))
    except InvalidRequest as exc:
        if exc.param == "input":  # the speech request's `input` is our `generate_text`
            exc.param = "generate_text"
            exc.message = exc.message.replace("input", "generate_text", 1)
        raise
    return replace(job, route="vc")


async def clone_voice(request: Request) -> Response:
    state: AppState = request.app.state.tts
    request_id = request_id_of(request)
    try:
        upload_form = await read_multipart(request, max_file_bytes=state.settings.max_upload_bytes)
    except ClientDisconnect:
        return Response(status_code=499)
    with upload_form:
        upload = upload_form.file(REFERENCE_FIELD)
        form = parse_model(VoiceCloneForm, upload_form.fields)
        reference_text = state.references.reference_text(
            form.reference_text, normalize=form.normalize_malaysian, param="reference_text")
        no_frames = np.zeros((0, state.codec_info.layout.codes_per_frame), dtype=np.int64)
        _prepare(state, form, request_id, reference_text, no_frames)  # all checks, before encoding
        frames = await state.references.encode(upload, param=REFERENCE_FIELD)
    job = _prepare(state, form, request_id, reference_text, frames)
    audio = await state.speech.open(job)
    return await respond_with_audio(request, state, audio, job)
