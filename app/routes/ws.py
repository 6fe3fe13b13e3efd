"""WebSockets: seed 004's `/ws/synthesize` protocol and seed 000's raw PCM mode (`/`, `/ws/raw`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.admission import Slot
from app.custom_voices import cloned_voice
from app.delivery.pipeline import AudioPipeline
from app.errors import NotFound, TTSError
from app.protocol import SpeechRequest, VoiceRef
from app.state import AppState, request_id_of
from app.ws_session import (
    ProtocolError,
    StreamSession,
    parse_config,
    parse_message,
    run_keepalive,
)

logger = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011


async def _admit(websocket: WebSocket, state: AppState) -> Slot | None:
    """A stream slot for the whole session, or the socket closed with 1013."""
    try:
        return await state.admission.acquire()
    except TTSError as exc:
        await websocket.accept()
        await websocket.close(code=TRY_AGAIN_LATER, reason=exc.message[:120])
        return None


async def _session_for(state: AppState, message: dict[str, Any], send_json, request_id: str
                       ) -> StreamSession:
    body = {k: v for k, v in message.items() if k not in ("type", "text")}
    config = parse_config(body)
    speech = state.speech
    cloned = None
    speaker: str | None = None
    if isinstance(config.voice, VoiceRef):
        cloned = await cloned_voice(state, config.voice.id)
        if cloned is None:
            raise NotFound(f"Voice {config.voice.id!r} does not exist.", param="voice")
    elif config.voice is not None:
        speaker = speech.resolve_speaker(config.voice)
    else:
        speaker = speech.speaker_for_description(config.voice_description)
    session = StreamSession(speech, config, speaker, cloned, send_json, request_id)
    session.check()
    return session


async def synthesize_stream(websocket: WebSocket) -> None:
    """`/ws/synthesize` (seed 004): config, ready, text pieces, audio, end_of_stream."""
    state: AppState = websocket.app.state.tts
    request_id = request_id_of(websocket)
    slot = await _admit(websocket, state)
    if slot is None:
        return
    await websocket.accept()
    lock = asyncio.Lock()

    async def send_json(payload: dict[str, Any]) -> None:
        async with lock:
            if websocket.application_state == WebSocketState.CONNECTED:
                await websocket.send_text(json.dumps(payload, separators=(",", ":")))

    keepalive = asyncio.ensure_future(run_keepalive(send_json, state.settings.ws_keepalive_s))
    session: StreamSession | None = None
    flushing: asyncio.Task[None] | None = None
    try:
        while True:
            raw = await websocket.receive()
            if raw["type"] == "websocket.disconnect":
                return
            try:
                message = parse_message(raw.get("text"))
                kind = message.get("type")
                if session is None:
                    if kind not in (None, "config"):
                        raise ProtocolError("send the config message first")
                    session = await _session_for(state, message, send_json, request_id)
                    await send_json({"type": "ready", "message": "Ready to synthesize",
                                     "sample_rate": session.config.sample_rate,
                                     "voice": session.speaker or "custom"})
                    session.start()
                    if isinstance(message.get("text"), str):
                        await session.push_text(message["text"])
                elif kind in (None, "text"):
                    text = message.get("text")
                    if not isinstance(text, str):
                        raise ProtocolError('a text message is {"text": "..."}')
                    await session.push_text(text)
                elif kind == "end_of_stream":
                    if flushing is None or flushing.done():
                        flushing = asyncio.ensure_future(session.end_of_stream())
                elif kind == "cancel":
                    if flushing is not None:
                        flushing.cancel()
                        await asyncio.gather(flushing, return_exceptions=True)
                    await session.cancel()
                    await send_json({"type": "cancelled", "message": "Synthesis cancelled"})
                elif kind == "keepalive":
                    pass
                else:
                    raise ProtocolError(f"unknown message type {kind!r}")
            except (ProtocolError, TTSError) as exc:
                text = exc.message if isinstance(exc, TTSError) else str(exc)
                await send_json({"type": "error", "message": text})
    except WebSocketDisconnect:
        pass
    finally:
        keepalive.cancel()
        if flushing is not None:
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)
        if session is not None:
            await session.close()
        slot.release()
        logger.info("websocket session ended (%d sentences spoken)",
                    session.sentences_spoken if session else 0)


async def raw_pcm(websocket: WebSocket) -> None:
    """Seed 000 (Balacoon): `{"text", "speaker"}` -> binary PCM16 frames -> normal close."""
    state: AppState = websocket.app.state.tts
    request_id = request_id_of(websocket)
    slot = await _admit(websocket, state)
    if slot is None:
        return
    await websocket.accept()
    stream = None
    try:
        try:
            message = parse_message(await websocket.receive_text())
            text = message.get("text")
            if not isinstance(text, str):
                raise ProtocolError('send {"text": "...", "speaker": "..."}')
            voice = message.get("speaker") or message.get("voice")
            request = SpeechRequest(input=text, voice=voice if isinstance(voice, str) else None,
                                    response_format="pcm")
            job = state.speech.prepare(request, request_id, max_input_chars=0)
            stream = await state.speech.open(job, admit=False)
        except (ProtocolError, TTSError, ValueError) as exc:
            reason = exc.message if isinstance(exc, TTSError) else str(exc)
            await websocket.close(code=POLICY_VIOLATION, reason=reason[:120])
            return
        pipeline = AudioPipeline("pcm", state.speech.sample_rate)
        async for chunk in stream.chunks():
            data = pipeline.push(chunk)
            if data:
                await websocket.send_bytes(data)
        tail = pipeline.finish()
        if tail:
            await websocket.send_bytes(tail)
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        pass
    except TTSError as exc:
        with contextlib.suppress(Exception):
            await websocket.close(code=INTERNAL_ERROR, reason=exc.message[:120])
    finally:
        if stream is not None:
            await stream.aclose()
        slot.release()
