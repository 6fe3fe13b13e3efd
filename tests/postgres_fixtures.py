"""A real PostgreSQL server for the tests, run from Debian's `postgresql` binaries in a temp dir.

`postgres_url` starts one per session on a free loopback port (trust auth, no password) and
stops it at the end; without the binaries the tests that need it skip and say how to get them.
initdb refuses to run as root: as root the server runs as the `postgres` user the package
creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

SUPERUSER = "tts"


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://tts@127.0.0.1:PORT/postgres of a throwaway server."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL binaries not found: `apt-get install postgresql` (make setup-ci "
                    "does it as root) or set POSTGRES_BIN")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True,
                                            check=False).returncode != 0:
        pytest.skip("running as root and there is no `postgres` user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="tts-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    log = root / "server.log"
    port = free_port()
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                         "--auth=trust", "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True, timeout=120)
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=60"
    subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                         "-w", "-t", "60", "start"]),
        check=True, capture_output=True, timeout=90)
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    try:
        yield url
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                        "-w", "stop"]), capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new empty database on the server at `url`; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"'.encode())
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    return url.rsplit("/", 1)[0] + "/" + name

