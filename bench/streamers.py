"""Three ways to turn frames arriving one at a time into audio, and how to score them.

Each emitter takes the whole (T, 7) code sequence but only ever looks at the frames that have
"arrived" (frames are revealed one by one, as an engine streams them), calls `decode` on
windows of frames, and records what it emits with each piece's absolute sample position, so
the result can be compared sample-for-sample with one offline decode of the whole sequence.

- `stream_planner`: our ChunkPlanner + Stitcher (app/streaming.py); `replay_steps` runs the
  stitcher over a window schedule decided elsewhere (adaptive chunking needs a clock).
- `stream_orpheus`: the Orpheus reference decoder. Once 4 frames (28 tokens) exist, every new
  frame re-decodes the last 4 frames and emits samples [2048:4096] of that window: one frame
  of audio per frame, lagging the newest frame by two. It flushes nothing at the end, so it
  covers frames 1 .. T-3 only.
- `stream_scicom`: overlap re-decode. Every `chunk_frames` new frames, decode the previous
  chunk plus the new one and emit the new chunk's part, with a linear fade to zero over
  `fade_samples` at both sides of every chunk boundary.

Each emitter is also a generator of steps (`*_steps`, one step per arriving frame) so that a
benchmark can advance several side by side and machine load falls on all of them alike.
No clocks here: timing is the caller's business (wrap `decode`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.streaming import ChunkPlan, ChunkPlanner, Stitcher, Window

DecodeFn = Callable[[np.ndarray], np.ndarray]  # (T, 7) codes -> (T * samples_per_frame,)

ORPHEUS_WINDOW_FRAMES = 4
SCICOM_FADE_S = 0.002
SEAM_RADIUS_SAMPLES = 2048  # seam SNR looks at one frame of audio on each side of a seam


@dataclass
class Segment:
    start: int  # absolute sample index of audio[0] in the whole sequence's audio
    audio: np.ndarray


@dataclass
class StreamRun:
    """What one emitter did on one sequence."""

    method: str
    segments: list[Segment] = field(default_factory=list)
    seams: list[int] = field(default_factory=list)  # absolute samples where two decodes meet
    decode_calls: int = 0
    decoded_samples: int = 0
    first_audio_frames: int | None = None  # frames that had arrived at the first emission
    first_audio_calls: int | None = None  # decode calls made up to and including it

    def emit(self, start: int, audio: np.ndarray, available: int) -> None:
        if audio.size == 0:
            return
        if self.first_audio_frames is None:
            self.first_audio_frames = available
            self.first_audio_calls = self.decode_calls
        self.segments.append(Segment(start, audio))

    def decode(self, decode: DecodeFn, frames: np.ndarray) -> np.ndarray:
        audio = decode(frames)
        self.decode_calls += 1
        self.decoded_samples += audio.shape[0]
        return audio

    @property
    def emitted_samples(self) -> int:
        return sum(s.audio.shape[0] for s in self.segments)

    @property
    def redundancy(self) -> float:
        """Decoded samples per emitted sample (1.0 = nothing decoded twice)."""
        return self.decoded_samples / self.emitted_samples if self.emitted_samples else math.inf

    def signal(self) -> tuple[int, np.ndarray]:
        """(start sample, audio) of everything emitted, which must be one contiguous run."""
        if not self.segments:
            return 0, np.zeros(0, np.float32)
        for before, after in zip(self.segments, self.segments[1:]):
            if before.start + before.audio.shape[0] != after.start:
                raise ValueError(f"{self.method}: emitted audio has a gap or overlap at "
                                 f"sample {after.start}")
        return self.segments[0].start, np.concatenate([s.audio for s in self.segments])


def stream_planner(frames: np.ndarray, plan: ChunkPlan, decode: DecodeFn,
                   method: str = "planner") -> StreamRun:
    return finish(StreamRun(method), planner_steps, frames, decode, plan)


def stream_orpheus(frames: np.ndarray, decode: DecodeFn, samples_per_frame: int = 2048
                   ) -> StreamRun:
    return finish(StreamRun("orpheus"), orpheus_steps, frames, decode, samples_per_frame)


def stream_scicom(frames: np.ndarray, decode: DecodeFn, chunk_frames: int,
                  fade_samples: int, samples_per_frame: int = 2048) -> StreamRun:
    return finish(StreamRun("scicom"), scicom_steps, frames, decode, chunk_frames,
                  fade_samples, samples_per_frame)


Steps = Iterator[int]


def finish(run: StreamRun, steps: Callable[..., Steps], *args: object) -> StreamRun:
    """Run an emitter's steps to the end."""
    for _ in steps(run, *args):
        pass
    return run


def planner_steps(run: StreamRun, frames: np.ndarray, decode: DecodeFn, plan: ChunkPlan
                  ) -> Steps:
    """Our planner; yields the frames available after handling each arrival."""
    planner, stitcher = ChunkPlanner(plan), Stitcher(plan)
    total, position = frames.shape[0], 0
    for available in range(1, total + 1):
        finished = available == total
        while (window := planner.next_window(available, finished)) is not None:
            audio = run.decode(decode, frames[window.window_start:window.window_end])
            if window.start > 0:
                run.seams.append(window.start * plan.samples_per_frame)
            chunk = stitcher.push(window, audio)
            run.emit(position, chunk, available)
            position += chunk.shape[0]
        yield available


def replay_steps(run: StreamRun, frames: np.ndarray, decode: DecodeFn, plan: ChunkPlan,
                 windows: Sequence[tuple[int, Window]]) -> Steps:
    """Our stitcher over a given window schedule: (frames available when planned, window),
    e.g. the windows adaptive chunking chose in a timed simulation."""
    stitcher, position, pending = Stitcher(plan), 0, list(windows)[::-1]
    for available in range(1, frames.shape[0] + 1):
        while pending and pending[-1][0] <= available:
            _, window = pending.pop()
            audio = run.decode(decode, frames[window.window_start:window.window_end])
            if window.start > 0:
                run.seams.append(window.start * plan.samples_per_frame)
            chunk = stitcher.push(window, audio)
            run.emit(position, chunk, available)
            position += chunk.shape[0]
        yield available


def orpheus_steps(run: StreamRun, frames: np.ndarray, decode: DecodeFn,
                  samples_per_frame: int = 2048) -> Steps:
    spf = samples_per_frame
    for available in range(1, frames.shape[0] + 1):
        if available >= ORPHEUS_WINDOW_FRAMES:
            audio = run.decode(decode, frames[available - ORPHEUS_WINDOW_FRAMES:available])
            start = (available - ORPHEUS_WINDOW_FRAMES + 1) * spf  # the window's 2nd frame
            if run.segments:
                run.seams.append(start)
            run.emit(start, audio[spf:2 * spf], available)
        yield available


def scicom_steps(run: StreamRun, frames: np.ndarray, decode: DecodeFn, chunk_frames: int,
                 fade_samples: int, samples_per_frame: int = 2048) -> Steps:
    spf, total, start = samples_per_frame, frames.shape[0], 0
    fade_in = np.linspace(0.0, 1.0, fade_samples, dtype=np.float32)
    fade_out = fade_in[::-1]
    for available in range(1, total + 1):
        if available - start >= chunk_frames or available == total:
            window_start = max(0, start - chunk_frames)
            audio = run.decode(decode, frames[window_start:available])
            new = audio[(start - window_start) * spf:].copy()
            if start > 0 and fade_samples:
                new[:fade_samples] *= fade_in
                run.seams.append(start * spf)
            if available < total and fade_samples:
                new[-fade_samples:] *= fade_out
            run.emit(start * spf, new, available)
            start = available
        yield available


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(signal energy / error energy); inf when identical."""
    ref = np.asarray(reference, np.float64)
    err = np.asarray(test, np.float64) - ref
    noise = float(np.dot(err, err))
    signal = float(np.dot(ref, ref))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def aligned_snr_db(offline: np.ndarray, start: int, emitted: np.ndarray) -> float:
    """SNR of emitted audio against the offline decode at the same absolute samples."""
    if start < 0 or start + emitted.shape[0] > offline.shape[0]:
        raise ValueError("emitted audio lies outside the offline decode")
    return snr_db(offline[start:start + emitted.shape[0]], emitted)


def seam_regions(seams: Sequence[int], begin: int, end: int,
                 radius: int = SEAM_RADIUS_SAMPLES) -> list[tuple[int, int]]:
    """[seam - radius, seam + radius) around each seam, clipped to [begin, end)."""
    regions = []
    for seam in seams:
        lo, hi = max(begin, seam - radius), min(end, seam + radius)
        if hi > lo:
            regions.append((lo, hi))
    return regions


@dataclass(frozen=True)
class Fidelity:
    """How close a run's emitted audio is to the offline decode, in dB."""

    snr_db: float  # over everything it emitted
    seam_snr_db: float  # pooled over every seam region (energy-weighted)
    worst_seam_snr_db: float  # the worst single seam region
    covered: tuple[int, int]  # absolute samples compared, [begin, end)


def fidelity(run: StreamRun, offline: np.ndarray,
             radius: int = SEAM_RADIUS_SAMPLES) -> Fidelity:
    start, emitted = run.signal()
    end = start + emitted.shape[0]
    overall = aligned_snr_db(offline, start, emitted)
    regions = seam_regions(run.seams, start, end, radius)
    if not regions:
        return Fidelity(overall, overall, overall, (start, end))
    ref = np.concatenate([offline[lo:hi] for lo, hi in regions])
    got = np.concatenate([emitted[lo - start:hi - start] for lo, hi in regions])
    worst = min(snr_db(offline[lo:hi], emitted[lo - start:hi - start]) for lo, hi in regions)
    return Fidelity(overall, snr_db(ref, got), worst, (start, end))
