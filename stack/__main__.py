"""`make run`: resolve model weights, start the vLLM engine and the API, stop both on a signal.

Settings: the API's own `Settings` (HOST, PORT, MODEL_NAME, SNAC_MODEL, ...) and the launcher's
`StackSettings` (TTS_MODEL, ENGINE_PORT, ENGINE_DEVICE, ...), both from the environment and `.env`.
Unless HOST is set, the API listens on loopback only.

Weights: TTS_MODEL (or the seed's STT_MODEL; default the seed's Scicom model, NeuCodec) and
the codec's weights (NEUCODEC_MODEL or SNAC_MODEL) may be HF ids or local directories. When
they cannot be had (offline, no hub access) the generated demo LM of the same codec and
random codec weights are used instead, loudly.
Whether the hub is reachable is decided once, within seconds (see stack.weights).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings
from stack.config import StackSettings
from stack.cpus import format_cpus, pin, split_cpus
from stack.engine import EngineConfig, EngineProcess, EngineStartError, http_status
from stack.weights import Hub, codec_of, resolve_lm, resolve_neucodec, resolve_snac

logger = logging.getLogger("stack")
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
API_STARTUP_TIMEOUT_S = 300.0


def api_host(settings: Settings) -> str:
    """HOST when set (environment or .env); else loopback, not the container default 0.0.0.0."""
    return settings.host if "host" in settings.model_fields_set else LOOPBACK


def api_environment(base: Mapping[str, str], settings: Settings, *, engine_url: str, snac: str,
                    lm_demo: bool, hub: Hub, neucodec: str | None = None,
                    codec: str = "snac") -> dict[str, str]:
    """The API process's environment: the launcher's decisions on top of `base`."""
    env = {**base, **hub.environment(), "TTS_API": engine_url, "SNAC_MODEL": snac,
           "HOST": api_host(settings), "PORT": str(settings.port),
           "MODEL_NAME": settings.model_name}
    if neucodec is not None:
        env["NEUCODEC_MODEL"] = neucodec
    if lm_demo:
        # The demo of the model's own codec: its profile is detected from its marker token.
        env["MODEL_PROFILE"] = "demo" if codec == "snac" else "scicom-demo"
    return env


def engine_config(launcher: StackSettings, settings: Settings, *, model: str, device: str,
                  python: Path, cache_dir: Path, hub: Hub,
                  cpus: frozenset[int] | None = None) -> EngineConfig:
    return EngineConfig(
        model=model, python=python, cache_dir=cache_dir,
        served_model_name=settings.model_name, port=launcher.engine_port, device=device,
        max_model_len=launcher.max_model_len, gpu_memory_utilization=launcher.gpu_mem_util,
        dtype=launcher.dtype(device), env=hub.environment(), cpus=cpus,
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineStartError(f"the API process exited with code {proc.returncode}")
        if http_status(url) == 200:
            return
        time.sleep(0.3)
    raise EngineStartError(f"{url} not healthy after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine-python", default=str(ROOT / ".venv-vllm/bin/python"))
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache"))
    parser.add_argument("--device", choices=["cpu", "cuda"], help="overrides ENGINE_DEVICE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s stack %(message)s")

    try:
        settings, launcher = Settings(), StackSettings()
    except ValidationError as exc:
        logger.error("invalid settings (environment or .env): %s", exc)
        return 2
    cache_dir = Path(args.cache_dir)
    device = args.device or launcher.device()
    started = time.monotonic()
    hub = Hub.decide(launcher)
    if hub.offline:
        logger.warning("hub offline for this run (%s): local, cached or generated weights only",
                       hub.offline_reason)
    model = launcher.model()
    codec = codec_of(model, settings.codec)
    lm, lm_demo = resolve_lm(model, cache_dir, hub, codec)
    if codec == "snac":
        snac, neucodec = resolve_snac(settings.snac_model, hub), None
    else:
        snac, neucodec = settings.snac_model, resolve_neucodec(settings.neucodec_model, hub)
    codec_weights = snac if codec == "snac" else neucodec
    logger.info("weights decided in %.1f s: model %s, %s %s", time.monotonic() - started,
                lm, codec, codec_weights)

    engine_cpus, api_cpus = split_cpus(launcher.engine_cpus, launcher.api_cpus, device=device)
    if engine_cpus or api_cpus:
        logger.info("CPUs: engine %s, API %s", format_cpus(engine_cpus) if engine_cpus else "all",
                    format_cpus(api_cpus) if api_cpus else "all")
    engine = EngineProcess(engine_config(launcher, settings, model=lm, device=device,
                                         python=Path(args.engine_python), cache_dir=cache_dir,
                                         hub=hub, cpus=engine_cpus))
    host = api_host(settings)
    port = settings.port
    # Where this machine reaches the API: a wildcard listen address on loopback.
    health_host = LOOPBACK if host in ("0.0.0.0", "") else host
    api: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        engine.start()
        logger.info("vLLM starting on %s (log: %s)", engine.config.url, engine.log_path)
        took = engine.wait_healthy()
        logger.info("vLLM healthy after %.1f s", took)
        env = api_environment(os.environ, settings, engine_url=engine.config.url, snac=snac,
                              lm_demo=lm_demo, hub=hub, neucodec=neucodec, codec=codec)
        api = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT,
                               preexec_fn=(lambda: pin(api_cpus)) if api_cpus else None)  # noqa: PLW1509
        wait_http(f"http://{health_host}:{port}/health", api, API_STARTUP_TIMEOUT_S)
        print(f"""
READY: API on http://{host}:{port} (engine {engine.config.url}, model {lm}{
" [DEMO: noise, not speech]" if lm_demo or codec_weights == "random" else ""})
  curl -X POST 'http://{health_host}:{port}/v1/audio/speech' -H 'Content-Type: application/json' \\
    -d '{{"input": "Hello! How can I help you?", "voice": "husein", "response_format": "wav"}}' \\
    --output output.wav
Ctrl-C stops both.""", flush=True)
        while engine.running() and api.poll() is None:
            time.sleep(0.5)
        if not stopping:
            logger.error("%s exited; stopping", "vLLM" if not engine.running() else "the API")
            return 1
        return 0
    except KeyboardInterrupt:
        logger.info("stopping")
        return 0
    except EngineStartError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if api is not None and api.poll() is None:
            api.terminate()
            try:
                api.wait(15)
            except subprocess.TimeoutExpired:
                api.kill()
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
