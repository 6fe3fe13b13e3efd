"""`python -m bench.proxy`: how many real-time streams the real proxy sustains.

A paced scripted engine (bench.paced_engine: demo-layout audio tokens at a fixed rate per
stream, 83 tok/s by default, about SNAC real time) and the real proxy (`python -m app`,
SNAC with random weights, noise on as in production, DYNAMIC_BATCHING on) each run in their
own process on loopback. For each N, N streamed pcm requests of ~10 s of audio run at once:

- underruns: stress_test.report.find_stalls (a listener who starts at the first byte hears a
  stall whenever a chunk arrives after the audio delivered so far has played out), and the
  pre-buffer that listener would have needed. The same is computed for the chunk plan alone
  (instant codec, engine exactly on pace): that many stalls are the plan's, not the proxy's.
- first-audio latency: request sent -> first audio byte.
- proxy-added first-audio latency: the engine logs when it sent each token; from the send of
  the token completing the frames the first chunk needs, to the first audio byte. Measured
  per level, and on single streams sent one at a time next to the codec time of their first
  window (the engine holds those streams open after the first chunk's frames, so the proxy
  decodes that window and nothing else).
- event-loop lag: the proxy has no built-in probe, so it is measured from outside: a thread
  times a cheap GET (default /v1/audio/speaker, which touches neither engine nor codec; the
  proxy's /health also calls the engine) every 20 ms. Round trip minus the idle round trip
  is the lag.
- proxy RSS (/proc VmRSS, sampled) and CPU time (/proc stat) per level.

"Real-time streams sustained" is the largest N (with every smaller N) at zero underruns.
Because the plan alone underruns at a 1x engine, the largest N whose streams needed no more
pre-buffer than the plan alone (+0.1 s) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.capacity import (
    PROXY_PLAN,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    Level,
    LevelConfig,
    PlanBaseline,
    idle_probe_rtt_s,
    plan_baseline,
    run_level,
    single_stream_first_chunk,
)
from bench.common import format_table, free_port, load_average, machine_info, write_json
from bench.processes import Server, memory_kib, start_server

KEEP_PACE_SLACK_S = 0.1
LAG_TARGET_S = 0.010
RSS_TARGET_BYTES = 1 << 30
REALTIME_TARGET = 8
PROXY_ADDED_SLACK_S = 0.005


def summarize(levels: list[Level], baseline: PlanBaseline, single: dict[str, Any]
              ) -> dict[str, Any]:
    by_n = {lv.streams: lv.result for lv in levels}

    def largest(ok: Any) -> int:
        best = 0
        for n in sorted(by_n):
            if not ok(by_n[n]):
                break
            best = n
        return best

    strict = largest(lambda r: r["failed"] == 0 and r["underruns"] == 0)
    paced = largest(lambda r: r["failed"] == 0 and r["excess_prebuffer_s_max"] is not None
                    and r["excess_prebuffer_s_max"] <= KEEP_PACE_SLACK_S)
    goals: dict[str, Any] = {"real-time streams >= 8 (zero underruns)":
                             {"value": strict, "met": strict >= REALTIME_TARGET}}
    if single["added_minus_decode_ms"]:
        added = single["proxy_added_first_audio_ms"]["p50"]
        decode = single["first_window_decode_ms"]["p50"]
        over = single["added_minus_decode_ms"]["p50"]
        goals["proxy-added first audio <= first-chunk decode + 5 ms"] = {
            "value": added, "limit": decode + 1000 * PROXY_ADDED_SLACK_S,
            "added_minus_decode_ms_p50": over, "met": over <= 1000 * PROXY_ADDED_SLACK_S,
            "measured": f"medians of {single['repeats']} single streams"}
    if 16 in by_n and by_n[16]["probe"]["lag_p99_ms"] is not None:
        lag = by_n[16]["probe"]["lag_p99_ms"]
        goals["event-loop lag p99 < 10 ms at 16 streams"] = {"value": lag,
                                                             "met": lag < 1000 * LAG_TARGET_S}
    if 32 in by_n:
        rss = by_n[32]["proxy_rss_mib_max"]
        goals["RSS <= 1 GB at 32 streams"] = {"value": rss, "met": rss * 2**20 <= RSS_TARGET_BYTES}
    return {"real_time_streams_sustained": strict,
            "streams_keeping_pace_with_plan": paced, "targets": goals}


def print_report(levels: list[Level], summary: dict[str, Any], baseline: PlanBaseline,
                 single: dict[str, Any], idle_rtt_s: float, args: argparse.Namespace) -> None:
    seconds = args.frames * SAMPLES_PER_FRAME / SAMPLE_RATE
    print(f"\nProxy capacity: {args.frames} frames ({seconds:.1f} s) per stream, engine "
          f"{args.tokens_per_s:g} tok/s/stream, "
          f"{args.tokens_per_event} token(s)/event; pcm streamed.")
    print(f"plan alone (instant codec, engine on pace): {baseline.stalls} underruns, "
          f"{baseline.stall_s:.2f} s stalled, pre-buffer needed {baseline.prebuffer_s:.2f} s, "
          f"first audio {1000 * baseline.first_audio_s:.0f} ms ({baseline.first_chunk_frames} "
          f"frames); without adaptive chunking {baseline.plain_stalls} underruns, "
          f"{baseline.plain_stall_s:.2f} s.")
    nan = {"p50": math.nan, "max": math.nan}
    added = single["proxy_added_first_audio_ms"] or nan
    decode = single["first_window_decode_ms"] or nan
    over = single["added_minus_decode_ms"] or nan
    print(f"single streams, one at a time ({single['repeats']}): first-window decode p50 "
          f"{decode['p50']:.1f} ms, proxy-added first audio p50 {added['p50']:.1f} ms "
          f"(max {added['max']:.1f}), added minus decode p50 {over['p50']:.1f} ms "
          f"(max {over['max']:.1f}); idle probe RTT {1000 * idle_rtt_s:.2f} ms")

    def p(d: dict | None, key: str) -> float | None:
        return None if d is None else d[key]

    rows = []
    for lv in levels:
        r = lv.result
        rows.append([
            r["streams"], f"{r['ok']}/{r['streams']}", r["underrun_streams"], r["underruns"],
            r["stall_s_per_stream"], p(r["prebuffer_needed_s"], "max"),
            p(r["ttfa_ms"], "p50"), p(r["ttfa_ms"], "p99"),
            p(r["proxy_added_first_audio_ms"], "p50"), p(r["proxy_added_first_audio_ms"], "p99"),
            p(r["probe"]["rtt_ms"], "p50"), p(r["probe"]["rtt_ms"], "p99"),
            r["probe"]["lag_p99_ms"], r["proxy_cpu_s"] / r["wall_s"] * 100,
            r["proxy_rss_mib_max"], r["codec"].get("max_batch_so_far"), r["wall_s"],
            f"{r['load_average'][1][0]:.1f}"])
    print(format_table(
        ["N", "ok", "stalled", "underruns", "stall s/str", "prebuf max ms", "TTFA p50", "TTFA p99",
         "added p50", "added p99", "rtt p50", "rtt p99", "lag p99", "proxy cpu%", "RSS MiB",
         "max batch", "wall s", "load"], rows))
    print(f"\nreal-time streams sustained (zero underruns): "
          f"{summary['real_time_streams_sustained']}")
    print(f"streams keeping pace with the plan (pre-buffer within {KEEP_PACE_SLACK_S:g} s of the "
          f"plan-alone {baseline.prebuffer_s:.2f} s): {summary['streams_keeping_pace_with_plan']}")
    for name, goal in summary["targets"].items():
        value = goal["value"]
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        extra = (f" (limit {goal['limit']:.1f}; added minus decode "
                 f"{goal['added_minus_decode_ms_p50']:.1f} ms; {goal['measured']})"
                 if "limit" in goal else "")
        print(f"target {name}: {text}{extra} -> {'MET' if goal['met'] else 'NOT MET'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1,4,8,12,16,32",
                        help="comma-separated concurrency levels, run in this order")
    parser.add_argument("--audio-seconds", type=float, default=10.0)
    parser.add_argument("--tokens-per-s", type=float, default=83.0)
    parser.add_argument("--tokens-per-event", type=int, default=1)
    parser.add_argument("--probe-path", default="/v1/audio/speaker")
    parser.add_argument("--probe-interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per request")
    parser.add_argument("--proxy-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the proxy (e.g. OMP_NUM_THREADS=1)")
    parser.add_argument("--json", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    levels_n = [int(x) for x in args.streams.split(",") if x.strip()]
    args.frames = math.ceil(args.audio_seconds * SAMPLE_RATE / SAMPLES_PER_FRAME)
    config = LevelConfig(args.frames, args.tokens_per_s, args.tokens_per_event,
                         args.probe_path, args.probe_interval_ms / 1000, args.timeout_s)
    info = machine_info()
    started = time.perf_counter()
    baseline = plan_baseline(args.frames, args.tokens_per_s, args.tokens_per_event)
    engine_port, proxy_port = free_port(), free_port()
    proxy_env = {"TTS_API": f"http://127.0.0.1:{engine_port}", "SNAC_MODEL": "random",
                 "HOST": "127.0.0.1", "PORT": str(proxy_port), "DYNAMIC_BATCHING": "true",
                 "CODEC_DEVICE": "cpu", "MODEL_PROFILE": "demo", "LOG_LEVEL": "warning",
                 "MODEL_NAME": "TTS-model", "SENTRY_DSN": " "}
    proxy_env.update(kv.split("=", 1) for kv in args.proxy_env)
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        workdir = Path(tmp)
        proxy_env["DATA_DIR"] = str(workdir / "data")
        engine = start_server("engine", [
            "-m", "bench.paced_engine", "--port", str(engine_port),
            "--tokens-per-s", str(args.tokens_per_s), "--tokens-per-event",
            str(args.tokens_per_event), "--frames", str(args.frames)], {}, engine_port, workdir)
        proxy: Server | None = None
        try:
            engine.wait_healthy("/health", 60)
            proxy = start_server("proxy", ["-m", "app"], proxy_env, proxy_port, workdir)
            ready_s = proxy.wait_healthy("/health", 300)
            print(f"proxy ready after {ready_s:.1f} s (pid {proxy.pid}, "
                  f"RSS {memory_kib(proxy.pid)['VmRSS'] / 1024:.0f} MiB)", file=sys.stderr)
            idle_rtt_s = idle_probe_rtt_s(proxy, args.probe_path)
            single = asyncio.run(single_stream_first_chunk(proxy, engine,
                                                           baseline.first_chunk_frames))
            for n in levels_n:
                print(f"N={n} ... (load {load_average()})", file=sys.stderr)
                levels.append(asyncio.run(run_level(n, proxy, engine, config, baseline,
                                                    idle_rtt_s)))
                time.sleep(1.0)
        finally:
            if proxy is not None:
                proxy.stop()
            engine.stop()
    summary = summarize(levels, baseline, single)
    print_report(levels, summary, baseline, single, idle_rtt_s, args)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s; load average now {load_average()}")
    if args.json:
        write_json(args.json, {
            "benchmark": "proxy", "machine": info, "config": {
                k: v for k, v in vars(args).items() if k != "json"},
            "proxy_env": proxy_env, "plan": PROXY_PLAN.__dict__,
            "plan_alone": baseline.__dict__, "single_stream": single,
            "idle_probe_rtt_s": idle_rtt_s, "summary": summary,
            "levels": [lv.result for lv in levels],
            "streams": {lv.streams: lv.per_stream for lv in levels},
            "elapsed_s": elapsed, "load_average_at_end": load_average(),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
