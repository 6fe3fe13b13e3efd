"""Admission control: concurrency cap, FIFO queue, refusals, latency gate, draining."""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus

import pytest

from app.admission import Admission, Slot
from app.errors import Draining, TooManyRequests, error_headers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


def start_acquire(admission: Admission) -> asyncio.Task[Slot]:
    return asyncio.create_task(admission.acquire())


async def test_admission_caps_slots_in_use():
    admission = Admission(max_concurrent=2, max_queued=5, queue_timeout_s=5)
    first, second = await admission.acquire(), await admission.acquire()
    third = start_acquire(admission)
    await settle()
    assert not third.done()
    assert (admission.in_use, admission.queued) == (2, 1)
    first.release()
    slot = await asyncio.wait_for(third, 1)
    assert (admission.in_use, admission.queued) == (2, 0)
    second.release()
    slot.release()
    assert admission.in_use == 0 and admission.admitted == 3


async def test_admission_serves_queue_in_arrival_order():
    admission = Admission(max_concurrent=1, max_queued=5, queue_timeout_s=5)
    held = await admission.acquire()
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        async with admission.slot():
            order.append(n)

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(wait_turn(n)))
        await settle()  # queue them in a known order
    assert admission.queued == 4
    held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == [0, 1, 2, 3]
    assert admission.in_use == 0


async def test_admission_refuses_at_once_when_queue_is_full():
    admission = Admission(max_concurrent=1, max_queued=1, queue_timeout_s=5)
    held = await admission.acquire()
    queued = start_acquire(admission)
    await settle()
    started = time.monotonic()
    with pytest.raises(TooManyRequests) as refused:
        await admission.acquire()
    assert time.monotonic() - started < admission.queue_timeout_s / 2
    assert refused.value.status == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.value.code == "server_overloaded"
    assert error_headers(refused.value) == {"Retry-After": "1"}
    assert admission.rejected["queue_full"] == 1 and admission.queued == 1
    held.release()
    (await queued).release()


async def test_admission_times_out_queued_request_with_retry_after():
    admission = Admission(max_concurrent=1, max_queued=2, queue_timeout_s=0.05,
                          retry_after_s=2.5)
    held = await admission.acquire()
    with pytest.raises(TooManyRequests) as refused:
        await admission.acquire()
    assert refused.value.retry_after_s == 2.5
    assert error_headers(refused.value) == {"Retry-After": "3"}
    assert admission.rejected["queue_timeout"] == 1
    assert admission.queued == 0
    held.release()
    assert admission.in_use == 0


async def test_admission_cancelled_waiter_frees_its_queue_place():
    admission = Admission(max_concurrent=1, max_queued=1, queue_timeout_s=5)
    held = await admission.acquire()
    cancelled = start_acquire(admission)
    await settle()
    cancelled.cancel()
    await settle()
    assert cancelled.cancelled() and admission.queued == 0
    successor = start_acquire(admission)  # would be refused as queue_full if the place leaked
    await settle()
    assert admission.queued == 1
    held.release()
    slot = await asyncio.wait_for(successor, 1)
    assert admission.in_use == 1
    slot.release()
    assert admission.in_use == 0 and admission.rejected["queue_full"] == 0


async def test_admission_passes_on_slot_handed_to_a_waiter_cancelled_meanwhile():
    admission = Admission(max_concurrent=1, max_queued=2, queue_timeout_s=5)
    held = await admission.acquire()
    first, second = start_acquire(admission), None
    await settle()
    second = start_acquire(admission)
    await settle()
    held.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    slot = await asyncio.wait_for(second, 1)
    assert first.cancelled()
    assert admission.in_use == 1
    slot.release()
    assert admission.in_use == 0


async def test_slot_release_is_idempotent():
    admission = Admission(max_concurrent=2, max_queued=0, queue_timeout_s=1)
    kept, released = await admission.acquire(), await admission.acquire()
    released.release()
    released.release()
    assert released.released and admission.in_use == 1
    kept.release()
    assert admission.in_use == 0


async def test_admission_slot_context_releases_when_the_block_is_cancelled():
    admission = Admission(max_concurrent=1, max_queued=0, queue_timeout_s=1)
    entered = asyncio.Event()

    async def stream() -> None:
        async with admission.slot():
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(stream())
    await entered.wait()
    assert admission.in_use == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admission.in_use == 0


async def test_admission_latency_gate_refuses_new_streams_until_observations_expire():
    clock = FakeClock()
    admission = Admission(max_concurrent=4, max_queued=4, queue_timeout_s=1,
                          latency_target_s=1.0, window_s=10.0, clock=clock)
    in_flight = await admission.acquire()
    admission.observe_first_audio(3.0)
    with pytest.raises(TooManyRequests) as refused:
        await admission.acquire()
    assert refused.value.code == "server_overloaded"
    assert admission.rejected["latency"] == 1
    assert admission.in_use == 1 and not in_flight.released  # in flight: unaffected
    clock.now += 10.5
    assert admission.recent_first_audio_s() is None
    (await admission.acquire()).release()
    in_flight.release()


async def test_admission_latency_gate_uses_the_median_of_the_window():
    clock = FakeClock()
    admission = Admission(max_concurrent=4, max_queued=0, queue_timeout_s=1,
                          latency_target_s=1.0, clock=clock)
    in_flight = await admission.acquire()
    for seconds in (0.2, 0.3, 5.0):  # one slow outlier does not close the gate
        admission.observe_first_audio(seconds)
    (await admission.acquire()).release()
    admission.observe_first_audio(4.0)
    admission.observe_first_audio(6.0)
    with pytest.raises(TooManyRequests):
        await admission.acquire()
    in_flight.release()


async def test_admission_latency_gate_admits_when_nothing_is_in_flight():
    clock = FakeClock()
    admission = Admission(max_concurrent=4, max_queued=4, queue_timeout_s=1,
                          latency_target_s=1.0, rtf_margin_target=1.5, clock=clock)
    admission.observe_first_audio(30.0)
    admission.observe_realtime_margin(0.1)
    slot = await admission.acquire()
    assert admission.in_use == 1 and admission.rejected["latency"] == 0
    slot.release()


async def test_admission_realtime_margin_gate_refuses_and_recovers():
    clock = FakeClock()
    admission = Admission(max_concurrent=4, max_queued=4, queue_timeout_s=1,
                          rtf_margin_target=1.5, window_s=10.0, clock=clock)
    in_flight = await admission.acquire()
    admission.observe_realtime_margin(0.8)
    with pytest.raises(TooManyRequests):
        await admission.acquire()
    clock.now += 5
    admission.observe_realtime_margin(3.0)
    admission.observe_realtime_margin(4.0)  # median of (0.8, 3, 4) is 3: keeping up again
    (await admission.acquire()).release()
    clock.now += 6  # the 0.8 expired; 3 and 4 remain
    assert admission.recent_realtime_margin() == 3.5
    in_flight.release()
    assert admission.rejected["latency"] == 1


async def test_admission_draining_refuses_new_and_queued_requests():
    admission = Admission(max_concurrent=1, max_queued=2, queue_timeout_s=5)
    held = await admission.acquire()
    queued = start_acquire(admission)
    await settle()
    admission.start_draining()
    with pytest.raises(Draining) as refused_queued:
        await queued
    with pytest.raises(Draining) as refused_new:
        await admission.acquire()
    for refused in (refused_queued.value, refused_new.value):
        assert refused.status == HTTPStatus.SERVICE_UNAVAILABLE
        assert refused.code == "server_draining" and "Retry-After" in error_headers(refused)
    assert admission.rejected["draining"] == 2
    assert admission.queued == 0 and admission.in_use == 1 and not held.released


async def test_admission_wait_idle_waits_for_slots_in_flight():
    admission = Admission(max_concurrent=2, max_queued=0, queue_timeout_s=1)
    held = await admission.acquire()
    admission.start_draining()
    assert await admission.wait_idle(0.05) is False
    waiting = asyncio.create_task(admission.wait_idle(5))
    await settle()
    assert not waiting.done()
    held.release()
    assert await asyncio.wait_for(waiting, 1) is True


async def test_admission_wait_idle_returns_at_once_when_idle():
    admission = Admission(max_concurrent=1, max_queued=0, queue_timeout_s=1)
    (await admission.acquire()).release()
    started = time.monotonic()
    assert await admission.wait_idle(5) is True
    assert time.monotonic() - started < 1


async def test_admission_counts_admitted_and_every_reject_reason():
    admission = Admission(max_concurrent=1, max_queued=0, queue_timeout_s=1)
    slot = await admission.acquire()
    with pytest.raises(TooManyRequests):
        await admission.acquire()
    assert admission.admitted == 1
    assert admission.rejected == {"queue_full": 1, "queue_timeout": 0, "latency": 0,
                                  "draining": 0}
    slot.release()


def test_admission_rejects_nonsense_limits():
    with pytest.raises(ValueError):
        Admission(max_concurrent=0, max_queued=1, queue_timeout_s=1)
    with pytest.raises(ValueError):
        Admission(max_concurrent=1, max_queued=-1, queue_timeout_s=1)
