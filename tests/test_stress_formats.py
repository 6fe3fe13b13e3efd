"""The load generator's per-format accounting: compressed bodies and SSE events."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app.delivery.pipeline import AudioPipeline
from stress_test.load import InvalidBody, _SseReader, audio_chunks

RATE = 24000


def encoded_pieces(fmt: str, seconds: float) -> list[tuple[float, bytes]]:
    audio = (0.3 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * RATE)) / RATE)
             ).astype(np.float32)
    pipeline = AudioPipeline(fmt, RATE)
    pieces = [pipeline.start()] + [pipeline.push(c) for c in np.array_split(audio, 5)]
    pieces.append(pipeline.finish())
    return [(0.1 * i, p) for i, p in enumerate(pieces) if p]


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_audio_seconds_are_counted_for_every_format(fmt):
    chunks = audio_chunks(fmt, encoded_pieces(fmt, 2.0))
    seconds = sum(size for _, size in chunks) / (RATE * 2)
    assert seconds == pytest.approx(2.0, abs=0.1)
    assert [t for t, _ in chunks] == sorted(t for t, _ in chunks)


def test_undecodable_compressed_body_is_invalid():
    with pytest.raises(InvalidBody):
        audio_chunks("mp3", [(0.0, b"definitely not audio" * 50)])


def test_sse_reader_handles_events_split_across_reads():
    payload = b"".join(
        f"data: {json.dumps({'type': 'speech.audio.delta', 'audio': base64.b64encode(x).decode()})}\n\n".encode()
        for x in (b"ab", b"cd"))
    payload += b'data: {"type": "speech.audio.done", "usage": {}}\n\n'
    reader = _SseReader()
    out = b"".join(reader.feed(payload[i:i + 7]) for i in range(0, len(payload), 7))
    assert out == b"abcd"


def test_sse_error_event_is_an_invalid_body():
    with pytest.raises(InvalidBody, match="error event"):
        _SseReader().feed(b'data: {"type": "error", "error": {"message": "x"}}\n\n')
