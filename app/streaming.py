"""Chunk planning and crossfade stitching: frames arriving over time -> seamless PCM chunks.

A chunk is a run of frames [start, end). It is decoded as a window with `context` frames on
each side (fewer at the edges of the sequence) so that its samples match an offline decode of
the whole sequence; the seam between two chunks is crossfaded over `2 * half_overlap`
samples centred on the boundary, where both windows have real context (except the first
seam, a hard cut, so that the first chunk is not held back). The fade is
raised-cosine and amplitude-complementary (the two decodes are near-identical signals), so
there is no dip in level at a seam.

Chunk sizes grow: the first is `first_chunk_frames` (low first-audio latency); each next one is
`growth` times as long as everything emitted so far, capped at `chunk_frames` (`playback_speed`
seconds). A codec whose decoder is non-causal (NeuCodec: attention and normalization over the
whole window) decodes more faithfully in longer windows, so a plan may ask for at least
`min_window_frames` per window: the window reaches further back into frames already emitted
(never more than the chunk's own length), which costs decode time but no latency. When
the caller says the listener's buffer is about to run dry (`urgent`), the next chunk is cut
short to whatever is already decodable, down to `min_chunk_frames`. `cut_short` is the rule
for saying so: only at the last moment, when neither the full-size chunk nor one more frame
could arrive and be decoded before the buffer empties, so that a chunk cut short is as long
as it can be. With an engine at exactly real time a chunk can then be at most as long as the
first one (the listener's buffer never grows), so `first_chunk_frames` and `context_frames`
set the redundancy there: (first + 2 * context) / first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkPlan:
    """Sizes in frames, overlap in samples."""

    first_chunk_frames: int
    chunk_frames: int
    context_frames: int
    half_overlap: int
    samples_per_frame: int
    growth: float = 1.0
    min_window_frames: int = 0

    @classmethod
    def from_seconds(
        cls,
        *,
        playback_speed_s: float,
        overlap_s: float,
        first_chunk_frames: int,
        min_context_frames: int,
        sample_rate: int,
        samples_per_frame: int,
        growth: float = 1.0,
        min_window_frames: int = 0,
    ) -> ChunkPlan:
        """Seconds -> frames of the codec in use (its `CodecLayout` gives both rates)."""
        chunk = max(1, round(playback_speed_s * sample_rate / samples_per_frame))
        first = min(first_chunk_frames, chunk)
        half = round(overlap_s * sample_rate) // 2
        # A seam's fade must lie inside both neighbours' own samples.
        half = min(half, first * samples_per_frame // 2, chunk * samples_per_frame // 2)
        context = max(min_context_frames, math.ceil(half / samples_per_frame))
        return cls(first, chunk, context, half, samples_per_frame, growth, min_window_frames)

    @property
    def min_chunk_frames(self) -> int:
        """Shortest chunk whose seams' fades do not overlap."""
        return max(1, math.ceil(2 * self.half_overlap / self.samples_per_frame))


def cut_short(*, buffered_s: float, frames_missing: int, next_frame_s: float,
              decode_s: float, margin_s: float) -> bool:
    """Should the next chunk be cut short now? `buffered_s`: audio the listener has left;
    `frames_missing`: frames before the full-size window is decodable; `next_frame_s`: until
    the engine's next frame is due; `decode_s`: one window's decode time; `margin_s`: slack."""
    if frames_missing <= 0:
        return False
    # Cut only if waiting for one more frame would leave too little time to decode it.
    return buffered_s < next_frame_s + decode_s + margin_s


@dataclass(frozen=True)
class Window:
    """Decode frames [window_start, window_end) to emit chunk [start, end)."""

    start: int
    end: int
    window_start: int
    window_end: int
    final: bool


class ChunkPlanner:
    """Decides, as frames arrive, which windows to decode next."""

    def __init__(self, plan: ChunkPlan):
        self.plan = plan
        self._next_start = 0
        self._emitted_frames = 0

    def _planned_size(self) -> int:
        grown = math.floor(self.plan.growth * self._emitted_frames)
        return min(self.plan.chunk_frames, max(self.plan.first_chunk_frames, grown))

    def _window_start(self, start: int, end: int, window_end: int) -> int:
        """Left context: `context_frames`, or more to make the window `min_window_frames`
        long, but never more than the chunk's own length."""
        past = self.plan.context_frames
        if self.plan.min_window_frames:
            wanted = self.plan.min_window_frames - (window_end - start)
            past = max(past, min(wanted, end - start))
        return max(0, start - past)

    def frames_missing(self, available: int) -> int:
        """Frames still to arrive before the next full-size window can be decoded."""
        return max(0, self._next_start + self._planned_size() + self.plan.context_frames
                   - available)

    def next_window(self, available: int, finished: bool, *, urgent: bool = False
                    ) -> Window | None:
        """The next window to decode, or None until more frames arrive.

        `urgent`: the listener will run dry before a full-size chunk is ready, so emit a
        shorter one now if at least `min_chunk_frames` (plus right context) are available.
        """
        start = self._next_start
        if start >= available:
            return None
        size = self._planned_size()
        ctx = self.plan.context_frames
        if urgent and self._emitted_frames and not finished:
            ready = available - ctx - start
            if ready >= self.plan.min_chunk_frames:
                size = min(size, ready)
        end = start + size
        if available >= end + ctx and not (finished and available - end < size // 2 + 1):
            window = Window(start, end, self._window_start(start, end, end + ctx), end + ctx,
                            final=False)
        elif finished:
            window = Window(start, available, self._window_start(start, available, available),
                            available, final=True)
        else:
            return None
        self._next_start = window.end
        self._emitted_frames += window.end - window.start
        return window


class Stitcher:
    """Crossfades decoded windows into one continuous signal, emitted chunk by chunk."""

    def __init__(self, plan: ChunkPlan):
        self.plan = plan
        half = plan.half_overlap
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(2 * half) + 0.5) / (2 * half))
        self._fade_in = ramp.astype(np.float32)  # rises 0 -> 1; fade-out is 1 - fade-in
        self._tail: np.ndarray | None = None  # previous chunk's decode around its end seam
        self.decoded_samples = 0
        self.emitted_samples = 0

    def push(self, window: Window, audio: np.ndarray) -> np.ndarray:
        """Take a window's decoded audio; return the samples now final, in order."""
        spf, half = self.plan.samples_per_frame, self.plan.half_overlap
        self.decoded_samples += audio.shape[0]
        origin = window.window_start * spf  # sample index of audio[0] in the whole stream
        begin = window.start * spf - origin
        stop = window.end * spf - origin
        parts: list[np.ndarray] = []
        if self._tail is not None and half:
            head = audio[begin - half:begin + half]
            parts.append(self._tail * (1.0 - self._fade_in) + head * self._fade_in)
            begin += half
        if window.final:
            parts.append(audio[begin:stop])
            self._tail = None
        elif window.start == 0:
            # First seam: a hard cut. The context frames alone match the offline decode there
            # (95 dB at 2 frames), and holding back a fade tail would starve the listener
            # right when the buffer is thinnest.
            parts.append(audio[begin:stop])
            self._tail = None
        else:
            parts.append(audio[begin:stop - half])
            self._tail = audio[stop - half:stop + half].copy() if half else None
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.emitted_samples += out.shape[0]
        return out

    @property
    def redundancy(self) -> float:
        """Decoded samples per emitted sample (1.0 = no wasted decode)."""
        return self.decoded_samples / self.emitted_samples if self.emitted_samples else 0.0
