"""A paced, scripted vLLM look-alike for capacity benchmarks (tests/fake_engine.py's idea).

It answers /health, /v1/models, /tokenize like tests/fake_engine.py (the demo model's token
layout) and streams /v1/completions as SSE at a fixed rate per stream: event j carries tokens
[j*E, (j+1)*E) and is due `j*E / tokens_per_s` seconds after the request arrived. Sends are
scheduled against absolute due times, so a late event does not delay the ones after it.

A prompt containing HOLD_OPEN gets its audio tokens on pace, then nothing (no stop token) for
`hold_s` (a minute): a proxy decodes what it can and waits, so a benchmark can read the proxy's
codec time for exactly its first window.

For every request (keyed by its X-Request-Id) it logs when each event was handed to the
server, on `time.monotonic()` (CLOCK_MONOTONIC, shared by every process on the machine), and
serves the log at GET /debug/requests (DELETE clears it). A benchmark can then tell when the
token that completed any given frame left the engine.

`python -m bench.paced_engine --port 9093 --tokens-per-s 83 --frames 117`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.codec.info import SNAC_24KHZ

BASE = 300  # the demo layout: <|snac_P_C|> = BASE + P * 4096 + C (as tests/fake_engine.py)
CODEBOOK_SIZE = SNAC_24KHZ.codebook_size
TOKENS_PER_FRAME = SNAC_24KHZ.codes_per_frame
SPEECH_END = BASE + TOKENS_PER_FRAME * CODEBOOK_SIZE
IM_END = SPEECH_END + 1
MODEL_ID = "TTS-model"
HOLD_MARKER = "HOLD_OPEN"


@dataclass(frozen=True)
class Pace:
    tokens_per_s: float = 83.0
    tokens_per_event: int = 1
    frames: int = 117  # audio frames per request (capped by the request's max_tokens)
    first_token_delay_s: float = 0.0  # stands in for prefill
    seed: int = 0
    hold_s: float = 60.0  # how long a HOLD_OPEN request goes quiet before its stop token


@dataclass
class RequestLog:
    """One request as the engine saw it. `events`: (tokens sent so far, monotonic time)."""

    request_id: str
    received_s: float
    frames: int
    events: list[tuple[int, float]] = field(default_factory=list)
    finished_s: float | None = None
    aborted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"received_s": self.received_s, "frames": self.frames,
                "events": self.events, "finished_s": self.finished_s, "aborted": self.aborted}


@dataclass
class EngineState:
    pace: Pace
    logs: dict[str, RequestLog] = field(default_factory=dict)
    running: int = 0
    served: int = 0


def audio_tokens(frames: int, rng: random.Random) -> list[int]:
    return [BASE + p * CODEBOOK_SIZE + rng.randrange(CODEBOOK_SIZE)
            for _ in range(frames) for p in range(TOKENS_PER_FRAME)]


def _event(ids: list[int], finish: str | None, by_logprobs: bool) -> str:
    choice: dict[str, Any] = {"index": 0, "text": "", "finish_reason": finish}
    if by_logprobs:
        choice["logprobs"] = {"tokens": [f"token_id:{i}" for i in ids]}
    else:
        choice["token_ids"] = ids
    return f"data: {json.dumps({'object': 'text_completion', 'choices': [choice]})}\n\n"


def create_paced_engine(state: EngineState) -> Starlette:
    pace = state.pace

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list",
                             "data": [{"id": MODEL_ID, "object": "model",
                                       "max_model_len": 8192}]})

    async def tokenize(request: Request) -> JSONResponse:
        prompt = (await request.json())["prompt"]
        if m := re.fullmatch(r"<\|snac_(\d)_(\d+)\|>", prompt):
            return JSONResponse({"tokens": [BASE + int(m[1]) * CODEBOOK_SIZE + int(m[2])]})
        special = {"<|speech_end|>": SPEECH_END, "<|im_end|>": IM_END}
        if prompt in special:
            return JSONResponse({"tokens": [special[prompt]]})
        return JSONResponse({"tokens": list(prompt.encode())})

    async def completions(request: Request) -> StreamingResponse:
        received = time.monotonic()
        body = await request.json()
        request_id = request.headers.get("x-request-id") or f"engine-{state.served}"
        frames = min(pace.frames, int(body.get("max_tokens", 1 << 30)) // TOKENS_PER_FRAME)
        rng = random.Random(f"{pace.seed}:{state.served}")
        state.served += 1
        hold = HOLD_MARKER in str(body.get("prompt", ""))
        tokens = audio_tokens(frames, rng) + ([] if hold else [SPEECH_END])
        log = RequestLog(request_id, received, frames)
        state.logs[request_id] = log
        by_logprobs = bool(body.get("return_tokens_as_token_ids"))

        async def stream():
            state.running += 1
            step, start = pace.tokens_per_event, received + pace.first_token_delay_s
            try:
                for i in range(0, len(tokens), step):
                    delay = start + i / pace.tokens_per_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    last = i + step >= len(tokens) and not hold
                    yield _event(tokens[i:i + step], "stop" if last else None, by_logprobs)
                    # The server asks for the next item once this one was sent.
                    log.events.append((min(i + step, len(tokens)), time.monotonic()))
                if hold:
                    await asyncio.sleep(pace.hold_s)
                    yield _event([SPEECH_END], "stop", by_logprobs)
                yield "data: [DONE]\n\n"
                log.finished_s = time.monotonic()
            finally:
                state.running -= 1
                log.aborted = log.finished_s is None

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def debug_requests(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            state.logs.clear()
        return JSONResponse({"running": state.running, "served": state.served,
                             "pace": pace.__dict__,
                             "requests": {k: v.to_dict() for k, v in state.logs.items()}})

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/debug/requests", debug_requests, methods=["GET", "DELETE"]),
    ])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.paced_engine",
                                     description="Paced scripted vLLM look-alike.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9093)
    parser.add_argument("--tokens-per-s", type=float, default=Pace.tokens_per_s)
    parser.add_argument("--tokens-per-event", type=int, default=Pace.tokens_per_event)
    parser.add_argument("--frames", type=int, default=Pace.frames)
    parser.add_argument("--first-token-delay-s", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pace = Pace(args.tokens_per_s, args.tokens_per_event, args.frames,
                args.first_token_delay_s, args.seed)
    uvicorn.run(create_paced_engine(EngineState(pace)), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
