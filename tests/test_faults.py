"""Faults, on the scripted engine (fault injection is what it is for): an engine that dies,
stalls or talks nonsense, a codec that throws, a client that stops reading, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.server import create_app
from tests.fakes import RecordingCodec
from tests.servers import free_port, serve
from tests.tcp_proxy import killable

SPEECH = "/v1/audio/speech"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def reset_script(script):
    script.frames, script.delay_s, script.misplace_at = 12, 0.0, None
    script.requests.clear()


def settings_for(engine_url: str, **overrides) -> Settings:
    return Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10, **overrides)


def wait_until(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def test_engine_killed_mid_stream_ends_every_stream_quickly_and_recovers(engine_url, script):
    script.frames, script.delay_s = 2000, 0.01  # long, paced generations
    codec = RecordingCodec(delay_s=0.0)
    with killable(engine_url) as proxy:
        app = create_app(settings_for(proxy.url, MAX_CONCURRENT_STREAMS=8),
                         codec_factory=lambda s: codec)
        with serve(app) as url:
            ended: dict[int, float] = {}

            def listen(i: int) -> None:
                try:
                    with httpx.stream("POST", url + SPEECH, json={"input": "x" * 50},
                                      timeout=30) as r:
                        for _ in r.iter_bytes():
                            pass
                except httpx.HTTPError:
                    pass
                ended[i] = time.monotonic()

            threads = [threading.Thread(target=listen, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            assert wait_until(lambda: script.running == 3, 10)
            time.sleep(0.3)  # audio is flowing
            codec.gate.clear()  # the codec stalls: windows pile up behind it
            time.sleep(0.2)
            killed_at = time.monotonic()
            proxy.kill()
            for t in threads:
                t.join(10)
            codec.gate.set()
            assert len(ended) == 3
            after = sorted(round(t - killed_at, 3) for t in ended.values())
            print(f"\nstreams ended {after} s after the engine was killed", file=sys.stderr)
            assert max(after) < 2.0, after

            r = httpx.post(url + SPEECH, json={"input": "Hello"}, timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"]
            assert r.json()["error"]["code"] == "engine_unavailable"
            assert proxy.url.split("//")[1] not in r.text
            health = httpx.get(url + "/health", timeout=10)
            assert health.status_code == 503
            assert health.json()["engine"]["reachable"] is False
            assert str(proxy.port) not in health.text

            script.frames, script.delay_s = 12, 0.0
            proxy.revive()
            r = httpx.post(url + SPEECH, json={"input": "Hello"}, timeout=10)
            assert r.status_code == 200 and len(r.content) == 5 * 2048 * 2
            assert httpx.get(url + "/health", timeout=10).status_code == 200
            assert app.state.tts.admission.in_use == 0


def test_one_lost_engine_connection_ends_only_that_stream_while_the_engine_answers(
        engine_url, script):
    """Behind a router one engine may die while the others serve: a stream whose engine
    connection breaks ends, and the others (their engine still answers /health) finish."""
    script.frames, script.delay_s = 300, 0.01  # about 3 s of paced generation each
    app = create_app(settings_for(engine_url, MAX_CONCURRENT_STREAMS=8),
                     codec_factory=lambda s: RecordingCodec(delay_s=0.0))
    with serve(app) as url:
        got: dict[str, int] = {}

        def listen(text: str) -> None:
            received = 0
            try:
                with httpx.stream("POST", url + SPEECH, timeout=30,
                                  json={"input": text, "response_format": "pcm"}) as r:
                    for data in r.iter_bytes():
                        received += len(data)
            except httpx.HTTPError:
                pass
            got[text] = received

        words = " and on" * 12
        texts = [f"Keeps going{words}.", f"DROP_MIDWAY here{words}.", f"Also keeps going{words}."]
        for text in (texts[0], texts[2]):  # what each gets alone
            listen(text)
        alone = dict(got)
        threads = [threading.Thread(target=listen, args=(t,)) for t in texts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert got[texts[0]] == alone[texts[0]] > 0 and got[texts[2]] == alone[texts[2]], got
        assert 0 < got[texts[1]] < alone[texts[0]], got
        assert app.state.tts.admission.in_use == 0


def test_engine_that_sends_nothing_is_abandoned_after_the_stall_timeout(engine_url, script):
    app = create_app(settings_for(engine_url, ENGINE_STALL_TIMEOUT_S=1.0),
                     codec_factory=lambda s: RecordingCodec())
    aborted = script.aborted
    with serve(app) as url:
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(url + SPEECH, json={"input": "STALL_FOREVER please"}, timeout=30)
        took = time.monotonic() - started
        assert 1.0 <= took < 4.0, took
        assert wait_until(lambda: script.aborted == aborted + 1, 5)
        assert httpx.post(url + SPEECH, json={"input": "Hi"}, timeout=10).status_code == 200


def test_malformed_engine_output_ends_the_stream_and_is_counted(engine_url, script):
    app = create_app(settings_for(engine_url), codec_factory=lambda s: RecordingCodec())
    with serve(app) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(url + SPEECH, json={"input": "MALFORMED_OUTPUT now"}, timeout=10)
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert wait_until(lambda: script.running == 0, 5)
        assert 'tts_requests_total{' in metrics
        errors = [line for line in metrics.splitlines()
                  if line.startswith("tts_requests_total{") and 'outcome="ok"' not in line]
        assert any(float(line.rsplit(" ", 1)[1]) >= 1 for line in errors), metrics


def test_codec_failure_fails_that_request_only(engine_url):
    codec = RecordingCodec()
    app = create_app(settings_for(engine_url), codec_factory=lambda s: codec)
    with serve(app) as url:
        codec.fail = True
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(url + SPEECH, json={"input": "Hello there"}, timeout=10)
        codec.fail = False
        r = httpx.post(url + SPEECH, json={"input": "Hello there"}, timeout=10)
        assert r.status_code == 200 and len(r.content) == 11 * 2048 * 2
        assert app.state.tts.worker.alive


def test_slow_reader_is_dropped_after_the_send_timeout_without_slowing_others(engine_url,
                                                                             script):
    script.frames, script.delay_s = 2000, 0.002  # each segment generates for seconds
    app = create_app(settings_for(engine_url, SEND_TIMEOUT_S=1.0),
                     codec_factory=lambda s: RecordingCodec())
    aborted, sent = script.aborted, len(script.requests)
    with serve(app) as url:
        host, port = url.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = b'{"input": "' + b"word " * 600 + b'"}'
        slow.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        # Meanwhile another client is served normally.
        started = time.monotonic()
        r = httpx.post(url + SPEECH, json={"input": "Hello there"}, timeout=10)
        assert r.status_code == 200 and time.monotonic() - started < 3
        # The slow client is dropped and its engine requests aborted.
        assert wait_until(lambda: script.running == 0, 15)
        assert script.aborted - aborted >= 1  # engine work stopped, not run to the end
        assert wait_until(lambda: app.state.tts.admission.in_use == 0, 5)
        assert len(script.requests) - sent - 1 < 10  # the rest of its segments never started
        slow.close()


def test_sigterm_drains_then_exits(engine_url, script, tmp_path):
    script.frames, script.delay_s = 60, 0.02  # ~0.6 s of generation
    port = free_port()
    env = {**os.environ, "TTS_API": engine_url, "SNAC_MODEL": "random", "PORT": str(port),
           "HOST": "127.0.0.1", "ENGINE_STARTUP_TIMEOUT_S": "10", "SHUTDOWN_GRACE_S": "20",
           "DATA_DIR": str(tmp_path), "CODEC_THREADS": "1"}
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _up(url), 120, 0.5), "API did not start"
        result: dict[str, object] = {}

        def listen() -> None:
            r = httpx.post(url + SPEECH, json={"input": "x" * 60, "response_format": "wav",
                                               "stream": False}, timeout=60)
            result["status"], result["bytes"] = r.status_code, len(r.content)

        thread = threading.Thread(target=listen)
        thread.start()
        assert wait_until(lambda: script.running == 1, 10)
        process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _health(url).get("status") == "draining", 5)
        refused = httpx.post(url + SPEECH, json={"input": "Hi"}, timeout=10)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_draining"
        thread.join(30)
        assert result == {"status": 200, "bytes": 44 + 60 * 2048 * 2}
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _health(url: str) -> dict:
    try:
        return httpx.get(url + "/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}
