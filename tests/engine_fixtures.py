"""Session fixtures that start the real vLLM CPU engine on the generated demo models.

`engine` serves the SNAC demo, `neucodec_engine` the NeuCodec (Scicom-vocabulary) demo; each
starts on first use, once per session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stack.engine import EngineConfig, EngineProcess
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    from demo_model import ensure_demo_model

    return ensure_demo_model(CACHE / "models")


def _start_engine(model_dir: Path, log_name: str):
    """A real vLLM OpenAI server (its own virtualenv) serving `model_dir` on loopback."""
    python = Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    if not python.exists():
        pytest.fail(f"vLLM virtualenv missing ({python}); run `make setup`", pytrace=False)
    config = EngineConfig(model=str(model_dir), python=python, cache_dir=CACHE,
                          port=free_port())
    process = EngineProcess(config, log_path=CACHE / log_name)
    process.start()
    try:
        took = process.wait_healthy(timeout_s=600)
        print(f"\nvLLM engine on {model_dir.name} healthy after {took:.1f} s", file=sys.stderr)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def engine(demo_model_dir) -> EngineProcess:
    """vLLM serving the SNAC demo model."""
    yield from _start_engine(demo_model_dir, "test-engine.log")


@pytest.fixture(scope="session")
def neucodec_demo_model_dir() -> Path:
    from demo_model import ensure_neucodec_demo_model

    return ensure_neucodec_demo_model(CACHE / "models")


@pytest.fixture(scope="session")
def neucodec_engine(neucodec_demo_model_dir) -> EngineProcess:
    """vLLM serving the NeuCodec demo model (Scicom's vocabulary; it stops by itself)."""
    yield from _start_engine(neucodec_demo_model_dir, "test-engine-neucodec.log")
