"""Voice cloning on the real stack: vLLM CPU engine (demo model) + the proxy + random SNAC.

SNAC weights are random and the LM is the generated demo model: the audio is noise, so these
tests check the plumbing (multipart, decoding, the SNAC encode, prompts the engine accepts,
persistence), never how the clone sounds.
"""

from __future__ import annotations

import struct

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from app.config import Settings
from app.engine import EngineClient
from app.protocol import SpeechRequest
from app.server import create_app
from app.synthesis import ClonedVoice
from tests.audio_clips import av_bytes, chirp, reference_wav, wav_bytes
from tests.servers import serve

pytestmark = pytest.mark.engine
VC = "/v1/audio/vc"
VOICES = "/v1/audio/voices"
SAMPLES_PER_FRAME = 2048
REFERENCE_TEXT = ("I wonder if I shall ever be happy enough to have real lace on my clothes "
                  "and bows on my caps.")
SEED_FORM = {
    "reference_text": REFERENCE_TEXT,
    "generate_text": "Ye encik, apa yang saya boleh tolong?",
    "model": "TTS-model", "response_format": "wav", "temperature": "0.7",
    "repetition_penalty": "1.15", "max_tokens": "3072", "stream": "true",
    "playback_speed": "1.5", "playback_overlap_speed": "0.2",
}


def vc_settings(engine, data_dir) -> Settings:
    return Settings(TTS_API=engine.config.url, SNAC_MODEL="random", ENGINE_STARTUP_TIMEOUT_S=60,
                    DATA_DIR=str(data_dir))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vc-data")


@pytest.fixture(scope="module")
def served(engine, data_dir):
    app = create_app(vc_settings(engine, data_dir))
    with serve(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def api_url(served):
    return served[0]


@pytest.fixture(scope="module")
def app_state(served):
    return served[1].state.tts


@pytest.fixture
def sdk(api_url):
    return OpenAI(base_url=api_url + "/v1", api_key="x", max_retries=0, timeout=180)


def form_parts(fields: dict[str, str | None], audio: bytes | None, field: str,
               filename: str = "jenny.wav") -> dict[str, tuple]:
    """A multipart body as curl --form builds it: text parts plus one file part."""
    parts: dict[str, tuple] = {k: (None, v) for k, v in fields.items() if v is not None}
    if audio is not None:
        parts[field] = (filename, audio, "audio/wav")
    return parts


def test_seed_curl_example_streams_a_cloned_wav(api_url):
    """The seed's /v1/audio/vc example, as httpx sends what curl --form sends."""
    parts = form_parts(SEED_FORM, reference_wav(3.0), "reference_audio")
    with httpx.stream("POST", api_url + VC, files=parts, timeout=180) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "audio/wav" and r.headers["x-tts-demo"] == "true"
        body = b"".join(r.iter_bytes())
    assert body[:4] == b"RIFF" and struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    assert len(body) > 44 and (len(body) - 44) % (SAMPLES_PER_FRAME * 2) == 0


@pytest.mark.parametrize("container,rate,channels", [
    ("ogg", 48000, 2), ("mp3", 44100, 1), ("m4a", 44100, 2), ("webm", 48000, 1),
])
def test_vc_accepts_compressed_references(api_url, container, rate, channels):
    audio = av_bytes(chirp(2.0, rate, channels), rate, container)
    parts = form_parts({**SEED_FORM, "stream": "false", "response_format": "pcm",
                        "max_tokens": "70"}, audio, "reference_audio", f"ref.{container}")
    r = httpx.post(api_url + VC, files=parts, timeout=180)
    assert r.status_code == 200, r.text
    assert 0 < len(r.content) <= 10 * SAMPLES_PER_FRAME * 2  # max_tokens 70 = 10 frames


async def test_clone_prompt_tokenizes_to_the_reference_frames(engine, app_state):
    """The engine's own tokenizer reads each reference frame as 7 audio tokens."""
    frames = np.random.default_rng(0).integers(0, 4096, (36, 7))
    job = app_state.speech.prepare(SpeechRequest(input="Hello there."), "req_test",
                                   cloned=ClonedVoice("Some words.", frames))
    # A client of our own: the app's connection pool belongs to the server thread's loop.
    async with httpx.AsyncClient(timeout=60) as http:
        tokens = await EngineClient(http, base_url=engine.config.url,
                                    model=app_state.engine.model,
                                    mode="token_ids").tokenize(job.prompt)
    layout = app_state.profile.layout
    audio_ids = [t for t in tokens if layout.audio_base_id <= t < layout.audio_end_id]
    assert len(audio_ids) == 36 * 7
    assert audio_ids[:7] == [layout.audio_base_id + p * 4096 + int(c)
                             for p, c in enumerate(frames[0])]


def test_sdk_voice_survives_a_restart_then_deletes(engine, sdk, api_url, data_dir):
    voice = sdk.audio.voices.create(
        audio_sample=("jenny.wav", reference_wav(3.0), "audio/wav"), name="Jenny",
        consent="cons_1234", extra_body={"reference_text": REFERENCE_TEXT})
    assert voice.id.startswith("voice_") and voice.type == "audio_sample"
    speech = sdk.audio.speech.create(model="tts-1", voice={"id": voice.id},
                                     input="Hello from a custom voice.", response_format="wav")
    assert speech.content[:4] == b"RIFF" and len(speech.content) > 44
    listed = {v["id"]: v for v in httpx.get(api_url + VOICES).json()["data"]}
    assert listed[voice.id]["name"] == "Jenny" and "husein" in listed

    with serve(create_app(vc_settings(engine, data_dir))) as restarted:  # same DATA_DIR
        client = OpenAI(base_url=restarted + "/v1", api_key="x", max_retries=0, timeout=180)
        again = client.audio.speech.create(model="tts-1", voice={"id": voice.id},
                                           input="Still the same voice.", response_format="pcm")
        assert len(again.content) > 0 and len(again.content) % (SAMPLES_PER_FRAME * 2) == 0
        deleted = client.audio.voices.delete(voice.id)
        assert deleted.deleted and deleted.id == voice.id

    with pytest.raises(openai.NotFoundError):
        sdk.audio.speech.create(model="tts-1", voice={"id": voice.id}, input="Gone?",
                                response_format="pcm")
    with pytest.raises(openai.NotFoundError):
        sdk.audio.voices.delete(voice.id)


BAD_UPLOADS = {
    "oversize": (bytes(10 * 1024 * 1024 + 1), {}, 413, "payload_too_large"),
    "too short": (wav_bytes(chirp(0.5, 24000), 24000), {}, 400, "audio_too_short"),
    "too long": (wav_bytes(chirp(31.0, 16000), 16000), {}, 400, "audio_too_long"),
    "not audio": (b"%PDF-1.7 this is not audio\n" * 40, {}, 400, "invalid_audio"),
    "corrupt": (b"OggS" + np.random.default_rng(5).bytes(8000), {}, 400, "invalid_audio"),
    "empty": (b"", {}, 400, "empty_file"),
    "silent": (wav_bytes(np.zeros((48000, 1), np.float32), 24000), {}, 400, "audio_silent"),
    "missing file": (None, {}, 400, None),
    "missing text": ("ok", {"reference_text": None}, 400, None),
    "text too long": ("ok", {"generate_text": "x" * 5000}, 400, "string_above_max_length"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_vc_bad_uploads_get_4xx_envelopes(api_url, case):
    audio, fields, status, code = BAD_UPLOADS[case]
    audio = reference_wav() if audio == "ok" else audio
    r = httpx.post(api_url + VC, files=form_parts({**SEED_FORM, **fields}, audio,
                                                  "reference_audio"), timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize("case", ["oversize", "too short", "not audio", "silent",
                                  "missing file"])
def test_voice_create_bad_uploads_get_4xx_envelopes(api_url, case):
    audio, _, status, code = BAD_UPLOADS[case]
    r = httpx.post(api_url + VOICES, timeout=60, files=form_parts(
        {"name": "bad", "reference_text": "Hello."}, audio, "audio_sample"))
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == "audio_sample"
    if code is not None:
        assert r.json()["error"]["code"] == code
