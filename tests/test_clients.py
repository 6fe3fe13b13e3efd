"""What real clients send (../shared/CLIENTS.md), replayed unmodified against the real stack.

vLLM CPU engine on the generated demo model, the real proxy, random SNAC weights: the audio
is noise, so answers are checked the way each client uses them — status, content type, a
decode with FFmpeg (codec, duration, no decode errors) — never for how they sound.
"""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest
from openai import OpenAI

from app.config import OPENAI_VOICES, Settings
from app.server import create_app
from tests.audio_clips import reference_wav
from tests.decoding import decode
from tests.servers import serve

pytestmark = pytest.mark.engine
SENTENCE = "The kitchen lights are now on."
KEY = "sk-local-test"


@pytest.fixture(scope="module")
def base(engine):
    settings = Settings(TTS_API=engine.config.url, SNAC_MODEL="random",
                        ENGINE_STARTUP_TIMEOUT_S=60, DYNAMIC_BATCHING=True)
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def http(base):
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(base):
    return OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)


def sse_audio(text: str) -> bytes:
    """LiveKit's parser: `speech.audio.delta` lines, base64 in `audio` (or `delta`)."""
    audio = b""
    for line in text.splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            assert event["type"] != "error", event
            if event["type"] == "speech.audio.delta":
                audio += base64.b64decode(event.get("audio") or event.get("delta"))
    return audio


def test_open_webui_speech_saved_as_mp3(http):
    # Model forced by the admin, no response_format, admin's TTS_OPENAI_PARAMS merged in.
    body = {"input": SENTENCE, "voice": "alloy", "model": "tts-1", "stability": 0.5}
    r = http.post("/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mpeg"
    decoded = decode(r.content)  # saved as <sha256>.mp3 and played by the browser
    assert decoded.codec in ("mp3", "mp3float") and decoded.seconds > 0.2


def test_open_webui_pickers_without_auth(http):
    voices = http.get("/v1/audio/voices").json()["voices"]
    assert voices and all(set(v) == {"id", "name"} for v in voices)
    assert {v["id"] for v in voices} >= {"husein", "alloy"}
    models = http.get("/v1/audio/models").json()["models"]
    assert {"id": "tts-1"} in models


def test_home_assistant_openai_tts_mp3_sentences_join(http):
    parts = []
    for sentence in ("Good evening.", "The front door is locked.", "It is raining outside."):
        body = {"model": "tts-1", "input": sentence, "voice": "nova", "response_format": "mp3",
                "speed": 1.2, "instructions": "Speak calmly", "extra_setting": True}
        r = http.post("/v1/audio/speech", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-instructions-ignored"] == "true"
        assert not r.content.startswith(b"ID3") and b"Xing" not in r.content[:2048]
        parts.append(r.content)
    joined = decode(b"".join(parts))  # HA joins the replies into one file
    assert joined.seconds == pytest.approx(sum(decode(p).seconds for p in parts), abs=0.2)


def test_home_assistant_streaming_path_opus(http):
    body = {"model": "tts-1", "input": SENTENCE, "voice": "shimmer", "response_format": "opus",
            "speed": 1.0}
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
        data = b"".join(r.iter_bytes())
    decoded = decode(data)
    assert decoded.container == "ogg" and decoded.codec in ("opus", "libopus")


def test_home_assistant_voice_discovery_shapes(http):
    r = http.get("/v1/audio/voices", timeout=5)
    voices = r.json()["voices"]
    assert all(isinstance(v["id"], str) and isinstance(v["name"], str) for v in voices)


def test_wyoming_openai_streaming_wav_through_sdk(sdk, http):
    for probe in ("/health", "/readyz"):
        assert http.get(probe).status_code == 200
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input=SENTENCE, response_format="wav", speed=1.0,
        instructions="Friendly",
    ) as response:
        data = b"".join(response.iter_bytes())
    riff, fmt_tag, channels, rate, _, _, bits = struct.unpack("<4s16xHHIIHH", data[:36])
    assert (riff, fmt_tag, channels, rate, bits) == (b"RIFF", 1, 1, 24000, 16)
    assert decode(data).seconds > 0.2


def test_livekit_prewarm_and_sse_mp3(http):
    assert http.get("/").status_code == 200  # prewarm()
    body = {"model": "gpt-4o-mini-tts", "voice": "ash", "input": SENTENCE,
            "response_format": "mp3", "speed": 1.0, "stream_format": "sse"}
    r = http.post("/v1/audio/speech", json=body,
                  headers={"Accept": "application/octet-stream"})  # as the SDK sends
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")  # parser picked by type
    events = [json.loads(x[5:]) for x in r.text.splitlines() if x.startswith("data:")]
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    decoded = decode(sse_audio(r.text))
    assert decoded.codec in ("mp3", "mp3float") and decoded.seconds > 0.2


def test_livekit_tts1_gets_plain_audio(http):
    body = {"model": "tts-1", "voice": "ash", "input": SENTENCE, "response_format": "mp3",
            "speed": 1.0}
    r = http.post("/v1/audio/speech", json=body)
    assert r.headers["content-type"] == "audio/mpeg" and decode(r.content).seconds > 0.2


def test_openai_sdk_sse_with_iter_lines(sdk):
    with sdk.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="coral", input=SENTENCE, response_format="pcm",
        stream_format="sse",
    ) as response:
        lines = list(response.iter_lines())
    audio = sse_audio("\n".join(lines))
    assert len(audio) > 0 and len(audio) % 2 == 0


def test_pipecat_pcm_with_each_openai_voice(http):
    for voice in OPENAI_VOICES:
        r = http.post("/v1/audio/speech", json={"model": "gpt-4o-mini-tts", "voice": voice,
                                                "input": "Yes.", "response_format": "pcm"})
        assert r.status_code == 200, (voice, r.text)
        assert r.headers["content-type"] == "audio/pcm" and len(r.content) % 2 == 0


@pytest.mark.parametrize("speed", [0.25, 1.0, 4.0])
def test_sillytavern_mp3_at_its_speed_range(http, speed):
    body = {"model": "tts-1", "input": SENTENCE, "voice": "fable", "response_format": "mp3",
            "speed": speed, "custom_params": {"foo": 1}}
    r = http.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-ignored-fields"] == "custom_params"
    assert decode(r.content).seconds > 0.05


def test_n8n_models(sdk):
    for model in ("tts-1", "tts-1-hd"):
        audio = sdk.audio.speech.create(model=model, voice="onyx", input=SENTENCE)
        assert decode(audio.content).codec in ("mp3", "mp3float")


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_sdk_speech_create_every_format(sdk, fmt):
    audio = sdk.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                    response_format=fmt)
    assert decode(audio.content, fmt).seconds > 0.2


def test_speed_scales_real_speech_duration(sdk):
    """Same greedy generation at speed 1 and 2: the duration halves (pitch kept by atempo)."""
    def seconds(speed: float) -> float:
        audio = sdk.audio.speech.create(model="TTS-model", voice="husein", input=SENTENCE,
                                        response_format="pcm", speed=speed,
                                        extra_body={"temperature": 0.0})
        return decode(audio.content, "pcm").seconds
    assert seconds(2.0) / seconds(1.0) == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("extra", [
    {"response_format": "mp3", "speed": "1.5"},
    {"response_format": "flac", "stream": "false"},
    {"response_format": "aac", "stream_format": "sse"},
])
def test_voice_conversion_in_every_delivery(http, extra):
    form = {"reference_text": "I wonder if I shall ever be happy enough.",
            "generate_text": "Ye encik, apa yang saya boleh tolong?", "model": "TTS-model",
            **extra}
    r = http.post("/v1/audio/vc", data=form,
                  files={"reference_audio": ("ref.wav", reference_wav(2.0), "audio/wav")})
    assert r.status_code == 200, r.text
    data = sse_audio(r.text) if extra.get("stream_format") == "sse" else r.content
    assert decode(data).seconds > 0.1
