"""`make run`: resolve model weights, start the vLLM engine and the API, stop both on a signal.

Weights: TTS_MODEL and SNAC_MODEL may be HF ids or local directories. When they cannot be had
(offline, no hub access) the generated demo LM and random-weight SNAC are used instead, loudly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stack.engine import EngineConfig, EngineProcess, EngineStartError, http_status

logger = logging.getLogger("stack")
ROOT = Path(__file__).resolve().parent.parent

DEMO_WARNING = """
****************************************************************************
*  {what} could not be loaded ({why}).
*  Falling back to GENERATED weights: the service will make NOISE, not
*  speech. /health reports "demo": true and responses carry X-TTS-Demo.
****************************************************************************"""


def hub_available(repo_id: str, filename: str) -> str | None:
    """None if `filename` of `repo_id` can be fetched (or is cached), else the reason."""
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(repo_id, filename, etag_timeout=5)
        return None
    except Exception as exc:  # offline, unknown repo, auth: all mean "not here"
        return type(exc).__name__


def resolve_lm(model: str, cache_dir: Path) -> tuple[str, bool]:
    """(model path or id for vLLM, is_demo)."""
    if model and (Path(model).is_dir() or hub_available(model, "config.json") is None):
        return model, False
    why = "no model given" if not model else f"{model!r} is not a local dir and the hub failed"
    logger.warning(DEMO_WARNING.format(what=f"TTS_MODEL {model!r}", why=why))
    from demo_model import ensure_demo_model

    return str(ensure_demo_model(cache_dir / "models")), True


def resolve_snac(source: str) -> str:
    if source == "random" or Path(source).is_dir():
        return source
    why = hub_available(source, "pytorch_model.bin")
    if why is None:
        return source
    logger.warning(DEMO_WARNING.format(what=f"SNAC_MODEL {source!r}", why=why))
    return "random"


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineStartError(f"the API process exited with code {proc.returncode}")
        if http_status(url) == 200:
            return
        time.sleep(0.3)
    raise EngineStartError(f"{url} not healthy after {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine-python", default=str(ROOT / ".venv-vllm/bin/python"))
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache"))
    parser.add_argument("--device", default=os.environ.get("ENGINE_DEVICE", "cpu"),
                        choices=["cpu", "cuda"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s stack %(message)s")

    cache_dir = Path(args.cache_dir)
    host = os.environ.get("HOST", "127.0.0.1")
    api_port = int(os.environ.get("PORT", "9091"))
    engine_port = int(os.environ.get("ENGINE_PORT", "9093"))
    served_name = os.environ.get("MODEL_NAME", "TTS-model")
    lm, lm_demo = resolve_lm(os.environ.get("TTS_MODEL", "canopylabs/orpheus-3b-0.1-ft"),
                             cache_dir)
    snac = resolve_snac(os.environ.get("SNAC_MODEL", "hubertsiuzdak/snac_24khz"))

    engine = EngineProcess(EngineConfig(
        model=lm, python=Path(args.engine_python), cache_dir=cache_dir,
        served_model_name=served_name, port=engine_port, device=args.device,
        max_model_len=int(os.environ.get("MAX_MODEL_LEN", "8192")),
        gpu_memory_utilization=float(os.environ.get("GPU_MEM_UTIL", "0.7")),
        dtype=os.environ.get("ENGINE_DTYPE", "float32" if args.device == "cpu" else "auto"),
    ))
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
        env = dict(os.environ, TTS_API=engine.config.url, SNAC_MODEL=snac, HOST=host,
                   PORT=str(api_port), MODEL_NAME=served_name)
        if lm_demo:
            env["MODEL_PROFILE"] = "demo"
        api = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT)
        wait_http(f"http://{host}:{api_port}/health", api, 300)
        print(f"""
READY: API on http://{host}:{api_port} (engine {engine.config.url}, model {lm}{
" [DEMO: noise, not speech]" if lm_demo or snac == "random" else ""})
  curl -X POST 'http://{host}:{api_port}/v1/audio/speech' -H 'Content-Type: application/json' \\
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
