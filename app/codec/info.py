"""What the service needs to know about the loaded codec, without importing torch.

`CodecLayout` is the codec's token layout: how many codes one LM frame carries, how many values
each code takes, and how much audio one frame decodes to. A loaded codec reports its own
(SNAC reads it from its config, NeuCodec from its architecture); `NOMINAL_LAYOUTS` holds the
layouts the profiles expect, so the LM's vocabulary can be resolved before the codec loads and
checked against it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # Streaming defaults chosen by measurement (FIRST_CHUNK_FRAMES=0, MIN_CONTEXT_FRAMES=-1,
    # DEFAULT_PLAYBACK_SPEED=0 take them): SNAC is convolutional, so 1 frame of context per
    # side matches an offline decode to 72 dB; NeuCodec attends over the whole window, so it
    # is decoded in longer, faster-growing windows (bench.neucodec_schedules).
    # Not part of the layout's identity (a stored voice's layout compares equal without them).
    first_chunk_frames: int = field(default=3, compare=False)
    min_context_frames: int = field(default=1, compare=False)
    chunk_s: float = field(default=1.5, compare=False)  # playback_speed when none is asked
    chunk_growth: float = field(default=1.0, compare=False)  # next chunk / audio so far
    min_window_frames: int = field(default=0, compare=False)

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
                       sample_rate=24000, first_chunk_frames=50, min_context_frames=16,
                       chunk_s=5.0, chunk_growth=3.0, min_window_frames=200)
NOMINAL_LAYOUTS: dict[str, CodecLayout] = {"snac": SNAC_24KHZ, "neucodec": NEUCODEC}


@dataclass(frozen=True)
class EncoderSpec:
    """What a codec's encoder takes, and whether a clip may be encoded in slices.

    `slice_frames` None: the output depends on the whole clip (attention, clip-wide
    normalization), so a clip is encoded in one call, off the codec thread. Otherwise slices
    of that many frames with `context_frames` either side equal a whole-clip encode, and each
    runs as its own codec job.
    """

    sample_rate: int  # Hz of the audio `encode` takes
    samples_per_frame: int  # at that rate
    slice_frames: int | None
    context_frames: int = 0


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


# SNAC's encoder is convolutional (no attention in the 24 kHz model) and 4 frames of context
# are wider than its receptive field, so slices of ~2 s equal a whole-clip encode.
SNAC_24KHZ_ENCODER = EncoderSpec(sample_rate=24000, samples_per_frame=2048, slice_frames=24,
                                 context_frames=4)
