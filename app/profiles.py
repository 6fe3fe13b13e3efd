"""Model profiles: how to prompt a speech LM and where its audio tokens live.

Token ids are not hard-coded: a profile names its tokens as text and `resolve_profile` asks
the engine's tokenizer (vLLM `/tokenize`) for their ids at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from app.codec.info import NOMINAL_LAYOUTS, CodecLayout, CodecName
from app.codec.layout import TokenLayout
from app.errors import EngineUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelProfile:
    """Prompt wrapping and audio-token vocabulary of one family of speech LMs.

    The profile names its codec; the codec's nominal layout says how many audio tokens there
    are (frame positions x codebook size), and the loaded codec is checked against it.
    """

    name: str
    codec: CodecName
    prompt_template: str  # "{voice}" and "{text}" are substituted
    # One audio token as text: "{position}" (in the frame), "{code}", "{index}"
    # (audio_token_index_base + position * codebook_size + code).
    audio_token_format: str
    stop_tokens: tuple[str, ...]
    add_special_tokens: bool  # let the engine's tokenizer add BOS?
    special_token_pattern: str  # user text matching this is removed before prompting
    # Zero-shot voice cloning: "{ref_text}", "{ref_audio}" (audio tokens as text), "{text}".
    clone_template: str = ""
    audio_token_index_base: int = 0
    # A token that must be a single id for this profile to match (tells a demo model apart
    # from the real model whose vocabulary it copies).
    marker_token: str = ""
    is_demo: bool = False
    # Cap on generated speech from the input's length: demo models that never stop, and real
    # models that over-generate when cloning.
    max_frames_per_input_char: float | None = None

    @property
    def codec_layout(self) -> CodecLayout:
        return NOMINAL_LAYOUTS[self.codec]

    def audio_token(self, position: int, code: int) -> str:
        index = self.audio_token_index_base + position * self.codec_layout.codebook_size + code
        return self.audio_token_format.format(position=position, code=code, index=index)

    @property
    def first_audio_token(self) -> str:
        return self.audio_token(0, 0)

    @property
    def last_audio_token(self) -> str:
        layout = self.codec_layout
        return self.audio_token(layout.codes_per_frame - 1, layout.codebook_size - 1)

    def build_prompt(self, voice: str, text: str) -> str:
        return self.prompt_template.replace("{voice}", voice).replace("{text}", self.clean(text))

    def clean(self, text: str) -> str:
        """User text with anything that looks like a special token removed."""
        return re.sub(self.special_token_pattern, "", text)

    def audio_tokens_text(self, frames: Sequence[Sequence[int]]) -> str:
        """(T, codes_per_frame) frame codes -> the audio tokens as prompt text."""
        return "".join(self.audio_token(p, int(c)) for frame in frames for p, c in enumerate(frame))

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
    codec="snac",
    prompt_template=(
        "<custom_token_3><|begin_of_text|>{voice}: {text}<|eot_id|>"
        "<custom_token_4><custom_token_5><custom_token_1>"
    ),
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
    codec="snac",
    prompt_template="<|im_start|>{voice}: {text}<|im_end|><|speech_start|>",
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

# Scicom-intl/Multilingual-TTS-1.7B-Base: Qwen3 with ordinary added tokens <|speech_start|> and
# <|s_0|>..<|s_65535|>, one per NeuCodec code (50 per second); ends with <|im_end|>. The
# reference turn of a cloning prompt has no speaker tag. Cloning over-generates (a median 3.27x
# the source length is reported), so speech is capped at 12.5 frames (0.25 s) per input
# character, about 3x a normal speaking rate.
SCICOM = ModelProfile(
    name="scicom",
    codec="neucodec",
    prompt_template="<|im_start|>{voice}: {text}<|speech_start|>",
    audio_token_format="<|s_{code}|>",
    stop_tokens=("<|im_end|>",),
    add_special_tokens=False,
    special_token_pattern=r"<\|[a-z_0-9]+\|>",
    clone_template=(
        "<|im_start|>{ref_text}<|speech_start|>{ref_audio}<|im_end|>"
        "<|im_start|>{text}<|speech_start|>"
    ),
    max_frames_per_input_char=12.5,
)
# The generated NeuCodec demo model (demo_model/neucodec.py): Scicom's prompts and tokens, plus
# a marker token; it stops by itself after about 4 tokens per prompt byte. Noise, not speech.
SCICOM_DEMO = replace(SCICOM, name="scicom-demo", marker_token="<|tts_demo|>", is_demo=True)

# The one list of profiles; `auto` tries them in this order (a demo before the model it copies).
PROFILES: dict[str, ModelProfile] = {p.name: p for p in (ORPHEUS, DEMO, SCICOM_DEMO, SCICOM)}


@dataclass(frozen=True)
class ResolvedProfile:
    profile: ModelProfile
    layout: TokenLayout


# Besides the first and last audio token, these fractions of the range are checked to be
# single tokens at the expected ids (a vocabulary that is not contiguous would misread codes).
_PROBES = (0.25, 0.5, 0.75)


async def _single_id(tokenizer: Tokenizer, token: str) -> int | None:
    ids = await tokenizer.tokenize(token)
    return ids[0] if len(ids) == 1 else None


async def _resolve(tokenizer: Tokenizer, profile: ModelProfile) -> ResolvedProfile | None:
    if profile.marker_token and await _single_id(tokenizer, profile.marker_token) is None:
        return None
    first = await _single_id(tokenizer, profile.first_audio_token)
    last = await _single_id(tokenizer, profile.last_audio_token)
    if first is None or last is None:
        return None
    codec = profile.codec_layout
    count = codec.codes_per_frame * codec.codebook_size
    contiguous = last - first == count - 1
    for fraction in _PROBES if contiguous else ():
        offset = int(count * fraction)
        probe = await _single_id(tokenizer, profile.audio_token(*divmod(offset, codec.codebook_size)))
        contiguous = contiguous and probe == first + offset
    if not contiguous:
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
    return ResolvedProfile(profile, TokenLayout.for_codec(codec, first, frozenset(stop_ids)))


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


def choose_codec(setting: str, profile: ModelProfile) -> CodecName:
    """CODEC (`auto` = the profile's codec) -> the codec to load; a mismatch is a config error."""
    if setting in ("auto", profile.codec):
        return profile.codec
    raise ValueError(f"CODEC={setting} but the served model (profile {profile.name}) writes "
                     f"{profile.codec} codes; set CODEC=auto or {profile.codec}")


def check_codec(profile: ResolvedProfile, loaded: CodecLayout) -> None:
    """The loaded codec must read the frames the profile's vocabulary encodes."""
    if not loaded.same_tokens(profile.profile.codec_layout):
        raise ValueError(f"the loaded codec's layout {loaded} does not match profile "
                         f"{profile.profile.name}'s {profile.profile.codec_layout}")
