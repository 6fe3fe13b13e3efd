"""Speech synthesis service: validated request -> segments -> engine token streams -> audio.

`prepare` validates everything before any byte is sent: model, voice, text, chunk plan. Long
text is split into segments (sentences, then clauses, then words; the first segment short for
fast first audio), each normalized and prompted on its own, with its own token budget sized
from its text and capped by the request's `max_tokens`. `open` takes an admission slot and
starts the first segment's generation, so engine-side rejections become errors before the
status line. The audio itself comes from `app.streams.SpeechStream`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass

import numpy as np

from app.admission import Admission, Slot
from app.codec.worker import CodecWorker
from app.config import OPENAI_MODELS, Settings
from app.engine import EngineClient, SamplingParams
from app.errors import InvalidRequest, NotFound
from app.metrics import Metrics
from app.profiles import ResolvedProfile
from app.protocol import SpeechRequest
from app.streaming import ChunkPlan
from app.streams import SpeechStream
from app.text import estimate_speech_seconds, normalize_text, segment_text, strip_control_chars

logger = logging.getLogger(__name__)

# OpenAI's dated snapshots of its TTS models, e.g. gpt-4o-mini-tts-2025-03-20.
_OPENAI_DATED_MODEL = re.compile(r"(gpt-4o-mini-tts|gpt-4o-tts|tts-1|tts-1-hd)-\d{4}-\d{2}-\d{2}")
# A segment's token budget: its estimated speaking time times this, plus the slack below.
# Generous on purpose: a model that is done stops by itself; the budget only bounds a runaway.
BUDGET_FACTOR = 3.0
BUDGET_SLACK_S = 2.0
SEGMENT_MAX_CHARS = 300
FIRST_SEGMENT_MAX_CHARS = 60
# Silence between segments, by how the segment ended: a sentence, a clause, mid-sentence.
SENTENCE_PAUSE_S = 0.30
CLAUSE_PAUSE_S = 0.15
WORD_PAUSE_S = 0.04
_SENTENCE_END = re.compile(r"[.!?…。！？।॥][\"'”’»)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–，；：、][\"'”’»)\]]*$")


def is_openai_model(name: str | None) -> bool:
    """Does `name` name one of OpenAI's speech models (so the request gets OpenAI's defaults)?"""
    return name is not None and (name in OPENAI_MODELS
                                 or bool(_OPENAI_DATED_MODEL.fullmatch(name)))


def pause_after(text: str) -> float:
    """Seconds of silence after a segment that ends like `text`."""
    text = text.rstrip()
    if _SENTENCE_END.search(text):
        return SENTENCE_PAUSE_S
    if _CLAUSE_END.search(text):
        return CLAUSE_PAUSE_S
    return WORD_PAUSE_S


@dataclass(frozen=True)
class ClonedVoice:
    """A reference to continue: its transcript and its codec frames, (T, codes per frame)."""

    reference_text: str
    frames: np.ndarray


@dataclass(frozen=True)
class Segment:
    """One engine request of a job: normalized text, its prompt and sampling parameters."""

    text: str
    prompt: str
    params: SamplingParams
    pause_s: float  # silence after it (0 for the last)


@dataclass(frozen=True)
class SpeechJob:
    """Everything needed to synthesise one request, validated."""

    request_id: str
    speaker: str
    segments: tuple[Segment, ...]
    plan: ChunkPlan
    response_format: str
    stream: bool
    stream_format: str = "audio"
    speed: float = 1.0
    ignored_fields: tuple[str, ...] = ()
    instructions_ignored: bool = False
    route: str = "speech"  # the endpoint it came from, for tts_requests_total{route}

    @property
    def prompt(self) -> str:
        """The first segment's prompt (the whole prompt for short text)."""
        return self.segments[0].prompt

    @property
    def params(self) -> SamplingParams:
        return self.segments[0].params


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        engine: EngineClient,
        worker: CodecWorker,
        profile: ResolvedProfile,
        metrics: Metrics,
        admission: Admission,
        *,
        sample_rate: int,
        samples_per_frame: int,
    ):
        self.settings = settings
        self.engine = engine
        self.worker = worker
        self.profile = profile
        self.metrics = metrics
        self.admission = admission
        # Set when the engine is known to be gone, cleared when a request gets a token:
        # streams that still wait on the engine end at once instead of at their next request.
        self.engine_lost = asyncio.Event()
        # Set when one request lost its engine connection. That alone does not condemn the
        # engine (behind a router only one of several engines may have gone): the health
        # watch probes at once and sets `engine_lost` only if the engine fails to answer.
        self.engine_suspect = asyncio.Event()
        self.sample_rate = sample_rate
        self.samples_per_frame = samples_per_frame
        self.voice_map = settings.resolved_voice_map()
        self.streamed_decode = streamed_decode(settings.decode_mode, worker.codec)


    def model_names(self) -> list[str]:
        return [self.settings.model_name, *self.settings.model_aliases]

    def resolve_model(self, model: str | None) -> str:
        name = model or self.settings.model_name
        if name not in self.model_names() and not is_openai_model(name):
            raise NotFound(f"The model `{name}` does not exist.", param="model",
                           code="model_not_found")
        return name

    def default_format(self, model: str | None) -> str:
        """OpenAI's default for OpenAI's model names, the seed's otherwise."""
        if is_openai_model(model):
            return self.settings.openai_default_response_format
        return self.settings.default_response_format

    def resolve_speaker(self, voice: str | None) -> str:
        if voice is None:
            return self.settings.default_speaker
        if voice in self.settings.speakers:
            return voice
        if voice in self.voice_map:
            return self.voice_map[voice]
        if voice.lower() in self.voice_map:  # "Alloy", as some apps capitalise it
            return self.voice_map[voice.lower()]
        known = ", ".join([*self.settings.speakers, *self.voice_map])
        raise InvalidRequest(f"Unknown voice {voice!r}. Available voices: {known}.",
                             param="voice", code="invalid_voice")

    def speaker_for_description(self, description: str | None) -> str:
        """Seed 004's free-form `voice_description`: the first speaker or OpenAI voice it
        names, else DEFAULT_SPEAKER (the served models take no voice descriptions)."""
        if description:
            words = re.findall(r"[\w-]+", description.lower())
            for word in words:
                for name in (*self.settings.speakers, *self.voice_map):
                    if word == name.lower():
                        return self.resolve_speaker(name)
        return self.settings.default_speaker

    @property
    def default_playback_speed(self) -> float:
        """DEFAULT_PLAYBACK_SPEED, or the codec's own chunk length when that is 0."""
        return self.settings.default_playback_speed or self.worker.codec.info.layout.chunk_s

    def chunk_plan(self, playback_speed: float | None, overlap: float | None) -> ChunkPlan:
        speed = self.default_playback_speed if playback_speed is None else playback_speed
        lap = self.settings.default_playback_overlap_speed if overlap is None else overlap
        if lap >= speed:
            raise InvalidRequest(
                f"playback_overlap_speed ({lap}) must be shorter than playback_speed ({speed})",
                param="playback_overlap_speed",
            )
        layout = self.worker.codec.info.layout
        first = self.settings.first_chunk_frames or layout.first_chunk_frames
        context = self.settings.min_context_frames
        return ChunkPlan.from_seconds(
            playback_speed_s=speed, overlap_s=lap,
            first_chunk_frames=first,
            min_context_frames=layout.min_context_frames if context < 0 else context,
            sample_rate=self.sample_rate, samples_per_frame=self.samples_per_frame,
            growth=self.settings.chunk_growth or layout.chunk_growth,
            min_window_frames=layout.min_window_frames if self.settings.min_window_frames < 0
            else self.settings.min_window_frames,
        )

    def split(self, text: str, normalize: bool) -> list[str]:
        """Speakable segments of `text`, each normalized on its own when asked."""
        text = strip_control_chars(text)
        pieces = segment_text(text, max_chars=SEGMENT_MAX_CHARS,
                              first_max_chars=FIRST_SEGMENT_MAX_CHARS)
        if normalize:
            pieces = [normalize_text(piece) for piece in pieces]
        return [piece.strip() for piece in pieces if piece.strip()]

    def prepare(
        self, request: SpeechRequest, request_id: str, cloned: ClonedVoice | None = None, *,
        max_input_chars: int | None = None,
    ) -> SpeechJob:
        """Validate a request completely, before anything is sent to the engine or client.

        `cloned` (a custom voice or an uploaded reference) replaces the speaker voice.
        `max_input_chars` overrides MAX_INPUT_CHARS (0: no limit, for the WebSocket).
        """
        self.resolve_model(request.model)
        response_format = request.response_format or self.default_format(request.model)
        if cloned is not None:
            speaker = "cloned"
        elif isinstance(request.voice, str) or request.voice is None:
            speaker = self.resolve_speaker(request.voice)
        else:
            raise NotFound(f"Voice {request.voice.id!r} does not exist.", param="voice",
                           code="voice_not_found")
        limit = self.settings.max_input_chars if max_input_chars is None else max_input_chars
        if limit and len(request.input) > limit:
            raise InvalidRequest(
                f"input is {len(request.input)} characters; the limit is {limit}",
                param="input", code="string_above_max_length")
        texts = self.split(request.input, request.normalize_malaysian)
        if not texts:
            raise InvalidRequest("input has no speakable text", param="input")
        plan = self.chunk_plan(request.playback_speed, request.playback_overlap_speed)
        profile = self.profile.profile
        segments = []
        for i, text in enumerate(texts):
            if cloned is None:
                prompt = profile.build_prompt(speaker, text)
            else:
                prompt = profile.build_clone_prompt(cloned.reference_text, cloned.frames, text)
            last = i == len(texts) - 1
            segments.append(Segment(
                text=text, prompt=prompt,
                params=self.sampling_params(text, request.temperature,
                                            request.repetition_penalty, request.max_tokens),
                pause_s=0.0 if last else pause_after(text)))
        return SpeechJob(
            request_id=request_id,
            speaker=speaker,
            segments=tuple(segments),
            plan=plan,
            response_format=response_format,
            stream=request.stream,
            stream_format=request.stream_format,
            speed=request.speed,
            ignored_fields=tuple(request.ignored_fields()),
            # No served profile follows voice instructions; they are accepted and ignored.
            instructions_ignored=bool(request.instructions and request.instructions.strip()),
        )

    def token_budget(self, text: str, max_tokens: int | None) -> int:
        """Tokens one segment may generate: sized from its text, capped by `max_tokens`."""
        layout = self.profile.layout
        tokens_per_s = layout.tokens_per_frame * self.sample_rate / self.samples_per_frame
        seconds = estimate_speech_seconds(text) * BUDGET_FACTOR + BUDGET_SLACK_S
        budget = math.ceil(seconds * tokens_per_s)
        cap = self.settings.default_max_tokens if max_tokens is None else max_tokens
        per_char = self.profile.profile.max_frames_per_input_char
        if per_char is not None:
            frames = max(4, math.ceil(len(text) * per_char))
            budget = min(budget, frames * layout.tokens_per_frame + 1)
        return max(layout.tokens_per_frame, min(budget, cap))

    def sampling_params(
        self, text: str, temperature: float | None, repetition_penalty: float | None,
        max_tokens: int | None,
    ) -> SamplingParams:
        settings, profile = self.settings, self.profile
        return SamplingParams(
            max_tokens=self.token_budget(text, max_tokens),
            temperature=settings.default_temperature if temperature is None else temperature,
            repetition_penalty=(settings.default_repetition_penalty
                                if repetition_penalty is None else repetition_penalty),
            stop_token_ids=tuple(sorted(profile.layout.stop_ids)),
            add_special_tokens=profile.profile.add_special_tokens,
        )

    async def open(self, job: SpeechJob, *, admit: bool = True) -> SpeechStream:
        """Take a stream slot (429 when there is none) and start the first segment.

        `admit=False`: the caller already holds a slot (a WebSocket session holds one).
        Engine-side rejections raise here, before any byte is sent.
        """
        parsed_at = time.perf_counter()
        slot: Slot | None = await self.admission.acquire() if admit else None
        try:
            stream = SpeechStream(self, job, slot)
            stream.parsed_at = parsed_at
            await stream.start()
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return stream


def streamed_decode(mode: str, codec: object) -> bool:
    """Does DECODE_MODE (auto/stream/windows) stream this codec's decode? (`stream` on a
    codec without a stream decoder falls back to windows, with a warning.)"""
    offered = callable(getattr(codec, "stream_decoder", None))
    if mode == "stream" and not offered:
        logger.warning("DECODE_MODE=stream: this codec has no stream decoder; windows used")
    if mode == "auto":
        info = getattr(codec, "info", None)
        return offered and info is not None and info.device == "cpu"
    return mode == "stream" and offered
