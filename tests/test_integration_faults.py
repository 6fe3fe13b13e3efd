"""A fault on the real stack: the link to a real vLLM engine dies mid-stream."""

from __future__ import annotations

import sys
import threading
import time

import httpx
import pytest

from app.config import Settings
from app.server import create_app
from tests.servers import serve
from tests.tcp_proxy import killable
from tests.test_integration import engine_gauge

pytestmark = pytest.mark.engine
# Twelve segments: each stream keeps engine requests running for many seconds.
LONG_TEXT = " ".join(f"Here is sentence number {i} of a long reply." for i in range(12))
FULL_BYTES = len(LONG_TEXT) * 2048 * 2  # the demo speaks at most a frame per character


def test_engine_lost_mid_stream_ends_streams_within_2_s_and_recovers(engine):
    with killable(engine.config.url) as link:
        settings = Settings(TTS_API=link.url, SNAC_MODEL="random", ENGINE_STARTUP_TIMEOUT_S=60,
                            MAX_CONCURRENT_STREAMS=8)
        app = create_app(settings)
        with serve(app) as url:
            ended: dict[int, float] = {}
            got: dict[int, int] = {}

            def listen(i: int) -> None:
                received = 0
                try:
                    with httpx.stream("POST", url + "/v1/audio/speech", timeout=120,
                                      json={"input": LONG_TEXT, "response_format": "pcm",
                                            "temperature": 0.0}) as r:
                        for data in r.iter_bytes():
                            received += len(data)
                            got[i] = received
                except httpx.HTTPError:
                    pass
                got[i], ended[i] = received, time.monotonic()

            threads = [threading.Thread(target=listen, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while len([n for n in got.values() if n]) < 3:  # all three are streaming audio
                assert time.monotonic() < deadline, "streams did not start"
                time.sleep(0.05)
            cut = time.monotonic()
            link.kill()
            for t in threads:
                t.join(30)
            after = sorted(round(t - cut, 3) for t in ended.values())
            print(f"\nstreams ended {after} s after the link to vLLM was cut", file=sys.stderr)
            assert len(ended) == 3 and max(after) < 2.0, after
            assert all(n < FULL_BYTES for n in got.values())  # cut short, not finished
            # The engine itself saw the disconnects and stopped generating.
            deadline = time.monotonic() + 10
            while engine_gauge(engine, "vllm:num_requests_running") > 0:
                assert time.monotonic() < deadline, "engine still generating"
                time.sleep(0.1)
            r = httpx.post(url + "/v1/audio/speech", json={"input": "Hello"}, timeout=30)
            assert r.status_code == 503 and r.headers["retry-after"]
            link.revive()
            r = httpx.post(url + "/v1/audio/speech", json={"input": "Hello"}, timeout=60)
            assert r.status_code == 200 and len(r.content) > 0
