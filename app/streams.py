"""Audio streams: engine token ids -> frames -> decoded windows -> seamless float32 chunks.

    SpeechStream (one request)            SegmentStream (one engine request)
      segments in order, the next  ──▶      a reader task: token ids -> frames (as they come)
      one generating ahead                  windows planned, decoded on the codec worker,
      pauses between segments               stitched by crossfade -> chunks

Each segment's tokens are read by a task of its own, so the next segment generates while the
current one decodes and streams (`SEGMENTS_AHEAD` engine requests beyond the current one),
and an engine failure is seen at once: the window waiting for the codec is withdrawn and the
stream ends, instead of decoding a backlog first. Segments are joined with a short silence
(a natural pause) and a few milliseconds of fade on both sides of it, so there is no click.
Closing the stream aborts every engine request still running and gives the admission slot back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.admission import Slot
from app.audio import write_wav
from app.codec.layout import FrameAssembler
from app.engine import TokenStream
from app.errors import EngineUnavailable
from app.streaming import ChunkPlanner, Stitcher, Window, cut_short

if TYPE_CHECKING:
    from app.synthesis import Segment, SpeechJob, SpeechService

logger = logging.getLogger(__name__)

# Cut a chunk short when the listener's buffer would otherwise come this close to empty.
URGENCY_MARGIN_S = 0.05
SEGMENTS_AHEAD = 1
JOIN_FADE_S = 0.005
# Engine failures that mean it is gone (not a rejection of one request).
ENGINE_LOST = ("unreachable", "disconnected", "stall")


class SegmentStream:
    """One segment's engine request and its audio. `start()` once, iterate once, `aclose()`."""

    def __init__(self, service: SpeechService, job: SpeechJob, segment: Segment, index: int,
                 needs_engine: Callable[[], bool] = lambda: False):
        """`needs_engine()`: does the request still wait for engine output (a segment still
        generating or not opened yet)? Then losing the engine ends it at once."""
        self._needs_engine = needs_engine
        self._service = service
        self.job = job
        self.segment = segment
        self.index = index
        self.assembler = FrameAssembler(service.profile.layout)
        self.stitcher = Stitcher(job.plan)
        # DECODE_MODE=stream: this segment's own stateful decoder (no windows, no stitching).
        self._decoder = (service.worker.codec.stream_decoder()  # type: ignore[attr-defined]
                         if service.streamed_decode else None)
        self._streamed_samples = 0
        self.frames: list[list[int]] = []
        self.tokens: TokenStream | None = None
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.started = time.perf_counter()
        self.first_audio_at: float | None = None
        self.engine_open_at: float | None = None  # the engine accepted the request
        self.first_token_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_frame_at = 0.0
        self.first_decode_at: float | None = None
        self.decode_s = 0.0  # moving estimate of one window's decode wall time
        self.urgent_windows = 0
        self._closed = False

    async def start(self) -> None:
        """Open the engine request (rejections raise here) and start reading its tokens."""
        self.started = time.perf_counter()
        try:
            self.tokens = await self._service.engine.open_stream(
                self.segment.prompt, self.segment.params, self._engine_request_id())
        except EngineUnavailable as exc:
            self._service.metrics.engine_error(exc.kind)
            if exc.kind in ENGINE_LOST:
                self._service.engine_suspect.set()
            raise
        self.engine_open_at = time.perf_counter()
        self._reader = asyncio.ensure_future(self._read(self.tokens))

    def _engine_request_id(self) -> str:
        rid = self.job.request_id
        return rid if self.index == 0 else f"{rid}-{self.index}"

    async def _read(self, tokens: TokenStream) -> None:
        try:
            async for ids in tokens:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                    self._service.engine_lost.clear()  # it answers again
                count = len(self.frames)
                self.frames.extend(self.assembler.push(ids))
                if len(self.frames) > count:
                    self.last_frame_at = time.perf_counter()
                    if self.first_frame_at is None:
                        self.first_frame_at = self.last_frame_at
                self._arrived.set()
        except EngineUnavailable as exc:  # counted here, once, whoever reads the failure
            self._service.metrics.engine_error(exc.kind)
            if exc.kind in ENGINE_LOST:
                self._service.engine_suspect.set()  # the health watch decides for the rest
            raise
        finally:
            self._arrived.set()

    @property
    def decoded_samples(self) -> int:
        return self._streamed_samples if self._decoder else self.stitcher.decoded_samples

    @property
    def emitted_samples(self) -> int:
        return self._streamed_samples if self._decoder else self.stitcher.emitted_samples

    def _urgent(self, frames_missing: int, available: int, buffered_s: float) -> bool:
        """Would waiting for a full-size chunk let the listener's buffer run dry?"""
        if self.first_frame_at is None or buffered_s == math.inf:
            return False
        now = time.perf_counter()
        frame_s = max(self.last_frame_at - self.first_frame_at, 1e-3) / max(available - 1, 1)
        next_frame_s = max(0.0, self.last_frame_at + frame_s - now)
        return cut_short(buffered_s=buffered_s, frames_missing=frames_missing,
                         next_frame_s=next_frame_s, decode_s=self.decode_s,
                         margin_s=URGENCY_MARGIN_S)

    async def _decode_window(self, window: Window) -> np.ndarray:
        frames = np.asarray(self.frames[window.window_start:window.window_end],
                            dtype=np.int64)  # (T, codes per frame)
        self._check_engine()
        return await self._watched(self._service.worker.decode(frames))

    async def _push(self, start: int, end: int, final: bool) -> np.ndarray:
        """DECODE_MODE=stream: frames [start, end) through this segment's decoder."""
        assert self._decoder is not None
        frames = np.asarray(self.frames[start:end], dtype=np.int64).reshape(
            end - start, self._service.worker.codec.info.layout.codes_per_frame)
        self._check_engine()
        return await self._watched(
            self._service.worker.decode_streamed(self._decoder, frames, final=final))

    async def _watched(self, work: Awaitable[np.ndarray]) -> np.ndarray:
        """Await codec work; an engine failure meanwhile withdraws it and raises at once."""
        decode = asyncio.ensure_future(work)
        reader = self._reader
        watched: set[asyncio.Future[Any]] = {decode}
        if reader is not None and not reader.done():
            watched.add(reader)
        lost = None
        if self._needs_engine():
            lost = asyncio.ensure_future(self._service.engine_lost.wait())
            watched.add(lost)
        try:
            if len(watched) > 1:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            failed = reader is not None and reader.done() and not reader.cancelled() \
                and reader.exception() is not None
            if not decode.done() and (failed or (lost is not None and lost.done())):
                decode.cancel()
                await asyncio.gather(decode, return_exceptions=True)
                if failed:
                    raise reader.exception()  # type: ignore[union-attr, misc]
                self._check_engine()
            return await decode
        finally:
            if lost is not None:
                lost.cancel()

    def _check_engine(self) -> None:
        """End a request that still needs the engine once the engine is known to be lost
        (another stream saw it go): its remaining audio cannot come."""
        if self._service.engine_lost.is_set() and self._needs_engine():
            raise EngineUnavailable("lost the connection to the engine", kind="disconnected")

    async def chunks(self, listener_buffer_s: Callable[[], float] | None = None
                     ) -> AsyncIterator[np.ndarray]:
        """Float32 chunks in order. `listener_buffer_s()`: seconds the listener has buffered."""
        assert self._reader is not None, "start() first"
        if self._decoder is not None:
            async for chunk in self._streamed_chunks(listener_buffer_s):
                yield chunk
            return
        planner = ChunkPlanner(self.job.plan)
        while True:
            finished = self._reader.done()
            if finished:
                self._reader.result()  # engine errors end the stream here
            while True:
                buffered = listener_buffer_s() if listener_buffer_s else math.inf
                urgent = not finished and self._urgent(planner.frames_missing(len(self.frames)),
                                                       len(self.frames), buffered)
                window = planner.next_window(len(self.frames), finished, urgent=urgent)
                if window is None:
                    break
                self.urgent_windows += urgent
                started = time.perf_counter()
                audio = await self._decode_window(window)
                took = time.perf_counter() - started
                if self.first_decode_at is None:
                    self.first_decode_at = started + took
                self.decode_s = took if not self.decode_s else 0.7 * self.decode_s + 0.3 * took
                chunk = self.stitcher.push(window, audio)
                if self._service.settings.debug_audio:
                    await self._dump(window, audio, chunk)
                if chunk.size:
                    if self.first_audio_at is None:
                        self.first_audio_at = time.perf_counter()
                    yield chunk
            if finished:
                return
            self._arrived.clear()
            if not self._reader.done():
                await self._arrived.wait()

    async def _streamed_chunks(self, listener_buffer_s: Callable[[], float] | None
                               ) -> AsyncIterator[np.ndarray]:
        """DECODE_MODE=stream: frames pushed in chunk-plan sizes (the first once its audio can
        come out, then growing, cut short when the listener would run dry), each decoded
        once; what comes out is final audio, in order, with no seams to crossfade."""
        plan = self.job.plan
        lead = plan.first_chunk_frames + plan.context_frames  # as many as a first window
        pushed = 0
        while True:
            finished = self._reader.done() if self._reader is not None else True
            if finished and self._reader is not None:
                self._reader.result()  # engine errors end the stream here
            available = len(self.frames)
            target = lead if not pushed else min(
                plan.chunk_frames, max(plan.first_chunk_frames, math.floor(plan.growth * pushed)))
            pending = available - pushed
            ready = finished or pending >= target
            if not ready and pushed and pending:
                buffered = listener_buffer_s() if listener_buffer_s else math.inf
                ready = self._urgent(target - pending, available, buffered)
                self.urgent_windows += ready
            if ready:
                # At most one chunk per call, so that the codec thread takes turns between
                # streams (a stream that fell behind must not hold it for its whole backlog).
                end = min(available, pushed + max(target, 1))
                final = finished and end == available
                started = time.perf_counter()
                audio = await self._push(pushed, end, final)
                took = time.perf_counter() - started
                pushed = end
                if self.first_decode_at is None:
                    self.first_decode_at = started + took
                self.decode_s = took if not self.decode_s else 0.7 * self.decode_s + 0.3 * took
                self._streamed_samples += audio.size
                if self._service.settings.debug_audio and audio.size:
                    await self._dump_pushed(pushed, audio)
                if audio.size:
                    if self.first_audio_at is None:
                        self.first_audio_at = time.perf_counter()
                    yield audio
                if final:
                    return
                continue
            self._arrived.clear()
            if self._reader is not None and not self._reader.done() and \
                    len(self.frames) == available:
                await self._arrived.wait()

    async def _dump_pushed(self, frames_in: int, audio: np.ndarray) -> None:
        """DEBUG_AUDIO under DECODE_MODE=stream: each push's audio, named by the frames in."""
        folder = Path(self._service.settings.data_dir) / "debug_audio" / self.job.request_id
        stem = f"s{self.index:03d}-{frames_in:05d}" if self.index else f"{frames_in:05d}"
        await asyncio.to_thread(write_wav, folder / f"{stem}.push.wav", audio,
                                self._service.sample_rate)

    async def _dump(self, window: Window, decoded: np.ndarray, emitted: np.ndarray) -> None:
        """DEBUG_AUDIO: each decoded window and each emitted chunk, as WAV files."""
        folder = Path(self._service.settings.data_dir) / "debug_audio" / self.job.request_id
        rate = self._service.sample_rate
        stem = f"{window.start:05d}-{window.end:05d}"
        if self.index:
            stem = f"s{self.index:03d}-{stem}"
        await asyncio.to_thread(write_wav, folder / f"{stem}.window.wav", decoded, rate)
        await asyncio.to_thread(write_wav, folder / f"{stem}.chunk.wav", emitted, rate)

    async def aclose(self) -> None:
        """Abort the engine request if still running. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.tokens is not None:
            await self.tokens.aclose()


class SpeechStream:
    """One request's audio: its segments joined into one continuous signal.

    Implements delivery's `AudioSource`: `chunks()`, `usage()`, `aclose()`.
    """

    def __init__(self, service: SpeechService, job: SpeechJob, slot: Slot | None):
        self._service = service
        self.job = job
        self._slot = slot
        self._segments: list[SegmentStream] = []
        self.started = time.perf_counter()  # admitted
        self.received_at: float | None = None  # the HTTP request arrived (set by the route)
        self.parsed_at: float | None = None  # validated, asking for admission
        self.first_audio_at: float | None = None
        self.emitted_samples = 0
        self._closed = False

    async def start(self) -> None:
        """Open the first segment's engine request (rejections raise here)."""
        await self._open(0)

    def _needs_engine(self) -> bool:
        return len(self._segments) < len(self.job.segments) or any(
            s._reader is not None and not s._reader.done() for s in self._segments)

    async def _open(self, index: int) -> SegmentStream:
        segment = SegmentStream(self._service, self.job, self.job.segments[index], index,
                                self._needs_engine)
        self._segments.append(segment)
        await segment.start()
        return segment

    def timing(self, first_byte_at: float | None = None) -> dict[str, float]:
        """Milliseconds from the request's arrival to each step towards its first audio,
        cumulative, in order; steps not reached yet are left out. For `X-Timing`."""
        origin = self.received_at or self.parsed_at or self.started
        first = self._segments[0] if self._segments else None
        marks = {
            "parse": self.parsed_at, "admission": self.started,
            "engine_open": first.engine_open_at if first else None,
            "engine_first_token": first.first_token_at if first else None,
            "first_frame": first.first_frame_at if first else None,
            "first_decode": first.first_decode_at if first else None,
            "first_chunk": self.first_audio_at, "first_byte": first_byte_at,
        }
        return {name: round(1000 * (at - origin), 1) for name, at in marks.items()
                if at is not None}

    @property
    def _listener_buffer(self) -> Callable[[], float] | None:
        """What the planner asks to cut chunks short for a listener about to run dry; a whole
        file has no listener yet, so its windows are planned the same way every time."""
        streamed = self.job.stream or self.job.stream_format == "sse"
        return self._buffered_s if streamed else None

    def _buffered_s(self) -> float:
        if self.first_audio_at is None:
            return math.inf
        played = time.perf_counter() - self.first_audio_at
        return self.emitted_samples / self._service.sample_rate - played

    async def _ahead(self, index: int) -> None:
        """Make sure segments up to `index + SEGMENTS_AHEAD` are generating."""
        while (len(self._segments) < len(self.job.segments)
               and len(self._segments) <= index + SEGMENTS_AHEAD):
            await self._open(len(self._segments))

    def _fade(self, chunk: np.ndarray, *, head: bool) -> np.ndarray:
        n = min(chunk.size, max(1, round(JOIN_FADE_S * self._service.sample_rate)))
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        chunk = chunk.astype(np.float32, copy=True)
        if head:
            chunk[:n] *= ramp
        else:
            chunk[-n:] *= ramp[::-1]
        return chunk

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        service = self._service
        service.metrics.stream_started()
        outcome = "error"
        try:
            for index in range(len(self.job.segments)):
                await self._ahead(index)
                segment = self._segments[index]
                pause = segment.segment.pause_s
                # Before a pause, the segment's last few ms are held back to fade out; only
                # those, so no chunk waits for the next one (first audio would).
                hold = round(JOIN_FADE_S * service.sample_rate) if pause else 0
                held: np.ndarray | None = None
                async for chunk in segment.chunks(self._listener_buffer):
                    if index and segment.emitted_samples == chunk.size:
                        chunk = self._fade(chunk, head=True)
                    if held is not None:
                        chunk = np.concatenate([held, chunk])
                    cut = max(0, chunk.size - hold)
                    held = chunk[cut:]
                    if cut:
                        yield self._emit(chunk[:cut])
                if held is not None:
                    if pause:
                        yield self._emit(self._fade(held, head=False))
                        yield self._emit(np.zeros(round(pause * service.sample_rate),
                                                  np.float32))
                    elif held.size:
                        yield self._emit(held)
                await segment.aclose()
            outcome = "ok"
        finally:
            await self.aclose()
            if outcome == "error" and self.emitted_samples:
                outcome = "aborted"
            self._finish(outcome)

    def _emit(self, chunk: np.ndarray) -> np.ndarray:
        if self.first_audio_at is None and chunk.size:
            self.first_audio_at = time.perf_counter()
            latency = self.first_audio_at - self.started
            self._service.metrics.first_audio(latency)
            self._service.admission.observe_first_audio(latency)
        self.emitted_samples += chunk.size
        return chunk

    def _finish(self, outcome: str) -> None:
        service = self._service
        tokens = frames = misplaced = urgent = 0
        decoded = emitted = 0
        for segment in self._segments:
            stats = segment.assembler.stats
            tokens += stats.tokens
            frames += stats.frames
            misplaced += stats.misplaced
            urgent += segment.urgent_windows
            decoded += segment.decoded_samples
            emitted += segment.emitted_samples
        seconds = self.emitted_samples / service.sample_rate
        service.metrics.stream_finished(
            route=self.job.route, outcome=outcome, fmt=self.job.response_format,
            audio_s=seconds, wall_s=time.perf_counter() - self.started, misplaced=misplaced)
        finish = self._segments[-1].tokens.finish_reason if (
            self._segments and self._segments[-1].tokens) else None
        logger.info(
            "%s: %d/%d segments, %d tokens, %d frames, %d misplaced, %.2f s audio in %.2f s, "
            "first audio %.3f s, redundancy %.2f, %d urgent windows, finish %s",
            outcome, len(self._segments), len(self.job.segments), tokens, frames, misplaced,
            seconds, time.perf_counter() - self.started,
            (self.first_audio_at or math.nan) - self.started,
            decoded / emitted if emitted else 0.0, urgent, finish,
        )

    def usage(self) -> dict[str, int]:
        """OpenAI's usage object, from the engine's own token counts, over all segments."""
        prompt = sum((s.tokens.prompt_tokens or 0) for s in self._segments if s.tokens)
        output = sum(s.tokens.completion_tokens for s in self._segments if s.tokens)
        return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}

    async def aclose(self) -> None:
        """Abort every engine request still running; give the slot back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.gather(*(segment.aclose() for segment in self._segments),
                                 return_exceptions=True)
        finally:
            if self._slot is not None:
                self._slot.release()
