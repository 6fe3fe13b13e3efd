"""The pure pieces of bench/: emitters, SNR alignment, playback maths, the paced engine.
No timings are asserted here; the benchmarks themselves only print and write JSON."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest

from app.streaming import ChunkPlan
from bench.capacity import engine_lateness_s, token_sent_at
from bench.codec import build_cases, run_side_by_side, window_lengths
from bench.paced_engine import BASE, SPEECH_END, EngineState, Pace, create_paced_engine
from bench.playback import (
    find_stalls,
    first_chunk_frames_needed,
    plan_only_chunks,
    prebuffer_needed_s,
    schedule_windows,
)
from bench.streamers import (
    Segment,
    StreamRun,
    aligned_snr_db,
    fidelity,
    finish,
    replay_steps,
    seam_regions,
    snr_db,
    stream_orpheus,
    stream_planner,
    stream_scicom,
)

SPF = 2048


def plan(speed: float = 1.5, overlap: float = 0.2) -> ChunkPlan:
    return ChunkPlan.from_seconds(playback_speed_s=speed, overlap_s=overlap,
                                  first_chunk_frames=3, min_context_frames=1,
                                  sample_rate=24000, samples_per_frame=SPF)


def frame_audio(frames: np.ndarray) -> np.ndarray:
    """A context-free synthetic codec: each frame's samples depend on that frame only, so
    any window decodes to exactly the matching slice of the offline decode."""
    ramp = np.linspace(-1.0, 1.0, SPF, dtype=np.float32)
    return np.concatenate([ramp * ((f[0] % 97) + 1) / 97 for f in frames])


@pytest.fixture
def codes() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 4096, (40, 7))


def test_orpheus_emits_one_frame_per_new_frame_lagging_two(codes):
    run = stream_orpheus(codes[:10], frame_audio)
    start, audio = run.signal()
    assert run.decode_calls == 7 and run.first_audio_frames == 4
    assert start == SPF and audio.shape[0] == 7 * SPF  # frames 1 .. T-3, no final flush
    assert run.redundancy == pytest.approx(4.0)
    assert fidelity(run, frame_audio(codes[:10])).snr_db == math.inf


def test_scicom_redecodes_the_previous_chunk_and_fades_to_zero_at_seams(codes):
    run = stream_scicom(codes, frame_audio, chunk_frames=18, fade_samples=48)
    start, audio = run.signal()
    assert (start, audio.shape[0]) == (0, 40 * SPF)
    assert run.decode_calls == 3 and run.first_audio_frames == 18
    assert run.decoded_samples == (18 + 36 + 22) * SPF
    assert run.seams == [18 * SPF, 36 * SPF]
    offline = frame_audio(codes)
    for seam in run.seams:
        assert audio[seam] == 0.0 and audio[seam - 1] == 0.0  # the dip a listener hears
        np.testing.assert_array_equal(audio[seam + 48:seam + 100],
                                      offline[seam + 48:seam + 100])
    assert 0 < fidelity(run, offline).worst_seam_snr_db < fidelity(run, offline).snr_db


@pytest.mark.parametrize("speed,overlap", [(1.5, 0.2), (0.5, 0.1)])
def test_planner_emits_every_sample_once_and_exactly_with_a_context_free_codec(
        codes, speed, overlap):
    run = stream_planner(codes, plan(speed, overlap), frame_audio)
    start, audio = run.signal()
    assert (start, audio.shape[0]) == (0, 40 * SPF)
    assert run.first_audio_frames == first_chunk_frames_needed(plan(speed, overlap), 40)
    assert 1.0 < run.redundancy < 2.0
    np.testing.assert_allclose(audio, frame_audio(codes), atol=1e-6)


def test_snr_of_a_known_error():
    ref = np.ones(1000)
    assert snr_db(ref, ref + 0.01) == pytest.approx(40.0)
    assert snr_db(ref, ref) == math.inf


def test_aligned_snr_compares_absolute_positions():
    offline = np.random.default_rng(0).standard_normal(10 * SPF)
    piece = offline[3 * SPF:5 * SPF].copy()
    assert aligned_snr_db(offline, 3 * SPF, piece) == math.inf
    assert aligned_snr_db(offline, 3 * SPF + 1, piece) < 10
    with pytest.raises(ValueError):
        aligned_snr_db(offline, 9 * SPF, piece)


def test_seam_regions_are_clipped_to_the_compared_span():
    assert seam_regions([100, 5000], 0, 5500, radius=1000) == [(0, 1100), (4000, 5500)]
    assert seam_regions([9000], 0, 5500, radius=1000) == []


def test_signal_refuses_gaps():
    run = StreamRun("x", segments=[Segment(0, np.zeros(10)), Segment(11, np.zeros(5))])
    with pytest.raises(ValueError):
        run.signal()


def test_prebuffer_is_what_the_listener_needed_to_never_stall():
    second = 48_000  # bytes of 16-bit 24 kHz audio per second
    chunks = [(0.0, second), (1.5, second), (2.0, second)]
    assert find_stalls(chunks) == [0.5]
    assert prebuffer_needed_s(chunks) == pytest.approx(0.5)
    assert prebuffer_needed_s([(0.0, second), (0.5, second)]) == 0.0


def test_plan_alone_at_real_time_stalls_and_adaptive_chunking_helps():
    p = plan()
    fast = plan_only_chunks(p, 117, tokens_per_s=1000.0)
    assert find_stalls(fast) == []
    assert sum(size for _, size in fast) == 117 * SPF * 2
    plain = find_stalls(plan_only_chunks(p, 117, tokens_per_s=83.0, adaptive=False))
    adaptive = find_stalls(plan_only_chunks(p, 117, tokens_per_s=83.0))
    # At exactly real time every full-size chunk arrives late by its context and fade
    # tail; adaptive chunking cuts chunks short and leaves one short stall at the start.
    assert len(plain) >= 2
    assert len(adaptive) <= 1 and 0 < sum(adaptive) < sum(plain) / 4


def test_adaptive_schedule_replays_to_the_exact_signal(codes):
    schedule = schedule_windows(plan(), 40, tokens_per_s=83.0)
    covered = [f for s in schedule for f in range(s.window.start, s.window.end)]
    assert covered == list(range(40))
    assert [s.available for s in schedule] == sorted(s.available for s in schedule)
    # At 1x the listener's buffer never grows, so chunks stay at the shortest allowed size
    # instead of growing 3, 3, 6, 12, 18.
    assert {s.window.end - s.window.start for s in schedule[:-1]} == {plan().min_chunk_frames}
    run = finish(StreamRun("adaptive"), replay_steps, codes, frame_audio, plan(),
                 [(s.available, s.window) for s in schedule])
    start, audio = run.signal()
    assert start == 0
    np.testing.assert_allclose(audio, frame_audio(codes), atol=1e-6)


def test_first_chunk_needs_its_frames_plus_right_context():
    assert first_chunk_frames_needed(plan(), 100) == 3 + plan().context_frames
    assert first_chunk_frames_needed(plan(), 2) == 2  # a short stream ends first


def test_engine_log_lookups():
    events = [[1, 10.0], [2, 10.5], [5, 11.0]]
    assert token_sent_at(events, 2) == 10.5
    assert token_sent_at(events, 3) == 11.0
    assert token_sent_at(events, 6) is None
    log = {"received_s": 10.0, "events": events}
    assert engine_lateness_s(log, tokens_per_s=2.0, tokens_per_event=1,
                             first_delay_s=0.0) == pytest.approx(0.0)
    assert engine_lateness_s({"received_s": 9.0, "events": events}, 2.0, 1,
                             0.0) == pytest.approx(1.0)


async def _completion(pace: Pace, prompt: str, max_tokens: int) -> tuple[list[int], dict]:
    state = EngineState(pace)
    transport = httpx.ASGITransport(app=create_paced_engine(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        response = await client.post("/v1/completions", headers={"X-Request-Id": "r1"}, json={
            "model": "TTS-model", "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "return_token_ids": True})
        ids = []
        for line in response.text.splitlines():
            if line.startswith("data: {"):
                ids += json.loads(line[6:])["choices"][0]["token_ids"]
        log = (await client.get("/debug/requests")).json()["requests"]["r1"]
        assert (await client.get("/health")).status_code == 200
        tokenized = (await client.post("/tokenize", json={"prompt": "<|snac_1_5|>"})).json()
        assert tokenized["tokens"] == [BASE + 4096 + 5]
    return ids, log


async def test_paced_engine_streams_demo_layout_frames_and_logs_sends():
    ids, log = await _completion(Pace(tokens_per_s=5000, tokens_per_event=2, frames=50),
                                 "hello", max_tokens=3 * 7 + 1)
    assert len(ids) == 22 and ids[-1] == SPEECH_END
    assert [(i - BASE) // 4096 for i in ids[:-1]] == list(range(7)) * 3
    assert [sent for sent, _ in log["events"]] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
    assert log["frames"] == 3 and not log["aborted"]


async def test_paced_engine_holds_open_without_a_stop_token():
    ids, log = await _completion(Pace(tokens_per_s=5000, frames=50, hold_s=0.01),
                                 "HOLD_OPEN hello", max_tokens=2 * 7 + 1)
    assert len(ids) == 15 and ids[-1] == SPEECH_END
    assert log["events"][-1][0] == 14  # the stop token came after the hold, not logged


class _FakeCodec:
    def __init__(self) -> None:
        self.warmed: list[int] = []

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        return frame_audio(frames[0])[None]  # (1, T * 2048)

    def warm_up(self, lengths: list[int]) -> None:
        self.warmed += lengths

    def stream_decoder(self) -> _FakeStream:
        return _FakeStream()


class _FakeStream:
    """Each frame's audio as soon as it is pushed (no look-ahead), like frame_audio."""

    def push(self, frames: np.ndarray) -> np.ndarray:
        return frame_audio(frames) if len(frames) else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        return np.zeros(0, np.float32)


def test_side_by_side_runs_every_case_over_the_same_frames(codes):
    cases = build_cases()
    codec = _FakeCodec()
    codecs = {"fp32": codec, "bf16": codec, "fp32_unfolded": codec}
    runs = run_side_by_side(cases, codecs, codes)
    assert len(runs) == len(cases)
    for case, (run, timed) in zip(cases, runs):
        assert run.decode_calls == len(timed.cpu_s) == len(timed.wall_s)
        assert fidelity(run, frame_audio(codes)).snr_db > 20, case.name
    assert set(window_lengths(cases[1], codes)) == {4}  # orpheus
    assert 4 in codec.warmed


def test_stream_batch_rows_decode_each_stream_as_if_pushed_alone(tmp_path):
    from bench.stream_batch import main as stream_batch_main

    out = tmp_path / "stream_batch.json"
    assert stream_batch_main(["--push-frames", "1", "3", "--batches", "2", "--pushes", "2",
                              "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["push_frames"], r["batch"]) for r in rows] == [(1, 1), (1, 2), (3, 1), (3, 2)]
    for row in rows:
        assert row["cpu_ms_per_stream_frame"] > 0
        snr = row["snr_vs_alone_db"]
        assert snr == "inf" or snr >= 100  # the batched push is the same decode
