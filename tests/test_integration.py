"""The real stack over loopback: vLLM CPU engine on the demo model + the real proxy + SNAC.

Clients are the ones users use: the openai SDK, and httpx doing what the seed's curl does.
"""

from __future__ import annotations

import asyncio
import io
import re
import struct
import time
import wave

import httpx
import pytest
from openai import OpenAI

from app.config import Settings
from app.protocol import SpeechRequest
from app.server import create_app
from tests.servers import serve

pytestmark = pytest.mark.engine
SPEECH = "/v1/audio/speech"
SAMPLES_PER_FRAME = 2048


@pytest.fixture(scope="module")
def api_url(engine):
    # Room for the batching test's six concurrent requests: admission is tested elsewhere.
    settings = Settings(TTS_API=engine.config.url, SNAC_MODEL="random", DYNAMIC_BATCHING=True,
                        MICROSLEEP=0.02, ENGINE_STARTUP_TIMEOUT_S=60, MAX_CONCURRENT_STREAMS=8)
    app = create_app(settings)
    with serve(app) as url:
        serve.app = app
        yield url


@pytest.fixture(scope="module")
def app_state(api_url):
    return serve.app.state.tts


@pytest.fixture
def sdk(api_url):
    return OpenAI(base_url=api_url + "/v1", api_key="x", max_retries=0)


def engine_gauge(engine, name: str) -> float:
    text = httpx.get(engine.config.url + "/metrics", timeout=30).text
    values = [float(m[1]) for m in re.finditer(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text,
                                                   re.MULTILINE)]
    return sum(values)


def engine_counter(engine, name: str, label: str) -> float:
    """Sum of the engine's `name` samples carrying `label` (e.g. 'finished_reason="abort"')."""
    text = httpx.get(engine.config.url + "/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def pcm_seconds(n_bytes: int) -> float:
    return n_bytes / 2 / 24000


def test_openai_sdk_writes_a_wav_file(sdk, tmp_path):
    path = tmp_path / "a.wav"
    sdk.audio.speech.create(model="TTS-model", voice="husein", input="Hello there.",
                            response_format="wav").write_to_file(path)
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    channels, rate = struct.unpack("<HI", data[22:28])
    assert (channels, rate) == (1, 24000)
    pcm = len(data) - 44
    assert pcm > 0 and pcm % (SAMPLES_PER_FRAME * 2) == 0


def test_openai_sdk_streams_pcm(sdk, app_state):
    chunks = []
    with sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Hi! This is a streamed test sentence.",
            response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["x-tts-demo"] == "true"
        chunks.extend(response.iter_bytes())
    total = sum(len(c) for c in chunks)
    # Two segments ("Hi!" and the rest): whole frames of audio plus the pause between them.
    job = app_state.speech.prepare(SpeechRequest(input="Hi! This is a streamed test sentence."),
                                   "req_plan")
    pause_bytes = sum(round(s.pause_s * 24000) * 2 for s in job.segments)
    assert len(job.segments) == 2 and pause_bytes > 0
    assert total > pause_bytes and (total - pause_bytes) % (SAMPLES_PER_FRAME * 2) == 0


def test_seed_curl_example_streams_wav(api_url):
    seed = {
        "input": "Hello! How can I help you? can I get your passport number sir.",
        "voice": "husein", "model": "TTS-model", "response_format": "wav",
        "temperature": 0.7, "stream": True, "playback_speed": 0.5,
        "playback_overlap_speed": 0.1, "normalize_malaysian": True,
    }
    with httpx.stream("POST", api_url + SPEECH, json=seed, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        body = b"".join(r.iter_bytes())
    assert struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    assert len(body) > 44 + 4 * SAMPLES_PER_FRAME * 2


def test_non_streamed_wav_has_exact_header_sizes(api_url):
    r = httpx.post(api_url + SPEECH, timeout=120, json={
        "input": "Exact sizes please.", "response_format": "wav", "stream": False,
        "repetition_penalty": 1.1, "max_tokens": 140})
    assert r.status_code == 200
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() * 2 == len(r.content) - 44
    assert w.getnframes() <= 20 * SAMPLES_PER_FRAME  # max_tokens 140 = 20 frames


def test_temperature_zero_is_deterministic_in_length_and_tokens(api_url, app_state):
    body = {"input": "Same every time.", "temperature": 0, "stream": False}
    first = httpx.post(api_url + SPEECH, json=body, timeout=120)
    second = httpx.post(api_url + SPEECH, json=body, timeout=120)
    assert first.status_code == second.status_code == 200
    assert len(first.content) == len(second.content) > 0
    assert app_state.metrics.misplaced_tokens == 0


def batches_since(before: dict[int, int], stats) -> dict[int, int]:
    """Decode calls per batch size (in windows) since `before`, a copy of the histogram."""
    now = dict(stats.batch_histogram)
    return {size: now[size] - before.get(size, 0) for size in sorted(now)
            if now[size] > before.get(size, 0)}


async def test_concurrent_requests_are_batched_by_the_codec_worker(api_url, app_state):
    """DECODE_MODE=windows (what a GPU runs): equal-length windows of concurrent streams are
    decoded in one call. (Stream mode decodes one stream per call; the app here runs it.)"""
    # The worker's stats live as long as the app: compare this test's decodes only, so an
    # earlier test's batch cannot pass it.
    before = dict(app_state.worker.stats.batch_histogram)
    streamed, app_state.speech.streamed_decode = app_state.speech.streamed_decode, False
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=180) as client:
            responses = await asyncio.gather(*[
                client.post(SPEECH, json={
                    "input": f"Concurrent request number {i}, a longer text.",
                    "voice": ["husein", "idayu", "jenny", "nova"][i % 4], "temperature": 0.8,
                    "playback_speed": 0.5, "playback_overlap_speed": 0.1})
                for i in range(6)])
    finally:
        app_state.speech.streamed_decode = streamed
    assert [r.status_code for r in responses] == [200] * 6, [
        r.text for r in responses if r.status_code != 200]
    assert all(len(r.content) > 0 for r in responses)
    batches = batches_since(before, app_state.worker.stats)
    assert sum(size * calls for size, calls in batches.items()) >= 6, batches  # a window each
    assert max(batches, default=0) >= 2, batches


def wait_engine_idle(engine, settle_s: float = 1.0, timeout_s: float = 60) -> None:
    """Until nothing runs and the token counter has stopped moving (gauges trail a little)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = (engine_gauge(engine, "vllm:num_requests_running"),
               engine_counter(engine, "vllm:generation_tokens_total", ""))
        if now == last and now[0] == 0:
            return
        last = now
        time.sleep(settle_s)
    raise AssertionError("engine did not go idle")


def test_client_disconnect_aborts_the_engine_request(api_url, engine):
    # vLLM does not count aborted requests as finished; it just stops generating them. At
    # temperature 0 the demo model never stops by itself, so without the abort the engine
    # would generate all max_tokens.
    wait_engine_idle(engine)
    tokens_before = engine_counter(engine, "vllm:generation_tokens_total", "")
    long_text = "This sentence is long so that generation takes a while. " * 20
    max_tokens = 6000  # prompt + this fits the engine's 8192 context; seconds of generation
    with httpx.stream("POST", api_url + SPEECH, timeout=120,
                      json={"input": long_text, "max_tokens": max_tokens, "temperature": 0,
                            "playback_speed": 0.3, "playback_overlap_speed": 0.05}) as r:
        # The status line comes once the engine has accepted the request; hang up now. (The
        # tiny demo model outruns the proxy: waiting for audio could let it finish first.)
        assert r.status_code == 200
    wait_engine_idle(engine)
    assert engine_counter(engine, "vllm:generation_tokens_total", "") - tokens_before < (
        max_tokens / 2)


@pytest.mark.parametrize("fields,status", [
    ({"voice": "nobody"}, 400), ({"response_format": "ogg"}, 400), ({"speed": 9.0}, 400),
    ({"model": "no-such-model"}, 404), ({"input": ""}, 400), ({"max_tokens": -5}, 400),
])
def test_invalid_requests_get_4xx_envelopes(api_url, fields, status):
    r = httpx.post(api_url + SPEECH, json={"input": "Hello", **fields}, timeout=30)
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_openai_sdk_sees_errors_as_api_errors(sdk):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        sdk.audio.speech.create(model="tts-1", voice="nobody", input="Hi", response_format="wav")
    assert info.value.body["param"] == "voice"


def test_health_reports_engine_codec_and_demo(api_url):
    health = httpx.get(api_url + "/health").json()
    assert health["status"] == "ok" and health["demo"] is True
    assert health["engine"]["profile"] == "demo" and health["codec"]["random_weights"]


def report_sections(report: str) -> dict[str, dict[str, str]]:
    """The stress-test report as {section title: {label: value}}; lines without a colon
    (e.g. "No errors") are kept with an empty value."""
    sections: dict[str, dict[str, str]] = {}
    fields: dict[str, str] = {}
    for line in report.splitlines():
        if heading := re.fullmatch(r"=== (.+) ===", line):
            fields = sections.setdefault(heading[1], {})
        elif line and not line.startswith("==="):
            label, _, value = line.partition(": ")
            fields[label] = value
    return sections


def seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def test_stress_test_cli_reports_on_the_real_stack(api_url, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "stress_test", "--url", api_url, "--requests", "4",
         "--concurrency", "2", "--mix-stream", "--format", "wav", "--output", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    report = report_sections(run.stdout)
    assert list(report) == ["SLO LATENCY REPORT", "AUDIO & REAL-TIME FACTOR (RTF) REPORT",
                            "TIME TO FIRST AUDIO (TTFA)", "THROUGHPUT", "ERRORS",
                            "STREAMING STALLS (UNDERRUNS)"], run.stdout
    slo, rtf, ttfa = (report[k] for k in ("SLO LATENCY REPORT",
                                          "AUDIO & REAL-TIME FACTOR (RTF) REPORT",
                                          "TIME TO FIRST AUDIO (TTFA)"))
    assert slo["Total Requests"] == "4"
    latency = [seconds(slo[k]) for k in ("Min Time", "P50 (Median)", "P90", "P95", "P99",
                                         "Max Time")]
    assert 0 < latency[0] and latency == sorted(latency), slo
    first_audio = [seconds(ttfa[k]) for k in ("Min TTFA", "P50 TTFA", "P99 TTFA", "Max TTFA")]
    assert 0 < first_audio[0] and first_audio == sorted(first_audio), ttfa
    assert first_audio[-1] <= latency[-1]  # first audio comes before the last byte
    assert seconds(rtf["Avg Audio Duration"]) > 0
    assert 0 < float(rtf["P50 RTF"]) <= float(rtf["P99 RTF"]), rtf
    throughput = report["THROUGHPUT"]
    assert (throughput["Successful Requests"], throughput["Failed Requests"]) == ("4", "0")
    assert float(throughput["Audio Seconds/s"]) > 0
    assert report["ERRORS"] == {"No errors": ""}, run.stdout
    stalled, _, of = report["STREAMING STALLS (UNDERRUNS)"]["Requests With Stalls"].partition("/")
    assert int(stalled) <= int(of) == 4

    document = json.loads(out.read_text())
    records = sorted(document["requests"], key=lambda record: record["index"])
    assert [record["index"] for record in records] == [0, 1, 2, 3]
    assert [record["stream"] for record in records] == [True, False, True, False]  # --mix-stream
    for record in records:
        assert (record["ok"], record["status"], record["error"]) == (True, 200, None), record
        assert record["response_format"] == "wav"
        # The WAV header is not counted as audio: whole 16-bit samples remain.
        assert record["audio_bytes"] > 0 and record["audio_bytes"] % 2 == 0
        assert record["audio_s"] == pytest.approx(pcm_seconds(record["audio_bytes"]))
        assert record["ttfa_s"] is not None and 0 < record["ttfa_s"] <= record["latency_s"]
    summary = document["summary"]
    assert (summary["total_requests"], summary["successful"], summary["failed"]) == (4, 4, 0)
    # The printed report and the JSON summary are the same numbers.
    assert f"{summary['avg_audio_s']:.3f}s" == rtf["Avg Audio Duration"]
    assert f"{summary['latency_s']['p50']:.3f}s" == slo["P50 (Median)"]
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
