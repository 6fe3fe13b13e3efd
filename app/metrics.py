"""Process counters, exposed in Prometheus text format on GET /metrics."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

_LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = _LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(_LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def render(self, name: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.n}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.n}")
        return lines


@dataclass
class Metrics:
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by outcome
    active_streams: int = 0
    audio_seconds: float = 0.0
    misplaced_tokens: int = 0
    clipped_samples: int = 0  # samples beyond full scale, bent back by the soft limiter
    first_audio_s: Histogram = field(default_factory=Histogram)

    def render(self, extra: dict[str, float]) -> str:
        lines = ["# TYPE tts_requests_total counter"]
        for outcome, count in sorted(self.requests.items()):
            lines.append(f'tts_requests_total{{outcome="{outcome}"}} {count}')
        lines += [
            "# TYPE tts_active_streams gauge", f"tts_active_streams {self.active_streams}",
            "# TYPE tts_audio_seconds_total counter",
            f"tts_audio_seconds_total {self.audio_seconds:.3f}",
            "# TYPE tts_misplaced_tokens_total counter",
            f"tts_misplaced_tokens_total {self.misplaced_tokens}",
            "# TYPE tts_clipped_samples_total counter",
            f"tts_clipped_samples_total {self.clipped_samples}",
            "# TYPE tts_first_audio_seconds histogram",
            *self.first_audio_s.render("tts_first_audio_seconds"),
        ]
        for name, value in sorted(extra.items()):
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"
