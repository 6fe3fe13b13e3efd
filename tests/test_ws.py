"""WebSocket admission and authentication, and the REST forms around text, on the scripted
engine (exact cases); the protocol itself is tested on the real engine."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from app.config import Settings
from app.server import create_app
from tests.fakes import RecordingCodec
from tests.servers import serve


@pytest.fixture(autouse=True)
def reset_script(script):
    script.frames, script.delay_s, script.misplace_at = 12, 0.0, None
    script.requests.clear()


def app_for(engine_url: str, **overrides):
    settings = Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10, **overrides)
    return create_app(settings, codec_factory=lambda s: RecordingCodec())


async def test_websocket_session_holds_a_slot_and_a_full_server_closes_with_1013(engine_url):
    app = app_for(engine_url, MAX_CONCURRENT_STREAMS=1, MAX_QUEUED_REQUESTS=0)
    with serve(app) as url:
        base = url.replace("http://", "ws://")
        async with websockets.connect(base + "/ws/synthesize") as first:
            await first.send(json.dumps({"voice": "husein"}))
            assert json.loads(await first.recv())["type"] == "ready"
            async with websockets.connect(base + "/ws/synthesize") as second:
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await asyncio.wait_for(second.recv(), 5)
                assert closed.value.rcvd.code == 1013
            r = await asyncio.to_thread(httpx.post, url + "/v1/audio/speech",
                                        json={"input": "Hi"}, timeout=10)
            assert r.status_code == 429 and r.headers["retry-after"]
            assert r.json()["error"]["code"] == "server_overloaded"
        await asyncio.sleep(0.2)
        assert app.state.tts.admission.in_use == 0
        r = await asyncio.to_thread(httpx.post, url + "/v1/audio/speech", json={"input": "Hi"},
                                    timeout=10)
        assert r.status_code == 200


async def test_websocket_needs_the_api_key_by_header_or_query(engine_url):
    app = app_for(engine_url, API_KEYS="sk-one,sk-two")
    with serve(app) as url:
        base = url.replace("http://", "ws://")
        for path in ("/ws/synthesize", "/ws/raw", "/"):
            with pytest.raises(websockets.exceptions.InvalidStatus):
                async with websockets.connect(base + path):
                    pass
        async with websockets.connect(base + "/ws/synthesize?api_key=sk-two") as ws:
            await ws.send(json.dumps({}))
            assert json.loads(await ws.recv())["type"] == "ready"
        headers = {"Authorization": "Bearer sk-one"}
        async with websockets.connect(base + "/ws/raw", additional_headers=headers) as ws:
            await ws.send(json.dumps({"text": "Hi there", "speaker": "idayu"}))
            data = b""
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                while True:
                    data += await ws.recv()
            assert len(data) == 8 * 2048 * 2


def test_http_api_keys_bearer_and_open_paths(engine_url):
    app = app_for(engine_url, API_KEYS="sk-one")
    with serve(app) as url:
        speak = {"input": "Hello"}
        missing = httpx.post(url + "/v1/audio/speech", json=speak)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["x-request-id"]
        wrong = httpx.post(url + "/v1/audio/speech", json=speak,
                           headers={"Authorization": "Bearer sk-nope"})
        assert wrong.status_code == 401
        ok = httpx.post(url + "/v1/audio/speech", json=speak,
                        headers={"Authorization": "Bearer sk-one"})
        assert ok.status_code == 200
        for path in ("/health", "/v1/audio/voices", "/v1/audio/models", "/", "/openapi.json"):
            assert httpx.get(url + path).status_code == 200, path
        assert httpx.get(url + "/metrics").status_code == 401
        # Listing voices is open; creating one is not.
        assert httpx.post(url + "/v1/audio/voices", files={"x": b"1"}).status_code == 401


def test_metrics_and_voice_list_openness_are_settings(engine_url, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# ops\nsk-file\n")
    app = app_for(engine_url, API_KEYS_FILE=str(keys), PUBLIC_METRICS=True,
                  PUBLIC_VOICE_LIST=False)
    with serve(app) as url:
        assert httpx.get(url + "/metrics").status_code == 200
        assert httpx.get(url + "/v1/audio/voices").status_code == 401
        r = httpx.get(url + "/v1/audio/voices", headers={"Authorization": "Bearer sk-file"})
        assert r.status_code == 200


def test_rate_limit_per_key(engine_url):
    app = app_for(engine_url, API_KEYS="sk-one", RATE_LIMIT_PER_MINUTE=2)
    with serve(app) as url:
        headers = {"Authorization": "Bearer sk-one"}
        codes = [httpx.post(url + "/v1/audio/speech", json={"input": "Hi"},
                            headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]


def test_normalize_shows_what_will_be_spoken(engine_url):
    with serve(app_for(engine_url)) as url:
        r = httpx.post(url + "/v1/audio/normalize",
                       json={"text": "Harga RM12.50 sahaja. Call me at 3:30pm."})
        assert r.status_code == 200
        body = r.json()
        assert "dua belas ringgit lima puluh sen" in body["text"]
        assert [s["language"] for s in body["sentences"]] == ["ms", "en"]
        assert httpx.post(url + "/v1/audio/normalize", json={"txt": "x"}).status_code == 400


def test_speech_is_normalized_per_segment(engine_url, script):
    with serve(app_for(engine_url)) as url:
        httpx.post(url + "/v1/audio/speech", json={"input": "Jln. Ampang ke-3, pukul 3.30 petang."})
    prompt = script.requests[-1]["prompt"]
    assert "Jalan Ampang ketiga" in prompt and "pukul tiga tiga puluh petang" in prompt


def test_long_text_is_spoken_whole_in_segments(engine_url, script):
    article = " ".join(f"Sentence {i} of the article is here." for i in range(20))
    with serve(app_for(engine_url)) as url:
        r = httpx.post(url + "/v1/audio/speech",
                       json={"input": article, "response_format": "pcm", "stream_format": "sse"})
    events = [json.loads(x[5:]) for x in r.text.splitlines() if x.startswith("data:")]
    prompts = [req["prompt"] for req in script.requests]
    assert len(prompts) >= 10 and all("husein: " in p for p in prompts)
    spoken = " ".join(p.split("husein: ", 1)[1].split("<|im_end|>")[0] for p in prompts)
    assert "twenty" not in spoken and "nineteen" in spoken  # every sentence, in order
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == sum(min(12, r["max_tokens"] // 7) * 7 + 1
                                         for r in script.requests)


def test_seed_004_rest_synthesize(engine_url):
    with serve(app_for(engine_url)) as url:
        r = httpx.post(url + "/synthesize", json={"text": "Hello, world!",
                                                  "voice_description": "A calm voice like idayu",
                                                  "format": "wav"})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.headers["x-sample-rate"] == "24000"
        assert r.headers["content-length"] == str(len(r.content))
        with httpx.stream("POST", url + "/synthesize-stream",
                          json={"text": "Hello, world!", "format": "mp3"}) as streamed:
            assert streamed.headers["content-type"] == "audio/mpeg"
            assert b"".join(streamed.iter_bytes())[:1] == b"\xff"
