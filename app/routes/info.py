"""Read-only endpoints: speakers, voices, models, health, metrics."""

from __future__ import annotations

from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from app.errors import NotFound
from app.protocol import ModelCard, ModelList
from app.state import AppState


def _state(request: Request) -> AppState:
    return request.app.state.tts


async def list_speakers(request: Request) -> JSONResponse:
    """The seed's endpoint: the configured speaker names."""
    return JSONResponse(_state(request).settings.speakers)


def _model_cards(state: AppState) -> list[ModelCard]:
    created = int(state.started_at)
    main = state.settings.model_name
    return [ModelCard(id=main, created=created, root=main)] + [
        ModelCard(id=alias, created=created, root=main, parent=main)
        for alias in state.settings.model_aliases
    ]


async def list_models(request: Request) -> JSONResponse:
    return JSONResponse(ModelList(data=_model_cards(_state(request))).model_dump())


async def list_audio_models(request: Request) -> JSONResponse:
    """The peers' `GET /v1/audio/models` shape, read by Open WebUI's model picker."""
    cards = _model_cards(_state(request))
    return JSONResponse({"models": [{"id": card.id} for card in cards]})


async def retrieve_model(request: Request) -> JSONResponse:
    name = request.path_params["model"]
    for card in _model_cards(_state(request)):
        if card.id == name:
            return JSONResponse(card.model_dump())
    raise NotFound(f"The model `{name}` does not exist.", param="model", code="model_not_found")


async def health(request: Request) -> JSONResponse:
    state = _state(request)
    engine_ok = await state.engine.healthy()
    codec_ok = state.worker.alive
    body = {
        "status": "ok" if engine_ok and codec_ok else "unavailable",
        "demo": state.demo,
        "engine": {"reachable": engine_ok, "url": state.settings.tts_api,
                   "model": state.engine.model, "profile": state.profile.profile.name},
        "codec": {"loaded": codec_ok, "source": state.codec_info.source,
                  "random_weights": state.codec_info.random_weights,
                  "device": state.codec_info.device, "dtype": state.codec_info.dtype},
        "active_streams": state.metrics.active_streams,
    }
    if state.demo:
        body["warning"] = "DEMO MODE: generated weights produce noise, not speech"
    status = HTTPStatus.OK if body["status"] == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return JSONResponse(body, status_code=status)


async def metrics(request: Request) -> PlainTextResponse:
    state = _state(request)
    stats = state.worker.stats
    extra = {
        "tts_codec_decode_calls_total": stats.decode_calls,
        "tts_codec_windows_total": stats.windows,
        "tts_codec_frames_total": stats.frames,
        "tts_codec_max_batch": stats.max_batch,
        "tts_codec_busy_seconds_total": round(stats.busy_s, 6),
        "tts_codec_withdrawn_total": stats.withdrawn,
    }
    return PlainTextResponse(state.metrics.render(extra),
                             media_type="text/plain; version=0.0.4")
