"""Small in-process fakes (a codec that decodes instantly)."""

from __future__ import annotations

import threading

import numpy as np

from app.codec.info import CodecInfo

INFO = CodecInfo("fake", True, "cpu", "float32", 24000, 2048)


class RecordingCodec:
    """Decodes frame codes to a recognisable signal and records every batch it saw."""

    info = INFO

    def __init__(self, delay_s: float = 0.0, fail: bool = False, level: float | None = None):
        """`level`: decode to a 440 Hz tone of this peak amplitude instead of the raw codes."""
        self.batches: list[tuple[int, int]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.level = level
        self.gate = threading.Event()
        self.gate.set()

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("boom")
        self.batches.append(frames.shape[:2])
        if self.level is not None:
            t = np.arange(frames.shape[1] * 2048) / 24000
            tone = (self.level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            return np.tile(tone, (frames.shape[0], 1))
        return np.repeat(frames[:, :, 0].astype(np.float32), 2048, axis=1)
