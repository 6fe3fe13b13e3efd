"""Per-request records and the SLO report computed from them.

Pure maths and formatting: no clock, no network, no files. Every time is in seconds on one
run clock (``time.perf_counter()`` minus the run's start), so records from the load
generator and hand-made records in tests are interchangeable.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes per sample: 16-bit little-endian mono
BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH

PERCENTILES = (50, 90, 95, 99)
RULE = "=========================="

TtfaOrigin = Literal["request", "first_sentence"]


@dataclass
class RequestRecord:
    """What one request did, as seen by the client.

    ``start_s`` is when the request was due: when a closed-loop worker picked it up, or its
    Poisson arrival time in an open loop, so client-side queueing counts as latency.
    ``sent_s`` is when it was handed to the HTTP client. ``chunks`` holds one
    ``(arrival_s, audio_bytes)`` pair per body read that carried audio; bytes of a WAV header
    are not audio and are not counted. ``error`` is ``None`` on success, otherwise one of
    ``http_<status>``, ``timeout``, ``connect_error``, ``transport_error``, ``invalid_body``,
    and for WebSocket sessions ``ws_<close code>`` (``ws_1013``: the server was full) or
    ``ws_error`` (the server sent a protocol ``error`` message).

    ``first_sentence_s`` is set for a WebSocket session: when the text piece that completed
    the first sentence was sent (or ``end_of_stream``, for text that never ends a sentence);
    TTFA counts from there, since no server can speak a sentence before it has it.
    ``session`` groups the requests of one conversation in sentence-per-request mode.
    ``timing`` is the server's ``X-Timing`` header, when it sent one: milliseconds from the
    request's arrival to each step towards its first audio (``parse``, ..., ``first_byte``).
    """

    index: int
    text: str
    stream: bool
    response_format: str
    start_s: float
    end_s: float
    sent_s: float | None = None
    status: int | None = None
    chunks: list[tuple[float, int]] = field(default_factory=list)
    error: str | None = None
    error_detail: str | None = None
    first_sentence_s: float | None = None
    session: int | None = None
    timing: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def audio_bytes(self) -> int:
        return sum(size for _, size in self.chunks)

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / BYTES_PER_SECOND

    @property
    def ttfa_s(self) -> float | None:
        """Seconds to the first audio byte from ``first_sentence_s`` when set, else from
        ``start_s``; ``None`` if no audio arrived."""
        if not self.chunks:
            return None
        origin = self.start_s if self.first_sentence_s is None else self.first_sentence_s
        return self.chunks[0][0] - origin

    @property
    def rtf(self) -> float | None:
        """Wall time over audio duration: below 1 is faster than real time."""
        if self.audio_bytes == 0:
            return None
        return self.latency_s / self.audio_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the stored fields plus the derived measurements."""
        stalls = find_stalls(self.chunks)
        return {
            **asdict(self),
            "chunks": [list(chunk) for chunk in self.chunks],
            "ok": self.ok,
            "latency_s": self.latency_s,
            "ttfa_s": self.ttfa_s,
            "audio_bytes": self.audio_bytes,
            "audio_s": self.audio_s,
            "rtf": self.rtf,
            "stalls": len(stalls),
            "stall_s": float(sum(stalls)),
            "max_gap_s": max_gap(self.chunks),
        }


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of one measurement; percentiles interpolate linearly (NumPy's default)."""

    min: float
    max: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        """Statistics of ``values``, or ``None`` when there are none."""
        if not values:
            return None
        array = np.asarray(values, dtype=float)
        p50, p90, p95, p99 = (float(p) for p in np.percentile(array, PERCENTILES))
        return cls(
            min=float(array.min()),
            max=float(array.max()),
            mean=float(array.mean()),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
        )


@dataclass(frozen=True)
class Summary:
    """Aggregate numbers for one run. Latency, RTF, TTFA, audio and stalls use successful
    requests only; ``wall_s`` spans the earliest start to the latest end of all requests.

    ``ttfa_from`` says where TTFA is counted from: ``"request"`` (the request was due) or
    ``"first_sentence"`` (WebSocket sessions: the first complete sentence was sent).
    ``conversations`` and ``first_reply_ttfa_s`` (TTFA of each conversation's first
    successful request) are set in sentence-per-request mode only.
    """

    total_requests: int
    successful: int
    failed: int
    wall_s: float
    latency_s: Distribution | None
    rtf: Distribution | None
    ttfa_s: Distribution | None
    avg_audio_s: float | None
    total_audio_s: float
    requests_per_s: float
    successful_per_s: float
    audio_s_per_s: float
    errors: dict[str, int]
    stalled_requests: int
    total_stalls: int
    total_stall_s: float
    max_gap_s: float | None
    ttfa_from: TtfaOrigin = "request"
    conversations: int | None = None
    first_reply_ttfa_s: Distribution | None = None
    # Server-side steps to the first audio (X-Timing), ms from arrival, p50 and p95 per step
    first_audio_steps_ms: dict[str, tuple[float, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_stalls(
    chunks: Sequence[tuple[float, int]], bytes_per_second: int = BYTES_PER_SECOND
) -> list[float]:
    """Durations of the silences a listener would hear, in arrival order.

    The listener starts playing at the first audio byte. When a chunk arrives after the audio
    delivered so far has run out, the listener heard a stall of the difference and playback
    resumes with that chunk; the playback clock does not advance during a stall, so one late
    chunk is not counted again against every chunk after it.
    """
    stalls: list[float] = []
    if not chunks:
        return stalls
    first_s, first_bytes = chunks[0]
    runs_out_s = first_s + first_bytes / bytes_per_second
    for arrival_s, size in chunks[1:]:
        if arrival_s > runs_out_s:
            stalls.append(arrival_s - runs_out_s)
            runs_out_s = arrival_s
        runs_out_s += size / bytes_per_second
    return stalls


def max_gap(chunks: Sequence[tuple[float, int]]) -> float | None:
    """Longest wait between consecutive audio chunks; ``None`` with fewer than two."""
    if len(chunks) < 2:
        return None
    return max(later[0] - earlier[0] for earlier, later in itertools.pairwise(chunks))


def parse_timing(header: str | None) -> dict[str, float] | None:
    """``X-Timing: parse=0.4;admission=0.5;...`` -> ``{"parse": 0.4, ...}``; junk is skipped."""
    if not header:
        return None
    marks: dict[str, float] = {}
    for item in header.split(";"):
        name, _, value = item.partition("=")
        try:
            marks[name.strip()] = float(value)
        except ValueError:
            continue
    return marks or None


def first_audio_steps(records: Sequence[RequestRecord]) -> dict[str, tuple[float, float]] | None:
    """p50 and p95 (ms) of each X-Timing step over the records that have it, in step order."""
    steps: dict[str, list[float]] = {}
    for record in records:
        for name, ms in (record.timing or {}).items():
            steps.setdefault(name, []).append(ms)
    if not steps:
        return None
    return {name: (float(np.percentile(values, 50)), float(np.percentile(values, 95)))
            for name, values in steps.items()}


def summarize(records: Sequence[RequestRecord]) -> Summary:
    """Aggregate a run's records into the numbers the report prints."""
    ok = [record for record in records if record.ok]
    wall_s = (
        max(record.end_s for record in records) - min(record.start_s for record in records)
        if records
        else 0.0
    )
    total_audio_s = sum(record.audio_s for record in ok)
    stalls = [find_stalls(record.chunks) for record in ok]
    gaps = [gap for record in ok if (gap := max_gap(record.chunks)) is not None]
    errors = Counter(record.error for record in records if record.error is not None)

    def per_second(amount: float) -> float:
        return amount / wall_s if wall_s > 0 else 0.0

    ttfa_from: TtfaOrigin = (
        "first_sentence" if any(r.first_sentence_s is not None for r in records) else "request"
    )
    sessions = sorted({record.session for record in records if record.session is not None})
    first_replies: dict[int, float] = {}  # session -> TTFA of its first successful request
    for record in sorted(ok, key=lambda record: record.start_s):
        if record.session is not None and record.ttfa_s is not None:
            first_replies.setdefault(record.session, record.ttfa_s)

    return Summary(
        total_requests=len(records),
        successful=len(ok),
        failed=len(records) - len(ok),
        wall_s=wall_s,
        latency_s=Distribution.of([record.latency_s for record in ok]),
        rtf=Distribution.of([rtf for record in ok if (rtf := record.rtf) is not None]),
        ttfa_s=Distribution.of([ttfa for record in ok if (ttfa := record.ttfa_s) is not None]),
        avg_audio_s=total_audio_s / len(ok) if ok else None,
        total_audio_s=total_audio_s,
        requests_per_s=per_second(len(records)),
        successful_per_s=per_second(len(ok)),
        audio_s_per_s=per_second(total_audio_s),
        errors=dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
        stalled_requests=sum(1 for request_stalls in stalls if request_stalls),
        total_stalls=sum(len(request_stalls) for request_stalls in stalls),
        total_stall_s=float(sum(sum(request_stalls) for request_stalls in stalls)),
        max_gap_s=max(gaps) if gaps else None,
        ttfa_from=ttfa_from,
        conversations=len(sessions) if sessions else None,
        first_reply_ttfa_s=Distribution.of(list(first_replies.values())),
        first_audio_steps_ms=first_audio_steps(ok),
    )


def format_report(summary: Summary) -> str:
    """The text report: the seed's SLO latency and RTF blocks verbatim, then TTFA,
    throughput, errors and streaming stalls."""
    lines = ["=== SLO LATENCY REPORT ===", f"Total Requests: {summary.total_requests}"]
    latency = summary.latency_s
    if latency is None:
        lines.append("No successful requests: latency not measured.")
    else:
        lines += [
            f"Min Time: {latency.min:.3f}s",
            f"Max Time: {latency.max:.3f}s",
            f"Avg Time: {latency.mean:.3f}s",
            f"P50 (Median): {latency.p50:.3f}s",
            f"P90: {latency.p90:.3f}s",
            f"P95: {latency.p95:.3f}s",
            f"P99: {latency.p99:.3f}s",
        ]

    lines += ["", "=== AUDIO & REAL-TIME FACTOR (RTF) REPORT ==="]
    rtf = summary.rtf
    if rtf is None or summary.avg_audio_s is None:
        lines.append("No successful requests: audio duration and RTF not measured.")
    else:
        # "s" after Min/Max RTF is the seed's quirk, kept so reports stay comparable.
        lines += [
            f"Avg Audio Duration: {summary.avg_audio_s:.3f}s",
            "",
            "--- RTF Percentiles ---",
            f"Min RTF: {rtf.min:.3f}s",
            f"Max RTF: {rtf.max:.3f}s",
            f"Avg RTF: {rtf.mean:.3f}",
            f"P50 RTF: {rtf.p50:.3f}",
            f"P90 RTF: {rtf.p90:.3f}",
            f"P95 RTF: {rtf.p95:.3f}",
            f"P99 RTF: {rtf.p99:.3f}",
        ]
    lines.append(RULE)

    lines += ["", "=== TIME TO FIRST AUDIO (TTFA) ==="]
    ttfa = summary.ttfa_s
    if ttfa is None:
        lines.append("No successful requests: TTFA not measured.")
    else:
        lines += [
            f"Min TTFA: {ttfa.min:.3f}s",
            f"Max TTFA: {ttfa.max:.3f}s",
            f"Avg TTFA: {ttfa.mean:.3f}s",
            f"P50 TTFA: {ttfa.p50:.3f}s",
            f"P90 TTFA: {ttfa.p90:.3f}s",
            f"P95 TTFA: {ttfa.p95:.3f}s",
            f"P99 TTFA: {ttfa.p99:.3f}s",
        ]
    if summary.ttfa_from == "first_sentence":
        lines.append("TTFA From: end of the first complete sentence sent (WebSocket)")

    if summary.first_audio_steps_ms:
        lines += ["", "--- Server Steps To First Audio (X-Timing, ms from arrival) ---"]
        previous = 0.0
        for name, (p50, p95) in summary.first_audio_steps_ms.items():
            lines.append(f"{name}: p50 {p50:.1f} ms (+{p50 - previous:.1f}), p95 {p95:.1f} ms")
            previous = p50

    if summary.conversations is not None:
        lines += [
            "",
            "=== CONVERSATIONS (ONE SENTENCE PER REQUEST) ===",
            f"Conversations: {summary.conversations}",
            f"Sentence Requests: {summary.total_requests}",
        ]
        first = summary.first_reply_ttfa_s
        if first is not None:
            lines += [
                f"P50 First-Reply TTFA: {first.p50:.3f}s",
                f"P95 First-Reply TTFA: {first.p95:.3f}s",
            ]

    lines += [
        "",
        "=== THROUGHPUT ===",
        f"Wall Time: {summary.wall_s:.3f}s",
        f"Successful Requests: {summary.successful}",
        f"Failed Requests: {summary.failed}",
        f"Requests/s: {summary.requests_per_s:.3f}",
        f"Successful Requests/s: {summary.successful_per_s:.3f}",
        f"Audio Seconds/s: {summary.audio_s_per_s:.3f}",
    ]

    lines += ["", "=== ERRORS ==="]
    if summary.errors:
        lines += [f"{kind}: {count}" for kind, count in summary.errors.items()]
    else:
        lines.append("No errors")

    lines += ["", "=== STREAMING STALLS (UNDERRUNS) ==="]
    if summary.successful == 0:
        lines.append("No successful requests: stalls not measured.")
    else:
        max_gap_text = "n/a" if summary.max_gap_s is None else f"{summary.max_gap_s:.3f}s"
        lines += [
            f"Requests With Stalls: {summary.stalled_requests}/{summary.successful}",
            f"Total Stalls: {summary.total_stalls}",
            f"Total Stall Time: {summary.total_stall_s:.3f}s",
            f"Max Inter-Chunk Gap: {max_gap_text}",
        ]
    lines.append(RULE)
    return "\n".join(lines)
