"""One response's audio path: float chunks -> conditioner -> encoder -> bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import numpy as np

from app.delivery.conditioning import Conditioner
from app.delivery.encoders import AvEncoder, Encoder, create_encoder

T = TypeVar("T")


class AudioSource(Protocol):
    """What delivery needs from a synthesis: its chunks, its usage, a way to stop it."""

    def chunks(self) -> AsyncIterator[np.ndarray]: ...

    def usage(self) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


class AudioPipeline:
    """Conditioner + encoder for one response. Not thread-safe; one call at a time."""

    def __init__(self, fmt: str, sample_rate: int, *, speed: float = 1.0,
                 whole_file: bool = False):
        self.format = fmt
        self.conditioner = Conditioner(sample_rate, speed=speed)
        self.encoder: Encoder = create_encoder(fmt, sample_rate, whole_file=whole_file)
        # pcm/wav at speed 1 cost microseconds: no thread hop for them.
        self.offload = speed != 1.0 or isinstance(self.encoder, AvEncoder)

    def start(self) -> bytes:
        return self.encoder.start()

    def push(self, chunk: np.ndarray) -> bytes:
        return self.encoder.encode(self.conditioner.push(chunk))

    def finish(self) -> bytes:
        return self.encoder.encode(self.conditioner.finish()) + self.encoder.finish()

    def close(self) -> None:
        if isinstance(self.encoder, AvEncoder):
            self.encoder.close()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run an encoding step off the event loop when it is more than a memcpy."""
        if self.offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)


async def encoded(source: AudioSource, pipeline: AudioPipeline) -> AsyncIterator[bytes]:
    """The response's bytes in order: header, one piece per chunk, the flushed tail."""
    try:
        head = pipeline.start()
        if head:
            yield head
        async for chunk in source.chunks():
            data = await pipeline.run(pipeline.push, chunk)
            if data:
                yield data
        tail = await pipeline.run(pipeline.finish)
        if tail:
            yield tail
    finally:
        pipeline.close()
