"""Session fixtures that start the real vLLM CPU engine on the generated demo model."""

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


@pytest.fixture(scope="session")
def engine(demo_model_dir) -> EngineProcess:
    """A real vLLM OpenAI server (its own virtualenv) serving the demo model on loopback."""
    python = Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    if not python.exists():
        pytest.fail(f"vLLM virtualenv missing ({python}); run `make setup`", pytrace=False)
    config = EngineConfig(model=str(demo_model_dir), python=python, cache_dir=CACHE,
                          port=free_port())
    process = EngineProcess(config, log_path=CACHE / "test-engine.log")
    process.start()
    try:
        took = process.wait_healthy(timeout_s=600)
        print(f"\nvLLM engine healthy after {took:.1f} s", file=sys.stderr)
        yield process
    finally:
        process.stop()
