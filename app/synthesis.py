"""Speech synthesis service: validated request -> engine token stream -> seamless audio chunks."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.audio import write_wav
from app.codec.layout import FrameAssembler
from app.codec.worker import CodecWorker
from app.config import OPENAI_MODELS, Settings
from app.engine import EngineClient, SamplingParams, TokenStream
from app.errors import InvalidRequest, NotFound
from app.metrics import Metrics
from app.profiles import ResolvedProfile
from app.protocol import SpeechRequest
from app.streaming import ChunkPlan, ChunkPlanner, Stitcher, Window
from app.text import normalize_text, strip_control_chars

logger = logging.getLogger(__name__)

# Cut a chunk short when the listener's buffer would otherwise come this close to empty.
URGENCY_MARGIN_S = 0.05
# OpenAI's dated snapshots of its TTS models, e.g. gpt-4o-mini-tts-2025-03-20.
_OPENAI_DATED_MODEL = re.compile(r"(gpt-4o-mini-tts|gpt-4o-tts|tts-1|tts-1-hd)-\d{4}-\d{2}-\d{2}")


def is_openai_model(name: str | None) -> bool:
    """Does `name` name one of OpenAI's speech models (so the request gets OpenAI's defaults)?"""
    return name is not None and (name in OPENAI_MODELS or bool(_OPENAI_DATED_MODEL.fullmatch(name)))


@dataclass(frozen=True)
class ClonedVoice:
    """A reference to continue: its transcript and its SNAC frames, (T, 7) codes."""

    reference_text: str
    frames: np.ndarray


@dataclass(frozen=True)
class SpeechJob:
    """Everything needed to synthesise one utterance, validated."""

    request_id: str
    prompt: str
    speaker: str
    params: SamplingParams
    plan: ChunkPlan
    response_format: str
    stream: bool
    stream_format: str = "audio"
    speed: float = 1.0
    ignored_fields: tuple[str, ...] = ()
    instructions_ignored: bool = False


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        engine: EngineClient,
        worker: CodecWorker,
        profile: ResolvedProfile,
        metrics: Metrics,
        *,
        sample_rate: int,
        samples_per_frame: int,
    ):
        self.settings = settings
        self.engine = engine
        self.worker = worker
        self.profile = profile
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.samples_per_frame = samples_per_frame
        self.voice_map = settings.resolved_voice_map()

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
        if voice.lower() in self.voice_map:  # "Alloy" as some apps capitalise it
            return self.voice_map[voice.lower()]
        known = ", ".join([*self.settings.speakers, *self.voice_map])
        raise InvalidRequest(f"Unknown voice {voice!r}. Available voices: {known}.",
                             param="voice", code="invalid_voice")

    def chunk_plan(self, playback_speed: float | None, overlap: float | None) -> ChunkPlan:
        speed = self.settings.default_playback_speed if playback_speed is None else playback_speed
        lap = self.settings.default_playback_overlap_speed if overlap is None else overlap
        if lap >= speed:
            raise InvalidRequest(
                f"playback_overlap_speed ({lap}) must be shorter than playback_speed ({speed})",
                param="playback_overlap_speed",
            )
        return ChunkPlan.from_seconds(
            playback_speed_s=speed, overlap_s=lap,
            first_chunk_frames=self.settings.first_chunk_frames,
            min_context_frames=self.settings.min_context_frames,
            sample_rate=self.sample_rate, samples_per_frame=self.samples_per_frame,
        )

    def prepare(
        self, request: SpeechRequest, request_id: str, cloned: ClonedVoice | None = None
    ) -> SpeechJob:
        """Validate a request completely, before anything is sent to the engine or client.

        `cloned` (a custom voice or an uploaded reference) replaces the speaker voice.
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
        if len(request.input) > self.settings.max_input_chars:
            raise InvalidRequest(
                f"input is {len(request.input)} characters; the limit is "
                f"{self.settings.max_input_chars}", param="input", code="string_above_max_length")
        text = strip_control_chars(request.input)
        if request.normalize_malaysian:
            text = normalize_text(text)
        text = text.strip()
        if not text:
            raise InvalidRequest("input has no speakable text", param="input")
        plan = self.chunk_plan(request.playback_speed, request.playback_overlap_speed)
        profile = self.profile.profile
        if cloned is None:
            prompt = profile.build_prompt(speaker, text)
        else:
            prompt = profile.build_clone_prompt(cloned.reference_text, cloned.frames, text)
        return SpeechJob(
            request_id=request_id,
            prompt=prompt,
            speaker=speaker,
            params=self.sampling_params(text, request.temperature, request.repetition_penalty,
                                        request.max_tokens),
            plan=plan,
            response_format=response_format,
            stream=request.stream,
            stream_format=request.stream_format,
            speed=request.speed,
            ignored_fields=tuple(request.ignored_fields()),
            # No served profile follows voice instructions; they are accepted and ignored.
            instructions_ignored=bool(request.instructions and request.instructions.strip()),
        )

    def sampling_params(
        self, text: str, temperature: float | None, repetition_penalty: float | None,
        max_tokens: int | None,
    ) -> SamplingParams:
        settings, profile = self.settings, self.profile
        limit = settings.default_max_tokens if max_tokens is None else max_tokens
        per_char = profile.profile.max_frames_per_input_char
        if per_char is not None:
            frames = max(4, math.ceil(len(text) * per_char))
            limit = min(limit, frames * profile.layout.tokens_per_frame + 1)
        return SamplingParams(
            max_tokens=limit,
            temperature=settings.default_temperature if temperature is None else temperature,
            repetition_penalty=(settings.default_repetition_penalty
                                if repetition_penalty is None else repetition_penalty),
            stop_token_ids=tuple(sorted(profile.layout.stop_ids)),
            add_special_tokens=profile.profile.add_special_tokens,
        )

    async def open(self, job: SpeechJob) -> AudioStream:
        """Start generation; engine-side rejections raise here, before any byte is sent."""
        tokens = await self.engine.open_stream(job.prompt, job.params, job.request_id)
        return AudioStream(self, job, tokens)


class AudioStream:
    """Float32 audio chunks for one job. Iterate once; closing aborts the engine request."""

    def __init__(self, service: SpeechService, job: SpeechJob, tokens: TokenStream):
        self._service = service
        self.job = job
        self._tokens = tokens
        self.assembler = FrameAssembler(service.profile.layout)
        self.stitcher = Stitcher(job.plan)
        self.started = time.perf_counter()
        self.first_audio_at: float | None = None
        self.first_frame_at: float | None = None
        self.decode_s = 0.0  # moving estimate of one window's decode wall time
        self.urgent_windows = 0
        self._closed = False

    def _urgent(self, planner: ChunkPlanner, available: int) -> bool:
        """Would waiting for a full-size chunk let the listener's buffer run dry?"""
        if self.first_audio_at is None or self.first_frame_at is None:
            return False
        now = time.perf_counter()
        buffered_s = self.stitcher.emitted_samples / self._service.sample_rate - (
            now - self.first_audio_at)
        frames_per_s = available / max(now - self.first_frame_at, 1e-3)
        wait_s = planner.frames_missing(available) / frames_per_s
        return buffered_s < wait_s + self.decode_s + URGENCY_MARGIN_S

    async def _decode(self, frames: list[list[int]], planner: ChunkPlanner, finished: bool
                      ) -> AsyncIterator[np.ndarray]:
        while True:
            urgent = not finished and self._urgent(planner, len(frames))
            window = planner.next_window(len(frames), finished, urgent=urgent)
            if window is None:
                return
            self.urgent_windows += urgent
            window_frames = np.asarray(frames[window.window_start:window.window_end],
                                       dtype=np.int64)  # (T, 7)
            started = time.perf_counter()
            audio = await self._service.worker.decode(window_frames)
            took = time.perf_counter() - started
            self.decode_s = took if not self.decode_s else 0.7 * self.decode_s + 0.3 * took
            chunk = self.stitcher.push(window, audio)
            if self._service.settings.debug_audio:
                await self._dump(window, audio, chunk)
            if chunk.size:
                yield chunk

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        service, job = self._service, self.job
        planner = ChunkPlanner(job.plan)
        frames: list[list[int]] = []
        service.metrics.active_streams += 1
        outcome = "error"
        try:
            async for ids in self._tokens:
                frames.extend(self.assembler.push(ids))
                if frames and self.first_frame_at is None:
                    self.first_frame_at = time.perf_counter()
                async for chunk in self._decode(frames, planner, finished=False):
                    yield self._mark(chunk)
            async for chunk in self._decode(frames, planner, finished=True):
                yield self._mark(chunk)
            outcome = "ok"
        finally:
            await self.aclose()
            service.metrics.active_streams -= 1
            if outcome == "error" and self.stitcher.emitted_samples:
                outcome = "aborted"
            service.metrics.requests[outcome] += 1
            service.metrics.misplaced_tokens += self.assembler.stats.misplaced
            seconds = self.stitcher.emitted_samples / service.sample_rate
            service.metrics.audio_seconds += seconds
            stats = self.assembler.stats
            logger.info(
                "%s: %d tokens, %d frames, %d misplaced, %.2f s audio in %.2f s, "
                "first audio %.3f s, redundancy %.2f, %d urgent windows, finish %s",
                outcome, stats.tokens, stats.frames, stats.misplaced, seconds,
                time.perf_counter() - self.started,
                (self.first_audio_at or math.nan) - self.started, self.stitcher.redundancy,
                self.urgent_windows,
                self._tokens.finish_reason,
            )

    async def _dump(self, window: Window, decoded: np.ndarray, emitted: np.ndarray) -> None:
        """DEBUG_AUDIO: each decoded window and each emitted chunk, as WAV files."""
        folder = Path(self._service.settings.data_dir) / "debug_audio" / self.job.request_id
        rate = self._service.sample_rate
        stem = f"{window.start:05d}-{window.end:05d}"
        await asyncio.to_thread(write_wav, folder / f"{stem}.window.wav", decoded, rate)
        await asyncio.to_thread(write_wav, folder / f"{stem}.chunk.wav", emitted, rate)

    async def aclose(self) -> None:
        """Abort the engine request if still running. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            await self._tokens.aclose()

    def usage(self) -> dict[str, int]:
        """OpenAI's usage object, from the engine's own token counts."""
        prompt = self._tokens.prompt_tokens or 0
        output = self._tokens.completion_tokens
        return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}

    def _mark(self, chunk: np.ndarray) -> np.ndarray:
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
            self._service.metrics.first_audio_s.observe(self.first_audio_at - self.started)
        return chunk
