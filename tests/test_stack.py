"""The launcher (`make run`): one hub decision per run, settings shared with the API, `.env`.

No vLLM here: where a whole launch is needed, a stand-in "engine interpreter" records the command
line and environment it was given, then exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config import Settings
from stack.__main__ import api_environment, engine_config, stack_ports, wants_postgres
from stack.config import StackSettings
from stack.weights import Hub, codec_of, probe_hub, resolve_lm, resolve_neucodec, resolve_snac
from tests.servers import free_port, serve

ROOT = Path(__file__).resolve().parent.parent
ALIASES = {
    field.alias
    for model in (Settings, StackSettings)
    for field in model.model_fields.values()
    if field.alias
}


class RecordingProbe:
    def __init__(self, answer: str | None):
        self.answer = answer
        self.calls: list[tuple[str, float]] = []

    def __call__(self, endpoint: str, timeout_s: float) -> str | None:
        self.calls.append((endpoint, timeout_s))
        return self.answer


def hub_stub(status: int) -> tuple[Starlette, list[str]]:
    """An HTTP server answering every request with `status`, and the paths it was asked for."""
    seen: list[str] = []

    async def answer(request: Request) -> Response:
        seen.append(request.url.path)
        return Response(status_code=status)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD"])]), seen


@pytest.fixture
def clean_env(monkeypatch):
    """No setting of the API or the launcher in the environment, so `.env` files decide."""
    for alias in ALIASES:
        monkeypatch.delenv(alias, raising=False)
    return monkeypatch


def launcher_settings(**values: object) -> StackSettings:
    return StackSettings(_env_file=None, **values)


def test_hub_offline_setting_skips_the_probe(clean_env):
    probe = RecordingProbe(answer=None)
    hub = Hub.decide(launcher_settings(HF_HUB_OFFLINE="1"), probe)
    assert probe.calls == []
    assert hub.offline
    assert hub.offline_reason == "HF_HUB_OFFLINE is set"
    assert hub.environment()["HF_HUB_OFFLINE"] == "1"


def test_hub_blank_offline_setting_means_online(clean_env):
    probe = RecordingProbe(answer=None)
    hub = Hub.decide(launcher_settings(HF_HUB_OFFLINE=""), probe)
    assert len(probe.calls) == 1
    assert not hub.offline


def test_hub_failing_probe_makes_children_offline(clean_env):
    probe = RecordingProbe(answer="connection refused")
    launcher = launcher_settings(HF_ENDPOINT="http://hub.invalid", HUB_PROBE_TIMEOUT_S=2.5)
    hub = Hub.decide(launcher, probe)
    assert probe.calls == [("http://hub.invalid", 2.5)]
    assert hub.offline
    assert "connection refused" in hub.offline_reason

    settings = Settings(_env_file=None)
    engine = engine_config(launcher, settings, model="m", device="cpu", python=Path("python"),
                           cache_dir=Path("unused"), hub=hub)
    api = api_environment({}, settings, engine_url=engine.url, snac="random", lm_demo=True,
                          hub=hub)
    for env in (engine.env, api):
        assert env["HF_HUB_OFFLINE"] == "1"
        assert env["HF_ENDPOINT"] == "http://hub.invalid"


def test_hub_answering_probe_leaves_children_online(clean_env):
    hub = Hub.decide(launcher_settings(), RecordingProbe(answer=None))
    settings = Settings(_env_file=None)
    api = api_environment({}, settings, engine_url="http://127.0.0.1:1", snac="random",
                          lm_demo=False, hub=hub)
    assert not hub.offline
    assert "HF_HUB_OFFLINE" not in hub.environment()
    assert "HF_HUB_OFFLINE" not in api
    assert "MODEL_PROFILE" not in api


def test_probe_hub_gives_up_on_a_silent_server_within_its_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        started = time.monotonic()
        why = probe_hub(f"http://127.0.0.1:{silent.getsockname()[1]}", 0.5)
        took = time.monotonic() - started
    assert why is not None
    assert took < 2.0


def test_probe_hub_refused_connection_is_a_reason():
    assert probe_hub(f"http://127.0.0.1:{free_port()}", 1.0) is not None


@pytest.mark.parametrize(("status", "reachable"), [(200, True), (404, True), (503, False)])
def test_probe_hub_counts_any_answer_below_5xx_as_reachable(status, reachable):
    app, seen = hub_stub(status)
    with serve(app) as url:
        why = probe_hub(url, 2.0)
    assert (why is None) is reachable
    assert seen == ["/"]


def test_hub_offline_lookup_never_touches_the_network(clean_env):
    app, seen = hub_stub(404)
    with serve(app) as url:
        offline = Hub(offline=True, endpoint=url).missing("tts-test/not-cached", "config.json")
        assert seen == []
        online = Hub(offline=False, endpoint=url).missing("tts-test/not-cached", "config.json")
        assert seen, "the online lookup asks the endpoint"
    assert offline is not None
    assert online is not None


def test_resolve_snac_offline_falls_back_to_random_but_keeps_local_dirs(tmp_path):
    hub = Hub(offline=True, endpoint=f"http://127.0.0.1:{free_port()}", offline_reason="test")
    assert resolve_snac("tts-test/not-cached-snac", hub) == "random"
    assert resolve_snac(str(tmp_path), hub) == str(tmp_path)
    assert resolve_snac("random", hub) == "random"


def test_launcher_settings_read_dotenv_in_the_working_directory(clean_env, tmp_path):
    (tmp_path / ".env").write_text(textwrap.dedent("""\
        TTS_MODEL=/models/speech
        ENGINE_PORT=9200
        ENGINE_DEVICE=cpu
        MAX_MODEL_LEN=4096
        HOST=127.0.0.2
        PORT=9300
        MODEL_NAME=my-model
        SNAC_MODEL=random
        HF_HUB_OFFLINE=1
        """))
    clean_env.chdir(tmp_path)
    clean_env.setenv("MAX_MODEL_LEN", "2048")  # the environment wins over .env, as for the API
    settings, launcher = Settings(), StackSettings()
    probe = RecordingProbe(answer=None)
    hub = Hub.decide(launcher, probe)
    engine = engine_config(launcher, settings, model=launcher.tts_model, device=launcher.device(),
                           python=Path("python"), cache_dir=tmp_path, hub=hub)
    api = api_environment({}, settings, engine_url=engine.url, snac=settings.snac_model,
                          lm_demo=False, hub=hub)

    assert (launcher.tts_model, engine.port, engine.device, engine.max_model_len) == (
        "/models/speech", 9200, "cpu", 2048)
    assert engine.served_model_name == "my-model"
    assert engine.dtype == "float32"
    assert probe.calls == [] and hub.offline
    assert {key: api[key] for key in ("HOST", "PORT", "MODEL_NAME", "SNAC_MODEL", "TTS_API")} == {
        "HOST": "127.0.0.2", "PORT": "9300", "MODEL_NAME": "my-model", "SNAC_MODEL": "random",
        "TTS_API": "http://127.0.0.1:9200"}


def test_api_listens_on_loopback_unless_host_is_set(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    hub = Hub(offline=True, endpoint="http://hub.invalid")

    def api_host() -> str:
        env = api_environment({}, Settings(), engine_url="http://127.0.0.1:1", snac="random",
                              lm_demo=False, hub=hub)
        return env["HOST"]

    assert Settings().host == "0.0.0.0"  # the container default, not what `make run` wants
    assert api_host() == "127.0.0.1"
    (tmp_path / ".env").write_text("HOST=0.0.0.0\n")
    assert api_host() == "0.0.0.0"


def test_launcher_settings_blank_dtype_is_per_device(clean_env):
    launcher = launcher_settings(ENGINE_DTYPE=" ")
    assert (launcher.dtype("cpu"), launcher.dtype("cuda")) == ("float32", "auto")
    assert launcher_settings(ENGINE_DTYPE="bfloat16").dtype("cpu") == "bfloat16"


FAKE_ENGINE = """\
#!/bin/sh
# Stands in for the vLLM interpreter: record what the launcher handed over, then fail start-up.
printf '%s\\n' "$@" > "$(dirname "$0")/argv"
env > "$(dirname "$0")/env"
exit 3
"""


def fake_engine(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A stand-in engine interpreter, and an environment without our settings in it."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(FAKE_ENGINE)
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ALIASES}
    env["PYTHONPATH"] = str(ROOT)
    return fake, env


def launch_stack(fake: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", "--engine-python", str(fake),
         "--cache-dir", str(cwd / "cache")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_launch_offline_decides_within_seconds_and_tells_the_engine(tmp_path):
    """`python -m stack` with an unreachable hub and a .env: the engine gets HF_HUB_OFFLINE=1."""
    model = tmp_path / "model"
    model.mkdir()
    engine_port = free_port()
    (tmp_path / ".env").write_text(
        f"HF_ENDPOINT=http://127.0.0.1:{free_port()}\nTTS_MODEL={model}\nSNAC_MODEL=random\n"
        f"ENGINE_PORT={engine_port}\nENGINE_DEVICE=cpu\nMODEL_NAME=from-dotenv\n")
    fake, env = fake_engine(tmp_path)

    started = time.monotonic()
    launch = launch_stack(fake, env, tmp_path)
    took = time.monotonic() - started

    assert launch.returncode == 1, launch.stderr
    assert "vLLM exited during start-up" in launch.stderr
    assert took < 30, f"the launcher took {took:.1f} s to give up"
    engine_env = dict(line.split("=", 1) for line in
                      (fake.parent / "env").read_text().splitlines() if "=" in line)
    assert engine_env["HF_HUB_OFFLINE"] == "1"
    argv = (fake.parent / "argv").read_text().splitlines()
    assert argv[argv.index("--model") + 1] == str(model)
    assert argv[argv.index("--port") + 1] == str(engine_port)
    assert argv[argv.index("--served-model-name") + 1] == "from-dotenv"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize(("path", "ignored"), [
    (".env", True), (".env.local", True), (".env.production", True), (".env_example", False),
])
def test_gitignore_keeps_local_env_files_out(path, ignored):
    check = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT,
                           capture_output=True, timeout=30, check=False)
    if check.returncode == 128:
        pytest.skip(f"not a git checkout: {check.stderr.decode().strip()}")
    assert (check.returncode == 0) is ignored


def test_the_seeds_model_is_the_default_and_stt_model_is_honoured(clean_env):
    assert launcher_settings().model() == "Scicom-intl/Multilingual-TTS-1.7B-Base"
    clean_env.setenv("STT_MODEL", "Scicom-intl/Multilingual-TTS-1.7B-Base-v2")
    assert launcher_settings().model() == "Scicom-intl/Multilingual-TTS-1.7B-Base-v2"
    clean_env.setenv("TTS_MODEL", "canopylabs/orpheus-3b-0.1-ft")  # TTS_MODEL wins
    assert launcher_settings().model() == "canopylabs/orpheus-3b-0.1-ft"


def test_codec_follows_the_model_family_unless_set():
    assert codec_of("Scicom-intl/Multilingual-TTS-1.7B-Base", "auto") == "neucodec"
    assert codec_of("canopylabs/orpheus-3b-0.1-ft", "auto") == "snac"
    assert codec_of("/models/my-finetune", "auto") == "neucodec"
    assert codec_of("/models/my-finetune", "snac") == "snac"


def test_offline_fallback_is_the_demo_of_the_same_codec(clean_env):
    hub = Hub(offline=True, endpoint="http://hub.invalid", offline_reason="test")
    cache = Path(__file__).resolve().parent.parent / ".cache"
    neucodec_lm, demo = resolve_lm("Scicom-intl/Multilingual-TTS-1.7B-Base", cache, hub,
                                   "neucodec")
    snac_lm, _ = resolve_lm("canopylabs/orpheus-3b-0.1-ft", cache, hub, "snac")
    assert demo and "neucodec" in Path(neucodec_lm).name and "snac" in Path(snac_lm).name
    assert resolve_neucodec("neuphonic/neucodec", hub) == "random"
    env = api_environment({}, Settings(_env_file=None), engine_url="http://127.0.0.1:1",
                          snac="hubertsiuzdak/snac_24khz", lm_demo=True, hub=hub,
                          neucodec="random", codec="neucodec")
    assert env["MODEL_PROFILE"] == "scicom-demo" and env["NEUCODEC_MODEL"] == "random"


def test_scaled_engines_get_consecutive_ports_and_a_gpu_each(clean_env):
    hub = Hub(offline=True, endpoint="http://hub.invalid")
    launcher, settings = launcher_settings(ENGINES="2", ENGINE_PORT="9200"), Settings(_env_file=None)
    configs = [engine_config(launcher, settings, model="m", device=device, python=Path("python"),
                             cache_dir=Path("unused"), hub=hub, index=i)
               for device in ("cpu", "cuda") for i in range(2)]
    assert [c.port for c in configs] == [9200, 9201, 9200, 9201]
    assert [c.env.get("CUDA_VISIBLE_DEVICES") for c in configs] == [None, None, "0", "1"]
    single = engine_config(launcher_settings(), settings, model="m", device="cuda",
                           python=Path("python"), cache_dir=Path("unused"), hub=hub)
    assert "CUDA_VISIBLE_DEVICES" not in single.env  # one engine sees what it is given


def test_stack_ports_name_every_listener_and_refuse_a_clash(clean_env):
    settings = Settings(_env_file=None)
    ports = stack_ports(launcher_settings(ENGINES="2", API_REPLICAS="2"), settings, postgres=True)
    assert sorted(ports.values()) == [5433, 9090, 9091, 9092, 9093, 9094, 29000]
    assert list(stack_ports(launcher_settings(), settings, postgres=False).values()) == [
        9093, 9091]
    with pytest.raises(ValueError, match="port 9093"):  # replica 3 would sit on engine 1's port
        stack_ports(launcher_settings(API_REPLICAS="3"), settings, postgres=False)


def test_replicas_share_a_postgres_of_their_own_unless_a_store_is_named(clean_env):
    two = launcher_settings(API_REPLICAS="2")
    assert wants_postgres(two, Settings(_env_file=None))
    assert wants_postgres(two, Settings(_env_file=None, VOICE_STORE_URL=" "))  # blank: unset
    assert not wants_postgres(two, Settings(_env_file=None,
                                            VOICE_STORE_URL="postgresql://db/voices"))
    assert not wants_postgres(launcher_settings(), Settings(_env_file=None))


def test_launch_scaled_starts_every_engine_before_waiting(tmp_path):
    """ENGINES=2: both engines are started (consecutive ports) before the first is awaited."""
    model = tmp_path / "model"
    model.mkdir()
    engine_port = free_port()
    (tmp_path / ".env").write_text(
        f"HF_HUB_OFFLINE=1\nTTS_MODEL={model}\nSNAC_MODEL=random\nENGINE_PORT={engine_port}\n"
        f"ENGINE_DEVICE=cpu\nENGINES=2\nAPI_REPLICAS=2\nPORT={free_port()}\n"
        f"VOICE_STORE_URL=sqlite:///voices.db\n")
    fake, env = fake_engine(tmp_path)
    launch = launch_stack(fake, env, tmp_path)
    assert launch.returncode == 1, launch.stderr
    assert "vLLM exited during start-up" in launch.stderr
    # From the launcher's own log: the first fake exits at once and the second may be
    # stopped before it has written anything.
    started = [line.split("starting vLLM: ", 1)[1].split() for line in
               launch.stderr.splitlines() if "starting vLLM: " in line]
    ports = [int(argv[argv.index("--port") + 1]) for argv in started]
    assert ports == [engine_port, engine_port + 1]
    assert launch.stderr.rindex("starting vLLM") < launch.stderr.index("vLLM exited during")
    assert (tmp_path / "cache" / "engine-2.log").exists()
