"""Custom voices as cloning references: the stored frames a speech request prompts with."""

from __future__ import annotations

import logging

from app.errors import Unsupported
from app.state import AppState
from app.synthesis import ClonedVoice

logger = logging.getLogger(__name__)


async def cloned_voice(state: AppState, voice_id: str) -> ClonedVoice | None:
    """The stored voice as a cloning reference, or None if there is no such voice."""
    voice = await state.voices.get(voice_id)
    if voice is None:
        return None
    if not voice.layout.same_tokens(state.codec_info.layout):
        raise Unsupported(f"voice {voice_id} was encoded for {voice.layout.codec} "
                          f"({voice.layout.codes_per_frame} x {voice.layout.codebook_size} "
                          f"codes per frame); this server's codec is "
                          f"{state.codec_info.layout.codec}: create the voice again",
                          param="voice")
    if voice.codec != state.codec_info.source:
        logger.warning("voice %s was encoded with codec %s, now %s: it may sound wrong",
                       voice_id, voice.codec, state.codec_info.source)
    return ClonedVoice(voice.reference_text, voice.frames)
