"""A real PostgreSQL server for the tests (stack.postgres, Debian's binaries, a temp dir).

`postgres_url` starts one per session on a free loopback port and stops it at the end; without
the binaries the tests that need it skip and say how to get them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.postgres import LocalPostgres, PostgresUnavailable
from tests.servers import free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://tts@127.0.0.1:PORT/postgres of a throwaway server."""
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="tts-pg-")), free_port(), fsync=False)
    try:
        server.check()
    except PostgresUnavailable as exc:
        server.stop()
        pytest.skip(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


def fresh_database(url: str, name: str) -> str:
    """A new empty database on the server at `url`; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"'.encode())
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    return url.rsplit("/", 1)[0] + "/" + name
