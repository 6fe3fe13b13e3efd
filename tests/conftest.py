"""Shared fixtures. The real-engine fixtures live in tests/engine_fixtures.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["tests.engine_fixtures", "tests.postgres_fixtures"]


@pytest.fixture(scope="module")
def script():
    """The scripted engine's behaviour, shared by one test module."""
    from tests.fake_engine import Script

    return Script()


@pytest.fixture(scope="module")
def engine_url(script):
    """A scripted vLLM look-alike on loopback (fault injection and exact cases only)."""
    from tests.fake_engine import create_fake_engine
    from tests.servers import serve

    with serve(create_fake_engine(script)) as url:
        yield url
