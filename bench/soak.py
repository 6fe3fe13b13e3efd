"""Soak: many mixed requests against the real API and a real vLLM engine; does memory grow?

    .venv/bin/python -m bench.soak --requests 1000 --json soak.json

Starts the vLLM CPU engine on the generated demo model and the API (`python -m app`, random
SNAC weights) in processes of their own, unless `--url` points at a running API (then `--pid`
names its process for the RSS samples). Sends `--requests` requests, at most `--concurrency` at
once: every response format, short / multi-sentence / long texts, streamed and not, SSE, some
voice-conversion uploads, and some streams the client drops after the first bytes (expected,
not errors). Requests go in blocks of `--sample-every`; after each block, once the API is idle
(SETTLE_S, past the codec worker's idle trim), its resident memory is sampled: what it
retains, which a leak moves and in-flight work does not. Growth is measured from the first
sample after `--warmup` requests (allocator pools, codec buffers and caches fill during
warm-up) to the last one; RSS is also polled while busy and its peak reported. Target: under
10 % growth and no unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from bench.common import ROOT, format_table, free_port, load_average, machine_info, write_json
from bench.processes import Server, start_server

FORMATS = ("pcm", "wav", "mp3", "opus", "aac", "flac")
SETTLE_S = 2.0  # after a block: past the codec worker's idle trim (TRIM_INTERVAL_S, 1 s)
BUSY_POLL_S = 0.5
SHORT_TEXTS = ("Hello!", "Good morning, everyone.", "Terima kasih.", "Yes, that is right.",
               "Ye encik, apa yang saya boleh tolong?", "See you tomorrow at nine.")
MULTI_SENTENCE_TEXTS = (
    "Hello! How can I help you? Can I get your passport number, sir?",
    "Your appointment is confirmed. Please arrive ten minutes early. Bring your card.",
    "Selamat pagi. Sila duduk dahulu. Pegawai kami akan membantu anda sebentar lagi.",
)
LONG_TEXTS = (
    ("Thank you for calling customer support. All of our agents are currently busy assisting "
     "other customers, so please stay on the line and your call will be answered in the order "
     "it was received."),
    ("Please remember to bring your identity card and a copy of your latest utility bill when "
     "you visit the branch, and note that the counter closes at half past four on Fridays."),
)
TARGET_GROWTH_PCT = 10.0
Kind = Literal["speech", "vc"]
Outcome = Literal["ok", "disconnected", "error"]


@dataclass(frozen=True)
class RequestSpec:
    """One soak request. `disconnect_after_bytes`: the client closes the stream once it has
    read at least that many bytes (streamed requests only)."""

    index: int
    kind: Kind
    response_format: str
    text: str
    length: Literal["short", "multi", "long"]
    stream: bool
    sse: bool
    disconnect_after_bytes: int | None


@dataclass(frozen=True)
class RssSample:
    requests_done: int
    elapsed_s: float
    rss_kib: int
    errors_so_far: int
    load_1m: float


def build_mix(n: int, *, seed: int = 0, vc_share: float = 0.02, disconnect_share: float = 0.1,
              sse_share: float = 0.1, long_share: float = 0.1, multi_share: float = 0.25
              ) -> list[RequestSpec]:
    """`n` requests, the same list for the same arguments. Formats cycle so that every one
    gets n/6 of the requests; the rest is drawn from a seeded generator."""
    rng = random.Random(seed)
    specs: list[RequestSpec] = []
    for index in range(n):
        response_format = FORMATS[index % len(FORMATS)]
        draw = rng.random()
        if draw < long_share:
            length, text = "long", rng.choice(LONG_TEXTS)
        elif draw < long_share + multi_share:
            length, text = "multi", rng.choice(MULTI_SENTENCE_TEXTS)
        else:
            length, text = "short", rng.choice(SHORT_TEXTS)
        kind: Kind = "vc" if rng.random() < vc_share else "speech"
        stream = rng.random() < 0.5
        # SSE and client disconnects are speech-route, streamed behaviours.
        sse = kind == "speech" and stream and rng.random() < sse_share / 0.5
        disconnect = stream and not sse and rng.random() < disconnect_share / 0.5
        specs.append(RequestSpec(index, kind, response_format, text, length, stream, sse,
                                 rng.choice((1, 2048, 16384)) if disconnect else None))
    return specs


def rss_growth(samples: list[RssSample], warmup_requests: int) -> dict[str, Any]:
    """Growth of RSS from the first sample at or after `warmup_requests` to the last sample,
    in KiB and percent; also the peak after warm-up. `growth_pct` is None without two
    samples past warm-up."""
    after = [s for s in samples if s.requests_done >= warmup_requests]
    if len(after) < 2:
        return {"baseline_kib": after[0].rss_kib if after else None, "final_kib": None,
                "peak_kib": None, "growth_kib": None, "growth_pct": None,
                "within_target": None}
    baseline, final = after[0].rss_kib, after[-1].rss_kib
    growth_pct = 100.0 * (final - baseline) / baseline
    return {"baseline_kib": baseline, "final_kib": final,
            "peak_kib": max(s.rss_kib for s in after), "growth_kib": final - baseline,
            "growth_pct": growth_pct, "within_target": growth_pct < TARGET_GROWTH_PCT}


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {pid}") from None
    return int(psutil.Process(pid).memory_info().rss // 1024)


def reference_wav(seconds: float = 3.0, rate: int = 24000) -> bytes:
    """A 200 -> 2000 Hz sweep as 16-bit mono WAV (the voice-conversion reference)."""
    t = np.arange(round(seconds * rate)) / rate
    sweep = 0.3 * np.sin(2 * np.pi * (200 * t + 300 * t**2))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((sweep * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@dataclass
class Result:
    spec: RequestSpec
    outcome: Outcome
    status: int | None
    n_bytes: int
    seconds: float
    detail: str = ""


def _body_problem(spec: RequestSpec, body: bytes) -> str:
    """Why a complete 200 body is not what was asked for, or "" if it looks right."""
    if not body:
        return "empty body"
    if spec.sse:
        return "" if b"speech.audio.done" in body else "SSE stream without speech.audio.done"
    if spec.response_format == "wav" and body[:4] != b"RIFF":
        return "wav without RIFF header"
    if spec.response_format == "flac" and body[:4] != b"fLaC":
        return "flac without fLaC header"
    return ""


async def send(client: httpx.AsyncClient, spec: RequestSpec, reference: bytes,
               timeout_s: float) -> Result:
    started = time.monotonic()
    if spec.kind == "vc":
        request = client.build_request(
            "POST", "/v1/audio/vc",
            data={"reference_text": "A sweep for the soak test.", "generate_text": spec.text,
                  "response_format": spec.response_format, "stream": str(spec.stream).lower()},
            files={"reference_audio": ("reference.wav", reference, "audio/wav")})
    else:
        payload: dict[str, Any] = {"input": spec.text, "voice": "husein", "model": "TTS-model",
                                   "response_format": spec.response_format,
                                   "stream": spec.stream}
        if spec.sse:
            payload["stream_format"] = "sse"
        request = client.build_request("POST", "/v1/audio/speech", json=payload)
    received = 0
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    body = await response.aread()
                    return Result(spec, "error", response.status_code, len(body),
                                  time.monotonic() - started, body[:300].decode("replace"))
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    chunks.append(chunk)
                    if spec.disconnect_after_bytes and received >= spec.disconnect_after_bytes:
                        return Result(spec, "disconnected", 200, received,
                                      time.monotonic() - started)
            finally:
                await response.aclose()
    except (httpx.HTTPError, TimeoutError) as exc:
        return Result(spec, "error", None, received, time.monotonic() - started,
                      f"{type(exc).__name__}: {exc}"[:300])
    problem = _body_problem(spec, b"".join(chunks))
    return Result(spec, "error" if problem else "ok", 200, received,
                  time.monotonic() - started, problem)


async def run_soak(url: str, pid: int | None, specs: list[RequestSpec], *, concurrency: int,
                   sample_every: int, timeout_s: float, settle_s: float = SETTLE_S,
                   ) -> tuple[list[Result], list[RssSample], int | None]:
    """Send `specs` in blocks of `sample_every`, at most `concurrency` at once. After each
    block the API is idle: `settle_s` later its RSS is sampled (what it retains, the number a
    leak moves). Meanwhile RSS is also polled; the largest value is the busy peak (returned
    third, KiB; None without a pid)."""
    results: list[Result] = []
    samples: list[RssSample] = []
    errors = 0
    started = time.monotonic()
    reference = reference_wav()
    busy_peak = [0]
    done = asyncio.Event()

    def sample() -> None:
        if pid is not None:
            samples.append(RssSample(len(results), round(time.monotonic() - started, 1),
                                     rss_kib(pid), errors, load_average()[0]))

    async def poll_peak() -> None:
        while pid is not None and not done.is_set():
            busy_peak[0] = max(busy_peak[0], rss_kib(pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), BUSY_POLL_S)

    sample()
    limits = httpx.Limits(max_connections=concurrency * 2)
    poller = asyncio.ensure_future(poll_peak())
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def worker(queue: asyncio.Queue[RequestSpec]) -> None:
            nonlocal errors
            while not queue.empty():
                result = await send(client, queue.get_nowait(), reference, timeout_s)
                results.append(result)
                if result.outcome == "error":
                    errors += 1
                    print(f"error: request {result.spec.index} {result.spec.kind} "
                          f"{result.spec.response_format}: {result.status} {result.detail}",
                          file=sys.stderr)

        for first in range(0, len(specs), sample_every):
            queue: asyncio.Queue[RequestSpec] = asyncio.Queue()
            for spec in specs[first:first + sample_every]:
                queue.put_nowait(spec)
            await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
            await asyncio.sleep(settle_s)  # idle: the codec worker hands freed memory back
            sample()
            last = samples[-1] if samples else None
            print(f"{len(results)}/{len(specs)} done, {errors} errors"
                  + (f", idle RSS {last.rss_kib / 1024:.0f} MiB" if last else ""),
                  file=sys.stderr)
    done.set()
    await poller
    return results, samples, (busy_peak[0] or None) if pid is not None else None


def summarize(results: list[Result], samples: list[RssSample], warmup: int) -> dict[str, Any]:
    outcomes = Counter(r.outcome for r in results)
    seconds = sorted(r.seconds for r in results if r.outcome == "ok")
    by_kind = Counter(f"{r.spec.kind}/{r.spec.response_format}/"
                      f"{'sse' if r.spec.sse else 'stream' if r.spec.stream else 'whole'}"
                      for r in results)
    return {
        "requests": len(results), "ok": outcomes["ok"],
        "disconnected": outcomes["disconnected"], "unexpected_errors": outcomes["error"],
        "errors": [asdict(r) for r in results if r.outcome == "error"][:50],
        "latency_s_p50": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "latency_s_p95": round(seconds[int(len(seconds) * 0.95)], 2) if seconds else None,
        "audio_bytes": sum(r.n_bytes for r in results),
        "mix": dict(sorted(by_kind.items())),
        "rss": rss_growth(samples, warmup),
    }


def print_report(samples: list[RssSample], summary: dict[str, Any], warmup: int) -> None:
    growth = summary["rss"]
    baseline = growth["baseline_kib"]
    rows = [(s.requests_done, s.elapsed_s, f"{s.rss_kib / 1024:.1f}",
             "-" if baseline is None or s.requests_done < warmup
             else f"{100 * (s.rss_kib - baseline) / baseline:+.1f}",
             s.errors_so_far, s.load_1m) for s in samples]
    print(format_table(["requests", "elapsed_s", "rss_mib", "vs_warmup_%", "errors", "load1"],
                       rows))
    print(f"\n{summary['requests']} requests: {summary['ok']} ok, {summary['disconnected']} "
          f"client disconnects (expected), {summary['unexpected_errors']} unexpected errors; "
          f"p50 {summary['latency_s_p50']} s, p95 {summary['latency_s_p95']} s")
    if growth["growth_pct"] is not None:
        verdict = "within" if growth["within_target"] else "OVER"
        print(f"RSS after warm-up ({warmup} requests): {baseline / 1024:.1f} -> "
              f"{growth['final_kib'] / 1024:.1f} MiB idle ({growth['growth_pct']:+.1f} %, "
              f"idle peak {growth['peak_kib'] / 1024:.1f} MiB): {verdict} the "
              f"{TARGET_GROWTH_PCT:g} % target")
    if growth.get("busy_peak_kib"):
        print(f"busy peak RSS (polled every {BUSY_POLL_S:g} s): "
              f"{growth['busy_peak_kib'] / 1024:.1f} MiB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=100, help="requests before the baseline")
    parser.add_argument("--sample-every", type=int, default=50, help="requests between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vc-share", type=float, default=0.02)
    parser.add_argument("--disconnect-share", type=float, default=0.1)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    parser.add_argument("--url", default=None, help="a running API instead of starting one")
    parser.add_argument("--pid", type=int, default=None, help="with --url: the API's pid")
    parser.add_argument("--api-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra settings for the API this script starts")
    parser.add_argument("--json", default=None)
    return parser


def start_stack(workdir: Path, api_env: list[str]) -> tuple[Any, Server]:
    """The vLLM engine on the demo model, then the API in front of it."""
    from demo_model import ensure_demo_model
    from stack.engine import EngineConfig, EngineProcess

    cache = ROOT / ".cache"
    model_dir = ensure_demo_model(cache / "models")
    python = Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    engine = EngineProcess(EngineConfig(model=str(model_dir), python=python, cache_dir=cache,
                                        port=free_port()), log_path=workdir / "engine.log")
    engine.start()
    try:
        took = engine.wait_healthy(timeout_s=600)
        print(f"engine healthy after {took:.0f} s", file=sys.stderr)
        port = free_port()
        env = {"TTS_API": engine.config.url, "SNAC_MODEL": "random", "HOST": "127.0.0.1",
               "PORT": str(port), "CODEC_DEVICE": "cpu", "DYNAMIC_BATCHING": "true",
               "LOG_LEVEL": "warning", "SENTRY_DSN": " ", "DATA_DIR": str(workdir / "data")}
        env.update(kv.split("=", 1) for kv in api_env)
        api = start_server("api", ["-m", "app"], env, port, workdir)
        api.wait_healthy("/health", 300)
    except BaseException:
        engine.stop()
        raise
    return engine, api


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = machine_info()
    specs = build_mix(args.requests, seed=args.seed, vc_share=args.vc_share,
                      disconnect_share=args.disconnect_share)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        engine, api = (None, None) if args.url else start_stack(Path(tmp), args.api_env)
        url = args.url or api.url
        pid = args.pid if args.url else api.pid
        try:
            results, samples, busy_peak = asyncio.run(run_soak(
                url, pid, specs, concurrency=args.concurrency,
                sample_every=args.sample_every, timeout_s=args.timeout_s))
        finally:
            if api is not None:
                if api.process.poll() is not None:
                    print(f"the API exited with {api.process.returncode}:\n"
                          f"{api.log_tail(80)}", file=sys.stderr)
                api.stop()
            if engine is not None:
                engine.stop()
    summary = summarize(results, samples, args.warmup)
    summary["rss"]["busy_peak_kib"] = busy_peak
    print_report(samples, summary, args.warmup)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s; load average now {load_average()}")
    if args.json:
        write_json(args.json, {
            "benchmark": "soak", "machine": info,
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "summary": summary, "rss_samples": [asdict(s) for s in samples],
            "elapsed_s": elapsed, "load_average_at_end": load_average()})
    ok = summary["unexpected_errors"] == 0 and summary["rss"]["within_target"] is not False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
