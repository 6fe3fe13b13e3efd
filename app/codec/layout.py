"""Audio-token layout: LM token ids <-> codec frames <-> SNAC code tensors. Plain NumPy.

A speech LM emits one codec frame as `codes_per_frame` tokens (the codec's `CodecLayout`).
Token i of a frame carries a code in 0..codebook_size-1 and has id
`audio_base_id + i * codebook_size + code`, so a token's id tells its frame position.
NeuCodec frames are one token (one code of 65,536); an Orpheus-style SNAC frame is 7 tokens
of 4096, laid out over the three SNAC levels (1, 2 and 4 codes per frame) as:

    position: 0    1    2    3    4    5    6
    level:    L0   L1a  L2a  L2b  L1b  L2c  L2d
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.codec.info import SNAC_24KHZ, CodecLayout

_SNAC_CODES = SNAC_24KHZ.codes_per_frame
_L1 = [1, 4]
_L2 = [2, 3, 5, 6]


@dataclass(frozen=True)
class TokenLayout:
    """Where audio tokens live in the LM vocabulary."""

    audio_base_id: int
    stop_ids: frozenset[int]
    tokens_per_frame: int
    codebook_size: int

    @classmethod
    def for_codec(cls, codec: CodecLayout, audio_base_id: int, stop_ids: frozenset[int]
                  ) -> TokenLayout:
        return cls(audio_base_id, stop_ids, codec.codes_per_frame, codec.codebook_size)

    @property
    def audio_end_id(self) -> int:
        """One past the last audio token id."""
        return self.audio_base_id + self.tokens_per_frame * self.codebook_size

    def token_id(self, position: int, code: int) -> int:
        return self.audio_base_id + position * self.codebook_size + code


@dataclass
class FrameStats:
    """What an assembler saw; misplaced tokens are audio tokens in the wrong frame position."""

    tokens: int = 0
    frames: int = 0
    misplaced: int = 0
    dropped_partial_frames: int = 0
    non_audio: int = 0


@dataclass
class FrameAssembler:
    """Turns a stream of token ids into complete frames of `tokens_per_frame` codes.

    A token whose id says it belongs to a different frame position than expected is counted
    and the frame resynchronised: the partial frame is dropped and assembly restarts at the
    next position-0 token (a misplaced position-0 token starts the new frame at once). Such
    tokens are never decoded as if they were in the right slot.
    """

    layout: TokenLayout
    stats: FrameStats = field(default_factory=FrameStats)
    _partial: list[int] = field(default_factory=list)
    _seeking: bool = False

    def push(self, token_ids: list[int]) -> list[list[int]]:
        """Consume token ids; return the frames (lists of codes) they complete."""
        frames: list[list[int]] = []
        base, size, per_frame = (
            self.layout.audio_base_id, self.layout.codebook_size, self.layout.tokens_per_frame
        )
        for token_id in token_ids:
            self.stats.tokens += 1
            offset = token_id - base
            if offset < 0 or offset >= per_frame * size:
                if token_id not in self.layout.stop_ids:
                    self.stats.non_audio += 1
                continue
            position, code = divmod(offset, size)
            expected = len(self._partial)
            if self._seeking or position != expected:
                if not self._seeking or position != 0:
                    self.stats.misplaced += 1
                if self._partial:
                    self.stats.dropped_partial_frames += 1
                    self._partial = []
                self._seeking = position != 0
                if self._seeking:
                    continue
            self._partial.append(code)
            if len(self._partial) == per_frame:
                frames.append(self._partial)
                self._partial = []
                self.stats.frames += 1
        return frames


def frames_to_codes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, T, 7) SNAC frame codes -> SNAC levels (B, T), (B, 2T), (B, 4T)."""
    batch, steps, _ = frames.shape
    level0 = frames[:, :, 0]
    level1 = frames[:, :, _L1].reshape(batch, 2 * steps)
    level2 = frames[:, :, _L2].reshape(batch, 4 * steps)
    return level0, level1, level2


def codes_to_frames(
    level0: np.ndarray, level1: np.ndarray, level2: np.ndarray
) -> np.ndarray:
    """Inverse of `frames_to_codes`: (B, T), (B, 2T), (B, 4T) -> (B, T, 7)."""
    batch, steps = level0.shape
    frames = np.empty((batch, steps, _SNAC_CODES), dtype=np.int64)
    frames[:, :, 0] = level0
    frames[:, :, _L1] = level1.reshape(batch, steps, 2)
    frames[:, :, _L2] = level2.reshape(batch, steps, 4)
    return frames
