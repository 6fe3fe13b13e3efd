"""Streaming schedules on the real NeuCodec decoder architecture (random seeded weights).

Results show the architecture (a non-causal decoder: attention and GroupNorm over the whole
window), not trained quality. For each schedule: overall and seam SNR against one offline
decode, redundancy (decoded / emitted samples), frames generated before the first audio can
be decoded, first-chunk decode ms and CPU seconds of decode per second of audio.

    .venv/bin/python -m bench.neucodec_schedules --seconds 10 --json bench-neucodec.json

Schedules:
  scicom       75-token chunks, +/-10 tokens of context, 12 ms crossfade (our planner/stitcher
               with that fixed plan: the same windows and seams)
  scicom-grow  first window 100 tokens, windows doubling up to 500, 150 tokens (3 s) of past
               context and 10 ahead; emits each window's new part, 12 ms crossfade
  ours, SNAC's defaults    app/streaming.py with SNAC's streaming defaults read as 20 ms
               frames (1.5 s chunks, 0.2 s overlap, first chunk 3, context 1)
  ours, NeuCodec defaults  what a NeuCodec stream gets (app/codec/info.py NEUCODEC): first
               chunk 50 frames, 16 of context each side, chunks growing 3x the audio so far up
               to 5 s, windows of at least 200 frames (more past context, never more than the
               chunk), 0.2 s crossfade
  ours at 1.5 s chunks     the same with playback_speed=1.5 (the seed's chunk length)
  ours at Scicom-grow's start  the planner at the later schedule's latency: first chunk 100,
               growing 3x up to 15 s, 10 frames of context, windows >= 400 (FIRST_CHUNK_FRAMES=100
               MIN_CONTEXT_FRAMES=10 MIN_WINDOW_FRAMES=400, playback_speed=15)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from app.codec.info import NEUCODEC
from app.streaming import ChunkPlan
from bench.streamers import Steps, StreamRun, fidelity, finish, planner_steps

SPF = NEUCODEC.samples_per_frame
RATE = NEUCODEC.sample_rate


@dataclass
class Row:
    schedule: str
    snr_db: float
    seam_snr_db: float
    worst_seam_snr_db: float
    redundancy: float
    frames_before_first_audio: int
    first_chunk_decode_ms: float
    cpu_s_per_audio_s: float
    decode_calls: int


def plan(first: int, chunk: int, context: int, crossfade_s: float, growth: float = 1.0,
         min_window: int = 0) -> ChunkPlan:
    half = round(crossfade_s * RATE) // 2
    return ChunkPlan(first, chunk, max(context, -(-half // SPF)), half, SPF, growth, min_window)


def grow_steps(run: StreamRun, frames: np.ndarray, decode: Callable, first: int, cap: int,
               past: int, ahead: int, fade: int) -> Steps:
    """Scicom's later schedule: window sizes first, 2*first, ... capped; past/ahead context."""
    total, start, size = frames.shape[0], 0, first
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for available in range(1, total + 1):
        end = min(start + size, total)
        if available >= min(total, end + ahead):
            lo, hi = max(0, start - past), min(total, end + ahead)
            audio = run.decode(decode, frames[lo:hi])
            new = audio[(start - lo) * SPF:(end - lo) * SPF].copy()
            if start > 0 and fade:
                # Crossfade into the previous window's own decode of these samples is not kept
                # by this schedule; it fades the new part in from the previous part's tail.
                tail = run.segments[-1].audio[-fade:]
                run.segments[-1].audio = run.segments[-1].audio[:-fade]
                head = audio[(start - lo) * SPF - fade:(start - lo) * SPF]
                new = np.concatenate([tail * ramp[::-1] + head * ramp, new])
                run.seams.append(start * SPF)
                run.emit(start * SPF - fade, new, available)
            else:
                run.emit(start * SPF, new, available)
            start, size = end, min(cap, size * 2)
            if start >= total:
                break
        yield available


def measure(name: str, frames: np.ndarray, decode_codes: Callable, offline: np.ndarray,
            steps: Callable, *args: object) -> Row:
    timings: list[float] = []

    def timed(codes: np.ndarray) -> np.ndarray:
        began = time.process_time()
        audio = decode_codes(codes)
        timings.append(time.process_time() - began)
        return audio

    run = finish(StreamRun(name), steps, frames, timed, *args)
    score = fidelity(run, offline)
    emitted = sum(s.audio.shape[0] for s in run.segments)
    return Row(name, score.snr_db, score.seam_snr_db, score.worst_seam_snr_db,
               run.decoded_samples / max(1, emitted), run.first_audio_frames or 0,
               1000 * timings[0],
               sum(timings) / (emitted / RATE), run.decode_calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from app.codec.neucodec import NeuCodec

    codec = NeuCodec.load("random", device="cpu", seed=args.seed)
    total = round(args.seconds / NEUCODEC.frame_s)
    frames = np.random.default_rng(args.seed).integers(0, NEUCODEC.codebook_size, (total, 1))

    def decode_codes(codes: np.ndarray) -> np.ndarray:
        return codec.decode_frames(codes[None])[0]

    with torch.inference_mode():
        offline = decode_codes(frames)
    fade = round(0.012 * RATE)
    default = ChunkPlan.from_seconds(playback_speed_s=1.5, overlap_s=0.2, first_chunk_frames=3,
                                     min_context_frames=1, sample_rate=RATE,
                                     samples_per_frame=SPF)
    rows = [
        measure("scicom", frames, decode_codes, offline, planner_steps, plan(75, 75, 10, 0.012)),
        measure("scicom-grow", frames, decode_codes, offline, grow_steps, 100, 500, 150, 10,
                fade),
        measure("ours, SNAC's defaults (first 3, ctx 1)", frames, decode_codes, offline,
                planner_steps, default),
    ]

    def ours(playback_speed_s: float) -> ChunkPlan:
        return ChunkPlan.from_seconds(
            playback_speed_s=playback_speed_s, overlap_s=0.2,
            first_chunk_frames=NEUCODEC.first_chunk_frames,
            min_context_frames=NEUCODEC.min_context_frames, sample_rate=RATE,
            samples_per_frame=SPF, growth=NEUCODEC.chunk_growth,
            min_window_frames=NEUCODEC.min_window_frames)

    rows.append(measure("ours, NeuCodec defaults", frames, decode_codes, offline,
                        planner_steps, ours(NEUCODEC.chunk_s)))
    rows.append(measure("ours at 1.5 s chunks", frames, decode_codes, offline, planner_steps,
                        ours(1.5)))
    rows.append(measure("ours at Scicom-grow's start", frames, decode_codes, offline,
                        planner_steps, plan(100, 750, 10, 0.2, growth=3.0, min_window=400)))
    print(f"{'schedule':40} {'SNR':>6} {'seam':>6} {'worst':>6} {'redund':>6} "
          f"{'frames':>6} {'1st ms':>7} {'CPU/s':>6}")
    for row in rows:
        print(f"{row.schedule:40} {row.snr_db:6.1f} {row.seam_snr_db:6.1f} "
              f"{row.worst_seam_snr_db:6.1f} {row.redundancy:6.2f} "
              f"{row.frames_before_first_audio:6d} {row.first_chunk_decode_ms:7.0f} "
              f"{row.cpu_s_per_audio_s:6.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in rows], out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
