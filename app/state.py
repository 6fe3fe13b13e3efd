"""Typed application state, built by the lifespan and reached by handlers through the app."""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from app.admission import Admission
from app.cloning import ReferenceEncoder
from app.codec.info import CodecInfo
from app.codec.worker import CodecWorker
from app.config import Settings
from app.engine import EngineClient
from app.metrics import Metrics
from app.profiles import ResolvedProfile
from app.synthesis import SpeechService
from app.voice_store import VoiceStore

# Client ids end up in logs and DEBUG_AUDIO paths: keep them to a safe alphabet.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
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
    voices: VoiceStore
    references: ReferenceEncoder
    admission: Admission
    engine_model_len: int | None = None
    started_at: float = field(default_factory=time.time)


def request_id_of(connection: HTTPConnection) -> str:
    """The client's X-Request-Id if it sent a sane one, else a new id; stable per request."""
    existing = getattr(connection.state, "request_id", None)
    if existing:
        return existing
    sent = connection.headers.get("x-request-id", "")
    request_id = sent if _SAFE_ID.fullmatch(sent) else f"req_{uuid.uuid4().hex}"
    connection.state.request_id = request_id
    REQUEST_ID.set(request_id)
    return request_id
