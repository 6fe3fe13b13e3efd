"""The API against a scripted engine: validation, envelopes, framing, faults, disconnects."""

from __future__ import annotations

import base64
import json
import struct
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import OPENAI_VOICES, Settings
from app.server import create_app
from tests.fakes import RecordingCodec
from tests.servers import serve

SPEECH = "/v1/audio/speech"


def proxy_settings(engine_url: str, **overrides) -> Settings:
    return Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10, **overrides)


@pytest.fixture(scope="module")
def api(engine_url):
    app = create_app(proxy_settings(engine_url), codec_factory=lambda s: RecordingCodec())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.app = app
        yield client


@pytest.fixture(autouse=True)
def reset_script(script):
    script.frames, script.delay_s, script.misplace_at = 12, 0.0, None
    script.requests.clear()


def metric_value(exposition: str, name: str) -> float:
    """The value of the unlabelled sample `name` in a Prometheus text exposition."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"{name} is not in the exposition")


def speak(api, **fields):
    return api.post(SPEECH, json={"input": "Hello there, how are you?", **fields})


def test_speech_streams_pcm_with_demo_header(api):
    r = speak(api, response_format="pcm")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/pcm"
    assert r.headers["x-tts-demo"] == "true" and r.headers["x-request-id"]
    assert len(r.content) == 12 * 2048 * 2


def test_streamed_wav_has_unknown_length_header(api):
    r = speak(api, response_format="wav", stream=True)
    assert r.content[:4] == b"RIFF" and struct.unpack("<I", r.content[40:44])[0] == 0xFFFFFFFF
    assert len(r.content) == 44 + 12 * 2048 * 2


def test_non_streamed_wav_has_exact_sizes(api):
    r = speak(api, response_format="wav", stream=False)
    riff, = struct.unpack("<I", r.content[4:8])
    data, = struct.unpack("<I", r.content[40:44])
    assert data == 12 * 2048 * 2 and riff == 36 + data == len(r.content) - 8
    assert r.headers["content-length"] == str(len(r.content))


def test_request_fields_reach_the_engine(api, script):
    r = speak(api, temperature=0.3, repetition_penalty=1.3, max_tokens=49)
    assert r.status_code == 200
    body = script.requests[-1]
    assert (body["temperature"], body["repetition_penalty"], body["max_tokens"]) == (0.3, 1.3, 49)
    assert body["prompt"] == "<|im_start|>husein: Hello there, how are you?<|im_end|><|speech_start|>"
    assert body["return_token_ids"] is True and body["skip_special_tokens"] is False
    assert len(r.content) == 7 * 2048 * 2  # max_tokens 49 = 7 frames


def test_defaults_and_demo_length_cap(api, script):
    speak(api, input="Hi!")
    body = script.requests[-1]
    assert body["temperature"] == 0.6 and body["repetition_penalty"] == 1.15
    assert body["max_tokens"] == 4 * 7 + 1  # demo profile: frames capped by input length


def test_openai_names_resolve(api, script):
    r = speak(api, model="tts-1-hd", voice="alloy")
    assert r.status_code == 200
    assert "husein: " in script.requests[-1]["prompt"]
    assert speak(api, model="gpt-4o-mini-tts", voice="echo").status_code == 200
    assert "idayu: " in script.requests[-1]["prompt"]


def test_markup_is_cleaned_and_special_tokens_cannot_be_injected(api, script):
    speak(api, input="**Hello**   <b>world</b> <|speech_end|>")
    assert "husein: Hello world<|im_end|>" in script.requests[-1]["prompt"]


@pytest.mark.parametrize("fields,status,param", [
    ({"voice": "nobody"}, 400, "voice"),
    ({"model": "whisper-1"}, 404, "model"),
    ({"response_format": "ogg"}, 400, "response_format"),
    ({"response_format": 5}, 400, "response_format"),
    ({"speed": 9}, 400, "speed"),
    ({"speed": 0.2}, 400, "speed"),
    ({"speed": "fast"}, 400, "speed"),
    ({"stream_format": "websocket"}, 400, "stream_format"),
    ({"instructions": "x" * 5000}, 400, "instructions"),
    ({"stream": "maybe"}, 400, "stream"),
    ({"input": ""}, 400, "input"),
    ({"input": "   <b></b> "}, 400, "input"),
    ({"input": "x" * 5000}, 400, "input"),
    ({"temperature": -1}, 400, "temperature"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"playback_speed": 0.2, "playback_overlap_speed": 0.3}, 400, "playback_overlap_speed"),
    ({"voice": {"id": "voice_missing"}}, 404, "voice"),
    ({"input": "TOO_LONG"}, 400, "input"),
])
def test_invalid_requests_get_openai_envelope(api, fields, status, param):
    r = api.post(SPEECH, json={"input": "Hello", **fields})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert error["type"] == "invalid_request_error"


def test_malformed_json_and_unknown_routes_get_envelopes(api):
    r = api.post(SPEECH, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = api.post(SPEECH, json=["a list"])
    assert r.status_code == 400
    assert api.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert api.get(SPEECH).status_code == 405


def test_logprobs_token_mode_gives_the_same_audio(engine_url, script):
    app = create_app(proxy_settings(engine_url, ENGINE_TOKEN_MODE="logprobs"),
                     codec_factory=lambda s: RecordingCodec())
    with serve(app) as url:
        r = httpx.post(url + SPEECH, json={"input": "Hello there, how are you?"}, timeout=30)
    assert script.requests[-1]["return_tokens_as_token_ids"] is True
    assert script.requests[-1]["logprobs"] == 0
    assert len(r.content) == 12 * 2048 * 2


def test_misplaced_tokens_are_counted_not_decoded(api, script):
    script.misplace_at = 9  # inside frame 1
    r = speak(api)
    assert len(r.content) == 11 * 2048 * 2
    misplaced = metric_value(api.get("/metrics").text, "tts_misplaced_tokens_total")
    assert misplaced >= 1 and api.app.state.tts.metrics.misplaced_tokens == misplaced


def test_client_disconnect_aborts_the_engine_request(api, script):
    script.frames, script.delay_s = 400, 0.01
    aborted = script.aborted
    with api.stream("POST", SPEECH, json={"input": "x" * 50}) as r:
        assert r.status_code == 200
        next(r.iter_bytes())
    deadline = time.monotonic() + 5
    while script.aborted == aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert script.aborted == aborted + 1 and script.running == 0
    assert api.app.state.tts.metrics.active_streams == 0


def test_client_disconnect_aborts_every_segment_in_flight(api, script):
    script.frames, script.delay_s = 400, 0.01
    aborted, sent = script.aborted, len(script.requests)
    long_text = " ".join(f"Sentence number {i} is here." for i in range(12))
    with api.stream("POST", SPEECH, json={"input": long_text}) as r:
        assert r.status_code == 200
        next(r.iter_bytes())
    deadline = time.monotonic() + 5
    while script.running and time.monotonic() < deadline:
        time.sleep(0.05)
    opened = len(script.requests) - sent
    assert opened == 2  # the current segment and the one generating ahead, no more
    assert script.aborted == aborted + opened and script.running == 0


def test_engine_failure_mid_stream_breaks_the_body(api):
    with pytest.raises(httpx.RemoteProtocolError):
        speak(api, input="FAIL_MIDWAY please")
    assert speak(api).status_code == 200  # the server is fine afterwards


def test_info_endpoints(api):
    assert api.get("/v1/audio/speaker").json() == ["husein", "idayu", "jenny"]
    voices = {v["id"]: v for v in api.get("/v1/audio/voices").json()["data"]}
    assert voices["husein"]["type"] == "builtin" and voices["alloy"]["speaker"] == "husein"
    models = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert models[0] == "TTS-model" and "tts-1" in models
    assert api.get("/v1/models/tts-1").json()["root"] == "TTS-model"
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["demo"] is True
    assert health["engine"]["reachable"] and health["codec"]["loaded"]
    assert health["model_loaded"] is True and health["device"] == "cpu"
    assert 0 <= health["uptime_seconds"] < 600


def test_health_hides_the_engine_address_and_reports_draining(engine_url):
    app = create_app(proxy_settings(engine_url), codec_factory=lambda s: RecordingCodec())
    with serve(app) as url:
        r = httpx.get(url + "/health")
        assert r.status_code == 200
        assert engine_url.split("//")[1] not in r.text and "url" not in r.json()["engine"]
        app.state.tts.admission.start_draining()
        draining = httpx.get(url + "/health")
    assert draining.status_code == 503 and draining.json()["status"] == "draining"


def test_debug_audio_saves_windows_and_chunks(engine_url, tmp_path):
    app = create_app(proxy_settings(engine_url, DEBUG_AUDIO=True, DATA_DIR=str(tmp_path)),
                     codec_factory=lambda s: RecordingCodec())
    with serve(app) as url:
        r = httpx.post(url + SPEECH, json={"input": "Hello there, how are you?"},
                       headers={"X-Request-Id": "dbg1"}, timeout=30)
    assert r.status_code == 200
    files = sorted(p.name for p in (tmp_path / "debug_audio" / "dbg1").iterdir())
    assert "00000-00003.chunk.wav" in files and "00000-00003.window.wav" in files


def test_unsafe_client_request_ids_are_replaced(api):
    r = api.get("/v1/models/none", headers={"X-Request-Id": "../../etc/passwd"})
    assert r.headers["x-request-id"].startswith("req_")
    r = api.get("/v1/models/none", headers={"X-Request-Id": "client-42"})
    assert r.headers["x-request-id"] == "client-42"


def test_default_format_follows_the_model_name(api):
    """OpenAI's names get OpenAI's default (mp3); the seed's model name keeps pcm."""
    r = speak(api, model="tts-1", voice="alloy")
    assert r.headers["content-type"] == "audio/mpeg" and r.content[0] == 0xFF
    r = speak(api, model="gpt-4o-mini-tts-2025-03-20")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    r = speak(api, model="TTS-model")
    assert r.headers["content-type"] == "audio/pcm"
    assert speak(api).headers["content-type"] == "audio/pcm"


def test_default_formats_are_settings(engine_url):
    settings = proxy_settings(engine_url, DEFAULT_RESPONSE_FORMAT="wav",
                              OPENAI_DEFAULT_RESPONSE_FORMAT="opus")
    app = create_app(settings, codec_factory=lambda s: RecordingCodec())
    with serve(app) as url:
        seed = httpx.post(url + SPEECH, json={"input": "Hello"}, timeout=30)
        openai_ = httpx.post(url + SPEECH, json={"input": "Hello", "model": "tts-1"}, timeout=30)
    assert seed.headers["content-type"] == "audio/wav" and seed.content[:4] == b"RIFF"
    assert openai_.headers["content-type"] == "audio/ogg" and openai_.content[:4] == b"OggS"


@pytest.mark.parametrize("fmt,media_type,magic", [
    ("mp3", "audio/mpeg", b"\xff"), ("opus", "audio/ogg", b"OggS"),
    ("aac", "audio/aac", b"\xff"), ("flac", "audio/flac", b"fLaC"),
    ("wav", "audio/wav", b"RIFF"),
])
@pytest.mark.parametrize("stream", [True, False])
def test_each_format_streamed_and_whole(api, fmt, media_type, magic, stream):
    r = speak(api, response_format=fmt, stream=stream)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type and r.content.startswith(magic)
    if not stream:
        assert r.headers["content-length"] == str(len(r.content))


def test_sse_events_carry_audio_then_usage(api, script):
    r = speak(api, stream_format="sse", response_format="pcm")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    deltas, done = events[:-1], events[-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(audio) == 12 * 2048 * 2
    prompt = script.requests[-1]["prompt"]
    assert done == {"type": "speech.audio.done", "usage": {
        "input_tokens": len(prompt.encode()), "output_tokens": 12 * 7 + 1,
        "total_tokens": len(prompt.encode()) + 12 * 7 + 1}}


def test_sse_failure_mid_stream_sends_an_error_event(api):
    r = speak(api, input="FAIL_MIDWAY please", stream_format="sse")
    assert r.status_code == 200
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert events[-1]["type"] == "error" and events[-1]["error"]["message"]
    assert all(e["type"] == "speech.audio.delta" for e in events[:-1])


def test_speed_changes_the_duration(api):
    normal = len(speak(api, response_format="pcm").content)
    fast = len(speak(api, response_format="pcm", speed=2.0).content)
    slow = len(speak(api, response_format="pcm", speed=0.5).content)
    assert fast / normal == pytest.approx(0.5, rel=0.05)
    assert slow / normal == pytest.approx(2.0, rel=0.05)


def test_unknown_fields_and_instructions_are_ignored_and_named(api):
    r = speak(api, instructions="Speak cheerfully", custom_params={"a": 1}, top_k=5)
    assert r.status_code == 200, r.text
    assert r.headers["x-ignored-fields"] == "custom_params, top_k"
    assert r.headers["x-instructions-ignored"] == "true"
    plain = speak(api)
    assert "x-ignored-fields" not in plain.headers and "x-instructions-ignored" not in plain.headers


def test_every_openai_voice_resolves(api, script):
    speakers = api.app.state.tts.settings.speakers
    spoken = {}
    for voice in OPENAI_VOICES:
        r = speak(api, voice=voice, model="tts-1", response_format="pcm")
        assert r.status_code == 200, (voice, r.text)
        spoken[voice] = script.requests[-1]["prompt"].removeprefix("<|im_start|>").split(": ")[0]
    # Round-robin over the configured speakers, in order (no VOICE_MAP here).
    assert spoken == {voice: speakers[i % len(speakers)] for i, voice in enumerate(OPENAI_VOICES)}


def test_discovery_endpoints_for_pickers_and_prewarm(api):
    voices = api.get("/v1/audio/voices").json()
    assert voices["object"] == "list" and voices["data"]
    ids = [v["id"] for v in voices["voices"]]
    assert ids[:3] == ["husein", "idayu", "jenny"] and set(OPENAI_VOICES) <= set(ids)
    assert all(set(v) == {"id", "name"} for v in voices["voices"])
    models = api.get("/v1/audio/models").json()["models"]
    assert {"id": "TTS-model"} in models and {"id": "tts-1"} in models
    landing = api.get("/")
    assert landing.status_code == 200 and landing.headers["content-type"].startswith("text/html")
    assert "Demo mode" in landing.text
    assert api.get("/readyz").status_code == 200


def test_loud_decodes_are_limited_and_counted(engine_url):
    app = create_app(proxy_settings(engine_url), codec_factory=lambda s: RecordingCodec(level=3.0))
    with serve(app) as url:
        r = httpx.post(url + SPEECH, json={"input": "Hello", "response_format": "pcm"}, timeout=30)
        metrics = httpx.get(url + "/metrics").text
    pcm = np.frombuffer(r.content, "<i2")
    assert pcm.max() <= 32767 and pcm.min() >= -32767 and np.abs(pcm).max() > 30000
    assert metric_value(metrics, "tts_clipped_samples_total") > 0


@pytest.mark.parametrize("stream", [True, False])
def test_speech_reports_its_steps_to_first_audio_in_x_timing(api, stream):
    r = speak(api, input="Timing marks, please.", stream=stream)
    assert r.status_code == 200 and r.content
    marks = dict(item.split("=") for item in r.headers["x-timing"].split(";"))
    steps = ["parse", "admission", "engine_open", "engine_first_token", "first_frame",
             "first_decode", "first_chunk", "first_byte"]
    assert list(marks) == steps
    values = [float(marks[name]) for name in steps]
    assert values == sorted(values) and values[0] >= 0
