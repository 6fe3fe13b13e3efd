"""Voice cloning: an uploaded reference clip -> codec frames, and the clone's transcript.

Decoding and resampling run in a worker thread; the codec's encode runs on the codec thread
(the model is not thread-safe, and on a GPU it must not race the decoder). A few slots
bound how many clips are decoded and encoded at once; past that the request gets 503.

On a CPU the encode costs about half a second per second of audio, and while it runs no
stream's chunk can be decoded. So a clip is encoded in slices of `ENCODE_SLICE_FRAMES`,
each its own codec job, with `ENCODE_CONTEXT_FRAMES` of audio either side that are encoded
and dropped. SNAC's encoder is convolutional (no attention in the 24 kHz model) and that
context is wider than its receptive field, so the frames equal a whole-clip encode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from app.codec.worker import CodecWorker
from app.errors import InvalidRequest, Overloaded, Unsupported
from app.reference_audio import ReferenceLimits, decode_reference
from app.text import normalize_text, strip_control_chars
from app.uploads import UploadedFile

logger = logging.getLogger(__name__)

ENCODE_SLICE_FRAMES = 24  # frames kept per codec job: ~2 s of audio
ENCODE_CONTEXT_FRAMES = 4  # frames encoded and dropped on each side of a slice


def encode_slices(total_frames: int) -> list[tuple[int, int, int, int]]:
    """(lo, start, end, hi) per slice: encode frames lo..hi, keep start..end."""
    slices = []
    for start in range(0, total_frames, ENCODE_SLICE_FRAMES):
        end = min(total_frames, start + ENCODE_SLICE_FRAMES)
        slices.append((max(0, start - ENCODE_CONTEXT_FRAMES), start, end,
                       min(total_frames, end + ENCODE_CONTEXT_FRAMES)))
    return slices


class ReferenceEncoder:
    """Turns uploaded reference clips into (T, codes_per_frame) frames of the loaded codec."""

    def __init__(
        self, worker: CodecWorker, limits: ReferenceLimits, *, sample_rate: int,
        max_concurrent: int, max_text_chars: int,
    ):
        self.worker = worker
        self.limits = limits
        self.sample_rate = sample_rate
        self.max_text_chars = max_text_chars
        self._slots = asyncio.Semaphore(max_concurrent)
        self._encode: Callable[[np.ndarray], np.ndarray] | None = getattr(
            worker.codec, "encode", None)

    def reference_text(self, text: str, *, normalize: bool, param: str) -> str:
        """The transcript, cleaned as the text to speak is; 400 if too long or empty."""
        if len(text) > self.max_text_chars:
            raise InvalidRequest(f"{param} is {len(text)} characters; the limit is "
                                 f"{self.max_text_chars}", param=param,
                                 code="string_above_max_length")
        cleaned = strip_control_chars(text)
        cleaned = (normalize_text(cleaned) if normalize else cleaned).strip()
        if not cleaned:
            raise InvalidRequest(f"{param} has no text", param=param)
        return cleaned

    async def encode(self, upload: UploadedFile, *, param: str) -> np.ndarray:
        """Decode, check and encode an upload -> (T, codes_per_frame) int64 frames."""
        encode = self._encode
        if encode is None:
            raise Unsupported("this server's codec cannot encode reference audio", param=param)
        if self._slots.locked():
            raise Overloaded("too many reference clips are being encoded; retry shortly")
        async with self._slots:
            started = time.perf_counter()
            audio = await asyncio.to_thread(decode_reference, upload.file,
                                            sample_rate=self.sample_rate, limits=self.limits,
                                            param=param)
            decoded = time.perf_counter()
            frames = await self._encode_sliced(encode, audio)
        logger.info("reference %r: %d bytes, %.2f s of audio -> %d frames; decode %.3f s, "
                    "encode %.3f s", upload.filename, upload.size, audio.size / self.sample_rate,
                    frames.shape[0], decoded - started, time.perf_counter() - decoded)
        return frames

    async def _encode_sliced(
        self, encode: Callable[[np.ndarray], np.ndarray], audio: np.ndarray
    ) -> np.ndarray:
        """(N,) audio -> (ceil(N / samples_per_frame), codes_per_frame) frames, one codec job
        per slice."""
        layout = self.worker.codec.info.layout
        per_frame = layout.samples_per_frame
        total = -(-audio.size // per_frame)
        kept = []
        for lo, start, end, hi in encode_slices(total):
            piece = audio[lo * per_frame:hi * per_frame]
            frames = np.asarray(await self.worker.run(lambda piece=piece: encode(piece)),
                                dtype=np.int64)  # (hi - lo, codes_per_frame)
            if frames.shape != (hi - lo, layout.codes_per_frame) or frames.min() < 0 or \
                    frames.max() >= layout.codebook_size:
                raise RuntimeError(f"codec encode returned frames of shape {frames.shape}")
            kept.append(frames[start - lo:end - lo])
        return np.concatenate(kept)
