"""Child processes for the proxy benchmark: start, wait until healthy, watch, stop.

Each server runs in its own process so its CPU time and memory are its own; they are
watched through /proc (Linux), and the proxy's responsiveness by an outside probe thread.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

from bench.common import ROOT

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    pass


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_healthy(self, path: str, timeout_s: float) -> float:
        """Poll GET `path` until it answers 200; return the seconds it took."""
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=5.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout_s:
                raise ServerFailed(f"{self.name} not healthy after {timeout_s:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not end in time."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_server(name: str, args: list[str], env: dict[str, str], port: int, workdir: Path
                 ) -> Server:
    """`python <args>` with the repository importable, run from `workdir` (so no stray .env
    in the current directory is read), output to workdir/<name>.log."""
    log_path = workdir / f"{name}.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, *args], cwd=workdir, env=full_env,
                                   stdout=log, stderr=subprocess.STDOUT)
    return Server(name, process, f"http://127.0.0.1:{port}", log_path)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


@dataclass
class Probe:
    """Times a cheap GET against a server every `interval_s`, and samples its RSS.

    The round trip of a request that does no work is the server's event-loop delay plus a
    floor (loopback, HTTP parsing, this thread): compare with the same probe on an idle server.
    """

    host: str
    port: int
    path: str
    pid: int
    interval_s: float = 0.02
    rss_every_s: float = 0.5
    rtts_s: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        next_rss = 0.0
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    connection.request("GET", self.path)
                    connection.getresponse().read()
                    self.rtts_s.append(time.perf_counter() - started)
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    connection.close()
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                now = time.monotonic()
                if now >= next_rss:
                    try:
                        self.rss_kib.append(memory_kib(self.pid)["VmRSS"])
                    except (OSError, KeyError):
                        pass
                    next_rss = now + self.rss_every_s
                self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))
        finally:
            connection.close()
