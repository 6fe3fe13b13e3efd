"""What the service needs to know about the loaded codec, without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodecInfo:
    source: str
    random_weights: bool
    device: str
    dtype: str
    sample_rate: int
    samples_per_frame: int
