"""bench.soak's pure pieces: the request mix and the RSS growth arithmetic."""

from __future__ import annotations

import io
import os
import wave
from collections import Counter

from bench.soak import FORMATS, RssSample, build_mix, reference_wav, rss_growth, rss_kib


def sample(requests_done: int, rss_kib_: int) -> RssSample:
    return RssSample(requests_done, float(requests_done), rss_kib_, 0, 0.0)


def test_build_mix_is_deterministic_for_a_seed():
    assert build_mix(300, seed=3) == build_mix(300, seed=3)
    assert build_mix(300, seed=3) != build_mix(300, seed=4)


def test_build_mix_covers_every_format_kind_and_behaviour():
    specs = build_mix(1000, seed=0)
    assert [s.index for s in specs] == list(range(1000))
    formats = Counter(s.response_format for s in specs)
    assert set(formats) == set(FORMATS) and max(formats.values()) - min(formats.values()) <= 1
    assert {s.length for s in specs} == {"short", "multi", "long"}
    assert any(". " in s.text or "? " in s.text for s in specs if s.length == "multi")
    streamed = [s for s in specs if s.stream]
    assert 400 < len(streamed) < 600
    sse = [s for s in specs if s.sse]
    disconnects = [s for s in specs if s.disconnect_after_bytes is not None]
    assert 50 < len(sse) < 150 and 50 < len(disconnects) < 150
    assert 5 <= sum(s.kind == "vc" for s in specs) <= 40


def test_build_mix_only_streams_sse_and_disconnects():
    for spec in build_mix(2000, seed=1, vc_share=0.2):
        if spec.sse:
            assert spec.stream and spec.kind == "speech" and spec.disconnect_after_bytes is None
        if spec.disconnect_after_bytes is not None:
            assert spec.stream and spec.disconnect_after_bytes > 0


def test_rss_growth_is_measured_from_the_first_sample_after_warm_up():
    samples = [sample(0, 100_000), sample(50, 180_000), sample(100, 200_000),
               sample(150, 230_000), sample(200, 210_000)]
    growth = rss_growth(samples, warmup_requests=100)
    assert growth["baseline_kib"] == 200_000 and growth["final_kib"] == 210_000
    assert growth["peak_kib"] == 230_000 and growth["growth_kib"] == 10_000
    assert growth["growth_pct"] == 5.0 and growth["within_target"] is True


def test_rss_growth_over_ten_percent_misses_the_target():
    growth = rss_growth([sample(100, 200_000), sample(1000, 221_000)], warmup_requests=100)
    assert growth["growth_pct"] == 10.5 and growth["within_target"] is False


def test_rss_growth_needs_two_samples_after_warm_up():
    growth = rss_growth([sample(0, 1), sample(50, 2), sample(100, 3)], warmup_requests=100)
    assert growth["growth_pct"] is None and growth["within_target"] is None
    assert growth["baseline_kib"] == 3


def test_rss_kib_reads_this_process():
    assert rss_kib(os.getpid()) > 1024


def test_reference_wav_is_three_seconds_of_mono_audio():
    with wave.open(io.BytesIO(reference_wav())) as clip:
        assert (clip.getnchannels(), clip.getframerate(), clip.getnframes()) == (1, 24000, 72000)
