"""What an operator watches, in Prometheus' text format on GET /metrics (prometheus-client).

Every `Metrics` owns its own `CollectorRegistry`: an app instance never writes to the
process-wide default registry, so several apps in one process (tests) never share a series.

Request-driven series are updated through the small methods below as requests run. The codec
worker's counters (`WorkerStats`) and the admission controller's state (`Admission`) are read
when /metrics is scraped, by `_LiveCollector`, so there is one source of truth for each.

Series (units in the names: seconds, samples, windows):

    tts_requests_total{route,outcome,format}   counter   syntheses that started, by how they ended
                                                         (ok, aborted after audio, error before)
    tts_active_streams                         gauge     syntheses producing audio now
    tts_first_audio_seconds                    histogram request received to first audio chunk
    tts_request_rtf                            histogram wall seconds / audio seconds, per
                                                         completed request
    tts_audio_seconds_total                    counter   audio produced
    tts_engine_errors_total{kind}              counter   engine failures (app.errors.EngineFailure)
    tts_misplaced_tokens_total                 counter   engine tokens outside their frame slot
    tts_clipped_samples_total                  counter   samples the soft limiter bent back
    tts_codec_decode_calls_total               counter   codec decode calls
    tts_codec_windows_total                    counter   windows decoded
    tts_codec_frames_total                     counter   frames decoded
    tts_codec_batch_windows                    histogram windows per decode call
    tts_codec_max_batch                        gauge     largest batch so far
    tts_codec_busy_seconds_total               counter   wall time inside the codec
    tts_codec_withdrawn_total                  counter   windows withdrawn before decoding
    tts_streams_in_use / tts_streams_limit     gauge     admission slots held / available
    tts_queue_depth                            gauge     requests waiting for a slot
    tts_admitted_total                         counter   requests given a slot
    tts_rejected_total{reason}                 counter   admission refusals by reason
    tts_draining                               gauge     1 while shutting down
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.errors import EngineFailure

if TYPE_CHECKING:
    from app.admission import Admission
    from app.codec.worker import CodecWorker, WorkerStats

# The classic text format (what Prometheus and most scrapers expect without negotiation).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

FIRST_AUDIO_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
# Below 1 a request was produced faster than it plays; past 1 a listener would have stalled.
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

ENGINE_FAILURES: tuple[EngineFailure, ...] = get_args(EngineFailure)


class Metrics:
    """This app's series. `codec` (its `stats`) and `admission`, when given, are read at
    scrape time."""

    def __init__(self, *, codec: CodecWorker | None = None,
                 admission: Admission | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter("tts_requests", "Syntheses that started, by how they ended.",
                                 ["route", "outcome", "format"], registry=registry)
        self._active = Gauge("tts_active_streams", "Syntheses producing audio now.",
                             registry=registry)
        self._first_audio = Histogram(
            "tts_first_audio_seconds", "Seconds from request to its first audio chunk.",
            buckets=FIRST_AUDIO_BUCKETS_S, registry=registry)
        self._rtf = Histogram(
            "tts_request_rtf", "Real-time factor per request: wall seconds / audio seconds.",
            buckets=RTF_BUCKETS, registry=registry)
        self._audio = Counter("tts_audio_seconds", "Seconds of audio produced.",
                              registry=registry)
        self._engine_errors = Counter("tts_engine_errors", "Engine failures by kind.", ["kind"],
                                      registry=registry)
        for kind in ENGINE_FAILURES:  # every kind present from the start, zeros included
            self._engine_errors.labels(kind)
        self._misplaced = Counter("tts_misplaced_tokens",
                                  "Engine tokens outside their frame slot (dropped).",
                                  registry=registry)
        self._clipped = Counter("tts_clipped_samples",
                                "Samples beyond full scale, bent back by the soft limiter.",
                                registry=registry)
        registry.register(_LiveCollector(codec, admission))

    def stream_started(self) -> None:
        self._active.inc()

    def stream_finished(self, *, route: str, outcome: str, fmt: str, audio_s: float,
                        wall_s: float, misplaced: int = 0) -> None:
        """One synthesis ended (`outcome`: ok, aborted after some audio, error before any):
        `audio_s` seconds of audio produced in `wall_s` seconds. Only completed requests
        give a real-time factor: a cut-off one says more about the cut than the speed."""
        self._active.dec()
        self._requests.labels(route, outcome, fmt).inc()
        self._audio.inc(audio_s)
        if outcome == "ok" and audio_s > 0:
            self._rtf.observe(wall_s / audio_s)
        self.misplaced(misplaced)

    def first_audio(self, seconds: float) -> None:
        self._first_audio.observe(seconds)

    def engine_error(self, kind: EngineFailure) -> None:
        self._engine_errors.labels(kind).inc()

    def misplaced(self, tokens: int) -> None:
        if tokens:
            self._misplaced.inc(tokens)

    def clipped(self, samples: int) -> None:
        if samples:
            self._clipped.inc(samples)

    def _value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    @property
    def active_streams(self) -> int:
        return int(self._value("tts_active_streams"))

    @property
    def misplaced_tokens(self) -> int:
        return int(self._value("tts_misplaced_tokens_total"))

    @property
    def clipped_samples(self) -> int:
        return int(self._value("tts_clipped_samples_total"))

    def render(self) -> bytes:
        """The exposition, `CONTENT_TYPE`."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated(Collector):
    """`registry`'s families without their `_created` samples: in the classic text format
    each would be one more gauge series per counter and histogram, which nobody reads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():  # fresh objects on every collect
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family


class _LiveCollector(Collector):
    """Series read from the codec worker and admission control when scraped."""

    def __init__(self, codec: CodecWorker | None, admission: Admission | None) -> None:
        self._codec = codec
        self._admission = admission

    def collect(self) -> Iterable[Metric]:
        if self._codec is not None:
            yield from _codec_families(self._codec.stats)
        if self._admission is not None:
            yield from _admission_families(self._admission)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _codec_families(stats: WorkerStats) -> Iterator[Metric]:
    # The worker thread updates these; dict() copies the histogram in one step under the GIL.
    sizes = dict(stats.batch_histogram)
    yield _counter("tts_codec_decode_calls_total", "Codec decode calls.", stats.decode_calls)
    yield _counter("tts_codec_windows_total", "Windows decoded.", stats.windows)
    yield _counter("tts_codec_frames_total", "Frames decoded.", stats.frames)
    yield _counter("tts_codec_busy_seconds_total", "Wall seconds spent inside the codec.",
                   stats.busy_s)
    yield _counter("tts_codec_withdrawn_total", "Windows withdrawn before they were decoded.",
                   stats.withdrawn)
    yield GaugeMetricFamily("tts_codec_max_batch", "Largest decode batch so far, in windows.",
                            value=stats.max_batch)
    yield HistogramMetricFamily("tts_codec_batch_windows", "Windows per codec decode call.",
                                buckets=_cumulative(sizes, BATCH_BUCKETS),
                                sum_value=sum(size * n for size, n in sizes.items()))


def _cumulative(counts: dict[int, int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    buckets = [(str(float(bound)), float(sum(n for size, n in counts.items() if size <= bound)))
               for bound in bounds]
    return [*buckets, ("+Inf", float(sum(counts.values())))]


def _admission_families(admission: Admission) -> Iterator[Metric]:
    yield GaugeMetricFamily("tts_streams_in_use", "Admission slots held by streams.",
                            value=admission.in_use)
    yield GaugeMetricFamily("tts_streams_limit", "Admission slots in all.",
                            value=admission.max_concurrent)
    yield GaugeMetricFamily("tts_queue_depth", "Requests waiting for a stream slot.",
                            value=admission.queued)
    yield GaugeMetricFamily("tts_draining", "1 while the server is shutting down.",
                            value=float(admission.draining))
    yield _counter("tts_admitted_total", "Requests given a stream slot.", admission.admitted)
    rejected = CounterMetricFamily("tts_rejected_total", "Admission refusals by reason.",
                                   labels=["reason"])
    for reason, count in admission.rejected.items():
        rejected.add_metric([reason], count)
    yield rejected
