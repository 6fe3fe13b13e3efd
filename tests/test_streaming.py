from __future__ import annotations

import numpy as np
import pytest

from app.streaming import ChunkPlan, ChunkPlanner, Stitcher, Window, cut_short

SPF = 2048


def plan(speed: float = 1.5, overlap: float = 0.2, first: int = 3, ctx: int = 1) -> ChunkPlan:
    return ChunkPlan.from_seconds(playback_speed_s=speed, overlap_s=overlap,
                                  first_chunk_frames=first, min_context_frames=ctx,
                                  sample_rate=24000, samples_per_frame=2048)


def drive(p: ChunkPlan, total: int, decode, arrive_step: int = 1) -> tuple[list[Window], list]:
    """Feed frames `arrive_step` at a time; return windows planned and chunks emitted."""
    planner, stitcher, windows, chunks = ChunkPlanner(p), Stitcher(p), [], []
    for available in list(range(arrive_step, total, arrive_step)) + [total]:
        finished = available == total
        while (w := planner.next_window(available, finished)) is not None:
            windows.append(w)
            chunks.append(stitcher.push(w, decode(w)))
    return windows, chunks


def test_plan_from_seed_defaults():
    p = plan()
    assert (p.first_chunk_frames, p.chunk_frames, p.context_frames, p.half_overlap) == (
        3, 18, 2, 2400)


def test_planner_covers_every_frame_once_with_growing_chunks():
    windows, _ = drive(plan(), 100, lambda w: np.zeros((w.window_end - w.window_start) * SPF))
    covered = [f for w in windows for f in range(w.start, w.end)]
    assert covered == list(range(100))
    sizes = [w.end - w.start for w in windows]
    assert sizes[:5] == [3, 3, 6, 12, 18]
    assert windows[-1].final and not any(w.final for w in windows[:-1])
    for w in windows[:-1]:  # real context on both sides, except at the very start
        assert w.window_end == w.end + 2 and w.window_start == max(0, w.start - 2)


def test_planner_waits_for_right_context_until_finished():
    planner = ChunkPlanner(plan())
    assert planner.next_window(4, finished=False) is None  # 3 frames + 2 context needed
    w = planner.next_window(5, finished=False)
    assert (w.start, w.end, w.window_end, w.final) == (0, 3, 5, False)
    w = planner.next_window(5, finished=True)
    assert (w.start, w.end, w.final) == (3, 5, True)
    assert planner.next_window(5, finished=True) is None


@pytest.mark.parametrize("speed,overlap", [(1.5, 0.2), (0.5, 0.1), (1.0, 0.0), (0.3, 0.25)])
def test_stitched_stream_equals_source_when_windows_decode_exactly(speed, overlap):
    """A decoder that returns the true signal for any window -> output is bit-exact."""
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(57 * SPF).astype(np.float32)
    _, chunks = drive(plan(speed, overlap), 57,
                      lambda w: signal[w.window_start * SPF:w.window_end * SPF], arrive_step=2)
    np.testing.assert_allclose(np.concatenate(chunks), signal, atol=1e-6)


def neucodec_like_plan() -> ChunkPlan:
    """NeuCodec's streaming defaults (20 ms frames of 480 samples), as app/codec/info.py has."""
    return ChunkPlan.from_seconds(playback_speed_s=5.0, overlap_s=0.2, first_chunk_frames=50,
                                  min_context_frames=16, sample_rate=24000,
                                  samples_per_frame=480, growth=3.0, min_window_frames=200)


def test_growth_sets_each_chunk_to_a_multiple_of_the_audio_so_far():
    windows, _ = drive(neucodec_like_plan(), 1000,
                       lambda w: np.zeros((w.window_end - w.window_start) * 480))
    sizes = [w.end - w.start for w in windows]
    assert sizes == [50, 150, 250, 250, 250, 50]  # 3 x 50, 3 x 200 capped at 5 s, the rest
    assert [f for w in windows for f in range(w.start, w.end)] == list(range(1000))


def test_min_window_reaches_back_into_emitted_frames_but_never_past_the_chunk_length():
    windows, _ = drive(neucodec_like_plan(), 1000,
                       lambda w: np.zeros((w.window_end - w.window_start) * 480))
    for w in windows[1:-1]:
        assert w.window_end == w.end + 16  # look-ahead stays the context: no added latency
        past = w.start - w.window_start
        assert 16 <= past <= max(16, w.end - w.start)
        assert w.window_end - w.window_start >= min(200, w.end + 16)  # long enough, or all
    second = windows[1]  # 150 frames + 16 ahead: 34 more frames of past reach 200
    assert (second.window_start, second.window_end) == (50 - 34, 216)
    last = windows[-1]  # a 50-frame tail: past grows to its own length, 50 (not 150)
    assert (last.start, last.window_start, last.final) == (950, 900, True)


@pytest.mark.parametrize("arrive_step", [1, 7])
def test_stitched_stream_is_exact_with_long_past_windows(arrive_step):
    """Extra past context moves only where a window starts, never which samples are kept."""
    signal = np.random.default_rng(2).standard_normal(700 * 480).astype(np.float32)
    _, chunks = drive(neucodec_like_plan(), 700,
                      lambda w: signal[w.window_start * 480:w.window_end * 480],
                      arrive_step=arrive_step)
    np.testing.assert_allclose(np.concatenate(chunks), signal, atol=1e-6)


def test_crossfade_has_no_level_dip():
    """Two decodes of a constant that disagree slightly: the seam stays between them."""
    p = plan(0.5, 0.2)

    def decode(w: Window) -> np.ndarray:
        level = 1.0 if (w.start // 3) % 2 == 0 else 0.98
        return np.full((w.window_end - w.window_start) * SPF, level, np.float32)

    out = np.concatenate(drive(p, 40, decode)[1])
    assert out.min() >= 0.98 - 1e-6 and out.max() <= 1.0 + 1e-6


def test_redundancy_counts_decoded_over_emitted():
    p = plan(1.5, 0.2)
    windows, chunks = drive(p, 200, lambda w: np.zeros((w.window_end - w.window_start) * SPF))
    decoded = sum(w.window_end - w.window_start for w in windows)
    assert sum(len(c) for c in chunks) == 200 * SPF
    assert decoded / 200 == pytest.approx(1.24, abs=0.03)


@pytest.fixture(scope="module")
def snac_no_noise():
    from app.codec.snac import SnacCodec

    codec = SnacCodec.load("random")
    codec.set_noise(False)
    return codec


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((estimate - reference) ** 2)))


@pytest.mark.parametrize("speed,overlap,min_snr", [(1.5, 0.2, 60.0), (0.5, 0.1, 40.0)])
def test_streamed_snac_matches_offline_decode(snac_no_noise, speed, overlap, min_snr):
    frames = np.random.default_rng(2).integers(0, 4096, (60, 7))
    offline = snac_no_noise.decode_frames(frames[None])[0]
    _windows, chunks = drive(
        plan(speed, overlap), 60,
        lambda w: snac_no_noise.decode_frames(frames[None, w.window_start:w.window_end])[0])
    streamed = np.concatenate(chunks)
    assert streamed.shape == offline.shape
    assert snr_db(offline, streamed) >= min_snr


def test_urgent_cuts_the_next_chunk_short_but_not_below_the_minimum():
    p = plan(1.5, 0.2)
    planner = ChunkPlanner(p)
    assert planner.next_window(5, False).end == 3  # first chunk: 3 frames + 2 context
    assert planner.frames_missing(6) == 2  # next full chunk (3 frames) needs frames up to 8
    assert planner.next_window(7, False, urgent=True) is None  # only 2 ready; minimum is 3
    w = planner.next_window(8, False, urgent=True)
    assert (w.start, w.end) == (3, 6)
    assert planner.frames_missing(10) == 4  # planned size is now 6: frames up to 6 + 6 + 2
    assert planner.next_window(10, False, urgent=True) is None
    w = planner.next_window(11, False, urgent=True)
    assert (w.start, w.end) == (6, 9)
    assert planner.next_window(20, False).end == 9 + 9  # not urgent: full size again


def test_first_seam_is_a_hard_cut_so_the_first_chunk_is_not_held_back():
    p = plan(1.5, 0.2)
    planner, stitcher = ChunkPlanner(p), Stitcher(p)
    w = planner.next_window(5, False)
    first = stitcher.push(w, np.zeros((w.window_end - w.window_start) * SPF, np.float32))
    assert len(first) == 3 * SPF  # all of frames 0..3, no fade tail kept back


def test_cut_short_waits_while_one_more_frame_can_still_be_decoded_in_time():
    def cut(buffered_s: float, missing: int = 2) -> bool:
        return cut_short(buffered_s=buffered_s, frames_missing=missing, next_frame_s=0.08,
                         decode_s=0.02, margin_s=0.05)

    assert not cut(0.2)  # the next frame (0.08 s) plus decode and margin still fit
    assert cut(0.14)  # waiting for it would leave less than decode + margin
    assert not cut(0.0, missing=0)  # the full-size window is ready: nothing to cut
