"""Encoders: 16-bit mono PCM in, one response's bytes out, in order.

    Encoder.start()            bytes that open the stream (a WAV header; b"" for most)
    Encoder.encode(pcm)        bytes ready after these samples (int16, shape (N,))
    Encoder.finish()           the rest: flushed codec and muxer state, nothing lost

Streamed, every call returns what the muxer has written so far, so the first bytes leave with
the first chunk. `whole_file=True` returns everything from `finish()`: a WAV with exact sizes, a
FLAC whose STREAMINFO carries the sample count. MP3 is written without ID3 tags and without a
Xing/LAME header (it would be a placeholder mid-stream that no one rewrites): plain CBR frames,
so responses can be concatenated, as Home Assistant does with one reply per sentence.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np

from app.audio import wav_header
from app.delivery.formats import RESPONSE_FORMATS


class Encoder(Protocol):
    def start(self) -> bytes: ...

    def encode(self, pcm: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...


class PcmEncoder:
    """Raw 16-bit little-endian samples."""

    def __init__(self, sample_rate: int, *, whole_file: bool = False):
        del sample_rate, whole_file

    def start(self) -> bytes:
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        return pcm.astype("<i2", copy=False).tobytes()

    def finish(self) -> bytes:
        return b""


class WavEncoder:
    """RIFF/WAVE. Streamed: the unknown-length header first; whole: exact sizes at the end."""

    def __init__(self, sample_rate: int, *, whole_file: bool = False):
        self.sample_rate = sample_rate
        self.whole_file = whole_file
        self._parts: list[bytes] = []

    def start(self) -> bytes:
        return b"" if self.whole_file else wav_header(self.sample_rate)

    def encode(self, pcm: np.ndarray) -> bytes:
        data = pcm.astype("<i2", copy=False).tobytes()
        if self.whole_file:
            self._parts.append(data)
            return b""
        return data

    def finish(self) -> bytes:
        if not self.whole_file:
            return b""
        data = b"".join(self._parts)
        self._parts.clear()
        return wav_header(self.sample_rate, len(data)) + data


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file that hands over what was written since the last take."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


@dataclass(frozen=True)
class AvFormat:
    """How one compressed format is produced with FFmpeg (through PyAV)."""

    container: str
    codec: str
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)


AV_FORMATS: dict[str, AvFormat] = {
    "mp3": AvFormat("mp3", "libmp3lame", 64_000, {"write_xing": "0", "id3v2_version": "0"}),
    # Ogg pages are normally ~1 s long; 20 ms pages let each chunk out as soon as it is encoded.
    "opus": AvFormat("ogg", "libopus", 32_000, {"page_duration": "20000"}),
    "aac": AvFormat("adts", "aac", 64_000),
    "flac": AvFormat("flac", "flac"),
}


class AvEncoder:
    """A compressed format muxed by FFmpeg into a streaming-friendly container."""

    def __init__(self, fmt: str, sample_rate: int, *, whole_file: bool = False):
        spec = AV_FORMATS[fmt]
        self.sample_rate = sample_rate
        self.whole_file = whole_file
        # A seekable buffer for whole files, so muxers can finish their headers (FLAC's
        # STREAMINFO sample count); a non-seekable sink when streaming.
        self._file: io.BytesIO | _Sink = io.BytesIO() if whole_file else _Sink()
        self._container = av.open(self._file, "w", format=spec.container,
                                  options=dict(spec.container_options))
        stream = self._container.add_stream(spec.codec, rate=sample_rate)
        assert isinstance(stream, av.AudioStream)  # an audio codec name gives an audio stream
        stream.layout = "mono"
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
        self._stream = stream
        self._pts = 0
        self._closed = False

    def _take(self) -> bytes:
        if isinstance(self._file, _Sink):
            return self._file.take()
        return b""

    def start(self) -> bytes:
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16",
            layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += pcm.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._take()

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        if isinstance(self._file, io.BytesIO):
            return self._file.getvalue()
        return self._take()

    def close(self) -> None:
        """Release FFmpeg state without flushing (the response was abandoned)."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except (av.FFmpegError, OSError, ValueError):
                pass


EncoderFactory = Callable[..., Encoder]


def _av(fmt: str) -> EncoderFactory:
    def make(sample_rate: int, *, whole_file: bool = False) -> Encoder:
        return AvEncoder(fmt, sample_rate, whole_file=whole_file)
    return make


ENCODERS: dict[str, EncoderFactory] = {
    "pcm": PcmEncoder,
    "wav": WavEncoder,
    **{fmt: _av(fmt) for fmt in AV_FORMATS},
}
assert set(ENCODERS) == set(RESPONSE_FORMATS)


def create_encoder(fmt: str, sample_rate: int, *, whole_file: bool = False) -> Encoder:
    """A fresh encoder for one response."""
    return ENCODERS[fmt](sample_rate, whole_file=whole_file)
