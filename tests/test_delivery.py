"""Delivery: encoders (all six formats, streamed and whole), conditioning, speed, framing."""

from __future__ import annotations

import asyncio
import base64
import json

import av
import numpy as np
import pytest

from app.delivery.conditioning import (
    FADE_IN_S,
    Conditioner,
    TimeStretcher,
    soft_limit,
    tempo_stages,
    to_int16,
)
from app.delivery.encoders import AvEncoder, create_encoder
from app.delivery.formats import MEDIA_TYPES, RESPONSE_FORMATS
from app.delivery.pipeline import AudioPipeline, encoded
from app.delivery.respond import sse_body
from tests.decoding import decode

RATE = 24000
CODEC_OF = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}
DECODER_NAMES = {"mp3": ("mp3", "mp3float"), "opus": ("opus", "libopus")}
CONTAINER_OF = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


def tone(seconds: float, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chunked(audio: np.ndarray, sizes=(6144, 6144, 12288, 24576)) -> list[np.ndarray]:
    cuts = np.cumsum(sizes)
    return [c for c in np.split(audio, cuts[cuts < audio.size]) if c.size]


def encode_all(fmt: str, audio: np.ndarray, *, whole_file: bool) -> tuple[bytes, list[int]]:
    pipeline = AudioPipeline(fmt, RATE, whole_file=whole_file)
    pieces = [pipeline.start()]
    for chunk in chunked(audio):
        pieces.append(pipeline.push(chunk))
    pieces.append(pipeline.finish())
    return b"".join(pieces), [len(p) for p in pieces]


def test_every_openai_format_has_an_encoder_and_media_type():
    assert set(RESPONSE_FORMATS) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    assert MEDIA_TYPES == {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                           "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
    for fmt in RESPONSE_FORMATS:
        assert create_encoder(fmt, RATE) is not None


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
@pytest.mark.parametrize("whole_file", [False, True], ids=["streamed", "whole"])
def test_encoded_stream_decodes_to_the_same_duration(fmt, whole_file):
    audio = tone(2.0)
    data, _ = encode_all(fmt, audio, whole_file=whole_file)
    decoded = decode(data)
    assert CONTAINER_OF[fmt] in decoded.container.split(",")
    assert decoded.codec in DECODER_NAMES.get(fmt, (CODEC_OF[fmt],))
    duration = decoded.seconds  # Opus decodes at 48 kHz; seconds are seconds
    # Codec priming may add a frame or two; nothing may be lost at the tail.
    assert 2.0 - 0.005 <= duration <= 2.0 + 0.1, duration


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_streamed_first_bytes_leave_with_the_first_chunk(fmt):
    _, sizes = encode_all(fmt, tone(2.0), whole_file=False)
    head_and_first = sizes[0] + sizes[1]
    assert head_and_first > 0, sizes  # something decodable is sent before the second chunk


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_whole_file_is_written_only_at_the_end(fmt):
    _, sizes = encode_all(fmt, tone(1.0), whole_file=True)
    assert sum(sizes[:-1]) == 0 and sizes[-1] > 0


def test_mp3_has_no_id3_or_xing_frames():
    data, _ = encode_all("mp3", tone(2.0), whole_file=False)
    assert not data.startswith(b"ID3") and data[0] == 0xFF and data[1] & 0xE0 == 0xE0  # frame sync
    # LAME leaves its version string in an audio frame's padding; that is harmless. A
    # Xing/Info header frame (a silent frame holding seek tables and lengths) is not there.
    assert b"Xing" not in data and b"Info" not in data
    assert data[-128:-125] != b"TAG"  # no ID3v1 trailer


def test_two_mp3_responses_concatenate_into_one_playable_file():
    first, _ = encode_all("mp3", tone(1.0), whole_file=False)
    second, _ = encode_all("mp3", tone(1.0, 660), whole_file=False)
    assert decode(first + second).seconds == pytest.approx(2.0, abs=0.15)


def test_whole_flac_streaminfo_has_the_sample_count():
    data, _ = encode_all("flac", tone(1.5), whole_file=True)
    assert data[:4] == b"fLaC"
    info = data[8:8 + 34]  # STREAMINFO block body
    total = int.from_bytes(info[13:18], "big") & ((1 << 36) - 1)
    assert total == int(1.5 * RATE)


def test_wav_whole_file_has_exact_sizes_and_pcm_is_raw():
    audio = tone(0.5)
    wav, _ = encode_all("wav", audio, whole_file=True)
    pcm, _ = encode_all("pcm", audio, whole_file=False)
    assert int.from_bytes(wav[40:44], "little") == len(pcm) == audio.size * 2
    assert wav[44:] == pcm


def test_abandoned_encoder_closes_without_flushing():
    encoder = AvEncoder("mp3", RATE)
    encoder.encode(to_int16(tone(0.5)))
    encoder.close()
    assert encoder.finish() == b""


def test_fade_in_ramps_the_first_10_ms_only():
    conditioner = Conditioner(RATE)
    ones = np.full(RATE // 10, 0.5, np.float32)
    # Split the fade across two pushes: it continues where it stopped.
    out = np.concatenate([conditioner.push(ones[:100]), conditioner.push(ones[100:])])
    fade = int(FADE_IN_S * RATE)
    assert out[0] < 200 and np.all(np.diff(out[:fade].astype(int)) >= 0)
    assert np.all(out[fade:] == to_int16(np.array([0.5]))[0])
    assert out[fade // 2] < out[fade]


def test_soft_limiter_never_wraps_and_counts_clipped_samples():
    loud = np.array([0.0, 0.5, 0.95, 1.0, 1.5, -3.0, 40.0], np.float32)
    limited = soft_limit(loud)
    assert np.all(np.abs(limited) <= 1.0) and np.all(np.sign(limited) == np.sign(loud))
    assert limited[1] == 0.5  # below the knee: untouched
    assert np.all(np.diff(soft_limit(np.linspace(0, 5, 1000, dtype=np.float32))) >= 0)
    conditioner = Conditioner(RATE, fade_in_s=1e-9)
    pcm = conditioner.push(np.concatenate([np.zeros(10, np.float32), loud]))
    assert conditioner.clipped == 3
    assert pcm.dtype == np.int16 and pcm[-1] > 30000 and pcm[-2] < -30000


def test_tempo_stages_stay_within_atempo_best_range():
    for speed in (0.25, 0.3, 0.5, 1.7, 2.0, 3.0, 4.0):
        stages = tempo_stages(speed)
        assert all(0.5 <= s <= 2.0 for s in stages)
        assert np.prod(stages) == pytest.approx(speed)
    with pytest.raises(ValueError):
        tempo_stages(5.0)


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0])
def test_speed_changes_duration_by_one_over_speed(speed):
    audio = tone(3.0, 220)
    stretcher = TimeStretcher(speed, RATE)
    out = np.concatenate([stretcher.push(c) for c in chunked(audio)] + [stretcher.finish()])
    assert out.size / audio.size == pytest.approx(1 / speed, rel=0.05)


def test_speed_preserves_pitch():
    audio = tone(2.0, 300)
    stretcher = TimeStretcher(1.5, RATE)
    out = np.concatenate([stretcher.push(audio), stretcher.finish()])
    spectrum = np.abs(np.fft.rfft(out[2400:-2400]))
    peak_hz = np.argmax(spectrum) * RATE / (out.size - 4800)
    assert peak_hz == pytest.approx(300, rel=0.03)


def test_speed_holds_back_little_audio_while_streaming():
    stretcher = TimeStretcher(2.0, RATE)
    out = stretcher.push(tone(0.256))  # a first chunk: 6144 samples
    assert out.size >= (6144 - 2100) / 2.0


def test_speed_one_bypasses_the_filter():
    conditioner = Conditioner(RATE, speed=1.0)
    assert conditioner._stretch is None
    audio = tone(0.2)
    assert conditioner.push(audio).size == audio.size


class _Source:
    """Three chunks of a tone, as a synthesis would yield them."""

    def __init__(self) -> None:
        self.closed = False

    async def chunks(self):
        for chunk in chunked(tone(0.8)):
            yield chunk

    def usage(self) -> dict[str, int]:
        return {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}

    async def aclose(self) -> None:
        self.closed = True


class _FailingEncoder:
    """Encodes the first chunk, then fails (an FFmpeg error mid-stream)."""

    def __init__(self) -> None:
        self.calls = 0

    def start(self) -> bytes:
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise av.FFmpegError(-1, "encoder exploded")
        return b"x" * 10

    def finish(self) -> bytes:
        return b""


async def test_encoder_failing_mid_stream_raises_so_the_body_is_cut():
    pipeline = AudioPipeline("mp3", RATE)
    pipeline.encoder = _FailingEncoder()
    got = []
    with pytest.raises(av.FFmpegError):
        async for data in encoded(_Source(), pipeline):
            got.append(data)
    assert got == [b"x" * 10]  # what was encoded went out; the rest never pretends to


async def test_encoder_failing_mid_sse_sends_an_error_event_and_ends():
    pipeline = AudioPipeline("mp3", RATE)
    pipeline.encoder = _FailingEncoder()
    events = [json.loads(e[5:]) async for e in sse_body(_Source(), pipeline)]
    assert [e["type"] for e in events] == ["speech.audio.delta", "error"]
    assert events[-1]["error"]["code"] == "stream_failed" and events[-1]["error"]["message"]


async def test_sse_body_ends_with_usage():
    events = [json.loads(e[5:]) async for e in sse_body(_Source(), AudioPipeline("pcm", RATE))]
    assert events[-1] == {"type": "speech.audio.done",
                          "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) == tone(0.8).size * 2


def test_resampling_pipeline_changes_the_rate():
    pipeline = AudioPipeline("pcm", RATE, output_rate=16000)
    out = b"".join([pipeline.push(c) for c in chunked(tone(1.0))] + [pipeline.finish()])
    assert len(out) // 2 == pytest.approx(16000, abs=2)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
async def test_closing_while_a_step_runs_in_its_thread_waits_for_it(fmt):
    """A disconnect cancels the await of an encoding step, not its thread: closing must not
    free FFmpeg state under it (that crashed the process), and later steps do nothing."""
    pipeline = AudioPipeline(fmt, RATE, speed=1.5)
    long_chunk = tone(20.0)
    step = asyncio.ensure_future(pipeline.run(pipeline.push, long_chunk))
    await asyncio.sleep(0.001)
    step.cancel()  # as a client disconnect does
    pipeline.close()
    assert pipeline.push(tone(0.1)) == b"" and pipeline.finish() == b""
    await asyncio.sleep(0.05)
