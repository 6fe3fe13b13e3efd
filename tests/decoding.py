"""Decode whatever the service sent with PyAV (FFmpeg): container, codec, rate, samples."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

PCM_RATE = 24000


@dataclass(frozen=True)
class Decoded:
    container: str
    codec: str
    rate: int
    samples: np.ndarray  # mono float64

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


def decode(data: bytes, fmt: str | None = None) -> Decoded:
    """Decode a response body; `fmt="pcm"` reads raw 16-bit LE 24 kHz. Errors raise."""
    if fmt == "pcm":
        return Decoded("pcm", "pcm_s16le", PCM_RATE,
                       np.frombuffer(data, "<i2").astype(np.float64) / 32767.0)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        stream.codec_context.options = {}
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        name, codec, rate = container.format.name, stream.codec_context.name, stream.rate
    samples = np.concatenate(frames)
    if samples.dtype.kind == "i":
        samples = samples / float(np.iinfo(samples.dtype).max)
    return Decoded(name, codec, rate, samples.astype(np.float64))
