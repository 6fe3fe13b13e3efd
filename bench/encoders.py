"""`python -m bench.encoders`: what each response format and each `speed` costs on the CPU and
in first-audio delay, through the service's own `AudioPipeline`, in one run.

Input: one seeded speech-like signal (24 kHz mono float32: a harmonic voice with a gliding
pitch and moving formants, syllable-rate amplitude modulation, fricative noise bursts and
pauses, peaks just over the limiter's knee), cut into the chunks the service streams with its
default plan (first chunk 3 frames, then as long as everything sent so far, capped at
`playback_speed` = 1.5 s: 6144, 6144, 12288, 24576, 36864, 36864, ... samples).

- CPU: process CPU time (`time.process_time`, so FFmpeg's own threads would count too)
  around start/push/finish of a whole response, per second of INPUT audio; "% core @1x" is
  the share of one core a stream needs at real time. Opening the encoder is timed apart
  ("open ms"): the service builds the pipeline before the first chunk arrives. "own thread"
  is the calling thread's share of that CPU time (1.00: FFmpeg did all its work inline);
  "threads" is the most native threads this process had during the response.
- First byte: fresh pipeline each repeat, driven through `encoded()` (the service's path,
  thread hop included for FFmpeg-backed stages) from handing over the first chunk to the
  first non-empty bytes after the stream header (WAV's header leaves before any audio). A
  format that holds the first chunk back is fed the next chunks at once; "samples" says how
  much input it needed. No engine runs here: a real stream would also wait for those chunks.
- speed rows: pcm through `atempo`; "out/expected" is the output duration over
  input duration / speed, which should be within +-5 %.

Repeats run interleaved, case order rotating, so load from other work falls on every row
alike; medians are reported, every sample is in the JSON. torch is not imported.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import av
import numpy as np

from app.delivery.pipeline import AudioPipeline, encoded
from app.streaming import ChunkPlan, ChunkPlanner
from bench.common import format_table, load_average, machine_info, write_json

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 2048
FIRST_CHUNK_FRAMES = 3  # the service's defaults (FIRST_CHUNK_FRAMES, DEFAULT_PLAYBACK_SPEED)
PLAYBACK_SPEED_S = 1.5
FORMATS = ("pcm", "wav", "mp3", "opus", "aac", "flac")
SPEEDS = (0.5, 0.75, 1.25, 1.5, 2.0, 4.0)
DURATION_TOLERANCE = 0.05
MP3_CPU_TARGET = 0.05  # CPU-s per audio-s: at most 5 % of a core at real time
MP3_FIRST_BYTE_TARGET_S = 0.030


@dataclass(frozen=True)
class Case:
    fmt: str
    speed: float = 1.0

    @property
    def name(self) -> str:
        return self.fmt if self.speed == 1.0 else f"{self.fmt} x{self.speed:g}"


def default_cases() -> list[Case]:
    return [Case(fmt) for fmt in FORMATS] + [Case("pcm", speed) for speed in SPEEDS]


def speech_like(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like float32 signal, peak 0.97 (so the limiter has work)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    # Segments: voiced syllables, fricatives and pauses, as a per-sample envelope each.
    voiced_env = np.zeros(n, np.float32)
    noise_env = np.zeros(n, np.float32)
    i = 0
    while i < n:
        kind = rng.choice(3, p=[0.6, 0.25, 0.15])
        length = int(sample_rate * (rng.uniform(0.12, 0.28), rng.uniform(0.05, 0.12),
                                    rng.uniform(0.05, 0.30))[kind])
        length = min(max(length, 1), n - i)
        shape = np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 0.7
        if kind == 0:
            voiced_env[i:i + length] = shape * rng.uniform(0.5, 1.0)
        elif kind == 1:
            noise_env[i:i + length] = shape * rng.uniform(0.2, 0.5)
        i += length
    # Pitch: a slow random glide between about 100 and 220 Hz, plus 5 Hz vibrato.
    knots = rng.uniform(100.0, 220.0, max(2, int(seconds * 3) + 2))
    knot_times = np.linspace(0.0, seconds, knots.size)
    f0 = np.interp(t, knot_times, knots)
    f0 *= 1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # Formants wander slowly; each harmonic (up to 4 kHz) is weighted by its nearness to them.
    formants = [(np.interp(t, knot_times, rng.uniform(lo, hi, knots.size)), gain)
                for lo, hi, gain in ((300, 900, 1.0), (900, 2200, 0.6), (2200, 3200, 0.3))]
    voice = np.zeros(n, np.float64)
    for k in range(1, 41):
        freq = k * f0
        weight = np.full(n, 0.02)
        for centre, gain in formants:
            weight += gain * np.exp(-0.5 * ((freq - centre) / 120.0) ** 2)
        weight *= freq < 0.45 * sample_rate
        voice += weight * np.sin(k * phase) / k ** 0.5
    noise = np.diff(rng.standard_normal(n + 1))  # first difference: a hiss, like /s/
    signal = voice * voiced_env + noise * noise_env + 0.002 * rng.standard_normal(n)
    signal *= 0.97 / max(float(np.abs(signal).max()), 1e-9)
    return signal.astype(np.float32)


def chunk_sizes(total_samples: int) -> list[int]:
    """The service's chunk sizes (in samples) for a response of `total_samples`."""
    plan = ChunkPlan.from_seconds(playback_speed_s=PLAYBACK_SPEED_S, overlap_s=0.2,
                                  first_chunk_frames=FIRST_CHUNK_FRAMES, min_context_frames=1,
                                  sample_rate=SAMPLE_RATE, samples_per_frame=SAMPLES_PER_FRAME)
    planner = ChunkPlanner(plan)
    frames = math.ceil(total_samples / SAMPLES_PER_FRAME)
    sizes = []
    while (window := planner.next_window(frames, finished=True)) is not None:
        sizes.append((window.end - window.start) * SAMPLES_PER_FRAME)
    sizes[-1] -= frames * SAMPLES_PER_FRAME - total_samples
    return sizes


def split(audio: np.ndarray) -> list[np.ndarray]:
    bounds = np.cumsum([0, *chunk_sizes(audio.size)])
    return [audio[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def native_threads() -> int:
    """Threads of this process as the kernel sees them (FFmpeg's included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def measure_whole(case: Case, chunks: list[np.ndarray]) -> dict[str, float]:
    """One whole response: open, then CPU and wall time of start + pushes + finish."""
    wall = time.perf_counter()
    pipeline = AudioPipeline(case.fmt, SAMPLE_RATE, speed=case.speed)
    open_s = time.perf_counter() - wall
    threads = native_threads()
    out_bytes = 0
    cpu, own, wall = time.process_time(), time.thread_time(), time.perf_counter()
    try:
        out_bytes += len(pipeline.start())
        for chunk in chunks:
            out_bytes += len(pipeline.push(chunk))
            threads = max(threads, native_threads())
        out_bytes += len(pipeline.finish())
        cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
        own_s = time.thread_time() - own
    finally:
        pipeline.close()
    conditioner = pipeline.conditioner
    return {"open_s": open_s, "cpu_s": cpu_s, "calling_thread_cpu_s": own_s, "wall_s": wall_s,
            "bytes": out_bytes,
            "samples_in": conditioner.samples_in, "samples_out": conditioner.samples_out,
            "threads": threads}


class _Chunks:
    """An AudioSource that hands over prepared chunks at once and notes when it did."""

    def __init__(self, chunks: list[np.ndarray]):
        self._chunks = chunks
        self.first_at: float | None = None
        self.samples_given = 0

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        for chunk in self._chunks:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.samples_given += chunk.size
            yield chunk

    def usage(self) -> dict[str, int]:
        return {}

    async def aclose(self) -> None:
        return None


async def measure_first_byte(case: Case, chunks: list[np.ndarray]) -> tuple[float, int]:
    """Seconds from handing over the first chunk to the first audio bytes, and the input
    samples handed over by then."""
    source = _Chunks(chunks)
    pipeline = AudioPipeline(case.fmt, SAMPLE_RATE, speed=case.speed)
    stream = cast(AsyncGenerator[bytes, None], encoded(source, pipeline))  # closed early
    try:
        async for data in stream:
            if source.first_at is not None and data:
                return time.perf_counter() - source.first_at, source.samples_given
    finally:
        await stream.aclose()
    return math.inf, source.samples_given


def rotated(cases: list[Case], shift: int) -> list[Case]:
    shift %= len(cases)
    return cases[shift:] + cases[:shift]


async def _first_bytes(cases: list[Case], chunks: list[np.ndarray], repeats: int
                       ) -> dict[Case, list[tuple[float, int]]]:
    await asyncio.to_thread(int)  # start the executor's thread before timing
    samples: dict[Case, list[tuple[float, int]]] = {case: [] for case in cases}
    for case in cases:  # warm-up: first use of each codec and filter
        await measure_first_byte(case, chunks)
    for rep in range(repeats):
        for case in rotated(cases, rep):
            samples[case].append(await measure_first_byte(case, chunks))
    return samples


def run_benchmark(audio: np.ndarray, cases: list[Case], *, repeats: int,
                  first_byte_repeats: int) -> list[dict[str, Any]]:
    """Every case on the same chunks of `audio`: one result row per case."""
    chunks = split(audio)
    head = chunks[:8]  # enough for any format's first bytes
    for case in cases:
        measure_whole(case, head)  # warm-up
    whole: dict[Case, list[dict[str, float]]] = {case: [] for case in cases}
    for rep in range(repeats):
        for case in rotated(cases, rep):
            whole[case].append(measure_whole(case, chunks))
    first = asyncio.run(_first_bytes(cases, head, first_byte_repeats))
    seconds_in = audio.size / SAMPLE_RATE
    baseline = statistics.median(s for s, _ in first[Case("pcm")]) if Case("pcm") in first \
        else None
    rows = []
    for case in cases:
        runs = whole[case]
        cpu = statistics.median(r["cpu_s"] for r in runs) / seconds_in
        wall = statistics.median(r["wall_s"] for r in runs) / seconds_in
        own = sum(r["calling_thread_cpu_s"] for r in runs) / sum(r["cpu_s"] for r in runs)
        first_s = statistics.median(s for s, _ in first[case])
        out_in = runs[0]["samples_out"] / runs[0]["samples_in"]
        rows.append({
            "case": case.name, "format": case.fmt, "speed": case.speed,
            "cpu_s_per_audio_s": cpu, "core_percent_at_1x": 100 * cpu,
            "wall_s_per_audio_s": wall, "cpu_over_wall": cpu / wall if wall else math.nan,
            "calling_thread_cpu_share": own,
            "open_ms": 1000 * statistics.median(r["open_s"] for r in runs),
            "first_byte_ms": 1000 * first_s,
            "first_byte_over_pcm_ms": None if baseline is None else 1000 * (first_s - baseline),
            "first_byte_samples": max(n for _, n in first[case]),
            "kbit_per_s": 8 * runs[0]["bytes"] / seconds_in / 1000,
            "out_over_expected": out_in * case.speed,
            "max_threads": max(r["threads"] for r in runs),
            "runs": runs, "first_byte_runs": [{"s": s, "samples": n} for s, n in first[case]],
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["case", "CPU s/audio s", "% core @1x", "CPU/wall", "own thread", "open ms",
               "first byte ms", "+ over pcm ms", "samples", "kbit/s", "out/expected",
               "threads"]
    body = [[r["case"], f"{r['cpu_s_per_audio_s']:.4f}", f"{r['core_percent_at_1x']:.2f}",
             r["cpu_over_wall"], r["calling_thread_cpu_share"], r["open_ms"], r["first_byte_ms"], r["first_byte_over_pcm_ms"],
             r["first_byte_samples"], f"{r['kbit_per_s']:.1f}", f"{r['out_over_expected']:.3f}",
             r["max_threads"]] for r in rows]
    return format_table(headers, body)


def targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The issue's goals: mp3's CPU and first-byte cost over pcm, speed's output duration."""
    by_case = {r["case"]: r for r in rows}
    goals: dict[str, dict[str, Any]] = {}
    if "mp3" in by_case and "pcm" in by_case:
        mp3 = by_case["mp3"]
        goals["mp3 CPU s per audio s"] = {
            "value": mp3["cpu_s_per_audio_s"], "target": MP3_CPU_TARGET,
            "met": mp3["cpu_s_per_audio_s"] <= MP3_CPU_TARGET}
        goals["mp3 first byte over pcm, ms"] = {
            "value": mp3["first_byte_over_pcm_ms"], "target": 1000 * MP3_FIRST_BYTE_TARGET_S,
            "met": mp3["first_byte_over_pcm_ms"] <= 1000 * MP3_FIRST_BYTE_TARGET_S}
    speeds = [r for r in rows if r["speed"] != 1.0]
    if speeds:
        worst = max(speeds, key=lambda r: abs(r["out_over_expected"] - 1))
        goals[f"speed out/expected, worst ({worst['case']})"] = {
            "value": worst["out_over_expected"], "target": f"1 +- {DURATION_TOLERANCE:g}",
            "met": all(abs(r["out_over_expected"] - 1) <= DURATION_TOLERANCE for r in speeds)}
    return goals


def describe(goals: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, goal in goals.items():
        target = goal["target"]
        bound = f"<= {target:g}" if isinstance(target, float) else target
        lines.append(f"{name}: {goal['value']:.4g} (target {bound}) "
                     f"-> {'met' if goal['met'] else 'NOT met'}")
    return lines


def versions() -> dict[str, Any]:
    return {"av": av.__version__,
            "ffmpeg": getattr(av, "ffmpeg_version_info", None),
            "libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "numpy": np.__version__, "torch_imported": "torch" in sys.modules}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.encoders",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="input audio length")
    parser.add_argument("--repeat", type=int, default=5, help="whole-response runs per case")
    parser.add_argument("--first-byte-repeat", type=int, default=21,
                        help="fresh pipelines per case for the first-byte delay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    info = machine_info()
    info.update(versions())
    audio = speech_like(args.seconds, seed=args.seed)
    cases = default_cases()
    sizes = chunk_sizes(audio.size)
    print(f"{args.seconds:g} s speech-like input in {len(sizes)} chunks "
          f"({', '.join(map(str, sizes[:6]))}, ...); {len(cases)} cases x {args.repeat} runs, "
          f"{args.first_byte_repeat} first-byte runs (load average "
          f"{info['load_average_at_start']})", file=sys.stderr)
    load_before = load_average()
    rows = run_benchmark(audio, cases, repeats=args.repeat,
                         first_byte_repeats=args.first_byte_repeat)
    load_after = load_average()
    goals = targets(rows)
    print(table(rows))
    print(f"\nav {av.__version__}, FFmpeg {info['ffmpeg']}; medians of {args.repeat} runs "
          f"(CPU) and {args.first_byte_repeat} fresh pipelines (first byte); "
          f"torch imported: {info['torch_imported']}")
    print("\n".join(describe(goals)))
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s; load average {load_before} -> {load_after}")
    if args.json:
        write_json(args.json, {
            "benchmark": "encoders", "machine": info, "seconds": args.seconds,
            "seed": args.seed, "sample_rate": SAMPLE_RATE, "chunk_sizes": sizes,
            "repeat": args.repeat, "first_byte_repeat": args.first_byte_repeat,
            "rows": rows, "targets": goals, "load_average_rows": [load_before, load_after],
            "elapsed_s": elapsed, "load_average_at_end": load_average(),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
