"""One response's audio path: float chunks -> conditioner -> encoder -> bytes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import numpy as np
import soxr

from app.delivery.conditioning import Conditioner
from app.delivery.encoders import AvEncoder, Encoder, create_encoder

T = TypeVar("T")


class AudioSource(Protocol):
    """What delivery needs from a synthesis: its chunks, its usage, a way to stop it."""

    def chunks(self) -> AsyncIterator[np.ndarray]: ...

    def usage(self) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


class AudioPipeline:
    """[Resampler +] conditioner + encoder for one response. One call at a time.

    `output_rate`: resample (soxr, streaming) from the codec's `sample_rate` first, for a
    client that asked for another rate (the WebSocket's `sample_rate`).
    """

    def __init__(self, fmt: str, sample_rate: int, *, speed: float = 1.0,
                 whole_file: bool = False, output_rate: int | None = None):
        self.format = fmt
        rate = output_rate or sample_rate
        self.output_rate = rate
        self._resampler = (soxr.ResampleStream(sample_rate, rate, 1, dtype="float32")
                           if rate != sample_rate else None)
        self.conditioner = Conditioner(rate, speed=speed)
        self.encoder: Encoder = create_encoder(fmt, rate, whole_file=whole_file)
        # pcm/wav at speed 1 cost microseconds: no thread hop for them.
        self.offload = (speed != 1.0 or isinstance(self.encoder, AvEncoder)
                        or self._resampler is not None)
        # A step runs in a worker thread; a client that disconnects cancels the await, not
        # the thread. close() takes the same lock, so FFmpeg state is never freed under a
        # step still running (it waits a few milliseconds for it), and later steps are no-ops.
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> bytes:
        return self.encoder.start()

    def push(self, chunk: np.ndarray) -> bytes:
        with self._lock:
            return b"" if self._closed else self._push(chunk)

    def finish(self) -> bytes:
        with self._lock:
            return b"" if self._closed else self._finish()

    def _push(self, chunk: np.ndarray) -> bytes:
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk.astype(np.float32, copy=False))
        return self.encoder.encode(self.conditioner.push(chunk))

    def _finish(self) -> bytes:
        tail = b""
        if self._resampler is not None:
            rest = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            tail = self.encoder.encode(self.conditioner.push(rest))
        return tail + self.encoder.encode(self.conditioner.finish()) + self.encoder.finish()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
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
