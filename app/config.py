"""Service settings: the one place that reads the environment.

Every variable of the seed README keeps its name and default (TTS_API, MODEL_NAME, SPEAKERS,
DYNAMIC_BATCHING, ...). `Settings()` is built once in the entry point and passed down.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.delivery.formats import ResponseFormat
from app.profiles import PROFILES

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova",
    "onyx", "sage", "shimmer", "verse", "marin", "cedar",
)
OPENAI_MODELS = (
    "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-03-20",
    "gpt-4o-mini-tts-2025-12-15",
)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Proxy settings. Units are in the field names or descriptions."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Seed variables (003), names and defaults unchanged.
    tts_api: str = Field(
        "http://tts-engine:9093", alias="TTS_API", description="Base URL of the vLLM engine."
    )
    model_name: str = Field(
        "TTS-model", alias="MODEL_NAME",
        description="Model id clients send; also the engine's --served-model-name.",
    )
    default_speaker: str = Field("husein", alias="DEFAULT_SPEAKER", description="Default voice.")
    speakers: Annotated[list[str], NoDecode] = Field(
        ["husein", "idayu", "jenny"], alias="SPEAKERS",
        description="Built-in speakers, comma separated.",
    )
    default_temperature: float = Field(0.6, alias="DEFAULT_TEMPERATURE", ge=0.0, le=2.0)
    default_repetition_penalty: float = Field(
        1.15, alias="DEFAULT_REPETITION_PENALTY", gt=0.0, le=2.0
    )
    default_max_tokens: int = Field(3072, alias="DEFAULT_MAX_TOKENS", ge=7, le=65536)
    default_playback_speed: float = Field(
        0.0, alias="DEFAULT_PLAYBACK_SPEED", ge=0.0, le=30.0,
        description="Seconds of audio per streamed chunk after the first. 0 = the codec's "
        "own default (SNAC: 1.5 s, the seed's; NeuCodec, whose non-causal decoder is more "
        "faithful in longer windows: 5 s).",
    )
    default_playback_overlap_speed: float = Field(
        0.2, alias="DEFAULT_PLAYBACK_OVERLAP_SPEED", ge=0.0, le=2.0,
        description="Seconds crossfaded at each chunk seam.",
    )
    dynamic_batching: bool = Field(
        False, alias="DYNAMIC_BATCHING",
        description="Decode windows of concurrent streams together in one codec call.",
    )
    microsleep: float = Field(
        1e-4, alias="MICROSLEEP", ge=0.0, le=1.0,
        description="Seconds the codec worker waits to collect a batch.",
    )
    max_batch_size: int = Field(16, alias="MAX_BATCH_SIZE", ge=1, le=1024)
    max_batch_frames: int = Field(
        0, alias="MAX_BATCH_FRAMES", ge=0, le=1_000_000,
        description="Most frames (batch x window length) in one codec call; bounds peak "
        "memory. 0 = auto: 64 on CPU (batching buys nothing there), 2048 on CUDA, in SNAC "
        "frames of 85.3 ms; other codecs get the same length of audio.",
    )
    cuda_graph_batch: Annotated[list[float], NoDecode] = Field(
        [], alias="CUDA_GRAPH_BATCH",
        description="Window-length buckets in seconds captured as CUDA graphs (CUDA only).",
    )
    torch_compile: bool = Field(
        False, alias="TORCH_COMPILE", description="torch.compile the decoder instead of graphs."
    )
    debug_audio: bool = Field(
        False, alias="DEBUG_AUDIO", description="Save every emitted chunk as WAV under DATA_DIR."
    )
    sentry_dsn: str = Field(" ", alias="SENTRY_DSN", description="Blank disables Sentry.")

    # Ours.
    host: str = Field("0.0.0.0", alias="HOST")
    port: int = Field(9091, alias="PORT", ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", alias="LOG_LEVEL")
    data_dir: str = Field("data", alias="DATA_DIR", description="Writable directory.")
    codec: Literal["auto", "snac", "neucodec"] = Field(
        "auto", alias="CODEC",
        description="Audio codec that decodes the LM's tokens; auto = the one the served "
        "model's profile names (Orpheus and the SNAC demo: snac; Scicom and its demo: neucodec).",
    )
    snac_model: str = Field(
        "hubertsiuzdak/snac_24khz", alias="SNAC_MODEL",
        description="SNAC weights: HF id, local directory, or 'random' (real architecture, "
        "seeded weights).",
    )
    neucodec_model: str = Field(
        "neuphonic/neucodec", alias="NEUCODEC_MODEL",
        description="NeuCodec weights: HF id, local directory holding pytorch_model.bin or "
        "model.safetensors, or 'random' (real decoder architecture, seeded weights).",
    )
    neucodec_encoder: bool = Field(
        True, alias="NEUCODEC_ENCODER",
        description="Load NeuCodec's encoder for voice cloning (/v1/audio/vc, custom voices): "
        "the checkpoint's encoder keys + NEUCODEC_SEMANTIC_MODEL (w2v-bert-2.0, ~600 M "
        "parameters, ~2.4 GB more in float32). false: cloning is refused. With "
        "NEUCODEC_MODEL=random a reduced random encoder is built instead.",
    )
    neucodec_semantic_model: str = Field(
        "facebook/w2v-bert-2.0", alias="NEUCODEC_SEMANTIC_MODEL",
        description="The semantic model of NeuCodec's encoder: HF id or local directory of "
        "facebook/w2v-bert-2.0 (its config, weights and preprocessor_config.json).",
    )
    codec_device: Literal["auto", "cpu", "cuda"] = Field("auto", alias="CODEC_DEVICE")
    codec_threads: int = Field(
        0, alias="CODEC_THREADS", ge=0, le=256,
        description="torch (and onnxruntime) threads for the codec; 0 = their default (all "
        "cores). On a CPU shared with the engine, 1 avoids threads spin-waiting on each other.",
    )
    codec_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", alias="CODEC_DTYPE",
        description="Codec weights' dtype; bfloat16 is about 3x cheaper on CPUs with AVX512-BF16.",
    )
    decode_mode: Literal["auto", "stream", "windows"] = Field(
        "auto", alias="DECODE_MODE",
        description="stream: each stream's frames are decoded once, by a decoder that keeps "
        "its layers' state (SNAC; audio equal to one offline decode, no seams, no re-decoded "
        "context). windows: chunks decoded with context and crossfaded (batched across "
        "streams, CUDA graphs; the only mode for NeuCodec). auto: stream for SNAC on CPU, "
        "windows otherwise.",
    )
    codec_backend: Literal["torch", "onnxruntime"] = Field(
        "torch", alias="CODEC_BACKEND",
        description="What runs the SNAC decoder. onnxruntime (float32 on CPU): the decoder "
        "is exported to ONNX at start-up (cached in CODEC_CACHE_DIR) and used only if it "
        "matches torch to 90 dB, else torch with a warning. CUDA and NeuCodec keep torch.",
    )
    codec_cache_dir: str = Field(
        "~/.cache/tts-api/codec", alias="CODEC_CACHE_DIR",
        description="Directory for exported ONNX decoders, named by a hash of the weights (~ "
        "is the home directory). Unwritable: the decoder is exported again at every start.",
    )
    model_profile: str = Field(
        "auto", alias="MODEL_PROFILE",
        description="Prompt/token layout of the served model: auto (probe the tokenizer) or "
        "a profile name from app/profiles.py (orpheus, demo, scicom-demo, scicom).",
    )
    engine_token_mode: Literal["logprobs", "token_ids"] = Field(
        "token_ids", alias="ENGINE_TOKEN_MODE",
        description="How token ids are read from vLLM: return_token_ids or logprobs tokens.",
    )
    engine_connect_timeout_s: float = Field(5.0, alias="ENGINE_CONNECT_TIMEOUT_S", gt=0)
    engine_read_timeout_s: float = Field(
        60.0, alias="ENGINE_READ_TIMEOUT_S", gt=0,
        description="Longest silence tolerated between two engine stream chunks.",
    )
    engine_max_connections: int = Field(256, alias="ENGINE_MAX_CONNECTIONS", ge=1)
    engine_startup_timeout_s: float = Field(
        300.0, alias="ENGINE_STARTUP_TIMEOUT_S", ge=0,
        description="How long start-up waits for the engine to answer before giving up.",
    )
    engine_health_path: str = Field(
        "/health", alias="ENGINE_HEALTH_PATH", pattern=r"^/\S*$",
        description="Path polled for engine health (start-up and /health). Behind vllm-router "
        "use /readiness: its /health answers 503 while any one engine is down, /readiness "
        "only while none is up.",
    )
    first_chunk_frames: int = Field(
        0, alias="FIRST_CHUNK_FRAMES", ge=0, le=1024,
        description="Codec frames in the first streamed chunk, for low first-audio latency. "
        "0 = the codec's own default (SNAC: 3 frames = 256 ms; NeuCodec: 50 = 1 s).",
    )
    min_context_frames: int = Field(
        -1, alias="MIN_CONTEXT_FRAMES", ge=-1, le=1024,
        description="Least left/right codec context decoded around each chunk, in frames. "
        "-1 = the codec's own default (SNAC: 1 frame, 85 ms; NeuCodec, whose decoder is "
        "non-causal: 16 frames = 0.32 s).",
    )
    chunk_growth: float = Field(
        0.0, alias="CHUNK_GROWTH", ge=0.0, le=10.0,
        description="Each streamed chunk after the first is this many times as long as the "
        "audio sent so far (up to playback_speed). 0 = the codec's own default (SNAC: 1; "
        "NeuCodec: 3, longer windows decode it more faithfully).",
    )
    min_window_frames: int = Field(
        -1, alias="MIN_WINDOW_FRAMES", ge=-1, le=4096,
        description="Least codec frames per decode window: the window reaches back into "
        "audio already sent (at most the chunk's own length; no added latency, more decode). "
        "-1 = the codec's own default (SNAC: 0; NeuCodec, a non-causal decoder: 200 = 4 s).",
    )
    max_input_chars: int = Field(4096, alias="MAX_INPUT_CHARS", ge=1)
    default_response_format: ResponseFormat = Field(
        "pcm", alias="DEFAULT_RESPONSE_FORMAT",
        description="response_format when a request names none and does not use one of "
        "OpenAI's model names (the seed documents pcm).",
    )
    openai_default_response_format: ResponseFormat = Field(
        "mp3", alias="OPENAI_DEFAULT_RESPONSE_FORMAT",
        description="response_format when a request names none and its model is one of "
        "OpenAI's (tts-1, tts-1-hd, gpt-4o-mini-tts and dated names): OpenAI documents mp3.",
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, alias="MAX_UPLOAD_BYTES", ge=1024, le=1024 * 1024 * 1024,
        description="Largest reference audio upload (/v1/audio/vc, /v1/audio/voices), in "
        "bytes; a larger one gets 413 as soon as the cap is passed.",
    )
    reference_min_s: float = Field(
        1.0, alias="REFERENCE_MIN_S", gt=0.0, le=60.0,
        description="Shortest reference clip accepted, in seconds.",
    )
    reference_max_s: float = Field(
        30.0, alias="REFERENCE_MAX_S", gt=0.0, le=300.0,
        description="Longest reference clip accepted, in seconds (its 11.7 frames per second "
        "go into every prompt that uses the voice).",
    )
    reference_silence_dbfs: float = Field(
        -60.0, alias="REFERENCE_SILENCE_DBFS", ge=-120.0, le=0.0,
        description="A reference clip whose RMS level is below this, in dBFS, is rejected "
        "as silent.",
    )
    max_reference_text_chars: int = Field(
        1000, alias="MAX_REFERENCE_TEXT_CHARS", ge=1, le=16384,
        description="Longest reference transcript accepted, in characters.",
    )
    max_concurrent_encodes: int = Field(
        4, alias="MAX_CONCURRENT_ENCODES", ge=1, le=256,
        description="Reference clips decoded and SNAC-encoded at once; further uploads get 503.",
    )
    voice_store_url: str = Field(
        "", alias="VOICE_STORE_URL",
        description="Where custom voices are kept: sqlite:///PATH (relative to the working "
        "directory; sqlite:////abs for absolute), or postgresql://USER:PASSWORD@HOST/DB for "
        "replicas that share voices. Blank: voices.db in DATA_DIR.",
    )
    voice_map: Annotated[dict[str, str], NoDecode] = Field(
        {}, alias="VOICE_MAP",
        description="OpenAI voice -> speaker, JSON or 'alloy=husein,echo=idayu'. "
        "Unlisted OpenAI voices map round-robin onto SPEAKERS.",
    )
    model_aliases: Annotated[list[str], NoDecode] = Field(
        list(OPENAI_MODELS), alias="MODEL_ALIASES",
        description="Model names that resolve to MODEL_NAME (OpenAI's, for drop-in apps).",
    )
    # Admission control, security, limits.
    max_concurrent_streams: int = Field(
        4, alias="MAX_CONCURRENT_STREAMS", ge=1, le=100_000,
        description="Syntheses in progress at once (a WebSocket session holds one for its "
        "whole life). Past it, requests queue; see README for how the default was measured.",
    )
    max_queued_requests: int = Field(
        8, alias="MAX_QUEUED_REQUESTS", ge=0, le=100_000,
        description="Requests waiting for a stream slot; past it, 429 at once.",
    )
    queue_timeout_s: float = Field(
        5.0, alias="QUEUE_TIMEOUT_S", ge=0.0, le=600.0,
        description="Longest wait for a stream slot, in seconds; then 429 with Retry-After.",
    )
    admission_first_audio_target_s: float = Field(
        0.0, alias="ADMISSION_FIRST_AUDIO_TARGET_S", ge=0.0, le=60.0,
        description="Latency-based admission: refuse new streams (429) while the median "
        "first-audio latency of the last 10 s is above this, in seconds. 0 = off.",
    )
    admission_realtime_margin_target: float = Field(
        0.0, alias="ADMISSION_REALTIME_MARGIN_TARGET", ge=0.0, le=100.0,
        description="Latency-based admission: refuse new streams while the codec's real-time "
        "margin (1 / its busy fraction over the last 10 s) is below this, e.g. 1.2. 0 = off.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], alias="API_KEYS",
        description="Accepted API keys, comma separated (Authorization: Bearer KEY). Empty "
        "(and no API_KEYS_FILE): no authentication.",
    )
    api_keys_file: str = Field(
        "", alias="API_KEYS_FILE", description="A file of API keys, one per line, # comments.",
    )
    public_metrics: bool = Field(
        False, alias="PUBLIC_METRICS",
        description="With API keys set: serve /metrics without a key.",
    )
    public_voice_list: bool = Field(
        True, alias="PUBLIC_VOICE_LIST",
        description="With API keys set: list voices and models without a key (Open WebUI's "
        "pickers send none).",
    )
    rate_limit_per_minute: float = Field(
        0.0, alias="RATE_LIMIT_PER_MINUTE", ge=0.0, le=1e6,
        description="Requests per minute per API key (per client address without keys); "
        "past it 429. 0 = off.",
    )
    max_request_bytes: int = Field(
        1024 * 1024, alias="MAX_REQUEST_BYTES", ge=1024, le=1024 * 1024 * 1024,
        description="Largest JSON request body, in bytes; checked before it is read (413). "
        "Uploads have MAX_UPLOAD_BYTES.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], alias="CORS_ORIGINS",
        description="Origins allowed to call the API from a browser, comma separated; '*' "
        "for any. Empty: no CORS headers.",
    )
    engine_stall_timeout_s: float = Field(
        15.0, alias="ENGINE_STALL_TIMEOUT_S", gt=0.0, le=600.0,
        description="A stream whose engine sends nothing for this long is ended and the "
        "engine request aborted, in seconds.",
    )
    send_timeout_s: float = Field(
        30.0, alias="SEND_TIMEOUT_S", gt=0.0, le=600.0,
        description="A client that takes longer than this to accept one chunk (it reads too "
        "slowly) is dropped and its engine request aborted, in seconds.",
    )
    shutdown_grace_s: float = Field(
        30.0, alias="SHUTDOWN_GRACE_S", ge=0.0, le=3600.0,
        description="On SIGTERM: stop admitting (health says draining) and let streams in "
        "progress finish for up to this long, in seconds, then exit.",
    )
    ws_keepalive_s: float = Field(
        5.0, alias="WS_KEEPALIVE_S", gt=0.0, le=300.0,
        description="Seconds between {\"type\": \"keepalive\"} messages on /ws/synthesize.",
    )
    demo: bool | None = Field(
        None, alias="TTS_DEMO",
        description="Force the demo flag; unset = derived from the profile and codec weights.",
    )

    @field_validator("speakers", "model_aliases", "cuda_graph_batch", "api_keys", "cors_origins",
                     mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("model_profile")
    @classmethod
    def _check_profile(cls, value: str) -> str:
        if value != "auto" and value not in PROFILES:
            raise ValueError(f"MODEL_PROFILE {value!r} is not auto or one of {sorted(PROFILES)}")
        return value

    @field_validator("voice_map", mode="before")
    @classmethod
    def _parse_voice_map(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            if text.startswith("{"):
                return json.loads(text)
            pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
            return {k.strip(): v.strip() for k, v in pairs}
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.speakers:
            raise ValueError("SPEAKERS must name at least one speaker")
        if self.default_speaker not in self.speakers:
            raise ValueError(f"DEFAULT_SPEAKER {self.default_speaker!r} is not in SPEAKERS")
        unknown = sorted(set(self.voice_map.values()) - set(self.speakers))
        if unknown:
            raise ValueError(f"VOICE_MAP targets unknown speakers: {unknown}")
        if any(s <= 0 for s in self.cuda_graph_batch):
            raise ValueError("CUDA_GRAPH_BATCH buckets must be positive seconds")
        if self.reference_min_s >= self.reference_max_s:
            raise ValueError("REFERENCE_MIN_S must be shorter than REFERENCE_MAX_S")
        return self

    def resolved_voice_map(self) -> dict[str, str]:
        """Every OpenAI voice name mapped to a configured speaker."""
        mapping = {
            voice: self.speakers[i % len(self.speakers)] for i, voice in enumerate(OPENAI_VOICES)
        }
        mapping.update(self.voice_map)
        return mapping
