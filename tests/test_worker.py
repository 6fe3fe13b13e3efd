from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.codec.worker import CodecWorker
from tests.fakes import RecordingCodec


def frames(value: int, steps: int) -> np.ndarray:
    return np.full((steps, 7), value, dtype=np.int64)


async def test_worker_batches_concurrent_equal_length_windows():
    codec = RecordingCodec()
    codec.gate.clear()  # hold the thread so that submissions pile up
    worker = CodecWorker(codec, dynamic_batching=True, max_batch_size=8, batch_wait_s=0.05)
    worker.start()
    try:
        first = asyncio.ensure_future(worker.decode(frames(99, 2)))
        await asyncio.sleep(0.05)
        tasks = [asyncio.ensure_future(worker.decode(frames(i, 4))) for i in range(5)]
        tasks.append(asyncio.ensure_future(worker.decode(frames(7, 3))))
        await asyncio.sleep(0.01)
        codec.gate.set()
        results = await asyncio.gather(first, *tasks)
    finally:
        worker.stop()
    assert [r[0] for r in results] == [99, 0, 1, 2, 3, 4, 7]
    assert (5, 4) in codec.batches and (1, 3) in codec.batches
    assert worker.stats.max_batch == 5


async def test_worker_without_dynamic_batching_decodes_one_at_a_time():
    codec = RecordingCodec()
    worker = CodecWorker(codec, dynamic_batching=False, max_batch_size=16, batch_wait_s=0.05)
    worker.start()
    try:
        await asyncio.gather(*[worker.decode(frames(i, 4)) for i in range(4)])
    finally:
        worker.stop()
    assert codec.batches == [(1, 4)] * 4


async def test_cancelled_work_is_withdrawn_before_decode():
    codec = RecordingCodec()
    codec.gate.clear()
    worker = CodecWorker(codec, dynamic_batching=True, max_batch_size=4, batch_wait_s=0.0)
    worker.start()
    try:
        busy = asyncio.ensure_future(worker.decode(frames(1, 2)))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(worker.decode(frames(2, 2)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        codec.gate.set()
        await busy
        assert (await worker.decode(frames(3, 2)))[0] == 3
    finally:
        worker.stop()
    assert worker.stats.withdrawn == 1
    assert codec.batches == [(1, 2), (1, 2)]


async def test_decode_errors_reach_the_caller_and_the_worker_survives():
    codec = RecordingCodec(fail=True)
    worker = CodecWorker(codec, dynamic_batching=False, max_batch_size=1, batch_wait_s=0.0)
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await worker.decode(frames(1, 2))
        codec.fail = False
        assert (await worker.decode(frames(4, 2)))[0] == 4
        assert await worker.run(lambda: 42) == 42
    finally:
        worker.stop()


async def test_snac_batched_through_worker_equals_one_by_one():
    from app.codec.snac import SnacCodec

    codec = SnacCodec.load("random")
    codec.set_noise(False)
    windows = [np.random.default_rng(i).integers(0, 4096, (6, 7)) for i in range(4)]
    singles = [codec.decode_frames(w[None])[0] for w in windows]
    worker = CodecWorker(codec, dynamic_batching=True, max_batch_size=8, batch_wait_s=0.2)
    worker.start()
    try:
        batched = await asyncio.gather(*[worker.decode(w) for w in windows])
    finally:
        worker.stop()
    assert worker.stats.max_batch == 4
    for got, want in zip(batched, singles):
        np.testing.assert_allclose(got, want, atol=1e-5)


async def test_large_groups_are_split_to_bound_frames_per_call():
    codec = RecordingCodec()
    codec.gate.clear()
    worker = CodecWorker(codec, dynamic_batching=True, max_batch_size=16, batch_wait_s=0.05,
                         max_batch_frames=20)
    worker.start()
    try:
        first = asyncio.ensure_future(worker.decode(frames(9, 1)))
        await asyncio.sleep(0.05)
        tasks = [asyncio.ensure_future(worker.decode(frames(i, 6))) for i in range(7)]
        await asyncio.sleep(0.01)
        codec.gate.set()
        results = await asyncio.gather(first, *tasks)
    finally:
        worker.stop()
    assert [r[0] for r in results] == [9, 0, 1, 2, 3, 4, 5, 6]
    assert sorted(codec.batches[1:]) == [(1, 6), (3, 6), (3, 6)]  # 3 x 6 frames <= 20


async def test_worker_decodes_one_code_neucodec_frames_in_equal_length_groups():
    from app.codec.info import NEUCODEC

    codec = RecordingCodec(layout=NEUCODEC)
    codec.gate.clear()
    worker = CodecWorker(codec, dynamic_batching=True, max_batch_size=8, batch_wait_s=0.05)
    # The automatic cap is the same audio length as SNAC's 64 frames, in 20 ms frames.
    assert worker.max_batch_frames == round(64 * 2048 / 480)
    worker.start()
    try:
        first = asyncio.ensure_future(worker.decode(np.full((5, 1), 9, dtype=np.int64)))
        await asyncio.sleep(0.05)
        windows = [np.full((steps, 1), steps, dtype=np.int64) for steps in (75, 75, 80)]
        tasks = [asyncio.ensure_future(worker.decode(w)) for w in windows]
        await asyncio.sleep(0.01)
        codec.gate.set()
        results = await asyncio.gather(first, *tasks)
    finally:
        worker.stop()
    assert [r.shape for r in results] == [(5 * 480,), (75 * 480,), (75 * 480,), (80 * 480,)]
    assert sorted(codec.batches[1:]) == [(1, 80), (2, 75)]  # grouped by length, never padded


async def test_memory_is_handed_back_after_stream_pushes_and_other_jobs_too(monkeypatch):
    """DECODE_MODE=stream runs as codec jobs, not window batches: they must trim as well."""
    import app.codec.worker as worker_module

    monkeypatch.setattr(worker_module, "TRIM_INTERVAL_S", 0.0)
    worker = CodecWorker(RecordingCodec(), dynamic_batching=True, max_batch_size=8,
                         batch_wait_s=0.001)
    trims: list[int] = []
    worker._trim = lambda: trims.append(1)
    worker.start()
    try:
        for _ in range(3):
            assert await worker.run(lambda: 42) == 42
    finally:
        worker.stop()
    assert len(trims) == 3


async def test_an_idle_worker_hands_back_what_its_last_jobs_freed(monkeypatch):
    import app.codec.worker as worker_module

    monkeypatch.setattr(worker_module, "TRIM_INTERVAL_S", 0.2)
    worker = CodecWorker(RecordingCodec(), dynamic_batching=True, max_batch_size=8,
                         batch_wait_s=0.001)
    trims: list[float] = []
    worker._trim = lambda: trims.append(1)
    worker.start()
    try:
        await worker.run(lambda: None)  # trims (none yet)
        await worker.run(lambda: None)  # within the interval: left for later
        assert len(trims) == 1
        await asyncio.sleep(0.6)  # idle: the worker trims once, then waits without a timeout
        assert len(trims) == 2
        await asyncio.sleep(0.5)
        assert len(trims) == 2
    finally:
        worker.stop()
