from __future__ import annotations

import io
import struct
import wave

import numpy as np

from app.audio import UNKNOWN_SIZE, WAV_HEADER_BYTES, to_pcm16, wav_header


def test_wav_header_with_exact_sizes_reads_back_with_wave():
    pcm = to_pcm16(np.linspace(-1, 1, 480, dtype=np.float32))
    data = wav_header(24000, len(pcm)) + pcm
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() == 480


def test_streaming_wav_header_uses_unknown_length_convention():
    header = wav_header(24000)
    assert len(header) == WAV_HEADER_BYTES
    riff_size, = struct.unpack("<I", header[4:8])
    data_size, = struct.unpack("<I", header[40:44])
    assert riff_size == data_size == UNKNOWN_SIZE


def test_to_pcm16_clips_and_rounds():
    pcm = np.frombuffer(to_pcm16(np.array([2.0, -2.0, 0.5, 0.0], np.float32)), "<i2")
    assert list(pcm) == [32767, -32767, 16384, 0]
