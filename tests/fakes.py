"""Small in-process fakes (a codec that decodes instantly)."""

from __future__ import annotations

import threading

import numpy as np

from app.codec.info import SNAC_24KHZ, CodecInfo, CodecLayout

INFO = CodecInfo("fake", True, "cpu", "float32", SNAC_24KHZ)


class RecordingCodec:
    """Decodes frame codes to a recognisable signal and records every batch it saw."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False, level: float | None = None,
                 layout: CodecLayout = SNAC_24KHZ):
        """`level`: decode to a 440 Hz tone of this peak amplitude instead of the raw codes."""
        self.info = INFO if layout == SNAC_24KHZ else CodecInfo("fake", True, "cpu", "float32",
                                                                layout)
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
        if frames.shape[2] != self.info.layout.codes_per_frame:
            raise ValueError(f"frames of {frames.shape[2]} codes for {self.info.layout}")
        self.batches.append(frames.shape[:2])
        spf, rate = self.info.samples_per_frame, self.info.sample_rate
        if self.level is not None:
            t = np.arange(frames.shape[1] * spf) / rate
            tone = (self.level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            return np.tile(tone, (frames.shape[0], 1))
        return np.repeat(frames[:, :, 0].astype(np.float32), spf, axis=1)
