"""Custom voices in PostgreSQL, for API replicas that share one store.

Same contract as `SqliteVoiceStore`: frames are stored as two-byte codes with the layout they
belong to, calls block in a worker thread so the event loop never waits on the network.

Schema migrations are numbered and run at start-up inside one transaction that holds a
transaction-level advisory lock: when several replicas start at once, one migrates and the
others wait for it, then find nothing left to do. `voice_store_schema` holds the version; a
database migrated by a newer service (a higher version) is refused rather than guessed at.
Voice ids are random (uuid4) primary keys, so concurrent creates from any number of replicas
never collide; an insert is one statement, atomic on its own.

A small connection pool (psycopg_pool) checks each connection before lending it, so a
restarted database costs the requests in flight at that moment, not every request after it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from app.voice_store import (
    COLUMNS,
    CustomVoice,
    VoiceInfo,
    VoiceStoreError,
    voice_from_row,
    voice_row,
)

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key: any constant 64-bit number our tables own ("tts voic" in ASCII).
MIGRATION_LOCK_KEY = 0x7474_7320_766F_6963
# Migration n takes the schema from version n-1 to n. Append, never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE voices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        reference_text TEXT NOT NULL,
        frames BYTEA NOT NULL,
        codec TEXT NOT NULL,
        consent TEXT,
        layout_codec TEXT NOT NULL,
        codes_per_frame INTEGER NOT NULL CHECK (codes_per_frame > 0),
        codebook_size INTEGER NOT NULL CHECK (codebook_size > 0),
        samples_per_frame INTEGER NOT NULL CHECK (samples_per_frame > 0),
        sample_rate INTEGER NOT NULL CHECK (sample_rate > 0)
    );
    CREATE INDEX voices_created_at ON voices (created_at, id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_DRIVER_SUFFIX = re.compile(r"^(postgres(?:ql)?)\+\w+://")


def conninfo(url: str) -> str:
    """VOICE_STORE_URL -> a libpq URI: `postgresql+psycopg://` (SQLAlchemy style) loses
    its driver suffix; postgres:// and postgresql:// pass as they are."""
    return _DRIVER_SUFFIX.sub(r"\1://", url.strip(), count=1)


def migrate(connection: psycopg.Connection[Any]) -> tuple[int, int]:
    """Bring the schema to SCHEMA_VERSION; returns (version found, version now). Idempotent,
    and safe to run from several processes at once (the advisory lock serialises them)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        connection.execute("CREATE TABLE IF NOT EXISTS voice_store_schema "
                           "(version INTEGER NOT NULL)")
        row = connection.execute("SELECT max(version) FROM voice_store_schema").fetchone()
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise VoiceStoreError(f"the Postgres voice store has schema {found}, newer than "
                                  f"this service's {SCHEMA_VERSION}")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            connection.execute(MIGRATIONS[version - 1].encode())
            logger.info("voice store: migrated Postgres schema to version %d", version)
        if found < SCHEMA_VERSION:
            connection.execute("DELETE FROM voice_store_schema")
            connection.execute("INSERT INTO voice_store_schema (version) VALUES (%s)",
                               (SCHEMA_VERSION,))
    return found, SCHEMA_VERSION


class PostgresVoiceStore:
    """Voices in a PostgreSQL database that every API replica points at."""

    def __init__(self, pool: ConnectionPool[Any]):
        self._pool = pool

    @classmethod
    def open(cls, url: str, *, max_connections: int = 4,
             connect_timeout_s: float = 10.0) -> PostgresVoiceStore:
        """Connect, migrate the schema, and keep a pool. Blocking."""
        pool: ConnectionPool[Any] = ConnectionPool(
            conninfo(url), min_size=1, max_size=max_connections, open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout_s))},
            check=ConnectionPool.check_connection, timeout=connect_timeout_s,
            name="voice-store")
        try:
            pool.open(wait=True, timeout=connect_timeout_s)
            with pool.connection() as connection:
                found, now = migrate(connection)
        except (psycopg.Error, PoolTimeout) as exc:
            pool.close()
            # The URL may hold a password: name the failure's kind, not the URL.
            raise VoiceStoreError(
                f"cannot open the Postgres voice store: {type(exc).__name__}") from exc
        except VoiceStoreError:
            pool.close()
            raise
        logger.info("voice store: postgres (schema %d, was %d)", now, found)
        return cls(pool)

    def _run(self, sql: str, params: tuple[object, ...]) -> tuple[list[tuple[Any, ...]], int]:
        with self._pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute(sql.encode(), params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return rows, cursor.rowcount

    async def _call(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        rows, _ = await asyncio.to_thread(self._run, sql, params)
        return rows

    async def add(self, voice: CustomVoice) -> None:
        await self._call(
            f"INSERT INTO voices ({COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", voice_row(voice))

    async def get(self, voice_id: str) -> CustomVoice | None:
        rows = await self._call(f"SELECT {COLUMNS} FROM voices WHERE id = %s", (voice_id,))
        return voice_from_row(rows[0]) if rows else None

    async def list(self) -> list[VoiceInfo]:
        rows = await self._call("SELECT id, name, created_at FROM voices"
                                " ORDER BY created_at, id")
        return [VoiceInfo(id_, name, int(created_at)) for id_, name, created_at in rows]

    async def delete(self, voice_id: str) -> bool:
        _, deleted = await asyncio.to_thread(self._run, "DELETE FROM voices WHERE id = %s",
                                             (voice_id,))
        return deleted > 0

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.close)
