"""Reference-audio decoding: an uploaded file -> mono float32 samples at the codec's rate.

The container is recognised from its first bytes and opened with that one FFmpeg demuxer
(PyAV), never by FFmpeg's own probing: probing accepts playlists and other formats that
reference further files or URLs. Decoding stops as soon as the clip passes the duration
limit, so a small, highly compressed upload cannot expand into hours of samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import IO

import av
import numpy as np
import soxr

from app.errors import InvalidRequest

SUPPORTED = "wav, flac, ogg/opus, mp3, m4a/aac, webm, aiff or caf"
SNIFF_BYTES = 12


@dataclass(frozen=True)
class ReferenceLimits:
    """Accepted reference clips: seconds of audio, and the loudness (RMS, dBFS) below
    which a clip counts as silent."""

    min_s: float
    max_s: float
    silence_dbfs: float


def sniff_format(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file starting with `head`, or None if it is no audio file
    we accept."""
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska and WebM
        return "matroska"
    if head[4:8] == b"ftyp":  # ISO media: m4a, mp4, mov, 3gp
        return "mp4"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "aac"
        if head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
            return "mp3"
    return None


def _invalid(message: str, param: str, code: str) -> InvalidRequest:
    return InvalidRequest(f"{param} {message}", param=param, code=code)


def _decode(file: IO[bytes], demuxer: str, max_s: float, param: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream -> ((N,) float32 mono, sample rate). Stops past max_s."""
    try:
        container = av.open(file, mode="r", format=demuxer, metadata_errors="ignore")
    except av.FFmpegError:
        raise _invalid(f"could not be read as {demuxer} audio (corrupt file?)", param,
                       "invalid_audio") from None
    with container:
        if not container.streams.audio:
            raise _invalid("has no audio track", param, "invalid_audio")
        stream = container.streams.audio[0]
        # Packed, not planar: PyAV's to_ndarray of a planar frame with 8 or more channels
        # reads past its plane pointers and crashes the process (PyAV 18.1; a WAV header's
        # channel count is all it takes). A packed frame is one plane whatever the channels.
        resampler = av.AudioResampler(format="flt")  # same layout and rate, packed float
        chunks: list[np.ndarray] = []
        rate = 0
        total = 0
        try:
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                for converted in resampler.resample(frame):
                    channels = converted.layout.nb_channels
                    packed = converted.to_ndarray().reshape(-1, channels)  # (samples, channels)
                    chunks.append(packed.mean(axis=1, dtype=np.float32))
                    total += packed.shape[0]
                if total > max_s * rate:
                    break
        except av.FFmpegError:
            raise _invalid("is corrupt: its audio could not be decoded", param,
                           "invalid_audio") from None
        except ValueError:
            # PyAV's resampler refuses a frame whose rate or layout differs from the first
            # one's (a damaged or spliced MP3 can switch from mono to stereo mid-stream).
            raise _invalid("is corrupt: its sample rate or channels change mid-stream", param,
                           "invalid_audio") from None
    if not chunks:
        raise _invalid("contains no audio samples", param, "audio_too_short")
    return np.concatenate(chunks), rate


def decode_reference(
    file: IO[bytes], *, sample_rate: int, limits: ReferenceLimits, param: str
) -> np.ndarray:
    """An uploaded audio file -> (N,) float32 mono at `sample_rate`, in [-1, 1].

    Blocking (decodes and resamples): run it in a thread. Every rejection is an
    InvalidRequest naming `param`: empty, not audio, corrupt, too short, too long, silent.
    """
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    if not head:
        raise _invalid("is an empty file", param, "empty_file")
    demuxer = sniff_format(head)
    if demuxer is None:
        raise _invalid(f"is not an audio file we can read ({SUPPORTED})", param,
                       "invalid_audio")
    audio, rate = _decode(file, demuxer, limits.max_s, param)
    seconds = audio.size / rate
    if seconds > limits.max_s:
        raise _invalid(f"is longer than {limits.max_s:g} s", param, "audio_too_long")
    if seconds < limits.min_s:
        raise _invalid(f"is {seconds:.2f} s long; at least {limits.min_s:g} s is needed",
                       param, "audio_too_short")
    if not np.isfinite(audio).all():
        raise _invalid("contains invalid (NaN or infinite) samples", param, "invalid_audio")
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
    if loudness_dbfs(audio) < limits.silence_dbfs:
        raise _invalid(f"is silent (quieter than {limits.silence_dbfs:g} dBFS RMS)", param,
                       "audio_silent")
    return audio


def loudness_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale; -inf for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf
