"""What a listener hears from a stream: underruns, the pre-buffer that would avoid them, and
the underruns a chunk plan causes by itself with an instant codec. Pure maths, no clock.

A chunk list is `[(arrival_s, audio_bytes), ...]` as in stress_test.report; its stall logic
(`find_stalls`: the listener starts at the first byte) is reused as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.codec.info import SNAC_24KHZ
from app.streaming import ChunkPlan, ChunkPlanner, Stitcher, Window, cut_short
from app.streams import URGENCY_MARGIN_S
from stress_test.report import BYTES_PER_SECOND, SAMPLE_RATE, find_stalls

TOKENS_PER_FRAME = SNAC_24KHZ.codes_per_frame

__all__ = ["Scheduled", "find_stalls", "first_chunk_frames_needed", "plan_only_chunks",
           "prebuffer_needed_s", "schedule_windows"]


def prebuffer_needed_s(chunks: Sequence[tuple[float, int]],
                       bytes_per_second: int = BYTES_PER_SECOND) -> float:
    """How long after the first byte a listener must wait before playing to never stall."""
    if not chunks:
        return 0.0
    first_s = chunks[0][0]
    delivered, needed = 0, 0.0
    for arrival_s, size in chunks:
        needed = max(needed, arrival_s - (first_s + delivered / bytes_per_second))
        delivered += size
    return needed


@dataclass(frozen=True)
class Scheduled:
    """One window a proxy would decode: when its audio is out, and what it emits."""

    ready_s: float
    available: int  # frames that had arrived when the window was planned
    window: Window
    emitted_bytes: int


def schedule_windows(plan: ChunkPlan, frames: int, tokens_per_s: float,
                     tokens_per_event: int = 1, *, decode_s: float = 0.0,
                     adaptive: bool = True, margin_s: float = URGENCY_MARGIN_S,
                     sample_width: int = 2) -> list[Scheduled]:
    """The windows a proxy decodes when its codec takes `decode_s` per window and nothing else
    takes time, fed by an engine on pace: event j carries tokens [j*E, (j+1)*E) (7 per frame,
    then one stop token) and is sent at j*E / tokens_per_s, as bench.paced_engine does.

    With `adaptive`, windows are cut short when the listener would run dry, by the rule of
    app.streams.SegmentStream._urgent (`app.streaming.cut_short`, without its clock); without it, the plain
    growing-chunk schedule.
    """
    planner, stitcher = ChunkPlanner(plan), Stitcher(plan)
    tokens = TOKENS_PER_FRAME * frames + 1
    events = -(-tokens // tokens_per_event)
    schedule: list[Scheduled] = []
    now = 0.0
    first_frame_at: float | None = None
    last_frame_at, seen = 0.0, 0  # when the latest frame arrived, frames seen then
    first_audio_at: float | None = None
    emitted = 0  # bytes

    def urgent(available: int) -> bool:
        if not adaptive or first_audio_at is None or first_frame_at is None:
            return False
        buffered_s = emitted / sample_width / SAMPLE_RATE - (now - first_audio_at)
        frame_s = max(last_frame_at - first_frame_at, 1e-3) / max(available - 1, 1)
        next_frame_s = max(0.0, last_frame_at + frame_s - now)
        return cut_short(buffered_s=buffered_s, frames_missing=planner.frames_missing(available),
                         next_frame_s=next_frame_s, decode_s=decode_s, margin_s=margin_s)

    for event in range(events + 1):  # the extra round: the stream has ended
        finished = event == events
        sent = min(tokens, (event + 1) * tokens_per_event)
        available = min(frames, sent // TOKENS_PER_FRAME)
        now = max(now, min(event, events - 1) * tokens_per_event / tokens_per_s)
        if available > seen:
            last_frame_at, seen = now, available
            if first_frame_at is None:
                first_frame_at = now
        while True:
            window = planner.next_window(available, finished,
                                         urgent=not finished and urgent(available))
            if window is None:
                break
            now += decode_s
            length = (window.window_end - window.window_start) * plan.samples_per_frame
            size = stitcher.push(window, np.zeros(length, np.float32)).shape[0] * sample_width
            schedule.append(Scheduled(now, available, window, size))
            emitted += size
            if size and first_audio_at is None:
                first_audio_at = now
    return schedule


def plan_only_chunks(plan: ChunkPlan, frames: int, tokens_per_s: float,
                     tokens_per_event: int = 1, **options: Any) -> list[tuple[float, int]]:
    """Chunk arrivals of `schedule_windows` (same arguments): `[(arrival_s, bytes), ...]`."""
    return [(s.ready_s, s.emitted_bytes)
            for s in schedule_windows(plan, frames, tokens_per_s, tokens_per_event, **options)
            if s.emitted_bytes]


def first_chunk_frames_needed(plan: ChunkPlan, total_frames: int) -> int:
    """Frames that must have arrived before the planner emits its first chunk."""
    planner = ChunkPlanner(plan)
    for available in range(1, total_frames + 1):
        if planner.next_window(available, available == total_frames) is not None:
            return available
    return total_frames
