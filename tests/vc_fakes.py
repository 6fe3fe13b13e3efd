"""A fake codec that also encodes, and an app fixture factory for the voice-cloning tests."""

from __future__ import annotations

import math
import threading

import numpy as np

from app.codec.info import SNAC_24KHZ_ENCODER, EncoderSpec
from tests.fakes import RecordingCodec


class EncodingCodec(RecordingCodec):
    """RecordingCodec that encodes too: frame t of a clip is [t % 4096] * 7, so a prompt
    shows exactly which frames were sent. Records each encode's length and thread."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__()
        self.encodes: list[tuple[int, str]] = []
        self.encode_delay_s = delay_s

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.info.sample_rate, self.info.samples_per_frame,
                           SNAC_24KHZ_ENCODER.slice_frames, SNAC_24KHZ_ENCODER.context_frames)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        self.encodes.append((audio.size, threading.current_thread().name))
        if self.encode_delay_s:
            threading.Event().wait(self.encode_delay_s)
        steps = math.ceil(audio.size / self.info.samples_per_frame)
        return np.repeat((np.arange(steps) % 4096)[:, None], 7, axis=1)


def clone_prompt_frames(prompt: str) -> int:
    """How many reference frames a demo-profile clone prompt carries."""
    reference = prompt.split("<|speech_start|>", 1)[1].split("<|speech_end|>", 1)[0]
    return reference.count("<|snac_0_")
