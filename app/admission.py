"""Admission control for synthesis streams: a concurrency cap, a bounded FIFO queue, an
optional latency gate, and draining for graceful shutdown.

At most `max_concurrent` slots are held at once. A request that finds them all taken waits in
a FIFO queue of at most `max_queued`, for at most `queue_timeout_s` seconds; with the queue
full it is refused at once. Refusals raise `TooManyRequests` (429, code `server_overloaded`)
with `retry_after_s` set.

The latency gate (either target optional) refuses NEW streams while the system is already
behind: while the median first-audio latency (seconds from request to first audio chunk)
observed over the last `window_s` exceeds `latency_target_s`, or the median codec real-time
margin (1 / the codec thread's busy fraction; near 1 it has no headroom and streams fall
behind playback) is below `rtf_margin_target`. Streams already admitted are not affected, and a request is
always admitted when nothing is in flight, so the gate cannot lock the service out; old
observations expire after `window_s`, so the gate reopens once the slow period is over.

After `start_draining()` every acquire, and every request still queued, raises `Draining`
(503); `wait_idle()` then waits for the streams in flight to finish.

Single event loop only: this uses no locks because nothing here awaits between a check and
the update it guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

from app.errors import Draining, TooManyRequests

RejectReason = Literal["queue_full", "queue_timeout", "latency", "draining"]
REJECT_REASONS: tuple[RejectReason, ...] = ("queue_full", "queue_timeout", "latency", "draining")


class Slot:
    """One admitted stream. `release()` gives the slot back; calling it again does nothing."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    @property
    def released(self) -> bool:
        return self._admission is None

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release()


class Admission:
    """See the module docstring. `clock` returns seconds (monotonic); tests inject one."""

    def __init__(self, max_concurrent: int, max_queued: int, queue_timeout_s: float, *,
                 latency_target_s: float | None = None,
                 rtf_margin_target: float | None = None,
                 window_s: float = 10.0, retry_after_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if max_queued < 0 or queue_timeout_s < 0 or window_s <= 0 or retry_after_s <= 0:
            raise ValueError("max_queued, queue_timeout_s, window_s and retry_after_s must "
                             "not be negative (window_s and retry_after_s must be positive)")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.latency_target_s = latency_target_s
        self.rtf_margin_target = rtf_margin_target
        self.window_s = window_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._first_audio: deque[tuple[float, float]] = deque()  # (observed at, seconds)
        self._margins: deque[tuple[float, float]] = deque()  # (observed at, ratio)
        self._idle = asyncio.Event()
        self._idle.set()
        self.admitted = 0
        self._rejected: Counter[RejectReason] = Counter()
        self.draining = False

    @property
    def in_use(self) -> int:
        """Slots held by admitted streams."""
        return self._in_use

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    @property
    def rejected(self) -> Mapping[RejectReason, int]:
        """Refusals so far by reason; every reason present, zeros included."""
        return {reason: self._rejected[reason] for reason in REJECT_REASONS}

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """`async with admission.slot():` holds a slot for the block, released however it
        ends (cancellation included)."""
        slot = await self.acquire()
        try:
            yield slot
        finally:
            slot.release()

    async def acquire(self) -> Slot:
        """A slot, now or after a wait in the queue. Raises TooManyRequests (queue full,
        queue timeout, latency gate) or Draining. The caller must `release()` it in finally."""
        if self.draining:
            raise self._refuse_draining()
        if self._in_use > 0 and self._behind():
            self._rejected["latency"] += 1
            raise TooManyRequests("The server is behind on the streams it is serving; retry "
                                  "shortly.", code="server_overloaded",
                                  retry_after_s=self.retry_after_s)
        if self._in_use < self.max_concurrent and not self._waiters:
            return self._grant()
        if len(self._waiters) >= self.max_queued:
            self._rejected["queue_full"] += 1
            raise TooManyRequests("Too many concurrent requests; retry shortly.",
                                  code="server_overloaded", retry_after_s=self.retry_after_s)
        return await self._wait()

    async def _wait(self) -> Slot:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._idle.clear()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter
        except TimeoutError:
            if _granted(waiter):
                return self._handed_over()  # the slot came at the deadline: take it
            self._withdraw(waiter)
            self._rejected["queue_timeout"] += 1
            raise TooManyRequests(
                f"No stream slot became free within {self.queue_timeout_s:g} s; retry shortly.",
                code="server_overloaded", retry_after_s=self.retry_after_s) from None
        except Draining:
            raise self._refuse_draining() from None
        except BaseException:
            # Cancelled while queued. A slot handed over in the same loop iteration must be
            # passed on, or it would be lost for good.
            if _granted(waiter):
                self._release()
            else:
                self._withdraw(waiter)
            raise
        return self._handed_over()

    def _grant(self) -> Slot:
        self._in_use += 1
        self.admitted += 1
        self._idle.clear()
        return Slot(self)

    def _handed_over(self) -> Slot:
        # `_release` kept `_in_use` as it was when it handed this waiter the slot.
        self.admitted += 1
        return Slot(self)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1
        if self._in_use == 0:
            self._idle.set()

    def _withdraw(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        waiter.cancel()
        if self._in_use == 0 and not self._waiters:
            self._idle.set()

    def _refuse_draining(self) -> Draining:
        self._rejected["draining"] += 1
        return Draining("The server is shutting down; retry on another instance.",
                        retry_after_s=self.retry_after_s)

    def observe_first_audio(self, seconds: float) -> None:
        """Report one stream's first-audio latency (request received to first chunk sent)."""
        self._observe(self._first_audio, seconds)

    def observe_realtime_margin(self, ratio: float) -> None:
        """Report the codec's real-time margin: 1 / its busy fraction (headroom; below about
        1 it cannot keep up with the streams it serves)."""
        self._observe(self._margins, ratio)

    def _observe(self, window: deque[tuple[float, float]], value: float) -> None:
        now = self._clock()
        window.append((now, value))
        self._expire(window, now)

    def _expire(self, window: deque[tuple[float, float]], now: float) -> None:
        while window and window[0][0] <= now - self.window_s:
            window.popleft()

    def recent_first_audio_s(self) -> float | None:
        """Median first-audio latency over the window, in seconds; None without observations."""
        return self._median(self._first_audio)

    def recent_realtime_margin(self) -> float | None:
        """Median real-time margin over the window; None without observations."""
        return self._median(self._margins)

    def _median(self, window: deque[tuple[float, float]]) -> float | None:
        self._expire(window, self._clock())
        return statistics.median(value for _, value in window) if window else None

    def _behind(self) -> bool:
        if self.latency_target_s is not None:
            latency = self.recent_first_audio_s()
            if latency is not None and latency > self.latency_target_s:
                return True
        if self.rtf_margin_target is not None:
            margin = self.recent_realtime_margin()
            if margin is not None and margin < self.rtf_margin_target:
                return True
        return False

    def start_draining(self) -> None:
        """Refuse new acquires with Draining, and fail the requests still queued with it."""
        self.draining = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(Draining("draining"))
        if self._in_use == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no slot is held and nobody is queued; False if `timeout_s` ran out."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled() and waiter.exception() is None
