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
  the token completing the frames the first chunk needs, to the first audio byte.
- event-loop lag: the proxy has no built-in probe, so it is measured from outside: a thread
  times a cheap GET (default /v1/audio/speaker, which touches neither engine nor codec; the
  proxy's /health also calls the engine) every 20 ms. Round trip minus the idle round trip
  is the lag.
- proxy RSS (/proc VmRSS, sampled) and CPU time (/proc stat) per level.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.streaming import ChunkPlan
from bench.common import format_table, free_port, load_average, machine_info, write_json
from bench.paced_engine import HOLD_MARKER
from bench.playback import (
    TOKENS_PER_FRAME,
    find_stalls,
    first_chunk_frames_needed,
    plan_only_chunks,
    prebuffer_needed_s,
)
from bench.processes import Probe, Server, cpu_seconds, memory_kib, start_server
from stress_test.report import Distribution, RequestRecord

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 2048
PROXY_PLAN = ChunkPlan.from_seconds(playback_speed_s=1.5, overlap_s=0.2, first_chunk_frames=3,
                                    min_context_frames=1)  # the proxy's defaults
SPEECH_PATH = "/v1/audio/speech"
TEXT = ("The quick brown fox jumps over the lazy dog while the benchmark keeps on talking "
        "about nothing in particular, sentence after sentence. ")
KEEP_PACE_SLACK_S = 0.1
LAG_TARGET_S = 0.010
RSS_TARGET_BYTES = 1 << 30
REALTIME_TARGET = 8
PROXY_ADDED_SLACK_S = 0.005


@dataclass
class Stream:
    """One benchmark request: the stress_test record plus the absolute clock origin."""

    record: RequestRecord
    request_id: str
    origin: float  # monotonic time that record times are relative to

    def first_byte_at(self) -> float | None:
        return self.origin + self.record.chunks[0][0] if self.record.chunks else None


async def stream_one(client: httpx.AsyncClient, index: int, request_id: str, frames: int,
                     origin: float, timeout_s: float) -> Stream:
    text = (TEXT * (frames // len(TEXT) + 2))[:frames + 20]  # demo profile: 1 frame per char
    payload = {"input": text, "voice": "husein", "model": "TTS-model", "response_format": "pcm",
               "stream": True, "max_tokens": frames * TOKENS_PER_FRAME + 8}
    start = time.monotonic() - origin
    record = RequestRecord(index=index, text=text, stream=True, response_format="pcm",
                           start_s=start, end_s=start, sent_s=start)
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", SPEECH_PATH, json=payload,
                                     headers={"X-Request-Id": request_id}) as response:
                record.status = response.status_code
                if response.status_code != 200:
                    record.error = f"http_{response.status_code}"
                    record.error_detail = (await response.aread())[:300].decode(errors="replace")
                else:
                    async for data in response.aiter_raw():
                        record.chunks.append((time.monotonic() - origin, len(data)))
    except TimeoutError:
        record.error = "timeout"
    except httpx.HTTPError as exc:
        record.error, record.error_detail = "transport_error", repr(exc)
    record.end_s = time.monotonic() - origin
    if record.ok and not record.chunks:
        record.error = "invalid_body"
    return Stream(record, request_id, origin)


def token_sent_at(events: Sequence[Sequence[float]], tokens: int) -> float | None:
    """When the engine sent the event that brought the count of sent tokens to `tokens`."""
    for sent, at in events:
        if sent >= tokens:
            return float(at)
    return None


def engine_lateness_s(log: dict[str, Any], tokens_per_s: float, tokens_per_event: int,
                      first_delay_s: float) -> float:
    """Latest any event of a request left the engine after its due time."""
    worst, start = 0.0, log["received_s"] + first_delay_s
    for i, (_, at) in enumerate(log["events"]):
        worst = max(worst, at - (start + i * tokens_per_event / tokens_per_s))
    return worst


@dataclass
class PlanBaseline:
    """Underruns of the chunk plan alone: instant codec, engine exactly on pace."""

    stalls: int
    stall_s: float
    prebuffer_s: float
    first_chunk_frames: int
    first_audio_s: float
    plain_stalls: int  # the same without adaptive chunking (plain growing chunks)
    plain_stall_s: float


def plan_baseline(frames: int, tokens_per_s: float, tokens_per_event: int) -> PlanBaseline:
    chunks = plan_only_chunks(PROXY_PLAN, frames, tokens_per_s, tokens_per_event)
    plain = find_stalls(plan_only_chunks(PROXY_PLAN, frames, tokens_per_s, tokens_per_event,
                                         adaptive=False))
    stalls = find_stalls(chunks)
    return PlanBaseline(len(stalls), float(sum(stalls)), prebuffer_needed_s(chunks),
                        first_chunk_frames_needed(PROXY_PLAN, frames), chunks[0][0],
                        len(plain), float(sum(plain)))


def _dist_ms(values: Sequence[float]) -> dict[str, float] | None:
    d = Distribution.of([1000 * v for v in values])
    return None if d is None else {"p50": d.p50, "p99": d.p99, "max": d.max, "mean": d.mean}


def _metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("tts_codec_"):
            name, _, value = line.partition(" ")
            values[name] = float(value)
    return values


@dataclass
class Level:
    streams: int
    result: dict[str, Any] = field(default_factory=dict)
    per_stream: list[dict[str, Any]] = field(default_factory=list)


async def run_level(n: int, proxy: Server, engine: Server, args: argparse.Namespace,
                    baseline: PlanBaseline, idle_rtt_s: float) -> Level:
    level = Level(n)
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as control:
        await control.delete("/debug/requests")
        metrics_before = _metrics((await control.get(proxy.url + "/metrics")).text)
    load_before = load_average()
    cpu_proxy, cpu_engine = cpu_seconds(proxy.pid), cpu_seconds(engine.pid)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    timeout = httpx.Timeout(args.timeout_s, connect=30)
    origin = time.monotonic()
    with Probe("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), args.probe_path, proxy.pid,
               interval_s=args.probe_interval_ms / 1000) as probe:
        async with httpx.AsyncClient(base_url=proxy.url, limits=limits, timeout=timeout) as client:
            streams = await asyncio.gather(*(
                stream_one(client, i, f"bench-n{n}-{i}", args.frames, origin, args.timeout_s)
                for i in range(n)))
    wall_s = time.monotonic() - origin
    cpu_proxy = cpu_seconds(proxy.pid) - cpu_proxy
    cpu_engine = cpu_seconds(engine.pid) - cpu_engine
    async with httpx.AsyncClient(timeout=30) as control:
        logs = (await control.get(engine.url + "/debug/requests")).json()["requests"]
        metrics_after = _metrics((await control.get(proxy.url + "/metrics")).text)
    memory = memory_kib(proxy.pid)

    needed_tokens = baseline.first_chunk_frames * TOKENS_PER_FRAME
    for s in streams:
        r, log = s.record, logs.get(s.request_id)
        stalls = find_stalls(r.chunks) if r.ok else []
        sent = token_sent_at(log["events"], needed_tokens) if log else None
        first = s.first_byte_at()
        level.per_stream.append({
            "request_id": s.request_id, "ok": r.ok, "error": r.error,
            "error_detail": r.error_detail, "audio_s": r.audio_s, "ttfa_s": r.ttfa_s,
            "stalls": len(stalls), "stall_s": float(sum(stalls)),
            "prebuffer_needed_s": prebuffer_needed_s(r.chunks) if r.ok else None,
            "proxy_added_first_audio_s": (first - sent) if first and sent else None,
            "engine_lateness_s": engine_lateness_s(log, args.tokens_per_s,
                                                   args.tokens_per_event, 0.0) if log else None,
            "latency_s": r.latency_s,
        })
    ok = [p for p in level.per_stream if p["ok"]]
    rtts = probe.rtts_s
    level.result = {
        "streams": n, "ok": len(ok), "failed": n - len(ok), "wall_s": wall_s,
        "errors": sorted({p["error"] for p in level.per_stream if p["error"]}),
        "audio_s_per_stream": float(np.mean([p["audio_s"] for p in ok])) if ok else 0.0,
        "underrun_streams": sum(1 for p in ok if p["stalls"]),
        "underruns": sum(p["stalls"] for p in ok),
        "stall_s_per_stream": float(np.mean([p["stall_s"] for p in ok])) if ok else None,
        "prebuffer_needed_s": _dist_ms([p["prebuffer_needed_s"] for p in ok]),
        "excess_prebuffer_s_max": max((p["prebuffer_needed_s"] - baseline.prebuffer_s
                                       for p in ok), default=None),
        "ttfa_ms": _dist_ms([p["ttfa_s"] for p in ok]),
        "proxy_added_first_audio_ms": _dist_ms([p["proxy_added_first_audio_s"] for p in ok
                                                if p["proxy_added_first_audio_s"] is not None]),
        "engine_lateness_ms_max": 1000 * max((p["engine_lateness_s"] or 0.0
                                              for p in level.per_stream), default=0.0),
        "probe": {"path": args.probe_path, "count": len(rtts), "errors": probe.errors,
                  "rtt_ms": _dist_ms(rtts),
                  "lag_p99_ms": (1000 * (float(np.percentile(rtts, 99)) - idle_rtt_s)
                                 if rtts else None)},
        "proxy_rss_mib_max": max(probe.rss_kib, default=memory.get("VmRSS", 0)) / 1024,
        "proxy_rss_mib_end": memory.get("VmRSS", 0) / 1024,
        "proxy_rss_peak_mib": memory.get("VmHWM", 0) / 1024,
        "proxy_cpu_s": cpu_proxy, "engine_cpu_s": cpu_engine,
        "proxy_cpu_s_per_audio_s": (cpu_proxy / sum(p["audio_s"] for p in ok)) if ok else None,
        "codec": {k.removeprefix("tts_codec_"): metrics_after.get(k, 0) - metrics_before.get(k, 0)
                  for k in metrics_after if not k.endswith("max_batch")}
        | {"max_batch_so_far": metrics_after.get("tts_codec_max_batch")},
        "load_average": [load_before, load_average()],
    }
    return level


async def single_stream_first_chunk(proxy: Server, engine: Server, frames: int,
                                    repeats: int = 9) -> dict[str, Any]:
    """Proxy-added first-audio latency of streams sent one at a time, next to the codec time
    of their first window.

    Each request asks the engine (HOLD_OPEN) for exactly the `frames` frames the first chunk
    needs and then to go quiet, so the proxy decodes the first window and nothing else; the
    proxy's tts_codec_busy_seconds_total grows by that window's decode time. The stream is
    closed after its first audio bytes (the proxy aborts the engine request).
    """
    payload = {"input": f"{HOLD_MARKER} {TEXT}"[:frames + 20], "voice": "husein",
               "model": "TTS-model", "response_format": "pcm", "stream": True,
               "max_tokens": frames * TOKENS_PER_FRAME + 1}
    decode, added, overhead = [], [], []
    async with httpx.AsyncClient(base_url=proxy.url, timeout=120) as client:
        await client.delete(engine.url + "/debug/requests")
        for i in range(repeats + 1):  # the first one is a warm-up
            request_id = f"bench-first-{i}"
            before = _metrics((await client.get("/metrics")).text)
            async with client.stream("POST", SPEECH_PATH, json=payload,
                                     headers={"X-Request-Id": request_id}) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"single-stream probe answered {response.status_code}")
                async for _ in response.aiter_raw():
                    first_byte = time.monotonic()
                    break
                after = _metrics((await client.get("/metrics")).text)
            if not i:
                continue
            log = (await client.get(engine.url + "/debug/requests")).json()["requests"]
            sent = token_sent_at(log[request_id]["events"], frames * TOKENS_PER_FRAME)
            busy = after["tts_codec_busy_seconds_total"] - before["tts_codec_busy_seconds_total"]
            decode.append(busy)
            if sent is not None:
                added.append(first_byte - sent)
                overhead.append(first_byte - sent - busy)
            await asyncio.sleep(0.2)  # let the proxy finish aborting before the next one
    return {"repeats": repeats, "first_window_decode_ms": _dist_ms(decode),
            "proxy_added_first_audio_ms": _dist_ms(added),
            "added_minus_decode_ms": _dist_ms(overhead)}


def idle_probe_rtt_s(proxy: Server, path: str, seconds: float = 2.0) -> float:
    with Probe("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), path, proxy.pid) as probe:
        time.sleep(seconds)
    return float(np.median(probe.rtts_s)) if probe.rtts_s else 0.0


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
    print(f"\nProxy capacity: {args.frames} frames ({args.frames * SAMPLES_PER_FRAME / SAMPLE_RATE:.1f}"
          f" s) per stream, engine {args.tokens_per_s:g} tok/s/stream, "
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
                levels.append(asyncio.run(run_level(n, proxy, engine, args, baseline,
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
