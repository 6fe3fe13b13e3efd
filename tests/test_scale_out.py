"""Scale-out over loopback: two vLLM CPU engines behind vllm-router, two API replicas sharing
voices in PostgreSQL. Heavy on a small box, so every request is short and there are few.

Measured numbers (the split across engines, the failover time) are printed with -s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.server import create_app
from stack.engine import EngineProcess, EngineStartError
from stack.router import RouterConfig, RouterProcess
from stress_test.load import LoadConfig, run_load
from tests.audio_clips import reference_wav
from tests.engine_fixtures import CACHE, ROOT, _start_engine
from tests.postgres_fixtures import fresh_database
from tests.servers import free_port, serve

pytestmark = pytest.mark.engine
SPEECH = "/v1/audio/speech"
REFERENCE_TEXT = "I wonder if I shall ever be happy enough to have real lace on my clothes."


def router_binary() -> Path:
    return Path(os.environ.get("VLLM_ROUTER", ROOT / ".venv-router/bin/vllm-router"))


@dataclass
class Router:
    url: str
    metrics_url: str
    process: RouterProcess


@dataclass
class Stack:
    engines: list[EngineProcess]
    router: Router
    replicas: list[str]


def engine_samples(engine: EngineProcess, name: str, label: str = "") -> float:
    """Sum of the engine's `name{...}` samples whose labels contain `label`."""
    text = httpx.get(engine.config.url + "/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def successes(engines: list[EngineProcess]) -> list[float]:
    return [engine_samples(e, "vllm:request_success_total", 'finished_reason="length"')
            + engine_samples(e, "vllm:request_success_total", 'finished_reason="stop"')
            for e in engines]


@pytest.fixture(scope="module")
def second_engine(demo_model_dir) -> Iterator[EngineProcess]:
    """Another vLLM on the demo model; this module kills it, so it is not the session's."""
    yield from _start_engine(demo_model_dir, "test-engine-scale-out.log")


@pytest.fixture(scope="module")
def router(engine, second_engine) -> Iterator[Router]:
    binary = router_binary()
    if not binary.exists():
        pytest.skip(f"vllm-router not installed ({binary}); `make setup` installs it, or set "
                    "VLLM_ROUTER")
    config = RouterConfig(binary, [engine.config.url, second_engine.config.url],
                          port=free_port(), metrics_port=free_port(), health_interval_s=1)
    process = RouterProcess(config, CACHE / "test-router.log")
    process.start()
    try:
        try:
            process.wait_ready(2)
        except EngineStartError as exc:
            pytest.fail(str(exc))
        yield Router(config.url, f"http://127.0.0.1:{config.metrics_port}/metrics", process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stack(engine, second_engine, router, postgres_url, tmp_path_factory) -> Iterator[Stack]:
    voices = fresh_database(postgres_url, "voices_scale_out")
    with contextlib.ExitStack() as servers:
        replicas = []
        for name in ("a", "b"):
            settings = Settings(
                TTS_API=router.url, ENGINE_HEALTH_PATH="/readiness", VOICE_STORE_URL=voices,
                SNAC_MODEL="random", CODEC_THREADS=1, ENGINE_STARTUP_TIMEOUT_S=120,
                ENGINE_STALL_TIMEOUT_S=20, MAX_CONCURRENT_STREAMS=8,
                DATA_DIR=str(tmp_path_factory.mktemp(f"replica-{name}")))
            replicas.append(servers.enter_context(serve(create_app(settings))))
        yield Stack([engine, second_engine], router, replicas)


def test_router_passes_the_engine_api_through(stack):
    direct, routed = stack.engines[0].config.url, stack.router.url
    body = {"model": "TTS-model", "prompt": "<|speech_end|>", "add_special_tokens": False}
    assert (httpx.post(routed + "/tokenize", json=body, timeout=30).json()["tokens"]
            == httpx.post(direct + "/tokenize", json=body, timeout=30).json()["tokens"])
    assert ([m["id"] for m in httpx.get(routed + "/v1/models", timeout=30).json()["data"]]
            == ["TTS-model"])
    assert httpx.get(routed + "/health", timeout=30).text == "All servers healthy"
    for replica in stack.replicas:
        health = httpx.get(replica + "/health", timeout=30).json()
        assert health["status"] == "ok" and health["engine"]["reachable"], health


def test_stress_across_both_replicas_uses_both_engines(stack):
    before = successes(stack.engines)
    texts = ["Hello there.", "One more line.", "Short and sweet.", "Last one."]

    async def both() -> list:
        runs = [run_load(LoadConfig(url=replica, requests=3, concurrency=2, timeout_s=120,
                                    seed=i), texts)
                for i, replica in enumerate(stack.replicas)]
        return [record for records in await asyncio.gather(*runs) for record in records]

    records = asyncio.run(both())
    failed = [(r.error, r.error_detail) for r in records if not r.ok]
    assert not failed and len(records) == 6
    assert all(r.audio_bytes > 0 for r in records)
    split = [after - b for after, b in zip(successes(stack.engines), before, strict=True)]
    print(f"\nrequests served per engine: {split}", file=sys.stderr)
    assert sum(split) == 6 and min(split) >= 1, split


def test_voice_created_on_one_replica_speaks_on_the_other(stack):
    a, b = stack.replicas
    created = httpx.post(a + "/v1/audio/voices", timeout=120, files={
        "name": (None, "Jenny"), "consent": (None, "cons_1"),
        "reference_text": (None, REFERENCE_TEXT),
        "audio_sample": ("jenny.wav", reference_wav(2.0), "audio/wav")})
    assert created.status_code == 200, created.text
    voice_id = created.json()["id"]
    assert voice_id in {v["id"] for v in httpx.get(b + "/v1/audio/voices", timeout=30)
                        .json()["data"]}
    speech = httpx.post(b + SPEECH, timeout=180, json={
        "model": "tts-1", "voice": {"id": voice_id}, "input": "Hi.", "response_format": "pcm"})
    assert speech.status_code == 200, speech.text
    assert len(speech.content) > 0
    assert httpx.delete(b + f"/v1/audio/voices/{voice_id}", timeout=30).status_code == 200
    gone = httpx.post(a + SPEECH, timeout=60, json={
        "model": "tts-1", "voice": {"id": voice_id}, "input": "Hi.", "response_format": "pcm"})
    assert gone.status_code == 404


def wait_for(check, timeout_s: float) -> float | None:
    """Seconds until `check()` held, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def wait_engines_idle(engines: list[EngineProcess], timeout_s: float = 60) -> None:
    """Until nothing runs and the token counters stopped moving (vLLM's gauges trail)."""
    last = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = [(engine_samples(e, "vllm:num_requests_running"),
                engine_samples(e, "vllm:generation_tokens_total")) for e in engines]
        if now == last and all(running == 0 for running, _ in now):
            return
        last = now
        time.sleep(1.0)
    raise AssertionError("the engines did not go idle")


def test_client_disconnect_aborts_through_the_router(stack):
    """vLLM does not count an aborted request as finished, it stops generating it: at
    temperature 0 the demo model never stops by itself, so without the abort the engine would
    generate all max_tokens."""
    wait_engines_idle(stack.engines)
    before = sum(engine_samples(e, "vllm:generation_tokens_total") for e in stack.engines)
    max_tokens = 6000
    body = {"input": "This sentence is long so that generation takes a while. " * 20,
            "max_tokens": max_tokens, "temperature": 0, "response_format": "pcm"}
    with httpx.stream("POST", stack.replicas[0] + SPEECH, json=body, timeout=120) as response:
        assert response.status_code == 200  # hang up at once: the demo model outruns us
    wait_engines_idle(stack.engines)
    generated = sum(engine_samples(e, "vllm:generation_tokens_total")
                    for e in stack.engines) - before
    print(f"\n{generated:.0f} of {max_tokens} tokens generated before the abort",
          file=sys.stderr)
    assert generated < max_tokens / 2


def test_killed_engine_fails_over_and_no_stream_hangs(stack):
    """Streams on the killed engine end (truncated); new requests go to the survivor."""
    victim = stack.engines[1]
    body = {"model": "TTS-model", "voice": "husein", "response_format": "pcm",
            "input": "Streams in flight while an engine dies. " * 3}
    ended: list[tuple[float, int]] = []

    def stream_until_end() -> None:
        start, size = time.monotonic(), 0
        with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "POST", stack.replicas[0] + SPEECH, json=body, timeout=60) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
        ended.append((time.monotonic() - start, size))

    streams = [threading.Thread(target=stream_until_end) for _ in range(2)]
    for thread in streams:
        thread.start()
    wait_for(lambda: engine_samples(victim, "vllm:num_requests_running") > 0, 20)
    os.killpg(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    noticed: list[float] = []

    def watch_router() -> None:
        def marked() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return victim.config.url in httpx.get(stack.router.url + "/health",
                                                      timeout=5).text
            return False

        if wait_for(marked, 60) is not None:
            noticed.append(time.monotonic() - killed)

    watcher = threading.Thread(target=watch_router)
    watcher.start()
    quick = {"model": "TTS-model", "voice": "husein", "input": "Still here.",
             "response_format": "pcm"}
    outcomes = []
    for replica in stack.replicas * 2:
        sent = time.monotonic()
        response = httpx.post(replica + SPEECH, json=quick, timeout=120)
        outcomes.append((round(sent - killed, 2), response.status_code, len(response.content)))
    watcher.join(70)
    for thread in streams:
        thread.join(90)
    print(f"\nafter the kill: requests (s after kill, status, bytes) {outcomes}; the router "
          f"marked the engine unhealthy after {noticed} s; in-flight streams ended after "
          f"{[(round(t, 1), size) for t, size in ended]} (s, bytes)", file=sys.stderr)
    assert not any(thread.is_alive() for thread in streams), "a stream hung"
    assert len(ended) == 2
    assert all(status == 200 and size > 0 for _, status, size in outcomes), outcomes
    assert noticed, "the router never marked the killed engine unhealthy"
    readiness = httpx.get(stack.router.url + "/readiness", timeout=10).json()
    assert readiness["healthy_workers"] == 1
    for replica in stack.replicas:
        assert httpx.get(replica + "/health", timeout=30).status_code == 200
    assert re.search(r"vllm_router_processed_requests_total",
                     httpx.get(stack.router.metrics_url, timeout=10).text)
