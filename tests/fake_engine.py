"""A scripted vLLM look-alike for fault injection and exact-timing cases (never a stand-in
for the real engine in integration tests). Speaks the demo model's token layout."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from app.codec.info import SNAC_24KHZ

# The SNAC demo model's vocabulary: <|snac_P_C|> = BASE + P * CODES + C.
BASE = 300
WIDTH = SNAC_24KHZ.codes_per_frame
CODES = SNAC_24KHZ.codebook_size
SPEECH_END = BASE + WIDTH * CODES
IM_END = SPEECH_END + 1


@dataclass
class Script:
    frames: int = 12
    tokens_per_event: int = 3
    delay_s: float = 0.0
    misplace_at: int | None = None  # token index replaced by a wrong-position token
    requests: list[dict] = field(default_factory=list)
    running: int = 0
    aborted: int = 0


def frame_tokens(n_frames: int) -> list[int]:
    return [BASE + p * CODES + (f * 31 + p * 7) % CODES
            for f in range(n_frames) for p in range(WIDTH)]


def create_fake_engine(script: Script) -> Starlette:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({})

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list",
                             "data": [{"id": "TTS-model", "max_model_len": 8192}]})

    async def tokenize(request: Request) -> JSONResponse:
        prompt = (await request.json())["prompt"]
        if m := re.fullmatch(r"<\|snac_(\d)_(\d+)\|>", prompt):
            return JSONResponse({"tokens": [BASE + int(m[1]) * CODES + int(m[2])]})
        special = {"<|speech_end|>": SPEECH_END, "<|im_end|>": IM_END}
        if prompt in special:
            return JSONResponse({"tokens": [special[prompt]]})
        return JSONResponse({"tokens": list(prompt.encode())})

    async def completions(request: Request):
        body = await request.json()
        script.requests.append(body)
        if "TOO_LONG" in body["prompt"]:
            return JSONResponse({"error": {"message": "maximum context length is 8192",
                                           "type": "BadRequestError", "code": 400}}, 400)
        tokens = frame_tokens(min(script.frames, body["max_tokens"] // WIDTH))
        if script.misplace_at is not None:
            tokens[script.misplace_at] = BASE + ((script.misplace_at % WIDTH) + 3) % WIDTH * CODES
        tokens.append(SPEECH_END)
        by_logprobs = bool(body.get("return_tokens_as_token_ids"))

        def event(ids: list[int], finish: str | None) -> str:
            choice: dict = {"index": 0, "text": "", "finish_reason": finish}
            if by_logprobs:
                choice["logprobs"] = {"tokens": [f"token_id:{i}" for i in ids]}
            else:
                choice["token_ids"] = ids
            return f"data: {json.dumps({'choices': [choice]})}\n\n"

        async def stream():
            script.running += 1
            done = False
            try:
                if "STALL_FOREVER" in body["prompt"]:  # accepts, then sends nothing
                    await asyncio.sleep(3600)
                if "MALFORMED_OUTPUT" in body["prompt"]:
                    yield event(tokens[:7], None)
                    yield "data: {this is not json\n\n"
                    await asyncio.sleep(3600)
                step = script.tokens_per_event
                for i in range(0, len(tokens), step):
                    if "DROP_MIDWAY" in body["prompt"] and i >= len(tokens) // 2:
                        raise ConnectionAbortedError("scripted: this request's link drops")
                    if "FAIL_MIDWAY" in body["prompt"] and i >= len(tokens) // 2:
                        yield f"data: {json.dumps({'error': {'message': 'engine died'}})}\n\n"
                        return
                    last = i + step >= len(tokens)
                    yield event(tokens[i:i + step], "stop" if last else None)
                    await asyncio.sleep(script.delay_s)
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": len(body["prompt"].encode()),
                             "completion_tokens": len(tokens),
                             "total_tokens": len(body["prompt"].encode()) + len(tokens)}
                    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
                done = True
            finally:
                script.running -= 1
                if not done:
                    script.aborted += 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ])
