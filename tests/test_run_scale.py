"""`make run-scale` end to end: one command starts two real vLLM CPU engines, vllm-router, two
API replicas and a PostgreSQL server of its own; both replicas speak, both engines serve, a
voice created on one replica is listed and spoken on the other, SIGTERM stops it all.

Heavy on a small box (two more engines beside the session's), so it sends few, short requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from stack.config import StackSettings
from stack.postgres import LocalPostgres, PostgresUnavailable
from tests.audio_clips import reference_wav
from tests.engine_fixtures import ROOT

pytestmark = pytest.mark.engine
REFERENCE_TEXT = "I wonder if I shall ever be happy enough to have real lace on my clothes."
ALIASES = {field.alias for model in (Settings, StackSettings)
           for field in model.model_fields.values() if field.alias}


def free_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        taken = False
        for port in range(base + 1, base + count):
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base
    raise RuntimeError("no run of free ports")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def finished_requests(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total{"))


def test_run_scale_is_one_command_for_engines_router_replicas_and_postgres(demo_model_dir,
                                                                          tmp_path):
    if not (ROOT / ".venv-router/bin/vllm-router").exists():
        pytest.skip("vllm-router not installed; `make setup` installs it")
    cache = Path(tempfile.mkdtemp(prefix="tts-run-scale-"))
    cache.chmod(0o755)  # the postgres user (as root) must reach cache/postgres
    try:
        LocalPostgres(cache / "probe", 1).check()
        postgres = True
    except PostgresUnavailable:
        postgres = False
    engine_port, api_port = free_run(2), free_run(2)
    router_port, metrics_port, pg_port = free_run(1), free_run(1), free_run(1)
    env = {key: value for key, value in os.environ.items() if key not in ALIASES}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TTS_MODEL=str(demo_model_dir),
               CODEC="snac", SNAC_MODEL="random", ENGINE_DEVICE="cpu", ENGINE_CPUS="all",
               API_CPUS="all", ENGINES="2", API_REPLICAS="2", ENGINE_PORT=str(engine_port),
               PORT=str(api_port), ROUTER_PORT=str(router_port),
               ROUTER_METRICS_PORT=str(metrics_port), POSTGRES_PORT=str(pg_port),
               DATA_DIR=str(tmp_path / "data"), CODEC_THREADS="1")
    launch = subprocess.Popen(
        [sys.executable, "-m", "stack", "--cache-dir", str(cache)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    replicas = [f"http://127.0.0.1:{api_port + i}" for i in range(2)]
    engines = [f"http://127.0.0.1:{engine_port + i}" for i in range(2)]
    try:
        deadline = time.monotonic() + 900
        while not any(line.startswith("READY") for line in lines):
            assert launch.poll() is None, "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(1)
        time.sleep(0.5)  # the rest of the ready message
        ready = "".join(lines[next(i for i, line in enumerate(lines)
                                   if line.startswith("READY")):])
        print(f"\n{ready}", file=sys.stderr)
        assert "2 API replicas" in ready and "vllm-router" in ready
        assert ("custom voices: PostgreSQL" if postgres else "SQLite") in ready, ready

        before = [finished_requests(e) for e in engines]
        for i in range(4):
            spoken = httpx.post(replicas[i % 2] + "/v1/audio/speech", timeout=180, json={
                "input": "Hello there.", "response_format": "pcm", "temperature": 0.0})
            assert spoken.status_code == 200, spoken.text
            assert spoken.content
        served = [finished_requests(e) - b for e, b in zip(engines, before, strict=True)]
        assert sum(served) == 4 and min(served) >= 1, served  # the router spread them

        created = httpx.post(replicas[0] + "/v1/audio/voices", timeout=180, files={
            "name": (None, "Jenny"), "consent": (None, "cons_1"),
            "reference_text": (None, REFERENCE_TEXT),
            "audio_sample": ("jenny.wav", reference_wav(2.0), "audio/wav")})
        assert created.status_code == 200, created.text
        voice_id = created.json()["id"]
        listed = httpx.get(replicas[1] + "/v1/audio/voices", timeout=30).json()["data"]
        assert voice_id in {v["id"] for v in listed}
        cloned = httpx.post(replicas[1] + "/v1/audio/speech", timeout=180, json={
            "voice": {"id": voice_id}, "input": "Hi.", "response_format": "pcm"})
        assert cloned.status_code == 200, cloned.text
    finally:
        if launch.poll() is None:
            launch.send_signal(signal.SIGTERM)  # the launcher stops everything it started
        try:
            code = launch.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
            code = None
        reader.join(10)
        launch.stdout.close()  # type: ignore[union-attr]
        shutil.rmtree(cache, ignore_errors=True)
    assert code == 0, "".join(lines)[-4000:]
    ports = [engine_port, engine_port + 1, api_port, api_port + 1, router_port]
    assert not [p for p in ports if listening(p)], "something outlived the stack"
