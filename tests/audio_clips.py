"""Reference clips for the voice-cloning tests, generated in memory (no fixtures on disk)."""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile as sf

# Container -> (PyAV muxer, encoder, a sample rate it accepts). Lossy codecs add priming or
# lose a partial frame, so durations are checked with a tolerance.
AV_FORMATS = {
    "ogg": ("ogg", "libopus", 48000),
    "mp3": ("mp3", "libmp3lame", 44100),
    "m4a": ("ipod", "aac", 44100),
    "aac": ("adts", "aac", 22050),
    "webm": ("webm", "libopus", 48000),
}


def chirp(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """A 200 -> 2000 Hz sweep, (samples, channels) float32; channel k is scaled by 1/(k+1)."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * (200 * t + (1800 / (2 * max(seconds, 1e-9))) * t**2)
    mono = (amplitude * np.sin(phase)).astype(np.float32)
    return np.stack([mono / (k + 1) for k in range(channels)], axis=1)


def wav_bytes(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def soundfile_bytes(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def av_bytes(audio: np.ndarray, rate: int, container: str) -> bytes:
    """Encode (samples, channels) float32 with PyAV into `container` (a key of AV_FORMATS)."""
    muxer, codec, codec_rate = AV_FORMATS[container]
    if rate != codec_rate:
        raise ValueError(f"{container} clips are written at {codec_rate} Hz")
    channels = audio.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        step = stream.codec_context.frame_size or 1024
        planar = np.ascontiguousarray(audio.T)  # (channels, samples)
        for start in range(0, planar.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start:start + step]),
                                               format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def reference_wav(seconds: float = 3.0, rate: int = 24000) -> bytes:
    return wav_bytes(chirp(seconds, rate), rate)
