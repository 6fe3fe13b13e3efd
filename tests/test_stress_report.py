"""Tests for stress_test: report maths on synthetic records, then the load generator and CLI
against a fake speech server (Starlette on uvicorn, in a thread, on a free local port)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stress_test.__main__ import main
from stress_test.load import (
    InvalidBody,
    LoadConfig,
    check_wav_header,
    poisson_arrivals,
    run_load,
)
from stress_test.report import (
    BYTES_PER_SECOND,
    Distribution,
    RequestRecord,
    Summary,
    find_stalls,
    format_report,
    max_gap,
    summarize,
)

TENTH_S = BYTES_PER_SECOND // 10  # bytes in 0.1 s of audio
HALF_S = BYTES_PER_SECOND // 2

SEED_REPORT = """\
=== SLO LATENCY REPORT ===
Total Requests: 50
Min Time: 1.606s
Max Time: 3.539s
Avg Time: 2.676s
P50 (Median): 2.568s
P90: 3.431s
P95: 3.474s
P99: 3.510s

=== AUDIO & REAL-TIME FACTOR (RTF) REPORT ===
Avg Audio Duration: 5.702s

--- RTF Percentiles ---
Min RTF: 0.294s
Max RTF: 0.591s
Avg RTF: 0.470
P50 RTF: 0.434
P90 RTF: 0.581
P95 RTF: 0.587
P99 RTF: 0.589
==========================
"""


def make_record(
    index: int = 0,
    *,
    start_s: float = 0.0,
    end_s: float = 1.0,
    chunks: list[tuple[float, int]] | None = None,
    error: str | None = None,
) -> RequestRecord:
    return RequestRecord(
        index=index,
        text="hello",
        stream=True,
        response_format="pcm",
        start_s=start_s,
        end_s=end_s,
        status=200 if error is None else None,
        chunks=[] if chunks is None else chunks,
        error=error,
    )


def seed_summary(**changes: Any) -> Summary:
    values: dict[str, Any] = {
        "total_requests": 50,
        "successful": 50,
        "failed": 0,
        "wall_s": 10.0,
        "latency_s": Distribution(1.606, 3.539, 2.676, 2.568, 3.431, 3.474, 3.510),
        "rtf": Distribution(0.294, 0.591, 0.470, 0.434, 0.581, 0.587, 0.589),
        "ttfa_s": Distribution(0.1, 0.5, 0.2, 0.15, 0.4, 0.45, 0.49),
        "avg_audio_s": 5.702,
        "total_audio_s": 285.1,
        "requests_per_s": 5.0,
        "successful_per_s": 5.0,
        "audio_s_per_s": 28.51,
        "errors": {},
        "stalled_requests": 2,
        "total_stalls": 3,
        "total_stall_s": 0.75,
        "max_gap_s": 0.6,
    }
    values.update(changes)
    return Summary(**values)


def test_distribution_percentiles_interpolate_linearly() -> None:
    values = [float(v) for v in range(1, 11)]
    stats = Distribution.of(values)
    assert stats is not None
    assert (stats.min, stats.max, stats.mean) == (1.0, 10.0, 5.5)
    assert stats.p50 == pytest.approx(5.5)
    assert stats.p90 == pytest.approx(9.1)
    assert stats.p95 == pytest.approx(9.55)
    assert stats.p99 == pytest.approx(9.91)
    assert stats.p99 == pytest.approx(float(np.percentile(values, 99)))


def test_distribution_of_nothing_is_none() -> None:
    assert Distribution.of([]) is None


def test_record_latency_audio_and_rtf() -> None:
    record = make_record(start_s=1.0, end_s=2.0, chunks=[(1.2, BYTES_PER_SECOND), (1.5, HALF_S)])
    assert record.latency_s == 1.0
    assert record.audio_s == 1.5
    assert record.rtf == pytest.approx(1.0 / 1.5)


def test_record_ttfa_is_first_audio_chunk() -> None:
    record = make_record(start_s=2.0, end_s=3.0, chunks=[(2.25, TENTH_S), (2.5, TENTH_S)])
    assert record.ttfa_s == pytest.approx(0.25)
    assert make_record().ttfa_s is None
    assert make_record().rtf is None


def test_find_stalls_counts_time_past_delivered_audio() -> None:
    chunks = [(0.0, TENTH_S), (0.4, TENTH_S), (0.45, HALF_S)]
    assert find_stalls(chunks) == pytest.approx([0.3])


def test_find_stalls_pauses_playback_during_a_stall() -> None:
    # Playback resumes at 1.0 with 1 s of audio, so a chunk at 1.5 is on time.
    chunks = [(0.0, TENTH_S), (1.0, BYTES_PER_SECOND), (1.5, TENTH_S)]
    assert find_stalls(chunks) == pytest.approx([0.9])


def test_find_stalls_none_when_audio_arrives_in_time() -> None:
    assert find_stalls([(0.0, HALF_S), (0.5, HALF_S), (0.9, HALF_S)]) == []
    assert find_stalls([(0.0, HALF_S)]) == []
    assert find_stalls([]) == []


def test_max_gap_is_longest_wait_between_chunks() -> None:
    assert max_gap([(0.0, 2), (0.1, 2), (0.6, 2), (0.7, 2)]) == pytest.approx(0.5)
    assert max_gap([(0.0, 2)]) is None


def test_summarize_uses_successes_for_latency_and_counts_errors() -> None:
    records = [
        make_record(0, start_s=0.0, end_s=1.0, chunks=[(0.2, BYTES_PER_SECOND)]),
        make_record(1, start_s=0.5, end_s=2.5, chunks=[(0.6, TENTH_S), (1.0, BYTES_PER_SECOND)]),
        make_record(2, start_s=1.0, end_s=4.0, error="http_400"),
        make_record(3, start_s=1.0, end_s=1.5, error="timeout"),
        make_record(4, start_s=1.0, end_s=1.5, error="http_400"),
    ]
    summary = summarize(records)
    assert (summary.total_requests, summary.successful, summary.failed) == (5, 2, 3)
    assert summary.latency_s is not None and summary.latency_s.max == pytest.approx(2.0)
    assert summary.rtf is not None and summary.rtf.min == pytest.approx(1.0)
    assert summary.ttfa_s is not None and summary.ttfa_s.mean == pytest.approx(0.15)
    assert summary.avg_audio_s == pytest.approx(1.05)
    assert summary.wall_s == pytest.approx(4.0)
    assert summary.requests_per_s == pytest.approx(5 / 4)
    assert summary.successful_per_s == pytest.approx(2 / 4)
    assert summary.audio_s_per_s == pytest.approx(2.1 / 4)
    assert summary.errors == {"http_400": 2, "timeout": 1}
    assert (summary.stalled_requests, summary.total_stalls) == (1, 1)
    assert summary.total_stall_s == pytest.approx(0.3)
    assert summary.max_gap_s == pytest.approx(0.4)


def test_summarize_without_successes() -> None:
    summary = summarize([make_record(error="connect_error")])
    assert summary.latency_s is None and summary.rtf is None and summary.ttfa_s is None
    assert summary.avg_audio_s is None
    assert summary.errors == {"connect_error": 1}


def test_format_report_reproduces_seed_block() -> None:
    assert format_report(seed_summary()).startswith(SEED_REPORT)


def test_format_report_adds_ttfa_throughput_errors_and_stalls() -> None:
    text = format_report(seed_summary(failed=3, errors={"http_503": 2, "timeout": 1}))
    for line in (
        "=== TIME TO FIRST AUDIO (TTFA) ===",
        "P90 TTFA: 0.400s",
        "=== THROUGHPUT ===",
        "Wall Time: 10.000s",
        "Failed Requests: 3",
        "Audio Seconds/s: 28.510",
        "=== ERRORS ===",
        "http_503: 2",
        "timeout: 1",
        "=== STREAMING STALLS (UNDERRUNS) ===",
        "Requests With Stalls: 2/50",
        "Total Stalls: 3",
        "Total Stall Time: 0.750s",
        "Max Inter-Chunk Gap: 0.600s",
    ):
        assert line in text.splitlines()
    assert "No errors" in format_report(seed_summary()).splitlines()


def test_format_report_says_when_nothing_succeeded() -> None:
    text = format_report(summarize([make_record(error="http_500"), make_record(error="timeout")]))
    assert "Total Requests: 2" in text
    assert "No successful requests: latency not measured." in text
    assert "No successful requests: audio duration and RTF not measured." in text
    assert "http_500: 1" in text
    assert "Min Time" not in text


def wav_header(data_size: int = 0xFFFFFFFF, *, riff: bytes = b"RIFF", rate: int = 24_000) -> bytes:
    riff_size = 0xFFFFFFFF if data_size == 0xFFFFFFFF else data_size + 36
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        riff, riff_size, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16, b"data", data_size,
    )  # fmt: skip


def test_check_wav_header_accepts_streamed_and_sized() -> None:
    assert check_wav_header(wav_header()) is None
    assert check_wav_header(wav_header(9600)) == 9600


def test_check_wav_header_rejects_wrong_magic_and_rate() -> None:
    with pytest.raises(InvalidBody):
        check_wav_header(wav_header(riff=b"RIFX"))
    with pytest.raises(InvalidBody):
        check_wav_header(wav_header(rate=16_000))


def test_poisson_arrivals_are_seeded_and_increasing() -> None:
    arrivals = poisson_arrivals(2000, rate=10.0, seed=7)
    assert arrivals == poisson_arrivals(2000, rate=10.0, seed=7)
    assert arrivals != poisson_arrivals(2000, rate=10.0, seed=8)
    assert all(later > earlier for earlier, later in itertools.pairwise(arrivals))
    assert arrivals[-1] / len(arrivals) == pytest.approx(0.1, rel=0.1)


@dataclass
class FakeSpeechServer:
    """What the fake server saw; the script is chosen by the request's ``input``."""

    url: str = ""
    payloads: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.payloads.clear()
        self.in_flight = self.max_in_flight = 0


def make_fake_app(server: FakeSpeechServer) -> Starlette:
    async def paced(parts: list[tuple[float, bytes]]) -> AsyncIterator[bytes]:
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            for delay_s, data in parts:
                await asyncio.sleep(delay_s)
                yield data
        finally:
            server.in_flight -= 1

    async def speech(request: Request) -> Response:
        payload = await request.json()
        server.payloads.append(payload)
        script = payload["input"]
        if script == "bad-request":
            envelope = {
                "error": {
                    "message": "voice 'nobody' is not available",
                    "type": "invalid_request_error",
                    "param": "voice",
                    "code": None,
                }
            }
            return JSONResponse(envelope, status_code=400)
        parts = {
            "stall": [(0.1, bytes(TENTH_S)), (0.4, bytes(TENTH_S)), (0.05, bytes(HALF_S))],
            "wav": [(0.0, wav_header()), (0.15, bytes(TENTH_S)), (0.02, bytes(TENTH_S))],
            "bad-riff": [(0.0, wav_header(riff=b"RIFX") + bytes(TENTH_S))],
            "odd": [(0.0, bytes(TENTH_S + 1))],
            "slow": [(2.0, bytes(TENTH_S))],
            "quick": [(0.05, bytes(TENTH_S)), (0.0, bytes(TENTH_S))],
        }[script]
        return StreamingResponse(paced(parts), media_type="application/octet-stream")

    return Starlette(routes=[Route("/v1/audio/speech", speech, methods=["POST"])])


@pytest.fixture(scope="module")
def running_server() -> Iterator[FakeSpeechServer]:
    state = FakeSpeechServer()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make_fake_app(state), lifespan="off", log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.01)
    yield state
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def fake_server(running_server: FakeSpeechServer) -> FakeSpeechServer:
    running_server.reset()
    return running_server


def load(url: str, texts: list[str], **options: Any) -> list[RequestRecord]:
    config = LoadConfig(url=url, **{"requests": len(texts), "concurrency": 4, **options})
    return asyncio.run(run_load(config, texts))


def test_run_load_measures_ttfa_chunks_and_stalls(fake_server: FakeSpeechServer) -> None:
    [record] = load(fake_server.url, ["stall"])
    assert record.ok, record.error_detail
    assert record.status == 200
    assert [size for _, size in record.chunks] == [TENTH_S, TENTH_S, HALF_S]
    assert record.audio_s == pytest.approx(0.7)
    assert record.ttfa_s is not None and 0.09 <= record.ttfa_s < 0.4
    assert record.latency_s >= 0.55
    [stall] = find_stalls(record.chunks)
    assert stall == pytest.approx(0.3, abs=0.1)
    assert max_gap(record.chunks) == pytest.approx(0.4, abs=0.1)


def test_run_load_wav_ttfa_starts_after_header(fake_server: FakeSpeechServer) -> None:
    [record] = load(fake_server.url, ["wav"], response_format="wav")
    assert record.ok, record.error_detail
    assert record.audio_bytes == 2 * TENTH_S
    assert record.ttfa_s is not None and record.ttfa_s >= 0.14
    assert fake_server.payloads[0]["response_format"] == "wav"


def test_run_load_counts_http_errors_with_envelope_message(fake_server: FakeSpeechServer) -> None:
    records = load(fake_server.url, ["bad-request", "quick", "bad-request"])
    assert [record.error for record in records] == ["http_400", None, "http_400"]
    assert records[0].status == 400
    assert records[0].error_detail == "voice 'nobody' is not available"
    assert summarize(records).errors == {"http_400": 2}


def test_run_load_rejects_odd_byte_count(fake_server: FakeSpeechServer) -> None:
    [record] = load(fake_server.url, ["odd"])
    assert record.error == "invalid_body"
    assert "odd" in (record.error_detail or "")


def test_run_load_rejects_bad_riff_header(fake_server: FakeSpeechServer) -> None:
    [record] = load(fake_server.url, ["bad-riff"], response_format="wav")
    assert record.error == "invalid_body"


def test_run_load_times_out(fake_server: FakeSpeechServer) -> None:
    [record] = load(fake_server.url, ["slow"], timeout_s=0.2)
    assert record.error == "timeout"
    assert record.latency_s < 1.0


def test_run_load_reports_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [record] = load(f"http://127.0.0.1:{port}", ["quick"])
    assert record.error == "connect_error"
    assert record.status is None


def test_run_load_reports_broken_stream_as_transport_error() -> None:
    class BrokenStream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield bytes(TENTH_S)
            raise httpx.RemoteProtocolError("peer closed connection")

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=BrokenStream()))
    config = LoadConfig(url="http://tts.test", requests=1, concurrency=1)
    [record] = asyncio.run(run_load(config, ["hello"], transport=transport))
    assert record.error == "transport_error"


def test_run_load_closed_loop_holds_concurrency(fake_server: FakeSpeechServer) -> None:
    completed: list[int] = []
    config = LoadConfig(url=fake_server.url, requests=7, concurrency=3)
    records = asyncio.run(
        run_load(config, ["quick"], on_complete=lambda record: completed.append(record.index))
    )
    assert [record.index for record in records] == list(range(7))
    assert all(record.ok for record in records)
    assert sorted(completed) == list(range(7))
    assert len(fake_server.payloads) == 7
    assert fake_server.max_in_flight == 3


def test_run_load_open_loop_follows_seeded_arrivals(fake_server: FakeSpeechServer) -> None:
    records = load(fake_server.url, ["quick"] * 5, rate=50.0, seed=3, concurrency=10)
    expected = poisson_arrivals(5, rate=50.0, seed=3)
    assert [record.start_s for record in records] == expected
    for record in records:
        assert record.ok
        assert record.sent_s is not None and record.sent_s >= record.start_s


def test_run_load_mix_stream_alternates_and_passes_options(fake_server: FakeSpeechServer) -> None:
    load(
        fake_server.url,
        ["quick"] * 4,
        concurrency=1,
        stream_mode="mix",
        max_tokens=500,
        temperature=0.7,
        voice="idayu",
    )
    assert [payload["stream"] for payload in fake_server.payloads] == [True, False, True, False]
    assert fake_server.payloads[0] == {
        "input": "quick",
        "voice": "idayu",
        "model": "TTS-model",
        "response_format": "pcm",
        "stream": True,
        "max_tokens": 500,
        "temperature": 0.7,
    }
    load(fake_server.url, ["quick"], stream_mode="off")
    assert "max_tokens" not in fake_server.payloads[-1]
    assert fake_server.payloads[-1]["stream"] is False


def test_main_prints_report_and_writes_json_and_png(
    fake_server: FakeSpeechServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("quick\n\nbad-request\n", encoding="utf-8")
    output = tmp_path / "out" / "results.json"
    status = main(
        [
            "--url", fake_server.url,
            "--requests", "4",
            "--concurrency", "2",
            "--texts-file", str(texts_file),
            "--output", str(output),
        ]
    )  # fmt: skip
    assert status == 0
    report = capsys.readouterr().out
    assert report.startswith("=== SLO LATENCY REPORT ===\nTotal Requests: 4\n")
    assert "http_400: 2" in report
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["config"]["concurrency"] == 2
    assert document["config"]["texts_file"] == str(texts_file)
    assert document["summary"]["successful"] == 2
    assert [request["error"] for request in document["requests"]] == [
        None, "http_400", None, "http_400",
    ]  # fmt: skip
    assert document["requests"][0]["chunks"][0][1] == TENTH_S
    assert output.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_main_exits_nonzero_when_everything_failed(
    fake_server: FakeSpeechServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("bad-request\n", encoding="utf-8")
    argv = ["--url", fake_server.url, "--requests", "2", "--texts-file", str(texts_file)]
    assert main(argv) == 1
    assert "No successful requests" in capsys.readouterr().out


def test_report_shows_server_steps_to_first_audio_from_x_timing():
    from stress_test.report import parse_timing

    assert parse_timing(None) is None
    assert parse_timing("parse=0.5;bad;first_byte=x;engine_open=3") == {"parse": 0.5,
                                                                        "engine_open": 3.0}
    records = []
    for i, first_byte in enumerate((100.0, 200.0, 300.0)):
        record = make_record(i, chunks=[(0.1, 4800)])
        record.timing = parse_timing(f"parse=1;engine_first_token=50;first_byte={first_byte}")
        records.append(record)
    records.append(make_record(3, chunks=[(0.1, 4800)]))  # no header: left out
    summary = summarize(records)
    assert summary.first_audio_steps_ms is not None
    assert list(summary.first_audio_steps_ms) == ["parse", "engine_first_token", "first_byte"]
    assert summary.first_audio_steps_ms["first_byte"][0] == pytest.approx(200.0)
    text = format_report(summary)
    assert "first_byte: p50 200.0 ms (+150.0)" in text
