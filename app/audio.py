"""PCM and WAV framing. 16-bit little-endian mono; float input in [-1, 1]."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

import numpy as np

AudioFormat = Literal["pcm", "wav"]
MEDIA_TYPES: dict[str, str] = {"pcm": "audio/pcm", "wav": "audio/wav"}
WAV_HEADER_BYTES = 44
# A streamed WAV cannot know its length; these sizes mean "unknown, read to the end",
# which ffmpeg, sox, browsers and Python's soundfile accept.
UNKNOWN_SIZE = 0xFFFFFFFF


def to_pcm16(audio: np.ndarray) -> bytes:
    """float32 samples -> 16-bit LE PCM bytes, clipped."""
    scaled = np.clip(audio, -1.0, 1.0) * 32767.0
    return np.rint(scaled).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None = None, channels: int = 1) -> bytes:
    """A 44-byte RIFF/WAVE header; `data_bytes=None` writes the unknown-length convention."""
    block_align = channels * 2
    if data_bytes is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        data_size = data_bytes
        riff_size = 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16,
        b"data", data_size,
    )


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float32 audio as a 16-bit WAV file (debug dumps)."""
    pcm = to_pcm16(audio)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_header(sample_rate, len(pcm)) + pcm)
