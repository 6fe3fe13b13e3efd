"""POST /v1/audio/vc against the scripted engine and a fake codec: fields, framing, limits."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import struct
import subprocess

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.server import create_app
from tests.audio_clips import chirp, reference_wav, wav_bytes
from tests.servers import serve
from tests.vc_fakes import EncodingCodec, clone_prompt_frames

VC = "/v1/audio/vc"
REFERENCE_TEXT = ("I wonder if I shall ever be happy enough to have real lace on my clothes "
                  "and bows on my caps.")
SEED_FIELDS = {
    "reference_text": REFERENCE_TEXT,
    "generate_text": "Ye encik, apa yang saya boleh tolong?",
    "model": "TTS-model", "response_format": "wav", "temperature": "0.7",
    "repetition_penalty": "1.15", "max_tokens": "3072", "stream": "true",
    "playback_speed": "1.5", "playback_overlap_speed": "0.2",
}
FRAME_BYTES = 2048 * 2


@pytest.fixture(scope="module")
def codec():
    return EncodingCodec()


def vc_settings(engine_url: str, data_dir, **overrides) -> Settings:
    return Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10, DATA_DIR=str(data_dir),
                    **overrides)


@pytest.fixture(scope="module")
def api(engine_url, codec, tmp_path_factory):
    app = create_app(vc_settings(engine_url, tmp_path_factory.mktemp("data")),
                     codec_factory=lambda s: codec)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def reset_script(script):
    script.frames, script.delay_s, script.misplace_at = 12, 0.0, None
    script.requests.clear()


def clone(api, audio: bytes | None = None, filename: str = "jenny.wav", **fields):
    """Always multipart, like curl --form, even without a file."""
    parts = {k: (None, v) for k, v in {**SEED_FIELDS, **fields}.items() if v is not None}
    if audio is not None:
        parts["reference_audio"] = (filename, audio, "audio/wav")
    return api.post(VC, files=parts)


def assert_envelope(response: httpx.Response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    return error


def test_vc_streams_wav_in_the_cloned_voice(api, script, codec):
    before = len(codec.encodes)
    r = clone(api, reference_wav(3.0))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav" and r.headers["x-request-id"]
    assert struct.unpack("<I", r.content[40:44])[0] == 0xFFFFFFFF  # streamed: unknown length
    assert len(r.content) == 44 + 12 * FRAME_BYTES
    body = script.requests[-1]
    assert body["prompt"].startswith(f"<|im_start|>{REFERENCE_TEXT}<|im_end|><|speech_start|>")
    assert body["prompt"].endswith(
        "<|im_start|>Ye encik, apa yang saya boleh tolong?<|im_end|><|speech_start|>")
    assert clone_prompt_frames(body["prompt"]) == 36  # ceil(3 s * 24000 / 2048)
    assert (body["temperature"], body["repetition_penalty"]) == (0.7, 1.15)
    # 3 s at 24 kHz = 36 frames, encoded on the codec thread in two slices with context:
    # frames 0..28 (keep 0..24), then 20..36 (keep 24..36).
    assert codec.encodes[before:] == [(28 * 2048, "codec-worker"),
                                      (72000 - 20 * 2048, "codec-worker")]


def test_vc_non_streamed_pcm_has_exact_length(api):
    r = clone(api, reference_wav(2.0), response_format="pcm", stream="false")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    assert r.headers["content-length"] == str(12 * FRAME_BYTES) == str(len(r.content))


def test_vc_defaults_apply_to_unset_fields(api, script):
    r = api.post(VC, data={"reference_text": "Hello.", "generate_text": "Hi there!"},
                 files={"reference_audio": ("a.flac", reference_wav(), "audio/flac")})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    body = script.requests[-1]
    assert (body["temperature"], body["repetition_penalty"]) == (0.6, 1.15)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_vc_seed_curl_example_works_as_written(api, tmp_path):
    """The README's command: an explicit `Content-Type: multipart/form-data` with no boundary,
    which curl completes with its own boundary."""
    (tmp_path / "jenny.wav").write_bytes(reference_wav(3.0))
    command = [
        "curl", "-sS", "-X", "POST", f"{api.base_url}{VC}",
        "-H", "Content-Type: multipart/form-data",
        "--form", "reference_audio=@jenny.wav",
        "--form", f"reference_text={REFERENCE_TEXT}",
        "--form", "generate_text=Ye encik, apa yang saya boleh tolong?",
        "--form", "model=TTS-model", "--form", "response_format=wav",
        "--form", "temperature=0.7", "--form", "repetition_penalty=1.15",
        "--form", "max_tokens=3072", "--form", "stream=true",
        "--form", "playback_speed=1.5", "--form", "playback_overlap_speed=0.2",
        "--output", "vc.wav", "-w", "%{http_code}",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout == "200", done.stderr
    wav = (tmp_path / "vc.wav").read_bytes()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 12 * FRAME_BYTES


@pytest.mark.parametrize("fields,audio,status,param", [
    ({"reference_text": None}, "ok", 400, "reference_text"),
    ({"generate_text": None}, "ok", 400, "generate_text"),
    ({}, None, 400, "reference_audio"),
    ({"generate_text": "x" * 5000}, "ok", 400, "generate_text"),
    ({"generate_text": " <b></b> "}, "ok", 400, "generate_text"),
    ({"reference_text": "y" * 1001}, "ok", 400, "reference_text"),
    ({"response_format": "ogg"}, "ok", 400, "response_format"),
    ({"temperature": "hot"}, "ok", 400, "temperature"),
    ({"stream": "maybe"}, "ok", 400, "stream"),
    ({"playback_speed": "0.2", "playback_overlap_speed": "0.3"}, "ok", 400,
     "playback_overlap_speed"),
    ({"speed": "9"}, "ok", 400, "speed"),
    ({"model": "whisper-1"}, "ok", 404, "model"),
])
def test_vc_field_errors_come_before_encoding(api, codec, fields, audio, status, param):
    encodes = len(codec.encodes)
    r = clone(api, reference_wav() if audio else None, **fields)
    assert_envelope(r, status, param)
    assert len(codec.encodes) == encodes


@pytest.mark.parametrize("audio,code", [
    (b"", "empty_file"),
    (b"just some text, definitely not audio\n" * 50, "invalid_audio"),
    (b"RIFF\x24\x00\x00\x00WAVE" + bytes(range(256)) * 8, "invalid_audio"),
    (wav_bytes(np.zeros((48000, 1), np.float32), 24000), "audio_silent"),
    (wav_bytes(chirp(0.4, 24000), 24000), "audio_too_short"),
    (wav_bytes(chirp(31.0, 16000), 16000), "audio_too_long"),
])
def test_vc_bad_reference_audio_is_a_400(api, audio, code):
    error = assert_envelope(clone(api, audio), 400, "reference_audio")
    assert error["code"] == code and error["type"] == "invalid_request_error"


def test_vc_text_field_instead_of_file_is_a_400(api):
    r = api.post(VC, data={**SEED_FIELDS, "reference_audio": "jenny.wav"}, files={"x": b""})
    assert "file upload" in assert_envelope(r, 400, "reference_audio")["message"]


def test_vc_upload_cap_is_exactly_10_mib(api, codec):
    encodes = len(codec.encodes)
    at_cap = b"RIFF" + bytes(10 * 1024 * 1024 - 4)
    assert clone(api, at_cap).json()["error"]["code"] == "invalid_audio"  # size was fine
    error = assert_envelope(clone(api, at_cap + b"x"), 413, "reference_audio")
    assert "10 MiB" in error["message"] and error["code"] == "payload_too_large"
    assert len(codec.encodes) == encodes


def test_vc_oversize_upload_is_a_413_by_content_length(api):
    error = assert_envelope(clone(api, bytes(12 * 1024 * 1024)), 413, None)
    assert "10 MiB" in error["message"] and error["code"] == "payload_too_large"


def test_vc_oversize_chunked_upload_is_cut_off_at_the_cap(api):
    """No Content-Length: the body is counted as it streams and refused past the cap, so the
    413 comes while most of the body is still unsent."""
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"reference_audio\"; "
            f"filename=\"big.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    # 12 MiB of what would be a 64 MiB upload, and the rest never sent. (Counting what an
    # httpx body generator yields cannot show the cut-off: once it has answered, uvicorn reads
    # and discards the remainder to keep the connection, so the client sends it all anyway.)
    pieces = [head] + [bytes(256 * 1024)] * 48
    connection = http.client.HTTPConnection(api.base_url.host, api.base_url.port, timeout=10)
    try:
        connection.putrequest("POST", VC)
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for piece in pieces:
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        try:
            answer = connection.getresponse()
        except TimeoutError:
            pytest.fail("no answer 10 s after 12 MiB: the server waits for the whole body")
        r = httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()
    error = assert_envelope(r, 413, "reference_audio")
    assert "10 MiB" in error["message"] and error["code"] == "payload_too_large"


@pytest.mark.parametrize("content_type,body,message", [
    ("application/json", b"{}", "multipart/form-data"),
    ("multipart/form-data", b"--x\r\n", "boundary"),
    ("multipart/form-data; boundary=x", (b"--x\r\nContent-Disposition: form-data; name=\"a\""
                                         b"\r\n\r\nvalue"), "ended before"),
    ("multipart/form-data; boundary=x", (b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n"
                                         b"--x--\r\n"), "no Content-Disposition"),
    ("multipart/form-data; boundary=x", (b"--x\r\nContent-Disposition: form-data; name=\"a\""
                                         b"\r\n\r\n1\r\n--x\r\nContent-Disposition: form-data; "
                                         b"name=\"a\"\r\n\r\n2\r\n--x--\r\n"), "more than once"),
])
def test_vc_malformed_bodies_are_400s(api, content_type, body, message):
    r = api.post(VC, content=body, headers={"content-type": content_type})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]


def test_vc_too_many_parts_is_a_400(api):
    r = api.post(VC, files={f"f{i}": (None, "x") for i in range(40)})
    assert r.status_code == 400 and "parts" in r.json()["error"]["message"]


def test_vc_huge_text_field_is_a_413(api):
    assert_envelope(clone(api, reference_wav(), reference_text="z" * 70_000), 413,
                    "reference_text")


async def test_vc_encode_slots_turn_excess_uploads_away(engine_url, tmp_path):
    codec = EncodingCodec(delay_s=1.0)
    app = create_app(vc_settings(engine_url, tmp_path, MAX_CONCURRENT_ENCODES=1),
                     codec_factory=lambda s: codec)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            files = {"reference_audio": ("a.wav", reference_wav(), "audio/wav")}
            first = asyncio.ensure_future(client.post(VC, data=SEED_FIELDS, files=files))
            while not codec.encodes:
                await asyncio.sleep(0.02)
            second = await client.post(VC, data=SEED_FIELDS, files=files)
            assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
            assert (await first).status_code == 200
