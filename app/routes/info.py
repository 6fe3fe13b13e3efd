"""Read-only endpoints: speakers, voices, models, health, metrics."""

from __future__ import annotations

import time
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import NotFound
from app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
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
    """200 while the engine answers and the codec worker runs; 503 otherwise and while draining.

    Public (never behind an API key): it names no internal address.
    """
    state = _state(request)
    engine_ok = await state.engine.healthy()
    codec_ok = state.worker.alive
    model_loaded = engine_ok and codec_ok
    if state.admission.draining:
        status = "draining"
    else:
        status = "ok" if model_loaded else "unavailable"
    body = {
        "status": status,
        "model_loaded": model_loaded,
        "device": state.codec_info.device,
        "uptime_seconds": round(max(0.0, time.time() - state.started_at), 3),
        "demo": state.demo,
        "engine": {"reachable": engine_ok, "model": state.engine.model,
                   "profile": state.profile.profile.name},
        "codec": {"loaded": codec_ok, "source": state.codec_info.source,
                  "random_weights": state.codec_info.random_weights,
                  "device": state.codec_info.device, "dtype": state.codec_info.dtype,
                  "backend": getattr(state.worker.codec, "backend", "torch")},
        "active_streams": state.metrics.active_streams,
        "queued_requests": state.admission.queued,
    }
    if state.demo:
        body["warning"] = "DEMO MODE: generated weights produce noise, not speech"
    code = HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return JSONResponse(body, status_code=code)


async def metrics(request: Request) -> Response:
    """Prometheus' text format (0.0.4); see `app.metrics` for the series."""
    return Response(_state(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)
