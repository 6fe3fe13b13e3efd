"""Metrics: the exposition parses, every series has its type, and requests move the counters."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.admission import Admission
from app.codec.worker import WorkerStats
from app.config import Settings
from app.errors import TooManyRequests
from app.metrics import ENGINE_FAILURES, Metrics

SPEECH = "/v1/audio/speech"
SAMPLE_RATE = 24000  # RecordingCodec's

COUNTERS = {"tts_requests", "tts_audio_seconds", "tts_engine_errors", "tts_misplaced_tokens",
            "tts_clipped_samples", "tts_codec_decode_calls", "tts_codec_windows",
            "tts_codec_frames", "tts_codec_busy_seconds", "tts_codec_withdrawn",
            "tts_admitted", "tts_rejected"}
GAUGES = {"tts_active_streams", "tts_codec_max_batch", "tts_streams_in_use", "tts_streams_limit",
          "tts_queue_depth", "tts_draining"}
HISTOGRAMS = {"tts_first_audio_seconds", "tts_request_rtf", "tts_codec_batch_windows"}


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of a text exposition."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def full_metrics(stats: WorkerStats | None = None,
                 admission: Admission | None = None) -> Metrics:
    worker = SimpleNamespace(stats=stats or WorkerStats())
    return Metrics(codec=worker, admission=admission or Admission(2, 2, 1.0))  # type: ignore[arg-type]


def test_metrics_every_series_present_with_its_type():
    text = full_metrics().render().decode()
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    expected = ({name: "counter" for name in COUNTERS} | {name: "gauge" for name in GAUGES}
                | {name: "histogram" for name in HISTOGRAMS})
    assert {name: types.get(name) for name in expected} == expected
    assert "_created" not in text  # one series per counter, not two
    samples = parse(text)
    # Label sets known in advance are there from the first scrape, at zero.
    assert {value(samples, "tts_engine_errors_total", kind=k) for k in ENGINE_FAILURES} == {0.0}
    assert ("reason", "queue_full") in {items[0] for items in samples["tts_rejected_total"]}


def test_metrics_each_instance_has_its_own_registry():
    first, second = Metrics(), Metrics()  # a second app in the process must not collide
    first.clipped(7)
    assert first.clipped_samples == 7 and second.clipped_samples == 0
    assert REGISTRY.get_sample_value("tts_clipped_samples_total") is None


def test_metrics_stream_finished_counts_request_audio_and_rtf():
    metrics = Metrics()
    metrics.stream_started()
    assert metrics.active_streams == 1
    metrics.first_audio(0.25)
    metrics.stream_finished(route="speech", outcome="ok", fmt="wav", audio_s=2.0, wall_s=1.0,
                            misplaced=3)
    metrics.stream_started()
    metrics.stream_finished(route="vc", outcome="error", fmt="mp3", audio_s=0.0, wall_s=0.1)
    metrics.stream_started()
    metrics.stream_finished(route="speech", outcome="aborted", fmt="wav", audio_s=1.0,
                            wall_s=9.0)
    samples = parse(metrics.render().decode())
    assert value(samples, "tts_requests_total", route="speech", outcome="ok", format="wav") == 1
    assert value(samples, "tts_requests_total", route="vc", outcome="error", format="mp3") == 1
    assert metrics.active_streams == 0 and metrics.misplaced_tokens == 3
    assert value(samples, "tts_audio_seconds_total") == 3.0
    # Only the completed request gives a real-time factor.
    assert value(samples, "tts_request_rtf_count") == 1
    assert value(samples, "tts_request_rtf_sum") == 0.5
    assert value(samples, "tts_request_rtf_bucket", le="0.5") == 1
    assert value(samples, "tts_request_rtf_bucket", le="0.3") == 0
    assert value(samples, "tts_first_audio_seconds_bucket", le="0.3") == 1
    assert value(samples, "tts_first_audio_seconds_bucket", le="0.2") == 0


def test_metrics_engine_errors_by_kind():
    metrics = Metrics()
    metrics.engine_error("stall")
    metrics.engine_error("stall")
    metrics.engine_error("malformed")
    samples = parse(metrics.render().decode())
    assert value(samples, "tts_engine_errors_total", kind="stall") == 2
    assert value(samples, "tts_engine_errors_total", kind="malformed") == 1
    assert value(samples, "tts_engine_errors_total", kind="unreachable") == 0


def test_metrics_codec_series_read_from_worker_stats_at_scrape_time():
    stats = WorkerStats()
    metrics = full_metrics(stats)
    stats.batch_histogram[1] += 3  # after the collector was registered: read when scraped
    stats.batch_histogram[4] += 2
    stats.decode_calls, stats.windows, stats.frames = 5, 11, 44
    stats.max_batch, stats.busy_s, stats.withdrawn = 4, 1.5, 2
    samples = parse(metrics.render().decode())
    buckets = {le: value(samples, "tts_codec_batch_windows_bucket", le=le)
               for le in ("1.0", "2.0", "4.0", "8.0", "+Inf")}
    assert buckets == {"1.0": 3, "2.0": 3, "4.0": 5, "8.0": 5, "+Inf": 5}
    assert value(samples, "tts_codec_batch_windows_sum") == 11
    assert value(samples, "tts_codec_batch_windows_count") == 5
    assert (value(samples, "tts_codec_decode_calls_total"), value(samples, "tts_codec_windows_total"),
            value(samples, "tts_codec_frames_total")) == (5, 11, 44)
    assert value(samples, "tts_codec_max_batch") == 4
    assert value(samples, "tts_codec_busy_seconds_total") == 1.5
    assert value(samples, "tts_codec_withdrawn_total") == 2


async def test_metrics_admission_state_read_at_scrape_time():
    admission = Admission(1, 1, 5.0)
    metrics = full_metrics(admission=admission)
    slot = await admission.acquire()
    waiting = asyncio.ensure_future(admission.acquire())
    await asyncio.sleep(0)
    with pytest.raises(TooManyRequests):
        await admission.acquire()  # queue full
    samples = parse(metrics.render().decode())
    assert value(samples, "tts_streams_in_use") == 1 and value(samples, "tts_streams_limit") == 1
    assert value(samples, "tts_queue_depth") == 1
    assert value(samples, "tts_admitted_total") == 1
    assert value(samples, "tts_rejected_total", reason="queue_full") == 1
    assert value(samples, "tts_rejected_total", reason="queue_timeout") == 0
    assert value(samples, "tts_draining") == 0
    slot.release()
    (await waiting).release()
    admission.start_draining()
    samples = parse(metrics.render().decode())
    assert value(samples, "tts_draining") == 1 and value(samples, "tts_streams_in_use") == 0
    assert value(samples, "tts_admitted_total") == 2


@pytest.fixture(scope="module")
def api(engine_url):
    from app.server import create_app
    from tests.fakes import RecordingCodec
    from tests.servers import serve

    settings = Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10)
    app = create_app(settings, codec_factory=lambda s: RecordingCodec())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def reset_script(script):
    script.frames, script.delay_s, script.misplace_at = 12, 0.0, None


def scrape(api: httpx.Client) -> dict[str, dict[tuple, float]]:
    r = api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def test_metrics_a_request_moves_its_counters(api):
    before = scrape(api)
    r = api.post(SPEECH, json={"input": "Hello there, how are you?", "response_format": "pcm"})
    assert r.status_code == 200 and r.content
    after = scrape(api)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tts_requests_total", route="speech", outcome="ok", format="pcm") == 1
    assert moved("tts_audio_seconds_total") == pytest.approx(len(r.content) / 2 / SAMPLE_RATE)
    assert moved("tts_first_audio_seconds_count") == 1
    assert moved("tts_request_rtf_count") == 1
    assert moved("tts_codec_windows_total") >= 1 and moved("tts_codec_decode_calls_total") >= 1
    assert moved("tts_codec_batch_windows_count") == moved("tts_codec_decode_calls_total")
    assert moved("tts_admitted_total") == 1
    assert value(after, "tts_active_streams") == 0 and value(after, "tts_streams_in_use") == 0


def test_metrics_engine_failure_mid_stream_is_counted(api):
    before = scrape(api)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(SPEECH, json={"input": "FAIL_MIDWAY please", "response_format": "pcm"})
    after = scrape(api)
    assert (value(after, "tts_engine_errors_total", kind="stream_error")
            - value(before, "tts_engine_errors_total", kind="stream_error")) == 1
    outcomes = {"ok": 0.0, "aborted": 0.0, "error": 0.0}
    for outcome in outcomes:
        outcomes[outcome] = (value(after, "tts_requests_total", route="speech", outcome=outcome,
                                   format="pcm")
                             - value(before, "tts_requests_total", route="speech",
                                     outcome=outcome, format="pcm"))
    assert sum(outcomes.values()) == 1 and outcomes["ok"] == 0
