"""Tests for stress_test's WebSocket (`--ws`) and sentence-per-request (`--sentences`) modes,
against scripted servers with known timing (Starlette on uvicorn, in a thread)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.text import SentenceBuffer
from stress_test.__main__ import main
from stress_test.load import LoadConfig, planned_requests, poisson_arrivals, run_load
from stress_test.report import (
    BYTES_PER_SECOND,
    RequestRecord,
    find_stalls,
    format_report,
    summarize,
)
from stress_test.ws import split_pieces, ws_url
from tests.servers import free_port, serve

TENTH_S = BYTES_PER_SECOND // 10  # bytes in 0.1 s of audio
SPEAK_DELAY_S = 0.15  # the scripted WebSocket server's time to a sentence's first audio
TWO_SENTENCES = "First sentence here. Second one follows now."


@dataclass
class ScriptedServer:
    """What the scripted servers saw. WebSocket scripts are chosen by the config's voice,
    HTTP ones by the first word of the input."""

    url: str = ""
    configs: list[dict[str, Any]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    speech: list[tuple[float, str]] = field(default_factory=list)  # (received, input)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.configs.clear()
        self.pieces.clear()
        self.speech.clear()
        self.in_flight = self.max_in_flight = 0


def audio_message(size: int, sample_rate: int = 24_000) -> str:
    data = base64.b64encode(bytes(size)).decode("ascii")
    return json.dumps({"type": "audio", "data": data, "sample_rate": sample_rate})


def make_scripted_app(server: ScriptedServer) -> Starlette:
    async def synthesize(websocket: WebSocket) -> None:
        await websocket.accept()
        config = json.loads(await websocket.receive_text())
        server.configs.append(config)
        script = config["voice"]
        if script == "busy":
            await websocket.close(code=1013, reason="server is at capacity")
            return
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        await websocket.send_text(json.dumps({"type": "keepalive"}))
        await websocket.send_text(json.dumps({"type": "ready", "sample_rate": 24_000}))
        sentences: asyncio.Queue[str | None] = asyncio.Queue()

        async def speak() -> None:
            # Each sentence: first audio SPEAK_DELAY_S after the server has it, then more.
            while await sentences.get() is not None:
                await asyncio.sleep(SPEAK_DELAY_S)
                size = TENTH_S + 1 if script == "odd" else TENTH_S
                await websocket.send_text(audio_message(size))
                await asyncio.sleep(0.02)
                await websocket.send_text(audio_message(TENTH_S))

        speaker = asyncio.create_task(speak())
        buffer = SentenceBuffer()
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                if message.get("type") == "end_of_stream":
                    for sentence in buffer.flush():
                        sentences.put_nowait(sentence)
                    sentences.put_nowait(None)
                    await speaker
                    await websocket.send_text(json.dumps({"type": "complete", "usage": {}}))
                    continue
                server.pieces.append(message["text"])
                if script == "error":
                    await websocket.send_text(json.dumps(
                        {"type": "error", "message": "voice 'error' cannot speak"}))
                for sentence in buffer.push(message["text"]):
                    sentences.put_nowait(sentence)
        except WebSocketDisconnect:
            pass
        finally:
            speaker.cancel()
            server.in_flight -= 1

    async def paced(parts: list[tuple[float, bytes]]) -> AsyncIterator[bytes]:
        for delay_s, data in parts:
            await asyncio.sleep(delay_s)
            yield data

    async def speech(request: Request) -> Response:
        payload = await request.json()
        server.speech.append((time.perf_counter(), payload["input"]))
        first_word = payload["input"].split()[0]
        parts = {
            "Slow": [(0.3, bytes(TENTH_S)), (0.0, bytes(TENTH_S))],
            "Stall": [(0.1, bytes(TENTH_S)), (0.3, bytes(TENTH_S))],
        }.get(first_word, [(0.1, bytes(TENTH_S)), (0.02, bytes(TENTH_S))])
        return StreamingResponse(paced(parts), media_type="application/octet-stream")

    return Starlette(routes=[
        WebSocketRoute("/ws/synthesize", synthesize),
        Route("/v1/audio/speech", speech, methods=["POST"]),
    ])


@pytest.fixture(scope="module")
def running_server() -> Iterator[ScriptedServer]:
    state = ScriptedServer()
    with serve(make_scripted_app(state)) as url:
        state.url = url
        yield state


@pytest.fixture
def scripted(running_server: ScriptedServer) -> ScriptedServer:
    running_server.reset()
    return running_server


def load(url: str, texts: list[str], **options: Any) -> list[RequestRecord]:
    config = LoadConfig(url=url, **{"requests": len(texts), "concurrency": 4, **options})
    return asyncio.run(run_load(config, texts))


def test_ws_url_swaps_scheme_and_adds_path() -> None:
    assert ws_url("http://h:1/", "/ws/synthesize") == "ws://h:1/ws/synthesize"
    assert ws_url("https://h", "/ws") == "wss://h/ws"
    assert ws_url("ws://h", "/ws") == "ws://h/ws"


def test_split_pieces_cuts_anywhere_and_keeps_every_character() -> None:
    assert split_pieces("Hello there.", 5) == ["Hello", " ther", "e."]
    assert split_pieces("", 5) == [""]


def test_ws_session_ttfa_counts_from_first_complete_sentence(scripted: ScriptedServer) -> None:
    [record] = load(scripted.url, [TWO_SENTENCES], mode="ws", voice="paced",
                    piece_chars=10, piece_delay_s=0.3)
    assert record.ok, record.error_detail
    assert record.status == 101
    assert scripted.configs == [{"voice": "paced", "sample_rate": 24_000, "model": "TTS-model"}]
    assert scripted.pieces == split_pieces(TWO_SENTENCES, 10)
    # Two sentences, two audio messages each; keepalives are not audio.
    assert [size for _, size in record.chunks] == [TENTH_S] * 4
    assert record.audio_s == pytest.approx(0.4)
    # The buffer needs the next piece to know "here." ends a sentence: the third piece,
    # sent two piece delays after the first.
    assert record.sent_s is not None and record.first_sentence_s is not None
    assert 0.58 <= record.first_sentence_s - record.sent_s < 0.9
    assert record.ttfa_s is not None
    assert SPEAK_DELAY_S - 0.01 <= record.ttfa_s < 0.55
    assert record.chunks[0][0] - record.start_s > 0.74  # what TTFA from the start would say


def test_ws_session_without_sentence_end_counts_from_end_of_stream(
    scripted: ScriptedServer,
) -> None:
    [record] = load(scripted.url, ["no full stop here"], mode="ws", voice="paced",
                    piece_chars=10, piece_delay_s=0.2)
    assert record.ok, record.error_detail
    assert record.first_sentence_s is not None and record.sent_s is not None
    assert record.first_sentence_s - record.sent_s >= 0.19  # after the second piece
    assert record.ttfa_s is not None
    assert SPEAK_DELAY_S - 0.01 <= record.ttfa_s < 0.34  # from the start: >= 0.35


def test_ws_session_errors_by_kind(scripted: ScriptedServer) -> None:
    records = [
        load(scripted.url, ["Hello there. Bye."], mode="ws", voice=voice, piece_delay_s=0.0)[0]
        for voice in ("busy", "error", "odd", "paced")
    ]
    assert [record.error for record in records] == ["ws_1013", "ws_error", "invalid_body", None]
    assert records[0].error_detail == "server is at capacity"
    assert records[1].error_detail == "voice 'error' cannot speak"
    assert "odd" in (records[2].error_detail or "")
    summary = summarize(records)
    assert summary.errors == {"invalid_body": 1, "ws_1013": 1, "ws_error": 1}
    assert summary.successful == 1


def test_ws_session_refused_handshake_and_connect_error(scripted: ScriptedServer) -> None:
    [refused] = load(scripted.url, ["Hello."], mode="ws", ws_path="/nowhere")
    assert refused.error == "http_403"
    [unreachable] = load(f"http://127.0.0.1:{free_port()}", ["Hello."], mode="ws")
    assert unreachable.error == "connect_error"


def test_ws_closed_loop_holds_concurrency(scripted: ScriptedServer) -> None:
    records = load(scripted.url, ["Hello there. Bye."] * 5, mode="ws", voice="paced",
                   concurrency=2, piece_delay_s=0.0)
    assert [record.index for record in records] == list(range(5))
    assert all(record.ok for record in records)
    assert len(scripted.configs) == 5
    assert scripted.max_in_flight == 2


def test_ws_open_loop_follows_seeded_arrivals(scripted: ScriptedServer) -> None:
    records = load(scripted.url, ["Hello there."] * 4, mode="ws", voice="paced",
                   rate=20.0, seed=5, concurrency=8, piece_delay_s=0.0)
    assert [record.start_s for record in records] == poisson_arrivals(4, rate=20.0, seed=5)
    assert all(record.ok for record in records)


def test_ws_report_says_where_ttfa_counts_from(scripted: ScriptedServer) -> None:
    records = load(scripted.url, ["Hello there. Bye."], mode="ws", voice="paced",
                   piece_delay_s=0.0)
    summary = summarize(records)
    assert summary.ttfa_from == "first_sentence"
    assert "TTFA From: end of the first complete sentence sent (WebSocket)" in (
        format_report(summary).splitlines())
    http_summary = summarize(load(scripted.url, ["Quick one."]))
    assert http_summary.ttfa_from == "request"
    assert "TTFA From" not in format_report(http_summary)


def test_ws_config_refuses_other_formats() -> None:
    with pytest.raises(ValueError, match="raw PCM"):
        LoadConfig(url="http://h", requests=1, concurrency=1, mode="ws", response_format="wav")


def test_sentences_one_request_per_sentence_after_a_pause(scripted: ScriptedServer) -> None:
    records = load(scripted.url, ["One thing. Two things! Three things?"], mode="sentences",
                   pause_s=0.3)
    assert [record.text for record in records] == ["One thing.", "Two things!", "Three things?"]
    assert [record.session for record in records] == [0, 0, 0]
    assert [record.index for record in records] == [0, 1, 2]
    assert all(record.ok for record in records)
    assert [text for _, text in scripted.speech] == [record.text for record in records]
    for earlier, later in itertools.pairwise(records):
        assert 0.3 <= later.start_s - earlier.end_s < 0.6
    arrivals = [received for received, _ in scripted.speech]
    for earlier, later in itertools.pairwise(arrivals):
        assert later - earlier >= 0.3 + 0.12  # pause plus the previous response


def test_sentences_without_pause_sends_back_to_back(scripted: ScriptedServer) -> None:
    records = load(scripted.url, ["One thing. Two things!"], mode="sentences", pause_s=0.0)
    assert records[1].start_s - records[0].end_s < 0.2


def test_summarize_first_reply_is_each_conversations_first_success() -> None:
    def record(session: int, start_s: float, ttfa_s: float, error: str | None = None):
        return RequestRecord(index=0, text="x", stream=True, response_format="pcm",
                             start_s=start_s, end_s=start_s + 1, session=session, error=error,
                             chunks=[] if error else [(start_s + ttfa_s, TENTH_S)])

    records = [record(0, 0.0, 0.5), record(0, 2.0, 0.1), record(1, 0.0, 9.0, "http_503"),
               record(1, 2.0, 0.3), record(1, 4.0, 0.1)]
    summary = summarize(records)
    assert summary.conversations == 2
    assert summary.first_reply_ttfa_s is not None and summary.ttfa_s is not None
    assert summary.first_reply_ttfa_s.p50 == pytest.approx(0.4)  # of 0.5 and 0.3
    assert summary.ttfa_s.p50 == pytest.approx(0.2)  # of 0.5, 0.1, 0.3, 0.1
    plain = RequestRecord(index=0, text="x", stream=True, response_format="pcm", start_s=0.0,
                          end_s=1.0, chunks=[(0.2, TENTH_S)])
    assert summarize([plain]).conversations is None
    assert "=== CONVERSATIONS" not in format_report(summarize([plain]))


def test_sentences_report_first_reply_and_stalls(scripted: ScriptedServer) -> None:
    texts = ["Slow start here. Quick end.", "Stall in this one. Quick end."]
    config = LoadConfig(url=scripted.url, requests=4, concurrency=2, mode="sentences",
                        pause_s=0.05)
    assert planned_requests(config, texts) == 8
    records = asyncio.run(run_load(config, texts))
    assert [record.session for record in records] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(record.ok for record in records)
    summary = summarize(records)
    assert summary.conversations == 4
    assert summary.total_requests == 8
    # First replies: two slow (>= 0.3 s), two stalling ones (>= 0.1 s); the rest quick.
    assert summary.first_reply_ttfa_s is not None and summary.ttfa_s is not None
    assert summary.first_reply_ttfa_s.p95 >= 0.29
    assert summary.first_reply_ttfa_s.p50 >= 0.19
    assert summary.ttfa_s.p50 < summary.first_reply_ttfa_s.p50
    stalled = [record.text for record in records if find_stalls(record.chunks)]
    assert stalled.count("Stall in this one.") == 2
    assert summary.total_stall_s >= 0.35  # 2 x (0.3 s gap - 0.1 s of audio), at least
    lines = format_report(summary).splitlines()
    assert "=== CONVERSATIONS (ONE SENTENCE PER REQUEST) ===" in lines
    assert "Conversations: 4" in lines
    assert "Sentence Requests: 8" in lines
    assert any(line.startswith("P95 First-Reply TTFA: ") for line in lines)


def test_main_ws_prints_report_and_writes_json(
    scripted: ScriptedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("Hello there. Bye now.\n", encoding="utf-8")
    output = tmp_path / "ws.json"
    status = main([
        "--url", scripted.url, "--ws", "--voice", "paced", "--requests", "3",
        "--concurrency", "2", "--texts-file", str(texts_file), "--piece-chars", "7",
        "--piece-delay-s", "0.01", "--output", str(output),
    ])  # fmt: skip
    assert status == 0
    report = capsys.readouterr().out
    assert "Total Requests: 3" in report
    assert "TTFA From: end of the first complete sentence sent (WebSocket)" in report
    assert "No errors" in report
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["config"]["mode"] == "ws"
    assert document["config"]["piece_chars"] == 7
    assert document["summary"]["successful"] == 3
    assert all(request["first_sentence_s"] is not None for request in document["requests"])
    assert sorted(scripted.pieces) == sorted(["Hello t", "here. B", "ye now."] * 3)


def test_main_ws_with_other_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--ws", "--format", "wav", "--requests", "1"])
    assert exit_info.value.code == 2
    assert "raw PCM" in capsys.readouterr().err


def test_main_sentences_counts_conversations(
    scripted: ScriptedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("One thing. Two things!\n", encoding="utf-8")
    argv = ["--url", scripted.url, "--sentences", "--pause-s", "0.05", "--requests", "2",
            "--concurrency", "1", "--texts-file", str(texts_file)]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "Total Requests: 4" in report
    assert "Conversations: 2" in report
