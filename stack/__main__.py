"""`make run`: resolve model weights, start the vLLM engine and the API, stop both on a signal.

Settings: the API's own `Settings` (HOST, PORT, MODEL_NAME, SNAC_MODEL, ...) and the launcher's
`StackSettings` (TTS_MODEL, ENGINE_PORT, ENGINE_DEVICE, ...), both from the environment and `.env`.
Unless HOST is set, the API listens on loopback only.

Weights: TTS_MODEL (or the seed's STT_MODEL; default the seed's Scicom model, NeuCodec) and
the codec's weights (NEUCODEC_MODEL or SNAC_MODEL) may be HF ids or local directories. When
they cannot be had (offline, no hub access) the generated demo LM of the same codec and
random codec weights are used instead, loudly.
Whether the hub is reachable is decided once, within seconds (see stack.weights).

Scale-out on one box (`make run-scale`: ENGINES=2 API_REPLICAS=2): engine i on ENGINE_PORT + i,
vLLM's router in front of them on ROUTER_PORT (the replicas' TTS_API, polled at /readiness),
replica i on PORT + i, and custom voices in a PostgreSQL server started here (stack.postgres)
unless VOICE_STORE_URL names one: the topology of docker-compose-scale.yaml, without Docker.
While one engine or replica is down the rest keep serving; the stack stops when no engine, no
replica or the router is left.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings
from stack.config import StackSettings
from stack.cpus import format_cpus, pin, split_cpus
from stack.engine import EngineConfig, EngineProcess, EngineStartError, http_status
from stack.postgres import LocalPostgres, PostgresUnavailable
from stack.router import RouterConfig, RouterProcess
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
                    codec: str = "snac", port: int | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The API process's environment: the launcher's decisions on top of `base`."""
    env = {**base, **hub.environment(), "TTS_API": engine_url, "SNAC_MODEL": snac,
           "HOST": api_host(settings), "PORT": str(port or settings.port),
           "MODEL_NAME": settings.model_name, **(extra or {})}
    if neucodec is not None:
        env["NEUCODEC_MODEL"] = neucodec
    if lm_demo:
        # The demo of the model's own codec: its profile is detected from its marker token.
        env["MODEL_PROFILE"] = "demo" if codec == "snac" else "scicom-demo"
    return env


def engine_config(launcher: StackSettings, settings: Settings, *, model: str, device: str,
                  python: Path, cache_dir: Path, hub: Hub,
                  cpus: frozenset[int] | None = None, index: int = 0) -> EngineConfig:
    """Engine `index` of ENGINES: its own port and, on CUDA with several engines, its own GPU."""
    env = hub.environment()
    if device == "cuda" and launcher.engines > 1:
        env["CUDA_VISIBLE_DEVICES"] = str(index)
    return EngineConfig(
        model=model, python=python, cache_dir=cache_dir,
        served_model_name=settings.model_name, port=launcher.engine_port + index, device=device,
        max_model_len=launcher.max_model_len, gpu_memory_utilization=launcher.gpu_mem_util,
        dtype=launcher.dtype(device), env=env, cpus=cpus,
    )


def stack_ports(launcher: StackSettings, settings: Settings, *,
                postgres: bool) -> dict[str, int]:
    """Every port the stack listens on, by name; ValueError when two coincide."""
    ports = {f"engine {i + 1} (ENGINE_PORT + {i})": launcher.engine_port + i
             for i in range(launcher.engines)}
    ports.update({f"API replica {i + 1} (PORT + {i})": settings.port + i
                  for i in range(launcher.api_replicas)})
    if launcher.engines > 1:
        ports["router (ROUTER_PORT)"] = launcher.router_port
        ports["router metrics (ROUTER_METRICS_PORT)"] = launcher.router_metrics_port
    if postgres:
        ports["PostgreSQL (POSTGRES_PORT)"] = launcher.postgres_port
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise ValueError(f"{seen[port]} and {name} would both listen on port {port}")
        seen[port] = name
    return ports


def wants_postgres(launcher: StackSettings, settings: Settings) -> bool:
    """Several replicas share voices in a server of our own unless VOICE_STORE_URL names one."""
    return launcher.api_replicas > 1 and not settings.voice_store_url.strip()


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
    parser.add_argument("--router-binary", default=str(ROOT / ".venv-router/bin/vllm-router"),
                        help="vllm-router, for ENGINES > 1")
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

    postgres_wanted = wants_postgres(launcher, settings)
    try:
        stack_ports(launcher, settings, postgres=postgres_wanted)
    except ValueError as exc:
        logger.error("port clash: %s", exc)
        return 2
    engine_cpus, api_cpus = split_cpus(launcher.engine_cpus, launcher.api_cpus, device=device)
    if engine_cpus or api_cpus:
        logger.info("CPUs: engine %s, API %s", format_cpus(engine_cpus) if engine_cpus else "all",
                    format_cpus(api_cpus) if api_cpus else "all")
    engines = [
        EngineProcess(engine_config(launcher, settings, model=lm, device=device,
                                    python=Path(args.engine_python), cache_dir=cache_dir,
                                    hub=hub, cpus=engine_cpus, index=i),
                      log_path=cache_dir / ("engine.log" if i == 0 else f"engine-{i + 1}.log"))
        for i in range(launcher.engines)]
    router = RouterProcess(
        RouterConfig(Path(args.router_binary), [e.config.url for e in engines],
                     port=launcher.router_port, metrics_port=launcher.router_metrics_port),
        cache_dir / "router.log") if len(engines) > 1 else None
    postgres = LocalPostgres(cache_dir / "postgres", launcher.postgres_port, keep=True) \
        if postgres_wanted else None
    host = api_host(settings)
    # Where this machine reaches the API: a wildcard listen address on loopback.
    health_host = LOOPBACK if host in ("0.0.0.0", "") else host
    apis: list[subprocess.Popen[bytes]] = []
    postgres_started = False
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        extra: dict[str, str] = {}
        voices = "VOICE_STORE_URL" if settings.voice_store_url.strip() else "SQLite in DATA_DIR"
        if postgres is not None:
            try:
                extra["VOICE_STORE_URL"] = postgres.start()
                postgres_started = True
                voices = f"PostgreSQL {postgres.url} (data {postgres.data})"
            except PostgresUnavailable as exc:
                logger.warning("%s; the replicas share DATA_DIR's SQLite file instead", exc)
                voices = "SQLite in DATA_DIR, shared by the replicas"
        for engine in engines:
            engine.start()
            logger.info("vLLM starting on %s (log: %s)", engine.config.url, engine.log_path)
        for engine in engines:
            took = engine.wait_healthy()
            logger.info("vLLM on %s healthy after %.1f s", engine.config.url, took)
        engine_url = engines[0].config.url
        if router is not None:
            router.start()
            took = router.wait_ready(len(engines))
            logger.info("vllm-router on %s sees %d engines after %.1f s", router.config.url,
                        len(engines), took)
            engine_url = router.config.url
            if settings.engine_health_path == "/health":  # the router's is 503 if one is down
                extra["ENGINE_HEALTH_PATH"] = "/readiness"
        ports = [settings.port + i for i in range(launcher.api_replicas)]
        for port in ports:
            env = api_environment(os.environ, settings, engine_url=engine_url, snac=snac,
                                  lm_demo=lm_demo, hub=hub, neucodec=neucodec, codec=codec,
                                  port=port, extra=extra)
            apis.append(subprocess.Popen(
                [sys.executable, "-m", "app"], env=env, cwd=ROOT,
                preexec_fn=(lambda: pin(api_cpus)) if api_cpus else None))  # noqa: PLW1509
        for port, api in zip(ports, apis):
            wait_http(f"http://{health_host}:{port}/health", api, API_STARTUP_TIMEOUT_S)
        demo = " [DEMO: noise, not speech]" if lm_demo or codec_weights == "random" else ""
        if len(engines) == 1 and len(apis) == 1:
            print(f"""
READY: API on http://{host}:{ports[0]} (engine {engine_url}, model {lm}{demo})""", flush=True)
        else:
            print(f"""
READY: {len(apis)} API replicas on {", ".join(f"http://{host}:{p}" for p in ports)}
  engines {", ".join(e.config.url for e in engines)}{
  f" behind vllm-router {engine_url}" if router else ""}, model {lm}{demo}
  custom voices: {voices}""", flush=True)
        print(f"""  curl -X POST 'http://{health_host}:{ports[0]}/v1/audio/speech' -H 'Content-Type: application/json' \\
    -d '{{"input": "Hello! How can I help you?", "voice": "husein", "response_format": "wav"}}' \\
    --output output.wav
Ctrl-C stops {"both" if len(engines) + len(apis) == 2 else "them all"}.""", flush=True)
        return watch(engines, router, apis, stopping=lambda: stopping)
    except KeyboardInterrupt:
        logger.info("stopping")
        return 0
    except EngineStartError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for api in apis:
            if api.poll() is None:
                api.terminate()
        for api in apis:
            try:
                api.wait(15)
            except subprocess.TimeoutExpired:
                api.kill()
        if router is not None:
            router.stop()
        for engine in engines:
            engine.stop()
        if postgres is not None and postgres_started:
            postgres.stop()


def watch(engines: list[EngineProcess], router: RouterProcess | None,
          apis: list[subprocess.Popen[bytes]], *, stopping: Callable[[], bool]) -> int:
    """Until a signal (0) or the stack can no longer serve (1). One engine and one API: either
    exiting stops both. Scaled out: a lost engine or replica is logged and the rest serve on,
    until no engine, no replica or the router is left."""
    single = len(engines) == 1 and len(apis) == 1
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        if stopping():
            return 0
        down = [f"vLLM on {e.config.url}" for e in engines if not e.running()]
        down += [f"API replica {i + 1} (exit {a.returncode})" for i, a in enumerate(apis)
                 if a.poll() is not None]
        if router is not None and not router.running():
            down.append("vllm-router")
        for what in down:
            if what not in reported:
                reported.add(what)
                if not single:
                    logger.warning("%s is down; the rest serve on", what)
        if single and down:
            logger.error("%s exited; stopping", down[0])
            return 1
        if not any(e.running() for e in engines) or all(a.poll() is not None for a in apis) \
                or (router is not None and not router.running()):
            logger.error("nothing left to serve with (%s); stopping", ", ".join(down))
            return 1


if __name__ == "__main__":
    sys.exit(main())
