"""One concurrency level of the proxy benchmark, measured from outside the proxy.

The client side of bench.proxy: streamed requests recorded as stress_test RequestRecords on
`time.monotonic()` (the clock the paced engine logs with, shared by all processes), the
engine's per-request send log, the proxy's /metrics and /proc, and an outside probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from app.codec.info import SNAC_24KHZ
from app.streaming import ChunkPlan
from bench.common import load_average
from bench.paced_engine import HOLD_MARKER
from bench.playback import (
    TOKENS_PER_FRAME,
    find_stalls,
    first_chunk_frames_needed,
    plan_only_chunks,
    prebuffer_needed_s,
)
from bench.processes import Probe, Server, cpu_seconds, memory_kib
from stress_test.report import Distribution, RequestRecord

SAMPLE_RATE = SNAC_24KHZ.sample_rate  # the demo stack this bench drives is SNAC's
SAMPLES_PER_FRAME = SNAC_24KHZ.samples_per_frame
PROXY_PLAN = ChunkPlan.from_seconds(playback_speed_s=1.5, overlap_s=0.2, first_chunk_frames=3,
                                    min_context_frames=1, sample_rate=SNAC_24KHZ.sample_rate,
                                    samples_per_frame=SAMPLES_PER_FRAME)  # the proxy's defaults
SPEECH_PATH = "/v1/audio/speech"
TEXT = ("The quick brown fox jumps over the lazy dog while the benchmark keeps on talking "
        "about nothing in particular, sentence after sentence. ")


@dataclass(frozen=True)
class LevelConfig:
    frames: int  # audio frames per request
    tokens_per_s: float  # the paced engine's rate per stream
    tokens_per_event: int
    probe_path: str
    probe_interval_s: float
    timeout_s: float  # per request


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


def dist_ms(values: Sequence[float]) -> dict[str, float] | None:
    d = Distribution.of([1000 * v for v in values])
    return None if d is None else {"p50": d.p50, "p99": d.p99, "max": d.max, "mean": d.mean}


def codec_metrics(text: str) -> dict[str, float]:
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


async def run_level(n: int, proxy: Server, engine: Server, args: LevelConfig,
                    baseline: PlanBaseline, idle_rtt_s: float) -> Level:
    """N streams at once, with the probe running; per-stream and aggregate results."""
    level = Level(n)
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as control:
        await control.delete("/debug/requests")
        metrics_before = codec_metrics((await control.get(proxy.url + "/metrics")).text)
    load_before = load_average()
    cpu_proxy, cpu_engine = cpu_seconds(proxy.pid), cpu_seconds(engine.pid)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    timeout = httpx.Timeout(args.timeout_s, connect=30)
    origin = time.monotonic()
    with Probe("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), args.probe_path, proxy.pid,
               interval_s=args.probe_interval_s) as probe:
        async with httpx.AsyncClient(base_url=proxy.url, limits=limits, timeout=timeout) as client:
            streams = await asyncio.gather(*(
                stream_one(client, i, f"bench-n{n}-{i}", args.frames, origin, args.timeout_s)
                for i in range(n)))
    wall_s = time.monotonic() - origin
    cpu_proxy = cpu_seconds(proxy.pid) - cpu_proxy
    cpu_engine = cpu_seconds(engine.pid) - cpu_engine
    async with httpx.AsyncClient(timeout=30) as control:
        logs = (await control.get(engine.url + "/debug/requests")).json()["requests"]
        metrics_after = codec_metrics((await control.get(proxy.url + "/metrics")).text)
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
        "prebuffer_needed_s": dist_ms([p["prebuffer_needed_s"] for p in ok]),
        "excess_prebuffer_s_max": max((p["prebuffer_needed_s"] - baseline.prebuffer_s
                                       for p in ok), default=None),
        "ttfa_ms": dist_ms([p["ttfa_s"] for p in ok]),
        "proxy_added_first_audio_ms": dist_ms([p["proxy_added_first_audio_s"] for p in ok
                                                if p["proxy_added_first_audio_s"] is not None]),
        "engine_lateness_ms_max": 1000 * max((p["engine_lateness_s"] or 0.0
                                              for p in level.per_stream), default=0.0),
        "probe": {"path": args.probe_path, "count": len(rtts), "errors": probe.errors,
                  "rtt_ms": dist_ms(rtts),
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
            before = codec_metrics((await client.get("/metrics")).text)
            async with client.stream("POST", SPEECH_PATH, json=payload,
                                     headers={"X-Request-Id": request_id}) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"single-stream probe answered {response.status_code}")
                async for _ in response.aiter_raw():
                    first_byte = time.monotonic()
                    break
                after = codec_metrics((await client.get("/metrics")).text)
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
    return {"repeats": repeats, "first_window_decode_ms": dist_ms(decode),
            "proxy_added_first_audio_ms": dist_ms(added),
            "added_minus_decode_ms": dist_ms(overhead)}


def idle_probe_rtt_s(proxy: Server, path: str, seconds: float = 2.0) -> float:
    with Probe("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), path, proxy.pid) as probe:
        time.sleep(seconds)
    return float(np.median(probe.rtts_s)) if probe.rtts_s else 0.0
