"""Request and response models of the public API (OpenAI's audio.speech plus the seed's fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.delivery.formats import ResponseFormat


class VoiceRef(BaseModel):
    """OpenAI's custom-voice reference: `voice={"id": "voice_..."}`."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)


class GenerationFields(BaseModel):
    """The fields shared by speech and voice conversion: the seed's sampling and streaming
    fields and OpenAI's delivery fields.

    Unknown fields are kept aside (`model_extra`), not refused: apps merge admin-defined keys
    into the body. The response names them in `X-Ignored-Fields`.
    """

    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=7, le=65536)
    stream: bool = True
    playback_speed: float | None = Field(None, ge=0.05, le=30.0)
    playback_overlap_speed: float | None = Field(None, ge=0.0, le=2.0)
    normalize_malaysian: bool = True
    # Unset: OpenAI's default (mp3) when `model` is one of OpenAI's names, else the seed's (pcm).
    response_format: ResponseFormat | None = None
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class SpeechRequest(GenerationFields):
    """POST /v1/audio/speech. Unset seed fields fall back to the server's DEFAULT_* settings."""

    input: str = Field(min_length=1)
    model: str | None = None
    voice: str | VoiceRef | None = None
    # Accepted for every model; one that cannot follow them says so in a response header.
    instructions: str | None = Field(None, max_length=4096)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tts-proxy"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VoiceCloneForm(GenerationFields):
    """Text fields of POST /v1/audio/vc (multipart; the file is `reference_audio`).

    Unset seed fields fall back to the server's DEFAULT_* settings, as for speech.
    """

    reference_text: str = Field(min_length=1)
    generate_text: str = Field(min_length=1)
    model: str | None = None

    def speech_request(self) -> SpeechRequest:
        """The same synthesis as a speech request (the voice comes from the reference)."""
        fields = self.model_dump(exclude={"reference_text", "generate_text"})
        return SpeechRequest.model_validate({"input": self.generate_text, **fields})


class VoiceCreateForm(BaseModel):
    """Text fields of POST /v1/audio/voices (multipart; the file is `audio_sample`).

    The openai SDK's `audio.voices.create` sends `name`, `consent` and `type`;
    `reference_text` (the sample's transcript) comes through `extra_body`.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    reference_text: str = Field(min_length=1)
    consent: str | None = Field(None, max_length=256)
    type: str = "audio_sample"
    normalize_malaysian: bool = True


class VoiceObject(BaseModel):
    """OpenAI's `audio.voice`."""

    id: str
    object: Literal["audio.voice"] = "audio.voice"
    created_at: int
    name: str
    type: Literal["audio_sample"] = "audio_sample"


class VoiceDeleted(BaseModel):
    """OpenAI's `audio.voice.deleted`."""

    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True


class NormalizeRequest(BaseModel):
    """POST /v1/audio/normalize: see what will be spoken."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000)


class NormalizedSentence(BaseModel):
    text: str
    original: str
    language: str


class NormalizeResponse(BaseModel):
    text: str
    language: str
    sentences: list[NormalizedSentence]


class SynthesizeRequest(BaseModel):
    """Seed 004's REST form, POST /synthesize. `voice_description` picks a speaker when it
    names one (or an OpenAI voice); a free-form description falls back to DEFAULT_SPEAKER,
    since the served models take no voice descriptions."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    voice_description: str | None = Field(None, max_length=500)
    voice: str | None = None
    format: ResponseFormat = "wav"


class StreamConfig(BaseModel):
    """The first message of a `/ws/synthesize` session (seed 004), plus our generation fields."""

    model_config = ConfigDict(extra="forbid")

    voice: str | VoiceRef | None = None
    voice_description: str | None = Field(None, max_length=500)
    sample_rate: int = Field(24000, ge=8000, le=48000)
    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=7, le=65536)
    speed: float = Field(1.0, ge=0.25, le=4.0)
    playback_speed: float | None = Field(None, ge=0.05, le=30.0)
    playback_overlap_speed: float | None = Field(None, ge=0.0, le=2.0)
    normalize_malaysian: bool = True
