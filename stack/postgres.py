"""A PostgreSQL server of our own, from Debian's `postgresql` binaries, in a directory we own.

Used by `make run-scale` (API replicas share custom voices in it, as in
docker-compose-scale.yaml) and by the tests (a throwaway server per session). Trust auth on
loopback only, no password. initdb refuses to run as root: as root the server runs as the
`postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

SUPERUSER = "tts"


class PostgresUnavailable(RuntimeError):
    """The binaries (or, as root, the `postgres` user) are missing; the message says why."""


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb (or $POSTGRES_BIN)."""
    if explicit := os.environ.get("POSTGRES_BIN"):
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class LocalPostgres:
    """`start()` a server on 127.0.0.1:`port` with its data under `root`; `stop()` it.
    With `keep` the data directory survives a stop and is reused by the next start."""

    def __init__(self, root: Path, port: int, *, keep: bool = False, fsync: bool = True):
        self.root, self.port, self.keep, self.fsync = root, port, keep, fsync
        self.data = root / "data"
        self.log_path = root / "server.log"
        self._bin: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def check(self) -> Path:
        bin_dir = postgres_bin_dir()
        if bin_dir is None or not (bin_dir / "initdb").exists():
            raise PostgresUnavailable(
                "PostgreSQL binaries not found: `apt-get install postgresql` (make setup-ci does "
                "it as root) or set POSTGRES_BIN")
        if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True,
                                                check=False).returncode != 0:
            raise PostgresUnavailable("running as root and there is no `postgres` user to run "
                                      "the server as")
        return bin_dir

    def start(self) -> str:
        """Initialise (unless the data directory exists) and start; the server's URL."""
        bin_dir = self.check()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            reach = subprocess.run(_as_server_user(["test", "-w", str(self.root)]),
                                   capture_output=True, timeout=30, check=False)
            if reach.returncode != 0:
                raise PostgresUnavailable(
                    f"the postgres user cannot reach {self.root} (a parent directory is "
                    "private to root)")
        self._bin = bin_dir
        if not (self.data / "PG_VERSION").exists():
            made = subprocess.run(
                _as_server_user([str(bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                                 "--auth=trust", "--no-sync", "-E", "UTF8"]),
                capture_output=True, timeout=120, check=False)
            if made.returncode != 0:
                raise PostgresUnavailable(f"initdb failed for {self.data}: "
                                          f"{made.stderr.decode(errors='replace').strip()}")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=60"
                   + ("" if self.fsync else " -c fsync=off"))
        started = subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                             str(self.log_path), "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, timeout=90, check=False)
        if started.returncode != 0:
            raise PostgresUnavailable(
                f"PostgreSQL did not start on port {self.port} (see {self.log_path}): "
                f"{started.stderr.decode(errors='replace').strip()}")
        return self.url

    def stop(self) -> None:
        if self._bin is not None:
            subprocess.run(_as_server_user([str(self._bin / "pg_ctl"), "-D", str(self.data),
                                            "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60, check=False)
            self._bin = None
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
