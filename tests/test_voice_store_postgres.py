"""The Postgres voice store against a real server: the SQLite store's behaviour, plus the
migration lock and replicas sharing one database."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from app.codec.info import NEUCODEC, SNAC_24KHZ
from app.voice_store import CustomVoice, VoiceStoreError, open_voice_store
from app.voice_store_postgres import SCHEMA_VERSION, PostgresVoiceStore, conninfo, migrate
from stack.postgres import LocalPostgres, PostgresUnavailable
from tests.postgres_fixtures import fresh_database
from tests.servers import free_port

_databases = itertools.count()


@pytest.fixture
def db_url(postgres_url) -> str:
    return fresh_database(postgres_url, f"voices_{next(_databases)}")


def frames(steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (steps, 7))


def voice(name: str = "v", steps: int = 5) -> CustomVoice:
    return CustomVoice.new(name, "reference words", frames(steps), "random", "cons_1",
                           layout=SNAC_24KHZ)


def schema_versions(url: str) -> list[int]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT version FROM voice_store_schema")]


async def test_postgres_store_round_trip_and_delete(db_url):
    store = PostgresVoiceStore.open(db_url)
    created = voice(steps=352)
    await store.add(created)
    loaded = await store.get(created.info.id)
    assert loaded is not None and loaded.info == created.info
    assert loaded.reference_text == "reference words" and loaded.consent == "cons_1"
    np.testing.assert_array_equal(loaded.frames, created.frames)
    assert loaded.frames.dtype == np.int64 and loaded.codec == "random"
    assert [v.id for v in await store.list()] == [created.info.id]
    assert await store.delete(created.info.id) is True
    assert await store.delete(created.info.id) is False
    assert await store.get(created.info.id) is None and await store.list() == []
    await store.close()


async def test_postgres_store_persists_across_reopen(db_url):
    store = PostgresVoiceStore.open(db_url)
    kept = voice()
    await store.add(kept)
    await store.close()
    again = PostgresVoiceStore.open(db_url)
    assert (await again.get(kept.info.id)).info == kept.info
    await again.close()
    assert schema_versions(db_url) == [SCHEMA_VERSION]


async def test_postgres_store_is_safe_under_concurrent_requests(db_url):
    store = PostgresVoiceStore.open(db_url)
    voices = [voice(f"v{i}", steps=10 + i) for i in range(40)]
    await asyncio.gather(*[store.add(v) for v in voices])
    loaded = await asyncio.gather(*[store.get(v.info.id) for v in voices])
    assert [v.frames.shape[0] for v in loaded] == [10 + i for i in range(40)]
    deleted = await asyncio.gather(*[store.delete(v.info.id) for v in voices[::2]])
    assert all(deleted) and len(await store.list()) == 20
    await store.close()


async def test_postgres_stores_of_two_replicas_share_voices(db_url):
    a, b = PostgresVoiceStore.open(db_url), PostgresVoiceStore.open(db_url)
    from_a, from_b = [voice(f"a{i}") for i in range(10)], [voice(f"b{i}") for i in range(10)]
    await asyncio.gather(*[a.add(v) for v in from_a], *[b.add(v) for v in from_b])
    assert (await b.get(from_a[0].info.id)).info == from_a[0].info
    assert {v.id for v in await a.list()} == {v.info.id for v in from_a + from_b}
    assert await b.delete(from_a[1].info.id) and await a.get(from_a[1].info.id) is None
    await a.close()
    await b.close()


async def test_postgres_store_keeps_each_voices_codec_layout(db_url):
    store = PostgresVoiceStore.open(db_url)
    codes = np.array([[0], [65_535], [40_000]])
    neu = CustomVoice.new("n", "words", codes, "random", layout=NEUCODEC)
    snac = voice("s")
    await store.add(neu)
    await store.add(snac)
    loaded = await store.get(neu.info.id)
    assert loaded is not None and loaded.layout == NEUCODEC
    np.testing.assert_array_equal(loaded.frames, codes)
    assert (await store.get(snac.info.id)).layout == SNAC_24KHZ
    with psycopg.connect(db_url) as connection:
        blob = connection.execute("SELECT frames FROM voices WHERE id = %s",
                                  (neu.info.id,)).fetchone()[0]
    assert bytes(blob) == np.array([0, 65_535, 40_000], dtype="<u2").tobytes()
    await store.close()


async def test_postgres_store_rejects_codes_outside_the_layout(db_url):
    store = PostgresVoiceStore.open(db_url)
    with pytest.raises(ValueError):
        await store.add(CustomVoice.new("x", "w", np.full((2, 7), 4096), "random",
                                        layout=SNAC_24KHZ))
    assert await store.list() == []
    await store.close()


def test_postgres_migration_is_idempotent_and_serialised(db_url):
    """Eight replicas starting at once: one migrates, the rest find the schema current."""
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start_replica() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as connection:
                barrier.wait()
                results.append(migrate(connection))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 7
    assert schema_versions(db_url) == [SCHEMA_VERSION]


def test_postgres_open_refuses_a_newer_schema(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE voice_store_schema (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO voice_store_schema VALUES (99)")
    with pytest.raises(VoiceStoreError, match="newer"):
        PostgresVoiceStore.open(db_url)


def test_postgres_open_reports_an_unreachable_server_without_the_url(postgres_url):
    from tests.servers import free_port

    url = f"postgresql://tts:secret-pw@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(VoiceStoreError, match="cannot open the Postgres voice store") as info:
        PostgresVoiceStore.open(url, connect_timeout_s=1.0)
    assert "secret-pw" not in str(info.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
async def test_open_voice_store_dispatches_postgres_urls(scheme, db_url, tmp_path):
    store = open_voice_store(scheme + db_url.removeprefix("postgresql"), str(tmp_path))
    assert isinstance(store, PostgresVoiceStore)
    await store.close()
    assert not (tmp_path / "voices.db").exists()


@pytest.mark.parametrize("url,expected", [
    ("postgresql+psycopg://u@db/v", "postgresql://u@db/v"),
    ("postgres+psycopg2://db/v", "postgres://db/v"),
    (" postgresql://u:p@db:5432/v?sslmode=require ", "postgresql://u:p@db:5432/v?sslmode=require"),
])
def test_conninfo_drops_a_driver_suffix(url, expected):
    assert conninfo(url) == expected


def test_a_kept_local_server_keeps_its_data_across_restarts():
    """make run-scale's server (stack.postgres, keep=True): a restart finds the same data."""
    root = Path(tempfile.mkdtemp(prefix="tts-pg-kept-"))
    server = LocalPostgres(root, free_port(), keep=True, fsync=False)
    try:
        server.check()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        url = server.start()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            connection.execute("INSERT INTO kept VALUES (7)")
        server.stop()
        assert (root / "data" / "PG_VERSION").exists()
        url = server.start()
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT n FROM kept").fetchall() == [(7,)]
    finally:
        server.keep = False
        server.stop()
    assert not root.exists()
