"""Custom voices through the openai SDK against the scripted engine and a fake codec."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from openai import OpenAI

from app.config import Settings
from app.server import create_app
from tests.audio_clips import chirp, reference_wav, wav_bytes
from tests.servers import serve
from tests.vc_fakes import EncodingCodec, clone_prompt_frames

VOICES = "/v1/audio/voices"
JENNY_TEXT = "I wonder if I shall ever be happy enough to have real lace on my clothes."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def make_app(engine_url: str, data_dir, codec: EncodingCodec):
    settings = Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10, DATA_DIR=str(data_dir))
    return create_app(settings, codec_factory=lambda s: codec)


@pytest.fixture(scope="module")
def codec():
    return EncodingCodec()


@pytest.fixture(scope="module")
def api_url(engine_url, data_dir, codec):
    with serve(make_app(engine_url, data_dir, codec)) as url:
        yield url


@pytest.fixture
def sdk(api_url):
    return OpenAI(base_url=api_url + "/v1", api_key="x", max_retries=0)


def create_jenny(sdk: OpenAI, seconds: float = 3.0, name: str = "Jenny"):
    return sdk.audio.voices.create(
        audio_sample=("jenny.wav", reference_wav(seconds), "audio/wav"), name=name,
        consent="cons_1234", extra_body={"reference_text": JENNY_TEXT})


def test_sdk_creates_a_voice_object(sdk, codec):
    encodes = len(codec.encodes)
    voice = create_jenny(sdk)
    assert voice.id.startswith("voice_") and voice.object == "audio.voice"
    assert voice.type == "audio_sample" and voice.name == "Jenny" and voice.created_at > 0
    assert len(codec.encodes) > encodes


def test_speech_with_a_voice_id_uses_the_stored_frames(sdk, script, codec):
    voice = create_jenny(sdk, seconds=2.0)
    encodes = len(codec.encodes)
    audio = sdk.audio.speech.create(model="tts-1", voice={"id": voice.id}, input="Hello there.",
                                    response_format="pcm")
    assert len(audio.content) == 12 * 2048 * 2
    prompt = script.requests[-1]["prompt"]
    assert prompt.startswith(f"<|im_start|>{JENNY_TEXT}<|im_end|>")
    assert clone_prompt_frames(prompt) == 24  # ceil(2 s * 24000 / 2048), not re-encoded
    assert len(codec.encodes) == encodes


def test_list_shows_builtin_and_custom_voices(sdk, api_url):
    voice = create_jenny(sdk, name="Listed")
    data = httpx.get(api_url + VOICES).json()["data"]
    by_id = {v["id"]: v for v in data}
    assert by_id["husein"]["type"] == "builtin" and by_id["alloy"]["type"] == "alias"
    assert by_id[voice.id] == {"id": voice.id, "object": "audio.voice", "name": "Listed",
                               "type": "audio_sample", "created_at": voice.created_at}
    assert httpx.get(f"{api_url}{VOICES}/{voice.id}").json()["name"] == "Listed"


def test_delete_then_the_voice_is_gone(sdk, api_url):
    voice = create_jenny(sdk)
    deleted = sdk.audio.voices.delete(voice.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (voice.id, True,
                                                             "audio.voice.deleted")
    with pytest.raises(openai.NotFoundError) as info:
        sdk.audio.speech.create(model="tts-1", voice={"id": voice.id}, input="Hi",
                                response_format="pcm")
    assert info.value.body["param"] == "voice"
    with pytest.raises(openai.NotFoundError):
        sdk.audio.voices.delete(voice.id)
    assert httpx.get(f"{api_url}{VOICES}/{voice.id}").status_code == 404
    assert voice.id not in {v["id"] for v in httpx.get(api_url + VOICES).json()["data"]}


def test_unknown_voice_id_is_a_404_envelope(api_url):
    r = httpx.post(api_url + "/v1/audio/speech",
                   json={"input": "Hi", "voice": {"id": "voice_nope"}})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "voice" and r.json()["error"]["code"] == "voice_not_found"


def test_voices_survive_a_restart(engine_url, tmp_path, script):
    first = EncodingCodec()
    with serve(make_app(engine_url, tmp_path, first)) as url:
        voice = create_jenny(OpenAI(base_url=url + "/v1", api_key="x", max_retries=0))
    second = EncodingCodec()
    with serve(make_app(engine_url, tmp_path, second)) as url:
        client = OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        audio = client.audio.speech.create(model="tts-1", voice={"id": voice.id},
                                           input="Still here.", response_format="wav")
        assert audio.content[:4] == b"RIFF"
        assert clone_prompt_frames(script.requests[-1]["prompt"]) == 36
        assert second.encodes == []
        assert voice.id in {v["id"] for v in httpx.get(url + VOICES).json()["data"]}
    assert (tmp_path / "voices.db").exists()


async def test_concurrent_creates_all_land(api_url):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        responses = await asyncio.gather(*[
            client.post(VOICES, files={
                "audio_sample": ("a.wav", reference_wav(1.5), "audio/wav"),
                "name": (None, f"parallel {i}"), "reference_text": (None, "Hello.")})
            for i in range(4)])  # MAX_CONCURRENT_ENCODES' default
        assert [r.status_code for r in responses] == [200] * 4
        ids = {r.json()["id"] for r in responses}
        listed = {v["id"] for v in (await client.get(VOICES)).json()["data"]}
    assert len(ids) == 4 and ids <= listed


def voice_form(audio: bytes | None = None, **fields):
    parts = {k: (None, v) for k, v in {"name": "V", "reference_text": "Hello there.",
                                       **fields}.items() if v is not None}
    if audio is not None:
        parts["audio_sample"] = ("v.wav", audio, "audio/wav")
    return parts


@pytest.mark.parametrize("audio,fields,status,param", [
    (None, {}, 400, "audio_sample"),
    ("ok", {"name": None}, 400, "name"),
    ("ok", {"reference_text": None}, 400, "reference_text"),
    ("ok", {"reference_text": "r" * 1001}, 400, "reference_text"),
    ("ok", {"name": "n" * 300}, 400, "name"),
    ("ok", {"type": "prompt"}, 400, "type"),
    ("ok", {"surprise": "field"}, 400, "surprise"),
    (b"not audio at all" * 10, {}, 400, "audio_sample"),
    (b"", {}, 400, "audio_sample"),
    ("silent", {}, 400, "audio_sample"),
    ("short", {}, 400, "audio_sample"),
    ("long", {}, 400, "audio_sample"),
    (bytes(10 * 1024 * 1024 + 1), {}, 413, "audio_sample"),
])
def test_create_rejections(api_url, codec, audio, fields, status, param):
    clips = {"ok": reference_wav(), "short": reference_wav(0.5),
             "long": wav_bytes(chirp(30.5, 8000), 8000),
             "silent": wav_bytes(chirp(2.0, 24000, amplitude=0.0), 24000)}
    audio = clips.get(audio, audio) if isinstance(audio, str) else audio
    before = httpx.get(api_url + VOICES).json()["data"]
    r = httpx.post(api_url + VOICES, files=voice_form(audio, **fields), timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert httpx.get(api_url + VOICES).json()["data"] == before


def test_sdk_create_errors_are_api_errors(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.audio.voices.create(audio_sample=("x.wav", b"nope", "audio/wav"), name="X",
                                consent="cons_1", extra_body={"reference_text": "Hi."})
    assert info.value.body["param"] == "audio_sample"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.audio.voices.create(audio_sample=("x.wav", reference_wav(), "audio/wav"),
                                name="X", consent="cons_1")
    assert info.value.body["param"] == "reference_text"
