"""Start, watch and stop a vLLM OpenAI server in its own virtualenv (we never import vllm)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from stack.cpus import pin

logger = logging.getLogger(__name__)


class EngineStartError(RuntimeError):
    pass


@dataclass
class EngineConfig:
    """How to run the engine. CPU defaults are the ones measured to work on a 2-core box."""

    model: str
    python: Path  # the vLLM virtualenv's interpreter
    cache_dir: Path
    served_model_name: str = "TTS-model"
    host: str = "127.0.0.1"
    port: int = 9093
    device: str = "cpu"  # "cpu" or "cuda"
    max_model_len: int = 8192
    dtype: str = "float32"
    kv_cache_bytes: int = 256 * 1024 * 1024  # CPU only: vLLM needs an explicit KV size there
    gpu_memory_utilization: float = 0.7  # CUDA only
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # on top of ours, e.g. HF_HUB_OFFLINE
    cpus: frozenset[int] | None = None  # pin the engine's processes to these (stack.cpus)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.max_model_len), "--dtype", self.dtype,
            "--disable-uvicorn-access-log",
        ]
        if self.device == "cpu":
            cmd += ["--kv-cache-memory-bytes", str(self.kv_cache_bytes)]
        else:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        tmp = self.cache_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({"TMPDIR": str(tmp), "VLLM_RPC_BASE_PATH": str(tmp),
                    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
        if self.device == "cpu":
            env["VLLM_TARGET_DEVICE"] = "cpu"
        env.update(self.env)
        return env


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGINT a child started in its own session (its whole process group), then SIGKILL it
    if it has not exited within `timeout_s`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return None


class EngineProcess:
    """A running vLLM server. Use as a context manager or call start()/stop()."""

    def __init__(self, config: EngineConfig, log_path: Path | None = None):
        self.config = config
        self.log_path = log_path or config.cache_dir / "engine.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after_s: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        logger.info("starting vLLM: %s", " ".join(self.config.command()))
        self.started_at = time.monotonic()
        cpus = self.config.cpus
        self._proc = subprocess.Popen(
            self.config.command(), env=self.config.environment(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=(lambda: pin(cpus)) if cpus else None,  # noqa: PLW1509 - no threads yet
        )
        self._log = log

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_healthy(self, timeout_s: float = 600.0) -> float:
        """Block until GET /health answers 200; return seconds since start."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise EngineStartError(
                    f"vLLM exited during start-up (see {self.log_path}):\n{self.log_tail()}")
            if http_status(self.config.url + "/health") == 200:
                self.ready_after_s = time.monotonic() - self.started_at
                return self.ready_after_s
            time.sleep(0.5)
        raise EngineStartError(f"vLLM not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self._proc is None:
            return
        stop_group(self._proc, timeout_s)
        self._log.close()
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
