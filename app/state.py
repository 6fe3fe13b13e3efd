"""Typed application state, built by the lifespan and reached by handlers through the app."""

from __future__ import annotations

import contextvars
import time
import uuid
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from app.codec.info import CodecInfo
from app.codec.worker import CodecWorker
from app.config import Settings
from app.engine import EngineClient
from app.metrics import Metrics
from app.profiles import ResolvedProfile
from app.synthesis import SpeechService

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@dataclass
class AppState:
    settings: Settings
    engine: EngineClient
    worker: CodecWorker
    codec_info: CodecInfo
    profile: ResolvedProfile
    speech: SpeechService
    metrics: Metrics
    demo: bool
    engine_model_len: int | None = None
    started_at: float = field(default_factory=time.time)


def request_id_of(connection: HTTPConnection) -> str:
    """The client's X-Request-Id if it sent a sane one, else a new id; stable per request."""
    existing = getattr(connection.state, "request_id", None)
    if existing:
        return existing
    sent = connection.headers.get("x-request-id", "")
    request_id = sent if 0 < len(sent) <= 64 and sent.isprintable() else f"req_{uuid.uuid4().hex}"
    connection.state.request_id = request_id
    REQUEST_ID.set(request_id)
    return request_id
