"""Custom voices: a reference transcript and its codec frames, encoded once and kept.

Each voice records the codec layout its frames belong to (codec, codes per frame, codebook
size, frame length); frames only mean something to that codec. Schema 1 had no layout: its
rows were all SNAC, and opening such a file adds the columns with SNAC's layout as default.

`VoiceStore` is what the service needs; `SqliteVoiceStore` is the default implementation
(one file, WAL, blocking calls run in a thread so the event loop never waits on disk).
`open_voice_store` picks the implementation from VOICE_STORE_URL: sqlite:/// or blank for
this module's, postgresql:// for `app.voice_store_postgres` (replicas sharing one store).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.codec.info import SNAC_24KHZ, CodecLayout

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reference_text TEXT NOT NULL,
    frames BLOB NOT NULL,
    codec TEXT NOT NULL,
    consent TEXT
)
"""
# Schema 2: the frames' layout. Rows written by schema 1 were SNAC's (the defaults).
_LAYOUT_COLUMNS = (
    ("layout_codec", "TEXT", f"'{SNAC_24KHZ.codec}'"),
    ("codes_per_frame", "INTEGER", str(SNAC_24KHZ.codes_per_frame)),
    ("codebook_size", "INTEGER", str(SNAC_24KHZ.codebook_size)),
    ("samples_per_frame", "INTEGER", str(SNAC_24KHZ.samples_per_frame)),
    ("sample_rate", "INTEGER", str(SNAC_24KHZ.sample_rate)),
)
COLUMNS = ("id, name, created_at, reference_text, frames, codec, consent, layout_codec, "
            "codes_per_frame, codebook_size, samples_per_frame, sample_rate")
# Codes are two bytes each, little-endian, frame after frame: SNAC's 0..4095 and NeuCodec's
# 0..65535 both fit.
_FRAME_DTYPE = np.dtype("<u2")
_MAX_CODEBOOK = 1 << 16


class VoiceStoreError(RuntimeError):
    """The voice store cannot be opened (bad URL, missing driver, unwritable path)."""


@dataclass(frozen=True)
class VoiceInfo:
    """What listing shows. `created_at` is Unix seconds."""

    id: str
    name: str
    created_at: int


@dataclass(frozen=True)
class CustomVoice:
    """A stored voice. `frames` is (T, layout.codes_per_frame) codes of the codec `layout`
    names; `codec` names the weights that produced them."""

    info: VoiceInfo
    reference_text: str
    frames: np.ndarray
    codec: str
    consent: str | None = None
    layout: CodecLayout = field(kw_only=True)

    @classmethod
    def new(cls, name: str, reference_text: str, frames: np.ndarray, codec: str,
            consent: str | None = None, *, layout: CodecLayout) -> CustomVoice:
        info = VoiceInfo(id=f"voice_{uuid.uuid4().hex}", name=name, created_at=int(time.time()))
        return cls(info, reference_text, frames, codec, consent, layout=layout)


class VoiceStore(Protocol):
    async def add(self, voice: CustomVoice) -> None: ...

    async def get(self, voice_id: str) -> CustomVoice | None: ...

    async def list(self) -> list[VoiceInfo]: ...

    async def delete(self, voice_id: str) -> bool: ...

    async def close(self) -> None: ...


def frames_to_blob(frames: np.ndarray, layout: CodecLayout) -> bytes:
    width = layout.codes_per_frame
    if frames.ndim != 2 or frames.shape[1] != width:
        raise ValueError(f"frames must be (T, {width}), got {frames.shape}")
    if layout.codebook_size > _MAX_CODEBOOK or frames.size and (
            frames.min() < 0 or frames.max() >= layout.codebook_size):
        raise ValueError(f"codes must lie in 0..{layout.codebook_size - 1}")
    return np.ascontiguousarray(frames, dtype=_FRAME_DTYPE).tobytes()


def blob_to_frames(blob: bytes, layout: CodecLayout) -> np.ndarray:
    codes = np.frombuffer(blob, dtype=_FRAME_DTYPE).astype(np.int64)
    return codes.reshape(-1, layout.codes_per_frame)


def voice_row(voice: CustomVoice) -> tuple[Any, ...]:
    """A voice as the values of `COLUMNS`, in order (both stores' rows)."""
    info, layout = voice.info, voice.layout
    return (info.id, info.name, info.created_at, voice.reference_text,
            frames_to_blob(voice.frames, layout), voice.codec, voice.consent, layout.codec,
            layout.codes_per_frame, layout.codebook_size, layout.samples_per_frame,
            layout.sample_rate)


def voice_from_row(row: tuple[Any, ...]) -> CustomVoice:
    """The inverse of `voice_row` (drivers may hand back memoryview frames, decimal times)."""
    id_, name, created_at, text, blob, codec, consent, *shape = row
    layout = CodecLayout(*shape)
    return CustomVoice(VoiceInfo(id_, name, int(created_at)), text,
                       blob_to_frames(bytes(blob), layout), codec, consent, layout=layout)


class SqliteVoiceStore:
    """Voices in one SQLite file. One connection, used by one thread at a time (the lock);
    WAL lets other processes read while one writes, busy_timeout makes writers wait."""

    def __init__(self, connection: sqlite3.Connection, path: str):
        self._db = connection
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> SqliteVoiceStore:
        """Open (creating if needed) the database file. Blocking."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                 timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise VoiceStoreError(f"cannot open the voice store at {path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise VoiceStoreError(
                    f"the voice store at {path} has schema {version}, newer than this "
                    f"service's {SCHEMA_VERSION}")
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(voices)")}
            for column, kind, default in _LAYOUT_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE voices ADD COLUMN {column} {kind} NOT NULL "
                               f"DEFAULT {default}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise VoiceStoreError(f"cannot open the voice store at {path}: {exc}") from exc
        except VoiceStoreError:
            db.close()
            raise
        logger.info("voice store: sqlite %s", path)
        return cls(db, str(path))

    def _run(self, sql: str, params: tuple[object, ...]) -> tuple[list[tuple[Any, ...]], int]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            return cursor.fetchall(), cursor.rowcount

    async def _call(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        rows, _ = await asyncio.to_thread(self._run, sql, params)
        return rows

    async def add(self, voice: CustomVoice) -> None:
        await self._call(
            f"INSERT INTO voices ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            voice_row(voice))

    async def get(self, voice_id: str) -> CustomVoice | None:
        rows = await self._call(f"SELECT {COLUMNS} FROM voices WHERE id = ?", (voice_id,))
        return voice_from_row(rows[0]) if rows else None

    async def list(self) -> list[VoiceInfo]:
        rows = await self._call("SELECT id, name, created_at FROM voices"
                                " ORDER BY created_at, id")
        return [VoiceInfo(*row) for row in rows]

    async def delete(self, voice_id: str) -> bool:
        _, deleted = await asyncio.to_thread(self._run, "DELETE FROM voices WHERE id = ?",
                                             (voice_id,))
        return deleted > 0

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._db.close()


def sqlite_path(url: str, data_dir: str) -> Path:
    """VOICE_STORE_URL -> database file. Blank: voices.db in DATA_DIR.
    `sqlite:///rel/path.db` is relative to the working directory, `sqlite:////abs.db` absolute."""
    if not url.strip():
        return Path(data_dir) / "voices.db"
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise VoiceStoreError(f"VOICE_STORE_URL {url!r} is not sqlite:///PATH")
    return Path(url[len(prefix):])


def open_voice_store(url: str, data_dir: str) -> VoiceStore:
    """The store VOICE_STORE_URL names. Blocking: run it in a thread."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+"):
        from app.voice_store_postgres import PostgresVoiceStore  # psycopg only when asked for

        return PostgresVoiceStore.open(url)
    if url.strip() and scheme != "sqlite":
        raise VoiceStoreError(f"VOICE_STORE_URL scheme {scheme!r} is not supported; "
                              "use sqlite:///PATH or postgresql://…")
    return SqliteVoiceStore.open(sqlite_path(url, data_dir))
