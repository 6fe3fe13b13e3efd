"""From the stitched float signal to 16-bit PCM: fade-in, speed, soft limiting.

- A `FADE_IN_S` raised-cosine fade-in at the very start of a response: a decoder's first
  sample is rarely zero, and a step from silence is heard as a click.
- `speed` (OpenAI's 0.25-4.0) changes tempo, not pitch: FFmpeg's `atempo` (WSOLA) through
  PyAV, one filter chain per response so chunk seams stay seamless. Each `atempo` stage is
  kept within 0.5-2.0, where it sounds best, by chaining stages. Audio is fed in
  `TEMPO_PIECE` sample pieces, which bounds the filter's hold-back to about 2,000 input
  samples (85 ms at 24 kHz) instead of a whole chunk. speed 1.0 bypasses it entirely.
- Float to int16 never wraps: samples past `LIMITER_KNEE` are bent smoothly (tanh) towards
  full scale, and samples that were beyond full scale are counted (`clipped`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
from av.filter import Graph

FADE_IN_S = 0.010
LIMITER_KNEE = 0.89  # about -1 dBFS
TEMPO_PIECE = 1024
SPEED_MIN, SPEED_MAX = 0.25, 4.0


def soft_limit(audio: np.ndarray) -> np.ndarray:
    """Identity below the knee, a tanh curve above it that never reaches full scale."""
    magnitude = np.abs(audio)
    over = magnitude > LIMITER_KNEE
    if not over.any():
        return audio
    out = audio.copy()
    room = 1.0 - LIMITER_KNEE
    bent = LIMITER_KNEE + room * np.tanh((magnitude[over] - LIMITER_KNEE) / room)
    out[over] = np.sign(audio[over]) * bent
    return out


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Limited float in (-1, 1) -> int16, rounded."""
    return np.rint(audio * 32767.0).astype(np.int16)


def tempo_stages(speed: float) -> list[float]:
    """atempo factors, each in [0.5, 2.0], whose product is `speed`."""
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise ValueError(f"speed {speed} outside {SPEED_MIN}-{SPEED_MAX}")
    stages = []
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    while speed > 2.0:
        stages.append(2.0)
        speed /= 2.0
    stages.append(speed)
    return stages


class TimeStretcher:
    """Pitch-preserving tempo change of one continuous float32 mono stream."""

    def __init__(self, speed: float, sample_rate: int):
        self.speed = speed
        self.sample_rate = sample_rate
        self._time_base = Fraction(1, sample_rate)
        graph = Graph()
        node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono",
                                 time_base=self._time_base)
        self._source = node
        for factor in tempo_stages(speed):
            stage = graph.add("atempo", f"{factor:.6f}")
            node.link_to(stage)
            node = stage
        sink = graph.add("abuffersink")
        node.link_to(sink)
        graph.configure()
        self._graph = graph
        self._pts = 0
        self._flushed = False

    def _pull(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return out
            out.append(frame.to_ndarray().reshape(-1))

    def push(self, audio: np.ndarray) -> np.ndarray:
        parts: list[np.ndarray] = []
        for i in range(0, audio.size, TEMPO_PIECE):
            piece = np.ascontiguousarray(audio[i:i + TEMPO_PIECE], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="flt",
                                               layout="mono")
            frame.sample_rate = self.sample_rate
            frame.time_base = self._time_base
            frame.pts = self._pts
            self._pts += piece.size
            self._graph.push(frame)
            parts += self._pull()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        self._graph.push(None)
        parts = self._pull()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class Conditioner:
    """One response's float chunks -> int16 chunks (fade-in, optional speed, limiter)."""

    def __init__(self, sample_rate: int, *, speed: float = 1.0, fade_in_s: float = FADE_IN_S):
        self.sample_rate = sample_rate
        fade = max(1, math.ceil(fade_in_s * sample_rate))
        self._fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
                      ).astype(np.float32)
        self._faded = 0  # samples of the fade already applied
        self._stretch = TimeStretcher(speed, sample_rate) if speed != 1.0 else None
        self.clipped = 0  # samples that were beyond full scale before limiting
        self.samples_in = 0
        self.samples_out = 0

    def _fade_in(self, audio: np.ndarray) -> np.ndarray:
        if self._faded >= self._fade.size or audio.size == 0:
            return audio
        n = min(audio.size, self._fade.size - self._faded)
        audio = audio.astype(np.float32, copy=True)
        audio[:n] *= self._fade[self._faded:self._faded + n]
        self._faded += n
        return audio

    def _finalise(self, audio: np.ndarray) -> np.ndarray:
        self.clipped += int(np.count_nonzero(np.abs(audio) > 1.0))
        pcm = to_int16(soft_limit(audio))
        self.samples_out += pcm.size
        return pcm

    def push(self, audio: np.ndarray) -> np.ndarray:
        self.samples_in += audio.size
        audio = self._fade_in(audio)
        if self._stretch is not None:
            audio = self._stretch.push(audio)
        return self._finalise(audio)

    def finish(self) -> np.ndarray:
        if self._stretch is None:
            return np.zeros(0, np.int16)
        return self._finalise(self._stretch.finish())
