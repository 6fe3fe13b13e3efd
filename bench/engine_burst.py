"""`python -m bench.engine_burst`: do back-to-back requests to the vLLM CPU engine stream, or
arrive in one burst at the end?

Starts the real engine on the demo model once per variant (`EngineConfig` as `stack.engine`
builds it, plus the variant's extra arguments or environment), then sends `--requests`
streaming `/v1/completions` requests of `--tokens` tokens one after another, with no pause
and with a `--pause-ms` pause, alternating. Per request: time to first token, time to last
token, and burstiness, the fraction of tokens that arrived in the last 10 % of the request's
time (0.10 for an even stream; 1.0 = everything at the end). A request is "bursty" above
`BURSTY_FRACTION`.

Variants run one after another (one engine at a time: the box has 2 cores), in the order
given, repeated `--rounds` times so drift falls on all of them alike.

What it showed on the 2-core box (2026-12-01): the engine makes ~500 tok/s, the API server
writes each token as its own SSE event, yet they reach the client in 1-12 TCP reads per
request; the API server's event loop makes no epoll call for ~0.7 s at a time while its
output handler (vllm/v1/engine/async_llm.py, which awaits a queue that is never empty while
it is behind, so it never yields) works through the queued steps, most samples in the
incremental detokenizer. None of --disable-log-stats, VLLM_USE_SPINLOOP_EXT=1, per-request
stream_interval=7, VLLM_CPU_OMP_THREADS_BIND=nobind, asyncio instead of uvloop, or renicing
the engine-core process removed the burst; VLLM_ENABLE_V1_MULTIPROCESSING=0 made it worse.

What does (`--variants defaults,pinned`, 2026-12-02, 8 requests per kind): pinning, as
`make run` does (stack.cpus): the engine's processes on core 0, this client on core 1.
Bursty 5 of 16 -> 0 of 16, first token max 690 -> 34 ms; the engine makes 330 tok/s instead
of 515 (still 4x what a real-time SNAC stream needs). Sharing one core, the engine core can
no longer run ahead of the API server's output handler, which is what starved its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, format_table, free_port, load_average, machine_info, write_json
from stack.cpus import split_cpus
from stack.engine import EngineConfig, EngineProcess

PROMPT = "<|im_start|>husein: Back to back requests, one after another.<|im_end|><|speech_start|>"
TAIL_FRACTION = 0.10  # "the last 10 % of the request's time"
BURSTY_FRACTION = 0.5  # over half the tokens in the last 10 %: the stream was held back


@dataclass(frozen=True)
class Variant:
    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # extra request fields
    pinned: bool = False  # engine on all cores but the last, this client on the last


# Engine arguments, environment or request fields tried against the burst (all on top of
# what EngineConfig starts by default).
VARIANTS = {
    "defaults": Variant("defaults"),
    "frame-events": Variant("frame-events", body={"stream_interval": 7}),
    "no-log-stats": Variant("no-log-stats", ("--disable-log-stats",)),
    "spinloop": Variant("spinloop", env={"VLLM_USE_SPINLOOP_EXT": "1"}),
    "nobind": Variant("nobind", env={"VLLM_CPU_OMP_THREADS_BIND": "nobind"}),
    "no-prefix-cache": Variant("no-prefix-cache", ("--no-enable-prefix-caching",)),
    "no-multiprocessing": Variant("no-multiprocessing",
                                  env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
    "pinned": Variant("pinned", pinned=True),
}


def burstiness(times: list[float], counts: list[int], start: float) -> float:
    """Fraction of tokens that arrived in the last TAIL_FRACTION of [start, last arrival]."""
    total = sum(counts)
    if not total:
        return 0.0
    cutoff = start + (1.0 - TAIL_FRACTION) * (times[-1] - start)
    return sum(c for t, c in zip(times, counts) if t >= cutoff) / total


async def one_request(http: httpx.AsyncClient, url: str, model: str, tokens: int,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {**(extra or {}), "model": model, "prompt": PROMPT, "stream": True, "max_tokens": tokens,
            "min_tokens": tokens, "temperature": 0.8, "return_token_ids": True,
            "ignore_eos": True, "add_special_tokens": False}
    times: list[float] = []
    counts: list[int] = []
    start = time.perf_counter()
    async with http.stream("POST", url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ids = json.loads(line[6:])["choices"][0].get("token_ids") or []
            if ids:
                times.append(time.perf_counter())
                counts.append(len(ids))
    if not times:
        return {"tokens": 0, "ttft_s": None, "ttlt_s": None, "burstiness": 0.0, "events": 0}
    return {"tokens": sum(counts), "events": len(times), "ttft_s": times[0] - start,
            "ttlt_s": times[-1] - start, "burstiness": burstiness(times, counts, start)}


async def run_requests(url: str, model: str, requests: int, tokens: int, pause_ms: float,
                       extra: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """`requests` back-to-back and `requests` with a pause, interleaved in pairs."""
    runs: dict[str, list[dict[str, Any]]] = {"back-to-back": [], f"pause {pause_ms:g} ms": []}
    async with httpx.AsyncClient(timeout=300) as http:
        await one_request(http, url, model, 20)  # warm the path
        for _ in range(requests):
            # back to back: the next request starts the moment the previous one ends
            runs["back-to-back"].append(await one_request(http, url, model, tokens, extra))
            runs["back-to-back"].append(await one_request(http, url, model, tokens, extra))
            await asyncio.sleep(pause_ms / 1000)
            runs[f"pause {pause_ms:g} ms"].append(await one_request(http, url, model, tokens, extra))
            await asyncio.sleep(pause_ms / 1000)
    runs["back-to-back"] = runs["back-to-back"][1::2]  # the one that followed another at once
    return runs


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {"requests": len(rows), "bursty": sum(r["burstiness"] > BURSTY_FRACTION for r in rows),
            "ttft_p50_ms": 1000 * med("ttft_s"),
            "ttft_max_ms": 1000 * max(r["ttft_s"] for r in rows),
            "ttlt_p50_s": med("ttlt_s"), "burstiness_p50": med("burstiness"),
            "burstiness_max": max(r["burstiness"] for r in rows),
            "tok_per_s_p50": statistics.median(r["tokens"] / r["ttlt_s"] for r in rows)}


def split(pinned: bool) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(engine CPUs, client CPUs) as `make run` splits a CPU box (stack.cpus), or unpinned."""
    return split_cpus("auto", "auto", device="cpu") if pinned else (None, None)


def engine_for(variant: Variant, model_dir: Path, python: Path, cache: Path) -> EngineProcess:
    config = EngineConfig(model=str(model_dir), python=python, cache_dir=cache, port=free_port(),
                          extra_args=list(variant.args), env=dict(variant.env),
                          cpus=split(variant.pinned)[0])
    return EngineProcess(config, log_path=cache / f"bench-engine-burst-{variant.name}.log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_burst",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="defaults,no-log-stats,spinloop",
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--requests", type=int, default=12, help="per kind and variant")
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--pause-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from demo_model import ensure_demo_model

    cache = ROOT / ".cache"
    model_dir = ensure_demo_model(cache / "models")
    python = Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    info = machine_info()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for _ in range(args.rounds):
        for name in args.variants.split(","):
            variant = VARIANTS[name]
            engine = engine_for(variant, model_dir, python, cache)
            print(f"{name}: starting engine (load average {load_average()})", file=sys.stderr)
            client_cpus = split(variant.pinned)[1]
            before = os.sched_getaffinity(0)
            if client_cpus:
                os.sched_setaffinity(0, client_cpus)
            with engine:
                runs = asyncio.run(run_requests(engine.config.url, engine.config.served_model_name,
                                                args.requests, args.tokens, args.pause_ms,
                                                variant.body))
            os.sched_setaffinity(0, before)
            for kind, rows in runs.items():
                results.setdefault(name, {}).setdefault(kind, []).extend(rows)
    summary = {name: {kind: summarise(rows) for kind, rows in kinds.items()}
               for name, kinds in results.items()}
    print(f"\nvLLM CPU engine, demo model, {args.tokens} tokens per request; bursty = over "
          f"{BURSTY_FRACTION:.0%} of the tokens in the last {TAIL_FRACTION:.0%} of the time")
    print(format_table(
        ["variant", "requests", "n", "bursty", "ttft p50 ms", "ttft max ms", "ttlt p50 s",
         "burst p50", "burst max", "tok/s"],
        [[name, kind, s["requests"], s["bursty"], s["ttft_p50_ms"], s["ttft_max_ms"],
          s["ttlt_p50_s"], s["burstiness_p50"], s["burstiness_max"], s["tok_per_s_p50"]]
         for name, kinds in summary.items() for kind, s in kinds.items()]))
    print(f"load average now {load_average()}")
    if args.json:
        write_json(args.json, {"benchmark": "engine_burst", "machine": info,
                               "tokens": args.tokens, "pause_ms": args.pause_ms,
                               "summary": summary, "requests": results,
                               "load_average_at_end": load_average()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
