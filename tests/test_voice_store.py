"""The SQLite voice store: round trips, persistence, concurrency, URLs and errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.codec.info import NEUCODEC, SNAC_24KHZ
from app.voice_store import (
    CustomVoice,
    SqliteVoiceStore,
    VoiceStoreError,
    blob_to_frames,
    frames_to_blob,
    open_voice_store,
    sqlite_path,
)


def frames(steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (steps, 7))


def voice(name: str = "v", steps: int = 5) -> CustomVoice:
    return CustomVoice.new(name, "reference words", frames(steps), "random", "cons_1",
                           layout=SNAC_24KHZ)


async def test_store_round_trip_and_delete(tmp_path):
    store = SqliteVoiceStore.open(tmp_path / "v.db")
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


async def test_store_persists_and_uses_wal(tmp_path):
    path = tmp_path / "nested" / "v.db"
    store = SqliteVoiceStore.open(path)
    kept = voice()
    await store.add(kept)
    await store.close()
    again = SqliteVoiceStore.open(path)
    assert (await again.get(kept.info.id)).info == kept.info
    await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_store_is_safe_under_concurrent_requests(tmp_path):
    store = SqliteVoiceStore.open(tmp_path / "v.db")
    voices = [voice(f"v{i}", steps=10 + i) for i in range(40)]
    await asyncio.gather(*[store.add(v) for v in voices])
    loaded = await asyncio.gather(*[store.get(v.info.id) for v in voices])
    assert [v.frames.shape[0] for v in loaded] == [10 + i for i in range(40)]
    deleted = await asyncio.gather(*[store.delete(v.info.id) for v in voices[::2]])
    assert all(deleted) and len(await store.list()) == 20
    await store.close()


async def test_two_stores_on_one_file_see_each_other(tmp_path):
    """Two processes (here two connections) sharing DATA_DIR."""
    a, b = SqliteVoiceStore.open(tmp_path / "v.db"), SqliteVoiceStore.open(tmp_path / "v.db")
    shared = voice()
    await a.add(shared)
    assert (await b.get(shared.info.id)) is not None
    await a.close()
    await b.close()


def test_frames_blob_is_two_bytes_per_code():
    codes = frames(3)
    blob = frames_to_blob(codes, SNAC_24KHZ)
    assert len(blob) == 3 * 7 * 2
    np.testing.assert_array_equal(blob_to_frames(blob, SNAC_24KHZ), codes)
    with pytest.raises(ValueError):
        frames_to_blob(np.zeros((3, 6), dtype=np.int64), SNAC_24KHZ)
    with pytest.raises(ValueError):
        frames_to_blob(np.full((3, 7), 4096), SNAC_24KHZ)


async def test_store_keeps_each_voices_codec_layout(tmp_path):
    store = SqliteVoiceStore.open(tmp_path / "v.db")
    codes = np.array([[0], [65_535], [40_000]])
    neu = CustomVoice.new("n", "words", codes, "random", layout=NEUCODEC)
    snac = voice("s")
    await store.add(neu)
    await store.add(snac)
    loaded = await store.get(neu.info.id)
    assert loaded is not None and loaded.layout == NEUCODEC
    np.testing.assert_array_equal(loaded.frames, codes)
    assert (await store.get(snac.info.id)).layout == SNAC_24KHZ
    await store.close()


async def test_store_migrates_schema_1_rows_as_snac(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE voices (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at "
               "INTEGER NOT NULL, reference_text TEXT NOT NULL, frames BLOB NOT NULL, "
               "codec TEXT NOT NULL, consent TEXT)")
    old = frames(4)
    db.execute("INSERT INTO voices VALUES ('voice_old', 'old', 1, 'words', ?, 'random', NULL)",
               (np.ascontiguousarray(old, dtype="<u2").tobytes(),))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = SqliteVoiceStore.open(path)
    loaded = await store.get("voice_old")
    assert loaded is not None and loaded.layout == SNAC_24KHZ
    np.testing.assert_array_equal(loaded.frames, old)
    await store.close()
    reopened = sqlite3.connect(path)
    assert reopened.execute("PRAGMA user_version").fetchone()[0] == 2
    reopened.close()


@pytest.mark.parametrize("url,path", [
    ("", Path("DATA/voices.db")),
    ("  ", Path("DATA/voices.db")),
    ("sqlite:///data/voices.db", Path("data/voices.db")),
    ("sqlite:////var/lib/tts/voices.db", Path("/var/lib/tts/voices.db")),
])
def test_sqlite_url_to_path(url, path):
    assert sqlite_path(url, "DATA") == path


@pytest.mark.parametrize("url,message", [
    ("mysql://db/voices", "not supported"),
    ("sqlite://relative.db", "not sqlite:///PATH"),
    ("sqlite:///", "not sqlite:///PATH"),
])
def test_open_rejects_unsupported_urls(url, message, tmp_path):
    with pytest.raises(VoiceStoreError, match=message):
        open_voice_store(url, str(tmp_path))


def test_open_default_is_voices_db_in_data_dir(tmp_path):
    store = open_voice_store("", str(tmp_path / "data"))
    assert isinstance(store, SqliteVoiceStore)
    assert store.path == str(tmp_path / "data" / "voices.db")
    asyncio.run(store.close())


def test_open_refuses_a_newer_schema(tmp_path):
    with sqlite3.connect(tmp_path / "v.db") as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(VoiceStoreError, match="newer"):
        SqliteVoiceStore.open(tmp_path / "v.db")


def test_open_reports_an_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(VoiceStoreError, match="cannot open"):
        SqliteVoiceStore.open(blocker / "v.db")
