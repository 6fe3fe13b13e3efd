"""Which way of reading token ids from vLLM is cheaper: `return_token_ids` or logprobs tokens?

Runs against a live engine (default: the one `make run` starts) and prints, per mode, the
engine's tokens/s, bytes on the wire per token and the proxy-side CPU spent parsing.

    python -m bench.engine_token_modes --url http://127.0.0.1:9093 --json token_modes.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import httpx

from app.engine import EngineClient, SamplingParams, TokenMode

PROMPT = "<|im_start|>husein: Benchmarking token modes.<|im_end|><|speech_start|>"


async def one_run(client: EngineClient, tokens: int, stream_count: int) -> dict[str, float]:
    import asyncio

    params = SamplingParams(max_tokens=tokens, temperature=0.8, repetition_penalty=1.0,
                            stop_token_ids=(), add_special_tokens=False)

    async def stream() -> tuple[int, int]:
        s = await client.open_stream(PROMPT, params, "bench")
        n = 0
        async for ids in s:
            n += len(ids)
        wire = s._response.num_bytes_downloaded
        await s.aclose()
        return n, wire

    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*[stream() for _ in range(stream_count)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = sum(r[0] for r in results)
    return {"tokens": n, "wall_s": wall, "tok_per_s": n / wall,
            "bytes_per_token": sum(r[1] for r in results) / n, "client_cpu_us_per_token": cpu / n * 1e6}


async def main_async(args: argparse.Namespace) -> dict:
    out: dict = {"url": args.url, "tokens": args.tokens, "streams": args.streams,
                 "repeats": args.repeats, "loadavg": os.getloadavg(), "modes": {}}
    async with httpx.AsyncClient(timeout=120) as http:
        modes: tuple[TokenMode, ...] = ("token_ids", "logprobs")
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):  # interleave so drift hits both modes alike
            for mode in modes:
                client = EngineClient(http, base_url=args.url, model=args.model, mode=mode)
                runs[mode].append(await one_run(client, args.tokens, args.streams))
        for mode in modes:
            out["modes"][mode] = {k: statistics.median(r[k] for r in runs[mode])
                                  for k in runs[mode][0]}
    return out


def main() -> None:
    import asyncio

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:9093")
    parser.add_argument("--model", default="TTS-model")
    parser.add_argument("--tokens", type=int, default=700)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    base = result["modes"]["token_ids"]
    print(f"{'mode':<10} {'tok/s':>8} {'bytes/tok':>10} {'client CPU us/tok':>18}  ratio tok/s")
    for mode, r in result["modes"].items():
        print(f"{mode:<10} {r['tok_per_s']:>8.0f} {r['bytes_per_token']:>10.1f} "
              f"{r['client_cpu_us_per_token']:>18.1f}  {r['tok_per_s'] / base['tok_per_s']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
