"""Reference-audio decoding: every common container to mono 24 kHz, and every rejection."""

from __future__ import annotations

import io

import numpy as np
import pytest

from app.errors import InvalidRequest
from app.reference_audio import ReferenceLimits, decode_reference, loudness_dbfs, sniff_format
from tests.audio_clips import av_bytes, chirp, soundfile_bytes, wav_bytes

LIMITS = ReferenceLimits(min_s=1.0, max_s=30.0, silence_dbfs=-60.0)
RATE = 24000


def decode(data: bytes, limits: ReferenceLimits = LIMITS) -> np.ndarray:
    return decode_reference(io.BytesIO(data), sample_rate=RATE, limits=limits,
                            param="reference_audio")


def rejection(data: bytes, limits: ReferenceLimits = LIMITS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        decode(data, limits)
    assert info.value.param == "reference_audio"
    return info.value


@pytest.mark.parametrize("fmt,rate,channels,subtype", [
    ("WAV", 24000, 1, "PCM_16"),
    ("WAV", 44100, 2, "PCM_24"),
    ("WAV", 8000, 1, "FLOAT"),
    ("WAV", 16000, 6, "PCM_16"),
    ("FLAC", 48000, 2, "PCM_16"),
    ("FLAC", 22050, 1, "PCM_24"),
    ("OGG", 32000, 2, "VORBIS"),
    ("AIFF", 11025, 1, "PCM_16"),
])
def test_decode_soundfile_formats_to_mono_24k(fmt, rate, channels, subtype):
    audio = decode(soundfile_bytes(chirp(2.5, rate, channels), rate, fmt, subtype))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / RATE - 2.5) < 0.01


@pytest.mark.parametrize("container,rate,channels", [
    ("ogg", 48000, 1), ("ogg", 48000, 2), ("mp3", 44100, 2), ("m4a", 44100, 1),
    ("m4a", 44100, 2), ("aac", 22050, 2), ("webm", 48000, 2),
])
def test_decode_lossy_formats_to_mono_24k(container, rate, channels):
    audio = decode(av_bytes(chirp(2.5, rate, channels), rate, container))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / RATE - 2.5) < 0.1  # encoder priming and padding


def test_decode_downmixes_by_averaging_channels():
    stereo = np.zeros((RATE * 2, 2), dtype=np.float32)
    stereo[:, 0] = 0.5
    audio = decode(wav_bytes(stereo, RATE, "FLOAT"))
    np.testing.assert_allclose(audio, 0.25, atol=1e-6)


def test_decode_resamples_without_changing_pitch():
    rate = 44100
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[:, None]
    audio = decode(wav_bytes(tone, rate, "FLOAT"))
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * RATE / audio.size
    assert abs(peak_hz - 1000) < 2


@pytest.mark.parametrize("head,demuxer", [
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"), (b"fLaC\x00\x00\x00\x22", "flac"),
    (b"OggS\x00\x02", "ogg"), (b"\x1a\x45\xdf\xa3\x9f", "matroska"),
    (b"\x00\x00\x00\x1cftypM4A ", "mp4"), (b"ID3\x04\x00", "mp3"), (b"\xff\xfb\x90", "mp3"),
    (b"\xff\xf1\x50", "aac"), (b"FORM\x00\x00\x00\x00AIFF", "aiff"), (b"caff\x00\x01", "caf"),
    (b"#EXTM3U\nhttp://x", None), (b"hello world", None), (b"\x89PNG\r\n\x1a\n", None),
])
def test_sniff_format_accepts_only_audio_containers(head, demuxer):
    assert sniff_format(head) == demuxer


def test_reject_empty_file():
    assert rejection(b"").code == "empty_file"


@pytest.mark.parametrize("data", [
    b"this is a text file, not audio " * 100,
    b"#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:1/x.ts\n",  # a playlist must never be followed
    b"\x89PNG\r\n\x1a\n" + bytes(200),
])
def test_reject_non_audio(data):
    error = rejection(data)
    assert error.code == "invalid_audio" and "not an audio file" in error.message


@pytest.mark.parametrize("data", [
    b"RIFF\x24\x00\x00\x00WAVE" + np.random.default_rng(0).bytes(4000),
    b"fLaC" + np.random.default_rng(1).bytes(4000),
    b"OggS" + np.random.default_rng(2).bytes(4000),
    b"\x00\x00\x00\x1cftypM4A " + np.random.default_rng(3).bytes(4000),
])
def test_reject_corrupt_audio(data):
    assert rejection(data).code == "invalid_audio"


def test_reject_too_short_and_too_long():
    assert rejection(wav_bytes(chirp(0.5, RATE), RATE)).code == "audio_too_short"
    assert rejection(wav_bytes(chirp(0.0, RATE), RATE)).code == "audio_too_short"
    short_limits = ReferenceLimits(min_s=1.0, max_s=3.0, silence_dbfs=-60.0)
    error = rejection(wav_bytes(chirp(3.5, RATE), RATE), short_limits)
    assert error.code == "audio_too_long" and "3 s" in error.message


def test_long_upload_decoding_stops_at_the_limit():
    """A 3-minute mp3 is rejected after decoding a little more than max_s, not all of it."""
    import time

    rate = 44100
    data = av_bytes(np.zeros((rate * 180, 1), dtype=np.float32), rate, "mp3")
    started = time.perf_counter()
    assert rejection(data).code == "audio_too_long"
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("amplitude", [0.0, 1e-5])
def test_reject_silent_audio(amplitude):
    audio = np.full((RATE * 2, 1), amplitude, dtype=np.float32)
    assert rejection(wav_bytes(audio, RATE, "FLOAT")).code == "audio_silent"


def test_quiet_speech_level_is_accepted():
    audio = decode(wav_bytes(chirp(2.0, RATE, amplitude=0.003), RATE))  # about -53 dBFS
    assert -60 < loudness_dbfs(audio) < -50


def test_reject_nan_samples():
    audio = chirp(2.0, RATE)
    audio[100] = np.nan
    assert rejection(wav_bytes(audio, RATE, "FLOAT")).code == "invalid_audio"
