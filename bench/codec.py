"""`python -m bench.codec`: codec efficiency of streaming decoders, side by side in one run.

One seeded random code sequence, SNAC with random weights and noise blocks off, frames
revealed one at a time. Each row is one streaming method on one codec build; every row is
scored against ONE offline fp32 decode of the whole sequence at the same absolute samples.

Frames carry no clock here, so the proxy's adaptive chunking (cut chunks short when the
listener would run dry) never fires in the plain rows; the "ours adaptive @83 tok/s" row
replays the windows it picks with an engine at 83 tok/s and an instant codec
(bench.playback.schedule_windows).

All rows advance together, frame by frame (row order rotating), so load from other work on
the machine falls on every row alike. Decode time is measured around each decode call only:
process CPU time and wall time. Each codec decodes every window length it will see once
before timing starts. torch runs one intra-op thread by default: on a small shared box,
OpenMP threads spin while waiting for a descheduled sibling and CPU time then measures the
contention, not the decode work (pass --threads to change it; onnxruntime gets the same).

Backend rows (CODEC_BACKEND): the same fp32 weights decoded by onnxruntime (the ONNX export of
app.codec.onnx_backend, exported afresh into a temporary cache unless --codec-cache-dir names
one), streamed the same ways as their torch rows in the same run; the backend table gives
CPU-s per audio-second for both and the ratio. --no-onnxruntime leaves them out.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.codec.info import SNAC_24KHZ
from app.streaming import ChunkPlan
from bench.common import format_table, load_average, machine_info, write_json
from bench.playback import schedule_windows
from bench.streamers import (
    SCICOM_FADE_S,
    SEAM_RADIUS_SAMPLES,
    DecodeFn,
    Steps,
    StreamRun,
    fidelity,
    finish,
    orpheus_steps,
    planner_steps,
    replay_steps,
    scicom_steps,
    snr_db,
)

SAMPLE_RATE = SNAC_24KHZ.sample_rate  # this bench measures SNAC
SAMPLES_PER_FRAME = SNAC_24KHZ.samples_per_frame
FIRST_CHUNK_FRAMES = 3  # the proxy's defaults (FIRST_CHUNK_FRAMES, MIN_CONTEXT_FRAMES)
MIN_CONTEXT_FRAMES = 1
REALTIME_TOKENS_PER_S = 83.0
ADAPTIVE_ROW = "ours adaptive @83 tok/s"
SNR_TARGET_DB = 40.0
TARGET_VS_ORPHEUS = 3.0
TARGET_VS_SCICOM = 2.0
ONNX = "onnxruntime"  # the codec key (and CODEC_BACKEND value) of the backend rows
# (onnxruntime row, its torch twin): same streaming method, same weights, other backend.
BACKEND_PAIRS = {"ours 1.5s/0.2s onnxruntime": "ours 1.5s/0.2s",
                 "orpheus onnxruntime": "orpheus"}


class TimedDecode:
    """Wraps a codec as a (T, 7) -> (T * 2048,) decode and times every call."""

    def __init__(self, codec: Any):
        self._codec = codec
        self.codec = codec
        self.cpu_s: list[float] = []
        self.wall_s: list[float] = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        batch = frames[None]  # (1, T, 7)
        cpu, wall = time.process_time(), time.perf_counter()
        audio = self._codec.decode_frames(batch)  # (1, T * 2048)
        self.wall_s.append(time.perf_counter() - wall)
        self.cpu_s.append(time.process_time() - cpu)
        return audio[0]


@dataclass
class Case:
    name: str
    codec: str  # key into the loaded codecs
    steps: Callable[[StreamRun, np.ndarray, DecodeFn], Steps]
    notes: str = ""


def plan_of(speed_s: float, overlap_s: float) -> ChunkPlan:
    return ChunkPlan.from_seconds(playback_speed_s=speed_s, overlap_s=overlap_s,
                                  first_chunk_frames=FIRST_CHUNK_FRAMES,
                                  min_context_frames=MIN_CONTEXT_FRAMES,
                                  sample_rate=SNAC_24KHZ.sample_rate,
                                  samples_per_frame=SAMPLES_PER_FRAME)


def planner(plan: ChunkPlan) -> Callable[[StreamRun, np.ndarray, DecodeFn], Steps]:
    return lambda run, f, d: planner_steps(run, f, d, plan)


STREAM_ROW = "ours stream (DECODE_MODE=stream)"
STREAM_REALTIME_ROW = "ours stream @83 tok/s, a push per frame"


def stream_steps(run: StreamRun, frames: np.ndarray, decode: DecodeFn, *, plan: ChunkPlan,
                 per_frame: bool = False) -> Steps:
    """DECODE_MODE=stream as app.streams pushes: the first push once first + context frames
    are in, then chunks growing like the planner's; `per_frame`: one push per arriving frame
    after the first (what an engine at exactly real time leads to: the listener's buffer
    never grows, so every frame is urgent). Every frame is decoded once."""
    if not isinstance(decode, TimedDecode):  # window_lengths' probe: no windows here
        yield from range(1, frames.shape[0] + 1)
        return
    stream = decode.codec.stream_decoder()
    total, pushed, position = frames.shape[0], 0, 0
    lead = plan.first_chunk_frames + plan.context_frames

    def push(end: int, final: bool, available: int) -> None:
        nonlocal pushed, position
        cpu, wall = time.process_time(), time.perf_counter()
        audio = stream.push(frames[pushed:end])
        if final:
            audio = np.concatenate([audio, stream.flush()])
        decode.wall_s.append(time.perf_counter() - wall)
        decode.cpu_s.append(time.process_time() - cpu)
        run.decode_calls += 1
        run.decoded_samples += (end - pushed) * SAMPLES_PER_FRAME
        pushed = end
        run.emit(position, audio, available)
        position += audio.shape[0]

    for available in range(1, total + 1):
        finished = available == total
        target = lead if not pushed else (1 if per_frame else min(
            plan.chunk_frames, max(plan.first_chunk_frames, pushed)))
        if finished:
            push(available, True, available)
        elif available - pushed >= target:
            push(available, False, available)
        yield available


def build_cases() -> list[Case]:
    ours = plan_of(1.5, 0.2)
    short = plan_of(0.5, 0.1)
    chunk = round(1.5 * SAMPLE_RATE / SAMPLES_PER_FRAME)
    fade = round(SCICOM_FADE_S * SAMPLE_RATE)

    def adaptive(run: StreamRun, f: np.ndarray, d: DecodeFn) -> Steps:
        schedule = schedule_windows(ours, f.shape[0], REALTIME_TOKENS_PER_S)
        return replay_steps(run, f, d, ours, [(s.available, s.window) for s in schedule])

    return [
        Case("ours 1.5s/0.2s", "fp32", planner(ours), "ChunkPlan defaults, folded fp32"),
        Case("orpheus", "fp32", orpheus_steps, "4-frame window, emit [2048:4096]"),
        Case("scicom 1.5s", "fp32", lambda run, f, d: scicom_steps(run, f, d, chunk, fade),
             f"prev+new chunk of {chunk} frames, {fade}-sample linear fades"),
        Case("ours 0.5s/0.1s", "fp32", planner(short), "shorter chunks and overlap"),
        Case("ours 1.5s/0.2s unfolded", "fp32_unfolded", planner(ours),
             "weight norm NOT folded"),
        Case("ours 1.5s/0.2s bf16", "bf16", planner(ours), "bf16 codec; SNR vs fp32 offline"),
        Case("orpheus unfolded", "fp32_unfolded", orpheus_steps,
             "as the reference runs it: stock SNAC, weight norm not folded"),
        Case(ADAPTIVE_ROW, "fp32", adaptive,
             f"the windows the proxy's adaptive chunking picks with an engine at "
             f"{REALTIME_TOKENS_PER_S:g} tok/s and an instant codec"),
        Case(STREAM_ROW, "fp32", lambda run, f, d: stream_steps(run, f, d, plan=ours),
             "stateful decoder, each frame once; pushes sized like the planner's chunks"),
        Case(STREAM_REALTIME_ROW, "fp32",
             lambda run, f, d: stream_steps(run, f, d, plan=ours, per_frame=True),
             "stateful decoder at a real-time engine: one push per frame after the first"),
    ]


def backend_cases() -> list[Case]:
    """The onnxruntime twins of BACKEND_PAIRS' torch rows."""
    return [
        Case("ours 1.5s/0.2s onnxruntime", ONNX, planner(plan_of(1.5, 0.2)),
             "ChunkPlan defaults, CODEC_BACKEND=onnxruntime"),
        Case("orpheus onnxruntime", ONNX, orpheus_steps,
             "4-frame window, emit [2048:4096], CODEC_BACKEND=onnxruntime"),
    ]


def load_codecs(device: str, *, onnx_cache_dir: Path | None = None, threads: int = 1
                ) -> dict[str, Any]:
    """The torch builds, and the onnxruntime one when a cache directory is given (CPU only)."""
    import torch
    from snac import SNAC  # type: ignore[import-untyped]

    from app.codec.snac import SNAC_24KHZ_CONFIG, SnacCodec

    fp32 = SnacCodec.load("random", device=device)
    bf16 = SnacCodec.load("random", device=device, dtype="bfloat16")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the seed SnacCodec.load uses: the same weights, unfolded
        model = SNAC(**SNAC_24KHZ_CONFIG)
    unfolded = SnacCodec(model.to(device).eval(), fp32.info)
    codecs = {"fp32": fp32, "bf16": bf16, "fp32_unfolded": unfolded}
    if onnx_cache_dir is not None:
        from app.codec.onnx_backend import with_onnxruntime

        onnx = with_onnxruntime(fp32, cache_dir=onnx_cache_dir, threads=threads)
        if onnx.backend == ONNX:
            codecs[ONNX] = onnx
        else:
            print("onnxruntime decoder not available (see the warning above): no backend rows",
                  file=sys.stderr)
    for codec in codecs.values():
        codec.set_noise(False)
    return codecs


def window_lengths(case: Case, frames: np.ndarray) -> list[int]:
    """Every window length a case will decode, found with a zero-cost fake decoder."""
    seen: set[int] = set()

    def fake(window: np.ndarray) -> np.ndarray:
        seen.add(window.shape[0])
        return np.zeros(window.shape[0] * SAMPLES_PER_FRAME, np.float32)

    finish(StreamRun(case.name), case.steps, frames, fake)
    return sorted(seen)


def run_side_by_side(cases: list[Case], codecs: dict[str, Any], frames: np.ndarray
                     ) -> list[tuple[StreamRun, TimedDecode]]:
    """Advance every case one arriving frame at a time, rotating which goes first."""
    for case in cases:
        codecs[case.codec].warm_up(window_lengths(case, frames))
    runs = [(StreamRun(case.name), TimedDecode(codecs[case.codec])) for case in cases]
    stepping = [case.steps(run, frames, timed) for case, (run, timed) in zip(cases, runs)]
    for arrival in range(frames.shape[0]):
        for i in range(len(stepping)):
            next(stepping[(arrival + i) % len(stepping)])
    return runs


def score(case: Case, run: StreamRun, timed: TimedDecode, offline: dict[str, np.ndarray]
          ) -> dict[str, Any]:
    fid = fidelity(run, offline["fp32"])
    emitted_s = run.emitted_samples / SAMPLE_RATE
    cpu_s, wall_s = sum(timed.cpu_s), sum(timed.wall_s)
    first = run.first_audio_calls or 0
    first_wall_s = sum(timed.wall_s[:first])
    first_frames = run.first_audio_frames or 0
    result = {
        "method": case.name, "codec": case.codec, "notes": case.notes,
        "decode_calls": run.decode_calls,
        "decoded_s": run.decoded_samples / SAMPLE_RATE,
        "emitted_s": emitted_s,
        "covered_samples": list(fid.covered),
        "redundancy": run.redundancy,
        "decode_cpu_s": cpu_s, "decode_wall_s": wall_s,
        "audio_s_per_cpu_s": emitted_s / cpu_s if cpu_s else math.inf,
        "audio_s_per_wall_s": emitted_s / wall_s if wall_s else math.inf,
        "snr_db": fid.snr_db, "seam_snr_db": fid.seam_snr_db,
        "worst_seam_snr_db": fid.worst_seam_snr_db, "seams": len(run.seams),
        "first_audio_frames": first_frames,
        "first_audio_decode_calls": first,
        "first_audio_decode_wall_ms": 1000 * first_wall_s,
        "first_audio_decode_cpu_ms": 1000 * sum(timed.cpu_s[:first]),
        # With an engine emitting frames exactly in real time, from its first token:
        "first_audio_at_1x_engine_ms": 1000 * (first_frames * SAMPLES_PER_FRAME / SAMPLE_RATE
                                               + first_wall_s),
    }
    if case.codec == "bf16":
        own = fidelity(run, offline["bf16"])
        result["snr_vs_bf16_offline_db"] = own.snr_db
        result["seam_snr_vs_bf16_offline_db"] = own.seam_snr_db
    return result


def offline_decodes(codecs: dict[str, Any], frames: np.ndarray) -> tuple[dict, dict]:
    audio, timing = {}, {}
    for key in [k for k in ("fp32", "bf16", ONNX) if k in codecs]:
        codecs[key].warm_up([frames.shape[0]])
        timed = TimedDecode(codecs[key])
        audio[key] = timed(frames)
        timing[key] = {"cpu_s": timed.cpu_s[0], "wall_s": timed.wall_s[0]}
    return audio, timing


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    def ratio(a: str, b: str, key: str) -> float:
        return rows[a][key] / rows[b][key]

    ours = "ours 1.5s/0.2s"
    pairs = {
        "ours / orpheus": (ours, "orpheus"),
        "ours / scicom": (ours, "scicom 1.5s"),
        "ours 0.5s / orpheus": ("ours 0.5s/0.1s", "orpheus"),
        "ours 0.5s / scicom": ("ours 0.5s/0.1s", "scicom 1.5s"),
        "ours adaptive@83 / orpheus": (ADAPTIVE_ROW, "orpheus"),
        "ours adaptive@83 / scicom": (ADAPTIVE_ROW, "scicom 1.5s"),
        "ours / orpheus on stock SNAC": (ours, "orpheus unfolded"),
        "folded / unfolded (ours)": (ours, "ours 1.5s/0.2s unfolded"),
        "folded / unfolded (orpheus)": ("orpheus", "orpheus unfolded"),
        "bf16 / fp32": ("ours 1.5s/0.2s bf16", ours),
    }
    pairs.update({f"onnxruntime / torch ({torch_row})": (onnx_row, torch_row)
                  for onnx_row, torch_row in BACKEND_PAIRS.items() if onnx_row in rows})
    return {name: {"audio_per_cpu": ratio(a, b, "audio_s_per_cpu_s"),
                   "audio_per_wall": ratio(a, b, "audio_s_per_wall_s"),
                   "redundancy": ratio(b, a, "redundancy")}
            for name, (a, b) in pairs.items()}


def targets(rows: dict[str, dict[str, Any]], ratio: dict[str, dict[str, float]]
            ) -> dict[str, dict[str, Any]]:
    snr = rows["ours 1.5s/0.2s"]["seam_snr_db"]
    vs_orpheus = ratio["ours / orpheus"]["audio_per_cpu"]
    vs_scicom = ratio["ours / scicom"]["audio_per_cpu"]
    return {
        "efficiency >= 3x orpheus": {"value": vs_orpheus, "met": vs_orpheus >= TARGET_VS_ORPHEUS},
        "efficiency >= 2x scicom": {"value": vs_scicom, "met": vs_scicom >= TARGET_VS_SCICOM},
        "seam SNR >= 40 dB": {"value": snr, "met": snr >= SNR_TARGET_DB},
    }


def backend_summary(rows: dict[str, dict[str, Any]], runs: dict[str, StreamRun],
                    codecs: dict[str, Any], offline: dict[str, np.ndarray],
                    offline_timing: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """torch vs onnxruntime: CPU-s per audio-second per streaming method, SNR of each
    onnxruntime output against its torch twin's (same method), and the export."""
    if ONNX not in codecs:
        return None
    onnx = codecs[ONNX]
    audio_s = offline["fp32"].shape[0] / SAMPLE_RATE
    methods = {"offline": {"torch_cpu_s_per_audio_s": offline_timing["fp32"]["cpu_s"] / audio_s,
                           "onnx_cpu_s_per_audio_s": offline_timing[ONNX]["cpu_s"] / audio_s,
                           "onnx_vs_torch_snr_db": snr_db(offline["fp32"], offline[ONNX])}}
    for onnx_row, torch_row in BACKEND_PAIRS.items():
        (torch_start, torch_audio), (onnx_start, onnx_audio) = (
            runs[torch_row].signal(), runs[onnx_row].signal())
        assert torch_start == onnx_start, "twins emit the same samples"
        methods[torch_row] = {"torch_cpu_s_per_audio_s": 1 / rows[torch_row]["audio_s_per_cpu_s"],
                              "onnx_cpu_s_per_audio_s": 1 / rows[onnx_row]["audio_s_per_cpu_s"],
                              "onnx_vs_torch_snr_db": snr_db(torch_audio, onnx_audio)}
    for m in methods.values():
        m["onnx_over_torch_cpu"] = m["onnx_cpu_s_per_audio_s"] / m["torch_cpu_s_per_audio_s"]
    return {"graph": onnx.graph_path.name, "cache_hit": onnx.cache_hit,
            "export_s": onnx.export_s, "check_snr_db": onnx.snr_db, "methods": methods}


def print_backends(backends: dict[str, Any]) -> None:
    source = ("from the cache" if backends["cache_hit"]
              else f"exported in {backends['export_s']:.1f} s")
    print(f"\nCodec backends (CODEC_BACKEND), same weights, same run; SNR of the onnxruntime "
          f"output vs torch's by the same method. onnxruntime graph {source}, start-up check "
          f"{backends['check_snr_db']:.1f} dB.")
    print(format_table(
        ["method", "torch cpu-s/audio-s", "onnx cpu-s/audio-s", "onnx/torch", "SNR vs torch dB"],
        [[name, m["torch_cpu_s_per_audio_s"], m["onnx_cpu_s_per_audio_s"],
          m["onnx_over_torch_cpu"], m["onnx_vs_torch_snr_db"]]
         for name, m in backends["methods"].items()]))


def print_report(rows: list[dict[str, Any]], ratio: dict, goals: dict, offline: dict,
                 frames: int) -> None:
    print(f"\nCodec efficiency: {frames} frames = {frames * SAMPLES_PER_FRAME / SAMPLE_RATE:.1f} s"
          f" of audio, frames arriving one at a time; SNR vs one offline fp32 decode"
          f" (seam SNR: +-{SEAM_RADIUS_SAMPLES} samples around each seam).")
    headers = ["method", "calls", "redund", "cpu s", "wall s", "audio/cpu", "audio/wall",
               "SNR dB", "seam dB", "worst dB", "1st frames", "1st dec ms", "1st@1x ms"]
    print(format_table(headers, [[
        r["method"], r["decode_calls"], r["redundancy"], r["decode_cpu_s"], r["decode_wall_s"],
        r["audio_s_per_cpu_s"], r["audio_s_per_wall_s"], r["snr_db"], r["seam_snr_db"],
        r["worst_seam_snr_db"], r["first_audio_frames"], r["first_audio_decode_wall_ms"],
        r["first_audio_at_1x_engine_ms"]] for r in rows]))
    for r in rows:
        if "snr_vs_bf16_offline_db" in r:
            print(f"{r['method']}: SNR vs its own bf16 offline decode "
                  f"{r['snr_vs_bf16_offline_db']:.1f} dB (seams "
                  f"{r['seam_snr_vs_bf16_offline_db']:.1f} dB): the rest is bf16 itself")
    print("offline decode: " + ", ".join(f"{key} {t['cpu_s']:.2f} cpu s"
                                         for key, t in offline.items()))
    print()
    print(format_table(["ratio", "audio/cpu", "audio/wall", "less redundancy"],
                       [[name, v["audio_per_cpu"], v["audio_per_wall"], v["redundancy"]]
                        for name, v in ratio.items()]))
    print()
    for name, goal in goals.items():
        print(f"target {name}: {goal['value']:.2f} -> {'MET' if goal['met'] else 'NOT MET'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="audio length of the code sequence (default 20 s = 235 frames)")
    parser.add_argument("--frames", type=int, default=None, help="frames (overrides --seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="codec device; CPU time is only meaningful on cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1, see the module docstring)")
    parser.add_argument("--no-onnxruntime", action="store_true",
                        help="leave out the onnxruntime backend rows")
    parser.add_argument("--codec-cache-dir", default=None,
                        help="CODEC_CACHE_DIR for the onnxruntime rows (default: a temporary "
                        "directory, so the export is timed)")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    frames_n = args.frames or math.ceil(args.seconds * SAMPLE_RATE / SAMPLES_PER_FRAME)
    if frames_n < 8:
        print("need at least 8 frames", file=sys.stderr)
        return 2
    info = machine_info()
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                device=args.device)
    if not args.no_onnxruntime:
        import onnxruntime  # type: ignore[import-untyped]

        info.update(onnxruntime=onnxruntime.__version__)
    frames = np.random.default_rng(args.seed).integers(0, SNAC_24KHZ.codebook_size, (frames_n, SNAC_24KHZ.codes_per_frame))  # (T, 7)
    print(f"loading codecs on {args.device} (load average {info['load_average_at_start']})",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-codec-cache-") as scratch:
        cache_dir = None if args.no_onnxruntime else Path(args.codec_cache_dir or scratch)
        codecs = load_codecs(args.device, onnx_cache_dir=cache_dir, threads=args.threads)
    offline, offline_timing = offline_decodes(codecs, frames)
    cases = build_cases() + (backend_cases() if ONNX in codecs else [])
    print(f"streaming {frames_n} frames through {len(cases)} rows side by side ...",
          file=sys.stderr)
    load_before = load_average()
    runs = run_side_by_side(cases, codecs, frames)
    load_after = load_average()
    rows = [score(case, run, timed, offline) for case, (run, timed) in zip(cases, runs)]
    by_name = {r["method"]: r for r in rows}
    ratio = ratios(by_name)
    goals = targets(by_name, ratio)
    backends = backend_summary(by_name, {run.method: run for run, _ in runs}, codecs, offline,
                               offline_timing)
    print_report(rows, ratio, goals, offline_timing, frames_n)
    if backends is not None:
        print_backends(backends)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s; load average now {load_average()}")
    if args.json:
        write_json(args.json, {
            "benchmark": "codec", "machine": info, "frames": frames_n, "seed": args.seed,
            "plans": {"ours": plan_of(1.5, 0.2).__dict__,
                      "ours 0.5s": plan_of(0.5, 0.1).__dict__},
            "seam_radius_samples": SEAM_RADIUS_SAMPLES,
            "offline_decode": offline_timing, "load_average_rows": [load_before, load_after],
            "rows": rows, "ratios": ratio, "targets": goals, "backends": backends,
            "elapsed_s": elapsed, "load_average_at_end": load_average(),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
