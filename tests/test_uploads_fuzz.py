"""Malformed audio containers on the upload path: truncated, bit-flipped and garbage versions of
valid WAV, FLAC, Ogg/Opus, MP3 and M4A clips, sent to /v1/audio/vc and POST /v1/audio/voices.

Each answer is a 200 (damage the decoder shrugs off) or a 400 in the error envelope with one of
the reference-audio codes; never a 5xx, never a hang (every request has a timeout), and the
server answers /health after each. Variants are drawn from a seeded generator: the same bytes
on every run.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.server import create_app
from tests.audio_clips import av_bytes, chirp, soundfile_bytes, wav_bytes
from tests.servers import serve
from tests.vc_fakes import EncodingCodec

ROOT = Path(__file__).resolve().parent.parent
VC, VOICES = "/v1/audio/vc", "/v1/audio/voices"
REQUEST_TIMEOUT_S = 20.0
AUDIO_CODES = {"invalid_audio", "audio_too_short", "audio_too_long", "audio_silent",
               "empty_file"}
SEED = 9
WAV_CHANNELS_OFFSET = 22  # the fmt chunk's channel count, in a plain 44-byte-header WAV


def valid_clips() -> dict[str, bytes]:
    """Three-second chirps in every container the upload path is fuzzed with."""
    return {
        "wav": wav_bytes(chirp(3.0, 24000), 24000),
        "flac": soundfile_bytes(chirp(3.0, 24000), 24000, "FLAC"),
        "ogg": av_bytes(chirp(3.0, 48000), 48000, "ogg"),
        "mp3": av_bytes(chirp(3.0, 44100), 44100, "mp3"),
        "m4a": av_bytes(chirp(3.0, 44100), 44100, "m4a"),
    }


Mutation = Callable[[bytes, random.Random], bytes]


def flip_bits(count: int) -> Mutation:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        out = bytearray(data)
        for _ in range(count):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    return mutate


def overwrite_chunk(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    size = min(rng.randrange(64, 4096), len(data) - start)
    return data[:start] + rng.randbytes(size) + data[start + size:]


def zero_middle(data: bytes, rng: random.Random) -> bytes:
    start, end = len(data) // 4, 3 * len(data) // 4
    return data[:start] + bytes(end - start) + data[end:]


MUTATIONS: dict[str, Mutation] = {
    "magic-only": lambda data, rng: data[:12],
    "header-only": lambda data, rng: data[:64],
    "truncated-half": lambda data, rng: data[:len(data) // 2],
    "flip-1-bit": flip_bits(1),
    "flip-64-bits": flip_bits(64),
    "magic-then-garbage": lambda data, rng: data[:12] + rng.randbytes(8192),
    "random-chunk": overwrite_chunk,
    "zeroed-middle": zero_middle,
}


def malformed_variants() -> list[tuple[str, bytes]]:
    """(id, bytes): every mutation of every valid clip, 5 × 8 = 40 variants."""
    rng = random.Random(SEED)
    return [(f"{fmt}-{name}", mutate(clip, rng))
            for fmt, clip in valid_clips().items() for name, mutate in MUTATIONS.items()]


VARIANTS = malformed_variants()


@pytest.fixture(scope="module")
def api(engine_url, tmp_path_factory):
    settings = Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10,
                        DATA_DIR=str(tmp_path_factory.mktemp("uploads-fuzz")))
    codec = EncodingCodec()
    with serve(create_app(settings, codec_factory=lambda s: codec)) as url, \
            httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        yield client


def clone(api: httpx.Client, clip: bytes, filename: str) -> httpx.Response:
    return api.post(VC, data={"reference_text": "Hello there.", "generate_text": "Hi!"},
                    files={"reference_audio": (filename, clip, "application/octet-stream")})


def create_voice(api: httpx.Client, clip: bytes, filename: str) -> httpx.Response:
    return api.post(VOICES, data={"name": "fuzz", "reference_text": "Hello there."},
                    files={"audio_sample": (filename, clip, "application/octet-stream")})


def assert_audio_rejection_or_success(r: httpx.Response, param: str) -> None:
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 400:
        body = r.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error" and error["param"] == param, error
        assert error["code"] in AUDIO_CODES, error


@pytest.mark.parametrize(("variant", "clip"), VARIANTS, ids=[v for v, _ in VARIANTS])
def test_malformed_upload_is_refused_in_envelope_without_server_error(api, variant, clip):
    filename = "clip." + variant.split("-", 1)[0]
    assert_audio_rejection_or_success(clone(api, clip, filename), "reference_audio")
    assert_audio_rejection_or_success(create_voice(api, clip, filename), "audio_sample")
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize("variant", ["wav-magic-only", "mp3-header-only",
                                     "m4a-truncated-half", "flac-magic-then-garbage"])
def test_clearly_broken_upload_is_invalid_audio(api, variant):
    clip = dict(VARIANTS)[variant]
    r = clone(api, clip, "clip")
    assert r.status_code == 400 and r.json()["error"]["code"] in AUDIO_CODES, r.text[:300]


def test_valid_uploads_still_work_after_the_malformed_ones(api):
    for fmt, clip in valid_clips().items():
        r = clone(api, clip, f"clip.{fmt}")
        assert r.status_code == 200 and r.content, (fmt, r.status_code, r.text[:300])
        r = create_voice(api, clip, f"clip.{fmt}")
        assert r.status_code == 200 and r.json()["id"].startswith("voice_"), (fmt, r.text[:300])


def wav_with_channel_count(channels: int) -> bytes:
    clip = bytearray(wav_bytes(chirp(3.0, 24000), 24000))
    clip[WAV_CHANNELS_OFFSET:WAV_CHANNELS_OFFSET + 2] = struct.pack("<H", channels)
    return bytes(clip)


DECODE_IN_CHILD = """
import io, sys
from app.errors import InvalidRequest
from app.reference_audio import ReferenceLimits, decode_reference
try:
    decode_reference(io.BytesIO(sys.stdin.buffer.read()), sample_rate=24000,
                     limits=ReferenceLimits(1.0, 30.0, -60.0), param="f")
    print("ok")
except InvalidRequest as exc:
    print(exc.code)
"""


@pytest.mark.parametrize("channels", [8, 17, 64, 65, 65535])
def test_wav_claiming_many_channels_does_not_crash_the_decoder(channels):
    """Regression: a planar PyAV frame of 8+ channels segfaulted the process in to_ndarray.
    Decoded in a child process, so that a regression fails this test instead of the run."""
    child = subprocess.run([sys.executable, "-c", DECODE_IN_CHILD], cwd=ROOT, timeout=60,
                           check=False,
                           input=wav_with_channel_count(channels), capture_output=True)
    assert child.returncode == 0, (child.returncode, child.stderr[-500:])
    assert child.stdout.decode().strip() in {"ok", *AUDIO_CODES}


def test_wav_claiming_many_channels_is_answered_by_the_api(api):
    r = clone(api, wav_with_channel_count(17), "clip.wav")
    assert_audio_rejection_or_success(r, "reference_audio")
    assert api.get("/health").status_code == 200


def mp3_switching_mono_to_stereo() -> bytes:
    """A mono MP3 followed by the frames of a stereo one: the layout changes mid-stream."""
    mono = av_bytes(chirp(2.0, 44100), 44100, "mp3")
    stereo = av_bytes(chirp(2.0, 44100, channels=2), 44100, "mp3")
    return mono + stereo[stereo.index(b"\xff\xfb"):]  # skip the second file's ID3 tag


@pytest.mark.parametrize(("path", "send"), [(VC, clone), (VOICES, create_voice)])
def test_mp3_changing_layout_mid_stream_is_invalid_audio(api, path, send):
    """Regression: PyAV's resampler raised ValueError on the switch, answered as a 500."""
    r = send(api, mp3_switching_mono_to_stereo(), "clip.mp3")
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.json()["error"]["code"] == "invalid_audio"
