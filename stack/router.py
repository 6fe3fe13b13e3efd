"""vLLM's router (`vllm-router`, a Rust binary from PyPI, in `.venv-router`) in front of engines.

Round robin: TTS prompts share no long prefix for cache-aware routing to exploit. The router
checks each engine's /health every `health_interval_s` and drops one after two failures; a
request that cannot reach an engine is retried on another before then. Its `/readiness` is 200
while any engine is up (its `/health` is 503 as soon as one is down), so the API polls
`/readiness` (ENGINE_HEALTH_PATH). Its `/metrics` are one engine's; scrape engines directly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stack.engine import EngineStartError, stop_group

logger = logging.getLogger(__name__)


@dataclass
class RouterConfig:
    binary: Path
    worker_urls: list[str]
    host: str = "127.0.0.1"
    port: int = 9090
    metrics_port: int = 29000
    health_interval_s: int = 5
    health_failure_threshold: int = 2
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [str(self.binary), "--host", self.host, "--port", str(self.port),
                "--worker-urls", *self.worker_urls, "--policy", "round_robin",
                "--health-check-interval-secs", str(self.health_interval_s),
                "--health-failure-threshold", str(self.health_failure_threshold),
                "--health-check-timeout-secs", "5",
                "--prometheus-host", self.host, "--prometheus-port", str(self.metrics_port),
                "--log-level", "warning", *self.extra_args]


def healthy_workers(url: str, timeout: float = 5.0) -> int | None:
    """The router's count of healthy engines (its /readiness), or None if it does not answer."""
    try:
        with urllib.request.urlopen(url + "/readiness", timeout=timeout) as response:
            return int(json.load(response).get("healthy_workers", 0))
    except urllib.error.HTTPError as exc:  # 503 while no engine is healthy
        try:
            return int(json.load(exc).get("healthy_workers", 0))
        except (ValueError, AttributeError, TypeError):
            return 0
    except (urllib.error.URLError, OSError, ValueError):
        return None


class RouterProcess:
    def __init__(self, config: RouterConfig, log_path: Path):
        self.config = config
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if not self.config.binary.exists():
            raise EngineStartError(f"vllm-router not installed ({self.config.binary}); "
                                   "`make setup` installs it")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        logger.info("starting vllm-router: %s", " ".join(self.config.command()))
        self._proc = subprocess.Popen(self.config.command(), stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, workers: int, timeout_s: float = 120.0) -> float:
        """Block until the router reports `workers` healthy engines; seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.running():
                raise EngineStartError(f"vllm-router exited during start-up (see "
                                       f"{self.log_path})")
            if healthy_workers(self.config.url) == workers:
                return time.monotonic() - started
            time.sleep(0.5)
        raise EngineStartError(f"vllm-router did not see {workers} healthy engines within "
                               f"{timeout_s:.0f} s (see {self.log_path})")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is None:
            return
        stop_group(self._proc, timeout_s)
        self._log.close()
        self._proc = None
