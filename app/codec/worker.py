"""The codec worker: one thread that owns the codec and batches decode work across streams.

Requests submit windows of frames and await a future. The thread takes the first pending
item, then (with dynamic batching) keeps collecting for up to `batch_wait_s` or until
`max_batch_size` items, groups them by window length, and decodes each group in one call
(split so that no call exceeds `max_batch_frames` frames in all).
Equal lengths are batched without padding, so a batched decode equals one-by-one decode.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from app.codec.info import SNAC_24KHZ, CodecInfo

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Codec(Protocol):
    info: CodecInfo

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, codes_per_frame) codes -> (B, T * samples_per_frame) float32 audio.

        Rows are decoded at their full length: callers batch equal-length windows only.
        """
        ...


class StreamDecoder(Protocol):
    """A codec's stateful decoder for one stream (`Codec.stream_decoder()`, where offered)."""

    def push(self, frames: np.ndarray) -> np.ndarray:
        """(T, codes_per_frame) new frames -> the float32 audio now final."""
        ...

    def flush(self) -> np.ndarray:
        """The rest of the audio once the last frame has been pushed."""
        ...


@dataclass
class WorkerStats:
    decode_calls: int = 0
    windows: int = 0
    frames: int = 0
    max_batch: int = 0
    busy_s: float = 0.0
    withdrawn: int = 0
    batch_histogram: dict[int, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Item:
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    frames: np.ndarray | None = None  # (T, codes_per_frame) for a decode
    call: Callable[[], Any] | None = None  # any other codec job (encode, warm-up)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


# Decoder activations are large and vary in shape with batch and window length; glibc keeps
# freed blocks in its arenas, so without trimming RSS climbs to several GB under mixed
# traffic (measured: 3.5 GB after 70 shapes, 1.0 GB trimming once a second, same CPU).
TRIM_INTERVAL_S = 1.0
_STOP = object()
# In SNAC frames (85.3 ms); other codecs get the same length of audio in their own frames.
AUTO_BATCH_FRAMES_CPU = 64
AUTO_BATCH_FRAMES_CUDA = 2048


class CodecWorker:
    def __init__(
        self, codec: Codec, *, dynamic_batching: bool, max_batch_size: int, batch_wait_s: float,
        max_batch_frames: int = 0,
    ):
        self.codec = codec
        self.dynamic_batching = dynamic_batching
        self.max_batch_size = max_batch_size if dynamic_batching else 1
        # A group of equal-length windows is split so one call decodes at most this many
        # frames: activations grow with batch x length and set the process's peak memory.
        auto = (AUTO_BATCH_FRAMES_CUDA if codec.info.device.startswith("cuda")
                else AUTO_BATCH_FRAMES_CPU)
        self.max_batch_frames = max_batch_frames or round(
            auto * SNAC_24KHZ.frame_s / codec.info.layout.frame_s)
        self.batch_wait_s = batch_wait_s
        self.stats = WorkerStats()
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trim = _malloc_trim()
        self._trimmed_at = 0.0
        self._untrimmed = False  # work ran since the last trim

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="codec-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish queued work, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def decode(self, frames: np.ndarray) -> np.ndarray:
        """(T, codes_per_frame) frames -> (T * samples_per_frame,) float32. Cancelling
        withdraws the work."""
        return await self._submit(_Item(*self._future(), frames=frames))

    async def decode_streamed(self, stream: StreamDecoder, frames: np.ndarray, *,
                              final: bool) -> np.ndarray:
        """Push (T, codes_per_frame) frames through a stream decoder on the codec thread (and
        flush it when `final`): the audio now final. Counted like a decode."""
        def call() -> np.ndarray:
            started = time.perf_counter()
            audio = stream.push(frames)
            if final:
                audio = np.concatenate([audio, stream.flush()])
            self._count(time.perf_counter() - started, frames.shape[0], batch=1)
            return audio

        return await self.run(call)

    async def run(self, call: Callable[[], T]) -> T:
        """Run `call` on the codec thread (anything touching the model goes through here)."""
        return await self._submit(_Item(*self._future(), call=call))

    def _future(self) -> tuple[asyncio.Future[Any], asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), loop

    async def _submit(self, item: _Item) -> Any:
        if not self.alive:
            raise RuntimeError("codec worker is not running")
        self._queue.put(item)
        return await item.future

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        items, stop = [first], False
        deadline = time.monotonic() + self.batch_wait_s
        while len(items) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                stop = True
                break
            assert isinstance(nxt, _Item)
            if nxt.call is not None:  # run non-decode jobs at once, in order
                self._execute_call(nxt)
                continue
            items.append(nxt)
        return items, stop

    def _run(self) -> None:
        import torch  # the worker thread is where the codec's torch work happens

        torch.set_grad_enabled(False)
        while True:
            try:  # once idle, hand back what the last jobs freed (they may not have trimmed)
                first = self._queue.get(timeout=TRIM_INTERVAL_S if self._untrimmed else None)
            except queue.Empty:
                self._release_memory(force=True)
                continue
            if first is _STOP:
                return
            assert isinstance(first, _Item)
            if first.call is not None:
                self._execute_call(first)  # stream pushes, encodes: they allocate too
                self._release_memory()
                continue
            items, stop = self._collect(first) if self.max_batch_size > 1 else ([first], False)
            self._decode_batch(items)
            self._release_memory()
            if stop:
                return

    def _release_memory(self, *, force: bool = False) -> None:
        """malloc_trim at most once per TRIM_INTERVAL_S (or now, with `force`)."""
        now = time.monotonic()
        if self._trim is None:
            return
        if force or now - self._trimmed_at >= TRIM_INTERVAL_S:
            self._trim()
            self._trimmed_at = now
            self._untrimmed = False
        else:
            self._untrimmed = True

    def _execute_call(self, item: _Item) -> None:
        if item.future.cancelled():
            return
        assert item.call is not None
        try:
            result = item.call()
        except Exception as exc:  # handed to the awaiting request, which decides
            _resolve(item, exc=exc)
        else:
            _resolve(item, result=result)

    def _decode_batch(self, items: list[_Item]) -> None:
        live = [i for i in items if not i.future.cancelled()]
        self.stats.withdrawn += len(items) - len(live)
        groups: dict[int, list[_Item]] = defaultdict(list)
        for item in live:
            assert item.frames is not None
            groups[item.frames.shape[0]].append(item)
        for steps, same_length in groups.items():
            per_call = max(1, self.max_batch_frames // steps)
            for first in range(0, len(same_length), per_call):
                self._decode_group(steps, same_length[first:first + per_call])

    def _count(self, busy_s: float, steps: int, *, batch: int) -> None:
        """One decode call of `batch` windows of `steps` frames each, on the codec thread."""
        self.stats.busy_s += busy_s
        self.stats.decode_calls += 1
        self.stats.windows += batch
        self.stats.frames += steps * batch
        self.stats.max_batch = max(self.stats.max_batch, batch)
        self.stats.batch_histogram[batch] += 1

    def _decode_group(self, steps: int, group: list[_Item]) -> None:
        """Decode equal-length windows in one call and hand each caller its row."""
        batch = np.stack([i.frames for i in group])  # (B, T, codes_per_frame), never padded
        started = time.perf_counter()
        try:
            audio = self.codec.decode_frames(batch)  # (B, T * samples_per_frame)
        except Exception as exc:
            logger.exception("codec decode failed for a batch of %d", len(group))
            for item in group:
                _resolve(item, exc=exc)
            return
        self._count(time.perf_counter() - started, steps, batch=len(group))
        for row, item in enumerate(group):
            _resolve(item, result=audio[row])


def _resolve(item: _Item, *, result: Any = None, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if item.future.done():
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    try:
        item.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while we decoded: nobody is waiting
        pass
