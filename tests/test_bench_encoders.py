"""The pure pieces of bench/encoders.py: the input signal, the chunk schedule, one tiny
measurement and its table and JSON. No timings are asserted."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.common import write_json
from bench.encoders import (
    FORMATS,
    SAMPLE_RATE,
    SPEEDS,
    Case,
    chunk_sizes,
    default_cases,
    describe,
    run_benchmark,
    speech_like,
    split,
    table,
    targets,
)


def test_speech_like_is_seeded_float32_with_pauses_and_peaks_past_the_knee():
    audio = speech_like(2.0, seed=1)
    assert audio.dtype == np.float32 and audio.shape == (2 * SAMPLE_RATE,)
    np.testing.assert_array_equal(audio, speech_like(2.0, seed=1))
    assert not np.array_equal(audio, speech_like(2.0, seed=2))
    assert np.abs(audio).max() == pytest.approx(0.97, abs=1e-6)
    frames = np.abs(audio[: audio.size // 480 * 480]).reshape(-1, 480).max(axis=1)  # 20 ms
    assert (frames < 0.05).any() and (frames > 0.3).any()  # quiet gaps and loud syllables


def test_chunk_sizes_follow_the_service_plan_and_cover_the_input():
    sizes = chunk_sizes(20 * SAMPLE_RATE)
    assert sizes[:6] == [6144, 6144, 12288, 24576, 36864, 36864]
    assert sum(sizes) == 20 * SAMPLE_RATE and min(sizes) > 0
    audio = speech_like(1.0)
    np.testing.assert_array_equal(np.concatenate(split(audio)), audio)


def test_default_cases_cover_every_format_and_speed():
    cases = default_cases()
    assert {c.fmt for c in cases if c.speed == 1.0} == set(FORMATS)
    assert sorted(c.speed for c in cases if c.speed != 1.0) == sorted(SPEEDS)
    assert Case("pcm", 1.5).name == "pcm x1.5" and Case("mp3").name == "mp3"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    cases = [Case(fmt) for fmt in FORMATS] + [Case("pcm", 0.5), Case("pcm", 2.0)]
    return run_benchmark(speech_like(1.0), cases, repeats=1, first_byte_repeats=1)


def test_run_benchmark_gives_positive_finite_numbers_per_case(rows):
    assert [r["case"] for r in rows] == [*FORMATS, "pcm x0.5", "pcm x2"]
    for r in rows:
        for key in ("cpu_s_per_audio_s", "wall_s_per_audio_s", "first_byte_ms", "open_ms",
                    "kbit_per_s", "out_over_expected", "calling_thread_cpu_share"):
            assert math.isfinite(r[key]) and r[key] >= 0, (r["case"], key)
        assert r["kbit_per_s"] > 0 and r["first_byte_samples"] >= 6144
        assert len(r["runs"]) == 1 and len(r["first_byte_runs"]) == 1
    by_case = {r["case"]: r for r in rows}
    assert by_case["pcm"]["first_byte_over_pcm_ms"] == 0.0
    assert by_case["pcm"]["kbit_per_s"] == pytest.approx(16 * SAMPLE_RATE / 1000)
    assert by_case["pcm"]["out_over_expected"] == 1.0
    for name in ("pcm x0.5", "pcm x2"):
        assert by_case[name]["out_over_expected"] == pytest.approx(1.0, abs=0.05)
    assert by_case["pcm x0.5"]["runs"][0]["samples_out"] > 1.9 * SAMPLE_RATE


def test_table_and_targets_and_json_hold_every_row(rows, tmp_path):
    text = table(rows).splitlines()
    assert len(text) == 2 + len(rows) and "CPU s/audio s" in text[0]
    assert all(len(line) == len(text[0]) for line in text)  # aligned columns
    goals = targets(rows)
    assert len(goals) == 3 and all(isinstance(g["met"], bool) for g in goals.values())
    assert len(describe(goals)) == 3
    write_json(tmp_path / "out.json", {"rows": rows, "targets": goals})
    data = json.loads((tmp_path / "out.json").read_text())
    assert [r["case"] for r in data["rows"]] == [r["case"] for r in rows]
