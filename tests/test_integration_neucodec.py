"""The NeuCodec stack over loopback: vLLM CPU on the NeuCodec demo model + the proxy + a
random-weight NeuCodec decoder.

The demo model speaks Scicom's vocabulary (`<|s_N|>`, `<|im_end|>`) and stops by itself after
about 4 tokens per prompt byte, so lengths are exact and checkable. The audio is noise: these
tests check the plumbing (profile detection, one-code frames of 480 samples, formats,
stopping, abort on disconnect, cloning through the reduced random NeuCodec encoder), never
how it sounds.
"""

from __future__ import annotations

import asyncio
import io
import struct
import wave

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from app.codec.info import NEUCODEC
from app.config import Settings
from app.engine import EngineClient
from app.protocol import SpeechRequest
from app.server import create_app
from app.synthesis import ClonedVoice
from demo_model import expected_audio_tokens
from demo_model.neucodec import FIRST_AUDIO_ID, IM_END_ID, PROMPT_TEMPLATE
from tests.audio_clips import chirp, reference_wav
from tests.servers import serve
from tests.test_integration import batches_since, engine_counter, wait_engine_idle
from tests.test_integration_vc import REFERENCE_TEXT, SEED_FORM, form_parts

pytestmark = pytest.mark.engine
SPEECH = "/v1/audio/speech"
SAMPLES_PER_FRAME = NEUCODEC.samples_per_frame
VC = "/v1/audio/vc"
VOICES = "/v1/audio/voices"


@pytest.fixture(scope="module")
def served(neucodec_engine, tmp_path_factory):
    # NEUCODEC_ENCODER defaults to true: with random weights, the reduced random encoder.
    settings = Settings(TTS_API=neucodec_engine.config.url, NEUCODEC_MODEL="random",
                        DYNAMIC_BATCHING=True, MICROSLEEP=0.02, ENGINE_STARTUP_TIMEOUT_S=60,
                        DATA_DIR=str(tmp_path_factory.mktemp("neucodec-data")))
    app = create_app(settings)
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
    return OpenAI(base_url=api_url + "/v1", api_key="x", max_retries=0)


def spoken_frames(speaker: str, text: str) -> int:
    """Audio tokens (= NeuCodec frames) the demo emits at temperature 0 for this prompt."""
    return expected_audio_tokens(len(f"{speaker}: {text}".encode()))


def test_the_proxy_detects_the_scicom_demo_and_loads_neucodec(api_url, app_state):
    health = httpx.get(api_url + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["demo"] is True
    assert health["engine"]["profile"] == "scicom-demo"
    assert app_state.codec_info.layout == NEUCODEC and app_state.codec_info.random_weights
    assert app_state.profile.layout.tokens_per_frame == 1
    assert app_state.profile.layout.codebook_size == 65_536


def test_the_demo_model_stops_by_itself_at_its_length(neucodec_engine):
    text = "Hello there, this is the NeuCodec demo."
    body = {"model": "TTS-model", "prompt": PROMPT_TEMPLATE.format(voice="husein", text=text),
            "max_tokens": 2000, "temperature": 0, "return_token_ids": True,
            "add_special_tokens": False}
    runs = [httpx.post(neucodec_engine.config.url + "/v1/completions", json=body,
                       timeout=120).json()["choices"][0] for _ in range(2)]
    ids = runs[0]["token_ids"]
    assert runs[0]["finish_reason"] == "stop" and ids[-1] == IM_END_ID
    assert all(FIRST_AUDIO_ID <= i < FIRST_AUDIO_ID + 65_536 for i in ids[:-1])
    assert len(ids) - 1 == spoken_frames("husein", text)
    assert runs[1]["token_ids"] == ids  # deterministic at temperature 0


def test_non_streamed_wav_has_exact_sizes_from_the_demo_length(api_url):
    text = "Exact sizes please."
    r = httpx.post(api_url + SPEECH, timeout=120, json={
        "input": text, "voice": "husein", "response_format": "wav", "stream": False,
        "temperature": 0, "normalize_malaysian": False})
    assert r.status_code == 200
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() * 2 == len(r.content) - 44
        assert w.getnframes() == spoken_frames("husein", text) * SAMPLES_PER_FRAME


def test_openai_sdk_streams_pcm(sdk):
    chunks = []
    with sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="This is one streamed test sentence",
            response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["x-tts-demo"] == "true"
        chunks.extend(response.iter_bytes())
    total = sum(len(c) for c in chunks)
    assert len(chunks) > 1 and total > 0
    assert total % (SAMPLES_PER_FRAME * 2) == 0


def test_seed_curl_example_streams_wav(api_url):
    seed = {
        "input": "Hello! How can I help you? can I get your passport number sir.",
        "voice": "husein", "model": "TTS-model", "response_format": "wav",
        "temperature": 0.7, "stream": True, "playback_speed": 0.5,
        "playback_overlap_speed": 0.1, "normalize_malaysian": True,
    }
    with httpx.stream("POST", api_url + SPEECH, json=seed, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        body = b"".join(r.iter_bytes())
    assert struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    assert len(body) > 44 + 50 * SAMPLES_PER_FRAME * 2  # over a second of audio


def test_openai_sdk_writes_an_mp3(sdk, tmp_path):
    path = tmp_path / "a.mp3"
    sdk.audio.speech.create(model="tts-1", voice="nova", input="An mp3, please.",
                            response_format="mp3").write_to_file(path)
    data = path.read_bytes()
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    assert len(data) > 1000


async def test_concurrent_equal_windows_are_batched_without_padding(api_url, app_state):
    before = dict(app_state.worker.stats.batch_histogram)  # this test's batches only
    async with httpx.AsyncClient(base_url=api_url, timeout=180) as client:
        responses = await asyncio.gather(*[
            client.post(SPEECH, json={"input": "The same words from four clients at once.",
                                      "voice": "husein", "temperature": 0, "stream": False,
                                      "response_format": "pcm", "playback_speed": 0.5,
                                      "playback_overlap_speed": 0.1})
            for _ in range(4)])
    assert [r.status_code for r in responses] == [200] * 4
    # Batched decodes equal one-by-one ones (zero padding would give ~9 dB): identical, or
    # apart only by float rounding when one request's window ran in another batch size.
    first = np.frombuffer(responses[0].content, "<i2").astype(np.float64)
    for response in responses[1:]:
        other = np.frombuffer(response.content, "<i2").astype(np.float64)
        assert other.size == first.size
        error = np.sum((other - first) ** 2)
        assert error == 0 or 10 * np.log10(np.sum(first ** 2) / error) > 60
    batches = batches_since(before, app_state.worker.stats)
    assert max(batches, default=0) >= 2, batches
    assert app_state.metrics.misplaced_tokens == 0


def test_client_disconnect_aborts_the_engine_request(api_url, neucodec_engine):
    # The demo would stop by itself after ~4 tokens per byte (~4,000 here); hanging up at the
    # status line must stop it long before.
    wait_engine_idle(neucodec_engine)
    before = engine_counter(neucodec_engine, "vllm:generation_tokens_total", "")
    long_text = "This sentence is long so that generation takes a while. " * 18
    with httpx.stream("POST", api_url + SPEECH, timeout=120,
                      json={"input": long_text, "max_tokens": 6000, "temperature": 0,
                            "normalize_malaysian": False, "playback_speed": 0.3,
                            "playback_overlap_speed": 0.05}) as r:
        assert r.status_code == 200
    wait_engine_idle(neucodec_engine)
    generated = engine_counter(neucodec_engine, "vllm:generation_tokens_total", "") - before
    assert generated < spoken_frames("husein", long_text) / 2


def test_the_encoder_gives_50_codes_per_second_of_16khz_audio(app_state):
    codec = app_state.worker.codec
    assert codec.encoder_spec.slice_frames is None  # whole clip, off the codec thread
    audio = chirp(2.5, 16000)[:, 0]
    codes = codec.encode(audio)
    assert codes.shape == (125, 1) and codes.dtype == np.int64
    assert 0 <= codes.min() and codes.max() < NEUCODEC.codebook_size
    np.testing.assert_array_equal(codec.encode(audio), codes)  # deterministic


def test_seed_curl_example_streams_a_cloned_wav(api_url):
    """The seed's /v1/audio/vc example, as httpx sends what curl --form sends."""
    parts = form_parts(SEED_FORM, reference_wav(3.0), "reference_audio")
    with httpx.stream("POST", api_url + VC, files=parts, timeout=180) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "audio/wav" and r.headers["x-tts-demo"] == "true"
        body = b"".join(r.iter_bytes())
    assert body[:4] == b"RIFF" and struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    assert len(body) > 44 and (len(body) - 44) % (SAMPLES_PER_FRAME * 2) == 0


async def test_clone_prompt_tokenizes_to_the_reference_codes(neucodec_engine, app_state):
    """The engine's tokenizer reads each reference code as one <|s_N|> token, in order."""
    frames = np.random.default_rng(0).integers(0, NEUCODEC.codebook_size, (40, 1))
    job = app_state.speech.prepare(SpeechRequest(input="Hello there."), "req_test",
                                   cloned=ClonedVoice("Some words.", frames))
    async with httpx.AsyncClient(timeout=60) as http:
        tokens = await EngineClient(http, base_url=neucodec_engine.config.url,
                                    model=app_state.engine.model,
                                    mode="token_ids").tokenize(job.prompt)
    audio_ids = [t for t in tokens if FIRST_AUDIO_ID <= t < FIRST_AUDIO_ID + 65_536]
    assert audio_ids == [FIRST_AUDIO_ID + int(c) for c in frames[:, 0]]


def test_custom_voice_creates_speaks_lists_and_deletes(sdk, api_url):
    voice = sdk.audio.voices.create(
        audio_sample=("jenny.wav", reference_wav(3.0), "audio/wav"), name="Jenny",
        consent="cons_1234", extra_body={"reference_text": REFERENCE_TEXT})
    assert voice.id.startswith("voice_")
    speech = sdk.audio.speech.create(model="tts-1", voice={"id": voice.id},
                                     input="Hello from a custom voice.", response_format="pcm")
    assert len(speech.content) > 0 and len(speech.content) % (SAMPLES_PER_FRAME * 2) == 0
    listed = {v["id"]: v for v in httpx.get(api_url + VOICES).json()["data"]}
    assert listed[voice.id]["name"] == "Jenny" and "husein" in listed
    deleted = sdk.audio.voices.delete(voice.id)
    assert deleted.deleted and deleted.id == voice.id
    with pytest.raises(openai.NotFoundError):
        sdk.audio.speech.create(model="tts-1", voice={"id": voice.id}, input="Gone?",
                                response_format="pcm")
