"""Voice cloning: an uploaded reference clip -> codec frames, and the clone's transcript.

A codec can encode when it satisfies `EncodingCodec`; its `encoder_spec` says at what rate
and how. Decoding and resampling run in a worker thread. A few slots bound how many clips are
decoded and encoded at once; past that the request gets 503.

SNAC (a sliceable encoder): the encode runs on the codec thread (the model is not
thread-safe, and on a GPU it must not race the decoder). On a CPU it costs about half a
second per second of audio, and while it runs no stream's chunk can be decoded, so a clip is
encoded in slices of `slice_frames`, each its own codec job, with `context_frames` either
side that are encoded and dropped; they equal a whole-clip encode.

NeuCodec (whole clip): its encoder's output depends on the whole clip (w2v-bert attention,
clip-wide feature normalization; slicing changed most codes, see
`app.codec.neucodec_encoder.ENCODE_SLICE_MEASUREMENT`). Its encoder is a separate model from
the decoder, so the clip is encoded in one call in a thread of its own: the codec thread
keeps decoding, the two share the CPU meanwhile, and the clip length is bounded by
REFERENCE_MAX_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, runtime_checkable

import numpy as np

from app.codec.info import SNAC_24KHZ_ENCODER, CodecInfo, EncoderSpec
from app.codec.worker import CodecWorker
from app.errors import InvalidRequest, Overloaded, Unsupported
from app.reference_audio import ReferenceLimits, decode_reference
from app.text import normalize_text, strip_control_chars
from app.uploads import UploadedFile

logger = logging.getLogger(__name__)

# SNAC's: frames kept per codec job (~2 s of audio), and encoded and dropped on each side.
ENCODE_SLICE_FRAMES = SNAC_24KHZ_ENCODER.slice_frames or 1
ENCODE_CONTEXT_FRAMES = SNAC_24KHZ_ENCODER.context_frames


@runtime_checkable
class EncodingCodec(Protocol):
    """A codec that also encodes: reference audio -> frames of its own layout."""

    info: CodecInfo
    encoder_spec: EncoderSpec

    def decode_frames(self, frames: np.ndarray) -> np.ndarray: ...

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(N,) float32 audio at `encoder_spec.sample_rate` -> (T, codes_per_frame) codes."""
        ...


def encode_slices(
    total_frames: int, slice_frames: int = ENCODE_SLICE_FRAMES,
    context_frames: int = ENCODE_CONTEXT_FRAMES,
) -> list[tuple[int, int, int, int]]:
    """(lo, start, end, hi) per slice: encode frames lo..hi, keep start..end."""
    slices = []
    for start in range(0, total_frames, slice_frames):
        end = min(total_frames, start + slice_frames)
        slices.append((max(0, start - context_frames), start, end,
                       min(total_frames, end + context_frames)))
    return slices


class ReferenceEncoder:
    """Turns uploaded reference clips into (T, codes_per_frame) frames of the loaded codec."""

    def __init__(
        self, worker: CodecWorker, limits: ReferenceLimits, *, max_concurrent: int,
        max_text_chars: int,
    ):
        self.worker = worker
        self.limits = limits
        self.max_text_chars = max_text_chars
        self._slots = asyncio.Semaphore(max_concurrent)
        self._codec = worker.codec if isinstance(worker.codec, EncodingCodec) else None

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
        codec = self._codec
        if codec is None:
            raise Unsupported("this server's codec cannot encode reference audio", param=param)
        if self._slots.locked():
            raise Overloaded("too many reference clips are being encoded; retry shortly")
        spec = codec.encoder_spec
        async with self._slots:
            started = time.perf_counter()
            audio = await asyncio.to_thread(decode_reference, upload.file,
                                            sample_rate=spec.sample_rate, limits=self.limits,
                                            param=param)
            decoded = time.perf_counter()
            if spec.slice_frames is None:
                frames = self._checked(await asyncio.to_thread(codec.encode, audio), None)
            else:
                frames = await self._encode_sliced(codec, audio)
        logger.info("reference %r: %d bytes, %.2f s of audio -> %d frames; decode %.3f s, "
                    "encode %.3f s", upload.filename, upload.size, audio.size / spec.sample_rate,
                    frames.shape[0], decoded - started, time.perf_counter() - decoded)
        return frames

    def _checked(self, frames: np.ndarray, steps: int | None) -> np.ndarray:
        """Encoder output as (T, codes_per_frame) int64 codes in range (T = `steps` if given)."""
        layout = self.worker.codec.info.layout
        frames = np.asarray(frames, dtype=np.int64)
        if frames.ndim != 2 or frames.shape[1] != layout.codes_per_frame or not frames.size or \
                (steps is not None and frames.shape[0] != steps) or frames.min() < 0 or \
                frames.max() >= layout.codebook_size:
            raise RuntimeError(f"codec encode returned frames of shape {frames.shape}")
        return frames

    async def _encode_sliced(self, codec: EncodingCodec, audio: np.ndarray) -> np.ndarray:
        """(N,) audio -> (ceil(N / samples_per_frame), codes_per_frame) frames, one codec job
        per slice."""
        spec = codec.encoder_spec
        per_frame = spec.samples_per_frame
        total = -(-audio.size // per_frame)
        kept = []
        for lo, start, end, hi in encode_slices(total, spec.slice_frames or total,
                                                spec.context_frames):
            piece = audio[lo * per_frame:hi * per_frame]
            frames = self._checked(await self.worker.run(lambda piece=piece: codec.encode(piece)),
                                   hi - lo)  # (hi - lo, codes_per_frame)
            kept.append(frames[start - lo:end - lo])
        return np.concatenate(kept)
