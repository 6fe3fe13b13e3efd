"""What the service needs to know about the loaded codec, without importing torch.

`CodecLayout` is the codec's token layout: how many codes one LM frame carries, how many values
each code takes, and how much audio one frame decodes to. A loaded codec reports its own
(SNAC reads it from its config, NeuCodec from its architecture); `NOMINAL_LAYOUTS` holds the
layouts the profiles expect, so the LM's vocabulary can be resolved before the codec loads and
checked against it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CodecName = Literal["snac", "neucodec"]


class CodecLoadError(RuntimeError):
    """The codec's weights cannot be found or read."""


@dataclass(frozen=True)
class CodecLayout:
    """One frame = `codes_per_frame` codes in 0..codebook_size-1 = `samples_per_frame` samples."""

    codec: CodecName
    codes_per_frame: int
    codebook_size: int
    samples_per_frame: int
    sample_rate: int  # Hz, of decoded audio

    @property
    def frame_s(self) -> float:
        return self.samples_per_frame / self.sample_rate

    @property
    def tokens_per_second(self) -> float:
        return self.codes_per_frame / self.frame_s

    def same_tokens(self, other: CodecLayout) -> bool:
        """Do frames of `other` mean the same thing to this codec (same codec and code shape)?"""
        return (self.codec, self.codes_per_frame, self.codebook_size) == (
            other.codec, other.codes_per_frame, other.codebook_size)


# SNAC 24 kHz (hubertsiuzdak/snac_24khz) in Orpheus' frames: 1 + 2 + 4 codes of 4096, hop 512
# x 4 latent steps per frame.
SNAC_24KHZ = CodecLayout("snac", codes_per_frame=7, codebook_size=4096, samples_per_frame=2048,
                         sample_rate=24000)
# NeuCodec (neuphonic/neucodec): one FSQ code of 4^8 values per 20 ms, 480 samples at 24 kHz out.
NEUCODEC = CodecLayout("neucodec", codes_per_frame=1, codebook_size=65536, samples_per_frame=480,
                       sample_rate=24000)
NOMINAL_LAYOUTS: dict[str, CodecLayout] = {"snac": SNAC_24KHZ, "neucodec": NEUCODEC}


@dataclass(frozen=True)
class CodecInfo:
    source: str
    random_weights: bool
    device: str
    dtype: str
    layout: CodecLayout

    @property
    def name(self) -> CodecName:
        return self.layout.codec

    @property
    def sample_rate(self) -> int:
        return self.layout.sample_rate

    @property
    def samples_per_frame(self) -> int:
        return self.layout.samples_per_frame
