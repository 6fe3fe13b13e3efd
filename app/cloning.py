"""Voice cloning: an uploaded reference clip -> SNAC frames, and the clone's transcript.

Decoding and resampling run in a worker thread; the SNAC encode runs on the codec thread
(the model is not thread-safe, and on a GPU it must not race the decoder). A few slots
bound how many clips are decoded and encoded at once; past that the request gets 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from app.codec.layout import CODEBOOK_SIZE, TOKENS_PER_FRAME
from app.codec.worker import CodecWorker
from app.errors import InvalidRequest, Overloaded, Unsupported
from app.reference_audio import ReferenceLimits, decode_reference
from app.text import normalize_text, strip_control_chars
from app.uploads import UploadedFile

logger = logging.getLogger(__name__)


class ReferenceEncoder:
    """Turns uploaded reference clips into (T, 7) SNAC frames."""

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
        """Decode, check and SNAC-encode an upload -> (T, 7) int64 frames."""
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
            frames = await self.worker.run(lambda: encode(audio))
        frames = np.asarray(frames, dtype=np.int64)  # (T, 7)
        if frames.ndim != 2 or frames.shape[1] != TOKENS_PER_FRAME or frames.size == 0 or \
                frames.min() < 0 or frames.max() >= CODEBOOK_SIZE:
            raise RuntimeError(f"codec encode returned frames of shape {frames.shape}")
        logger.info("reference %r: %d bytes, %.2f s of audio -> %d frames; decode %.3f s, "
                    "encode %.3f s", upload.filename, upload.size, audio.size / self.sample_rate,
                    frames.shape[0], decoded - started, time.perf_counter() - decoded)
        return frames
