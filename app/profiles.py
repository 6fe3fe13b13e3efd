"""Model profiles: how to prompt a speech LM and where its audio tokens live.

Token ids are not hard-coded: a profile names its tokens as text and `resolve_profile` asks
the engine's tokenizer (vLLM `/tokenize`) for their ids at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.codec.layout import CODEBOOK_SIZE, TOKENS_PER_FRAME, TokenLayout
from app.errors import EngineUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelProfile:
    """Prompt wrapping and audio-token vocabulary of one family of speech LMs."""

    name: str
    prompt_template: str  # "{voice}" and "{text}" are substituted
    first_audio_token: str  # the token for frame position 0, code 0
    last_audio_token: str  # the token for frame position 6, code 4095
    stop_tokens: tuple[str, ...]
    add_special_tokens: bool  # let the engine's tokenizer add BOS?
    special_token_pattern: str  # user text matching this is removed before prompting
    # Zero-shot voice cloning: "{ref_text}", "{ref_audio}" (audio tokens as text), "{text}".
    clone_template: str = ""
    audio_token_format: str = ""  # "{position}", "{code}", "{index}" (base + position*4096 + code)
    audio_token_index_base: int = 0
    is_demo: bool = False
    # Demo models never decide to stop by themselves; cap their speech by input length.
    max_frames_per_input_char: float | None = None

    def build_prompt(self, voice: str, text: str) -> str:
        return self.prompt_template.replace("{voice}", voice).replace("{text}", self.clean(text))

    def clean(self, text: str) -> str:
        """User text with anything that looks like a special token removed."""
        return re.sub(self.special_token_pattern, "", text)

    def audio_tokens_text(self, frames: Sequence[Sequence[int]]) -> str:
        """(T, 7) frame codes -> the audio tokens as prompt text."""
        fmt, base = self.audio_token_format, self.audio_token_index_base
        return "".join(
            fmt.format(position=p, code=int(c), index=base + p * CODEBOOK_SIZE + int(c))
            for frame in frames for p, c in enumerate(frame)
        )

    def build_clone_prompt(
        self, reference_text: str, reference_frames: Sequence[Sequence[int]], text: str
    ) -> str:
        """Prompt that continues a reference (transcript + its audio tokens) with new text."""
        return (self.clone_template
                .replace("{ref_audio}", self.audio_tokens_text(reference_frames))
                .replace("{ref_text}", self.clean(reference_text))
                .replace("{text}", self.clean(text)))


class Tokenizer(Protocol):
    async def tokenize(self, text: str) -> list[int]: ...


# canopylabs' Orpheus: <start_of_human> BOS "voice: text" <eot> <end_of_human> <start_of_ai>
# <start_of_speech>; audio tokens are <custom_token_{10 + position*4096 + code}>.
ORPHEUS = ModelProfile(
    name="orpheus",
    prompt_template=(
        "<custom_token_3><|begin_of_text|>{voice}: {text}<|eot_id|>"
        "<custom_token_4><custom_token_5><custom_token_1>"
    ),
    first_audio_token="<custom_token_10>",
    last_audio_token=f"<custom_token_{10 + TOKENS_PER_FRAME * CODEBOOK_SIZE - 1}>",
    stop_tokens=("<custom_token_2>", "<|eot_id|>"),
    add_special_tokens=False,
    special_token_pattern=r"<custom_token_\d+>|<\|[a-z_]+\|>",
    # Orpheus' pretraining layout: a finished human/AI turn with the reference, then the
    # new text's turn left open at <start_of_speech>.
    clone_template=(
        "<custom_token_3><|begin_of_text|>{ref_text}<|eot_id|><custom_token_4>"
        "<custom_token_5><custom_token_1>{ref_audio}<custom_token_2><custom_token_6>"
        "<custom_token_3><|begin_of_text|>{text}<|eot_id|><custom_token_4>"
        "<custom_token_5><custom_token_1>"
    ),
    audio_token_format="<custom_token_{index}>",
    audio_token_index_base=10,
)

# The generated demo model (demo_model/): noise, not speech.
DEMO = ModelProfile(
    name="demo",
    prompt_template="<|im_start|>{voice}: {text}<|im_end|><|speech_start|>",
    first_audio_token="<|snac_0_0|>",
    last_audio_token=f"<|snac_{TOKENS_PER_FRAME - 1}_{CODEBOOK_SIZE - 1}|>",
    stop_tokens=("<|speech_end|>", "<|im_end|>"),
    add_special_tokens=False,
    special_token_pattern=r"<\|[a-z_0-9]+\|>",
    clone_template=(
        "<|im_start|>{ref_text}<|im_end|><|speech_start|>{ref_audio}<|speech_end|>"
        "<|im_start|>{text}<|im_end|><|speech_start|>"
    ),
    audio_token_format="<|snac_{position}_{code}|>",
    is_demo=True,
    max_frames_per_input_char=1.0,
)

PROFILES: dict[str, ModelProfile] = {p.name: p for p in (ORPHEUS, DEMO)}


@dataclass(frozen=True)
class ResolvedProfile:
    profile: ModelProfile
    layout: TokenLayout


async def _single_id(tokenizer: Tokenizer, token: str) -> int | None:
    ids = await tokenizer.tokenize(token)
    return ids[0] if len(ids) == 1 else None


async def _resolve(tokenizer: Tokenizer, profile: ModelProfile) -> ResolvedProfile | None:
    first = await _single_id(tokenizer, profile.first_audio_token)
    last = await _single_id(tokenizer, profile.last_audio_token)
    if first is None or last is None:
        return None
    if last - first != TOKENS_PER_FRAME * CODEBOOK_SIZE - 1:
        logger.warning(
            "profile %s: audio tokens are not contiguous (%s..%s)", profile.name, first, last
        )
        return None
    stop_ids = []
    for token in profile.stop_tokens:
        token_id = await _single_id(tokenizer, token)
        if token_id is not None:
            stop_ids.append(token_id)
    if not stop_ids:
        return None
    return ResolvedProfile(profile, TokenLayout(first, frozenset(stop_ids)))


async def resolve_profile(tokenizer: Tokenizer, name: str) -> ResolvedProfile:
    """Find the profile's token ids with the engine's tokenizer; `auto` tries each profile."""
    candidates = list(PROFILES.values()) if name == "auto" else [PROFILES[name]]
    for profile in candidates:
        resolved = await _resolve(tokenizer, profile)
        if resolved is not None:
            logger.info(
                "model profile %s: audio ids %d..%d, stop ids %s",
                profile.name, resolved.layout.audio_base_id, resolved.layout.audio_end_id - 1,
                sorted(resolved.layout.stop_ids),
            )
            return resolved
    tried = ", ".join(p.name for p in candidates)
    raise EngineUnavailable(
        f"the served model's tokenizer matches no model profile (tried {tried})"
    )
