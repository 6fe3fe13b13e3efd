"""WebSockets on the real stack: seed 004's /ws/synthesize and seed 000's raw PCM mode.

vLLM CPU engine on the generated demo model, the real proxy, random SNAC: the audio is
noise, so these check the protocol and the engine's state, never how it sounds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import websockets

from app.config import Settings
from app.server import create_app
from tests.servers import serve
from tests.test_integration import engine_gauge

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def ws_base(engine):
    settings = Settings(TTS_API=engine.config.url, SNAC_MODEL="random",
                        ENGINE_STARTUP_TIMEOUT_S=60, WS_KEEPALIVE_S=0.5, DYNAMIC_BATCHING=True)
    with serve(create_app(settings)) as url:
        yield url.replace("http://", "ws://")


async def receive_json(ws, timeout_s: float = 60) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def receive_until(ws, kind: str, timeout_s: float = 120) -> list[dict]:
    """Messages up to and including the first of type `kind` (keepalives dropped)."""
    messages = []
    deadline = time.monotonic() + timeout_s
    while True:
        message = await receive_json(ws, deadline - time.monotonic())
        if message["type"] == "keepalive":
            continue
        messages.append(message)
        if message["type"] == kind:
            return messages


def audio_bytes(messages: list[dict]) -> bytes:
    return b"".join(base64.b64decode(m["data"]) for m in messages if m["type"] == "audio")


async def wait_engine_idle(engine, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if engine_gauge(engine, "vllm:num_requests_running") == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_sentences_split_mid_word_are_spoken_before_end_of_stream(ws_base):
    async with websockets.connect(ws_base + "/ws/synthesize") as ws:
        await ws.send(json.dumps({"voice_description": "A friendly voice", "sample_rate": 24000,
                                  "temperature": 0.0}))
        ready = await receive_json(ws)
        assert ready["type"] == "ready" and ready["sample_rate"] == 24000
        assert ready["voice"] == "husein"  # no speaker named: the default
        for piece in ("Hel", "lo the", "re. How a", "re you"):
            await ws.send(json.dumps({"text": piece}))
        # The first sentence is complete ("Hello there."): its audio comes without waiting.
        first = await receive_until(ws, "audio")
        assert first[-1]["sample_rate"] == 24000 and len(base64.b64decode(first[-1]["data"])) > 0
        await ws.send(json.dumps({"text": " today?"}))
        await ws.send(json.dumps({"type": "end_of_stream"}))
        rest = await receive_until(ws, "complete")
        assert not [m for m in first + rest if m["type"] == "error"]
        complete = rest[-1]
        assert complete["message"] == "Synthesis completed"
        assert complete["usage"]["output_tokens"] > 0 and complete["usage"]["input_tokens"] > 0
        pcm = audio_bytes(first + rest)
        assert len(pcm) % 2 == 0 and len(pcm) > 24000  # two sentences of audio


async def test_keepalive_arrives_while_idle(ws_base):
    async with websockets.connect(ws_base + "/ws/synthesize") as ws:
        await ws.send(json.dumps({"voice": "idayu"}))
        assert (await receive_json(ws))["type"] == "ready"
        message = await receive_json(ws, timeout_s=3)
        assert message == {"type": "keepalive"}


async def test_cancel_stops_audio_and_engine_work(ws_base, engine):
    async with websockets.connect(ws_base + "/ws/synthesize") as ws:
        await ws.send(json.dumps({"voice": "jenny", "temperature": 0.0}))
        await receive_json(ws)
        long_text = " ".join(["This is a rather long sentence that keeps the engine busy "
                              + "for a good while."] * 6)
        await ws.send(json.dumps({"text": long_text + " "}))
        await receive_until(ws, "audio")
        await ws.send(json.dumps({"type": "cancel"}))
        after = await receive_until(ws, "cancelled", timeout_s=10)
        assert after[-1]["type"] == "cancelled"
        assert await wait_engine_idle(engine)
        # Nothing more is spoken, and the session is still usable.
        await ws.send(json.dumps({"text": "Yes. "}))
        again = await receive_until(ws, "audio")
        assert again[-1]["type"] == "audio"


async def test_bad_messages_get_errors_and_the_session_goes_on(ws_base):
    async with websockets.connect(ws_base + "/ws/synthesize") as ws:
        await ws.send("not json")
        assert (await receive_json(ws))["type"] == "error"  # before config, still usable
        await ws.send(json.dumps({"sample_rate": 1}))
        error = await receive_json(ws)
        assert error["type"] == "error" and "sample_rate" in error["message"]
        await ws.send(json.dumps({"voice": "husein"}))
        assert (await receive_json(ws))["type"] == "ready"
        for bad in ("[1, 2]", json.dumps({"text": 5}), json.dumps({"type": "dance"})):
            await ws.send(bad)
            message = await receive_until(ws, "error")
            assert message[-1]["message"]
        await ws.send(b"\x00\x01")  # binary: not part of the protocol
        assert (await receive_until(ws, "error"))[-1]["type"] == "error"
        await ws.send(json.dumps({"text": "Still here. "}))
        assert (await receive_until(ws, "audio"))[-1]["type"] == "audio"


async def test_other_sample_rate_is_resampled(ws_base):
    async def spoken(rate: int) -> int:
        async with websockets.connect(ws_base + "/ws/synthesize") as ws:
            await ws.send(json.dumps({"voice": "husein", "sample_rate": rate,
                                      "temperature": 0.0}))
            assert (await receive_json(ws))["sample_rate"] == rate
            await ws.send(json.dumps({"text": "Good morning to you."}))
            await ws.send(json.dumps({"type": "end_of_stream"}))
            messages = await receive_until(ws, "complete")
            assert all(m["sample_rate"] == rate for m in messages if m["type"] == "audio")
            return len(audio_bytes(messages)) // 2
    full, narrow = await spoken(24000), await spoken(16000)
    assert narrow / full == pytest.approx(16000 / 24000, rel=0.02)


async def test_disconnect_mid_synthesis_leaves_the_engine_idle(ws_base, engine):
    async with websockets.connect(ws_base + "/ws/synthesize") as ws:
        await ws.send(json.dumps({"voice": "husein"}))
        await receive_json(ws)
        await ws.send(json.dumps({"text": "A long sentence to keep the engine working hard. " * 4}))
        await receive_until(ws, "audio")
    assert await wait_engine_idle(engine)


@pytest.mark.parametrize("path", ["", "/ws/raw"])
async def test_seed_000_client_nearly_verbatim(ws_base, tmp_path, path):
    out_path = tmp_path / "output.raw"

    async def run_request(text: str, out_path: str):
        """
        Sends text for synthesis and saves produced audio into a file
        """
        async with websockets.connect(ws_base + path) as websocket:
            request = json.dumps({"text": text, "speaker": "husein"})
            await websocket.send(request)

            with open(out_path, "wb") as fp:  # noqa: ASYNC230 - the seed's own code
                while True:
                    try:
                        data = await websocket.recv()
                    except websockets.exceptions.ConnectionClosed:
                        break
                    if data is None:
                        break
                    fp.write(data)

    await run_request("hello world", str(out_path))
    raw = out_path.read_bytes()
    assert len(raw) > 2048 and len(raw) % 2 == 0
