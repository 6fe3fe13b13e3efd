"""SNAC 24 kHz codec: loading, weight-norm folding, batched decode, encode, GPU capture.

All methods run in the codec worker's thread; none is safe to call from two threads at once.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from snac import SNAC
from snac.layers import NoiseBlock
from torch.nn.utils import parametrize

from app.codec.info import (
    SNAC_24KHZ,
    SNAC_24KHZ_ENCODER,
    CodecInfo,
    CodecLayout,
    CodecLoadError,
    EncoderSpec,
)
from app.codec.layout import codes_to_frames

if TYPE_CHECKING:
    from app.codec.snac_stream import SnacStream

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
# hubertsiuzdak/snac_24khz's config.json: 19.8 M parameters, hop 512, 3 codebooks of 4096.
SNAC_24KHZ_CONFIG = {
    "sampling_rate": 24000,
    "encoder_dim": 48,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
__all__ = ["CodecLoadError", "SnacCodec", "fold_weight_norm"]


def _frames_to_code_tensors(frames: torch.Tensor) -> list[torch.Tensor]:
    """(B, T, 7) -> [(B, T), (B, 2T), (B, 4T)], the torch twin of layout.frames_to_codes."""
    batch, steps, _ = frames.shape
    return [
        frames[:, :, 0],
        frames[:, :, [1, 4]].reshape(batch, 2 * steps),
        frames[:, :, [2, 3, 5, 6]].reshape(batch, 4 * steps),
    ]


def fold_weight_norm(model: torch.nn.Module) -> int:
    """Bake weight-norm parametrizations into plain weights (bit-identical, ~1.8x faster)."""
    folded = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            folded += 1
    return folded


def _load_model(source: str, seed: int) -> SNAC:
    if source == RANDOM_WEIGHTS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SNAC(**SNAC_24KHZ_CONFIG)
    try:
        return SNAC.from_pretrained(source)
    except Exception as exc:  # hub/network/file errors come in many types
        where = "directory" if os.path.isdir(source) else "Hugging Face id"
        raise CodecLoadError(f"cannot load SNAC from {where} {source!r}: {exc}") from exc


def layout_of(model: SNAC) -> CodecLayout:
    """The frame layout a SNAC model implies: one frame spans the coarsest level's stride.

    Level i contributes coarsest_stride / stride_i codes per frame (Orpheus: 1 + 2 + 4 = 7).
    Only the 24 kHz model's layout is Orpheus' frame order (`_frames_to_code_tensors`).
    """
    strides = [int(s) for s in model.vq_strides]
    layout = CodecLayout(
        "snac", codes_per_frame=sum(strides[0] // s for s in strides),
        codebook_size=int(model.codebook_size),
        samples_per_frame=int(model.hop_length) * strides[0],
        sample_rate=int(model.sampling_rate))
    if not layout.same_tokens(SNAC_24KHZ):
        raise CodecLoadError(f"SNAC layout {layout} is not Orpheus' 7 x 4096 frame")
    return layout


class SnacCodec:
    """A loaded SNAC model. Frames are Orpheus 7-code frames; audio is float32 in [-1, 1]."""

    backend = "torch"  # what runs the decoder (CODEC_BACKEND); see app.codec.onnx_backend

    def __init__(self, model: SNAC, info: CodecInfo):
        self._model = model
        self.info = info
        self.noise = True  # the decoder's NoiseBlocks are active; set_noise changes it
        self._device = torch.device(info.device)
        self._dtype = _DTYPES[info.dtype]
        self._decode_impl: Callable[[torch.Tensor], torch.Tensor] = self._decode_eager
        self._graphs: dict[int, _CapturedDecode] = {}

    @classmethod
    def load(
        cls, source: str, *, device: str = "auto", dtype: str = "float32", seed: int = 0
    ) -> SnacCodec:
        """Load from an HF id, a local directory or `random` (real architecture, seeded)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = _load_model(source, seed)
        folded = fold_weight_norm(model)
        model = model.to(device=device, dtype=_DTYPES[dtype]).eval()
        info = CodecInfo(
            source=source,
            random_weights=source == RANDOM_WEIGHTS,
            device=device,
            dtype=dtype,
            layout=layout_of(model),
        )
        logger.info(
            "SNAC loaded from %s on %s/%s (%d weight norms folded)", source, device, dtype, folded
        )
        return cls(model, info)

    def set_noise(self, enabled: bool) -> None:
        """Turn the decoder's NoiseBlocks on (production) or off (deterministic tests)."""
        self.noise = enabled
        for module in self._model.modules():
            if isinstance(module, NoiseBlock):
                if enabled:
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = _identity  # type: ignore[method-assign]

    def _decode_eager(self, frames: torch.Tensor) -> torch.Tensor:
        audio = self._model.decode(_frames_to_code_tensors(frames))  # (B, 1, T*2048)
        return audio[:, 0, :]

    @torch.inference_mode()
    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, 7) int codes -> (B, T * samples_per_frame) float32 audio."""
        batch, steps, width = frames.shape
        if width != self.info.layout.codes_per_frame:
            raise ValueError(
                f"frames must have {self.info.layout.codes_per_frame} codes, got {width}")
        captured = self._graph_for(batch, steps)
        tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.int64))
        if captured is not None:
            audio = captured.run(tensor)
        else:
            audio = self._decode_impl(tensor.to(self._device))
        return audio.float().cpu().numpy()

    def stream_decoder(self) -> SnacStream:
        """A stateful decoder for one stream: every frame decoded once, the audio equal to
        one offline decode (`app.codec.snac_stream`). Batch 1, eager torch."""
        from app.codec.snac_stream import SnacStream

        return SnacStream(self._model, self._device, self._dtype)

    @property
    def encoder_spec(self) -> EncoderSpec:
        """Sliceable (convolutional encoder), at the decoder's own rate and hop."""
        return EncoderSpec(sample_rate=self.info.sample_rate,
                           samples_per_frame=self.info.samples_per_frame,
                           slice_frames=SNAC_24KHZ_ENCODER.slice_frames,
                           context_frames=SNAC_24KHZ_ENCODER.context_frames)

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(N,) float32 audio at the codec's sample rate -> (T, 7) frames, T = ceil(N / 2048)."""
        tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        tensor = tensor.to(self._device, self._dtype)[None, None, :]  # (1, 1, N)
        levels = [c.cpu().numpy() for c in self._model.encode(tensor)]
        return codes_to_frames(*levels)[0]

    # GPU paths. They cannot run on a CPU-only box; `prepare_accelerated` is a no-op there
    # unless torch.compile is asked for, which also works (slowly to warm up) on CPU.
    def prepare_accelerated(
        self, *, bucket_seconds: Sequence[float], max_batch: int, compile_model: bool
    ) -> None:
        """Capture CUDA graphs per window-length bucket, or torch.compile the decoder."""
        if compile_model:
            self._decode_impl = torch.compile(self._decode_eager, dynamic=False)
            logger.info("decoder wrapped in torch.compile")
        if not bucket_seconds:
            return
        if self._device.type != "cuda":
            logger.warning("CUDA_GRAPH_BATCH is set but the codec runs on %s: ignored",
                           self._device)
            return
        for seconds in sorted(bucket_seconds):
            steps = max(1, math.ceil(seconds * self.info.sample_rate / self.info.samples_per_frame))
            if steps not in self._graphs:
                self._graphs[steps] = _CapturedDecode(self._decode_impl, max_batch, steps,
                                                      self.info.layout.codes_per_frame,
                                                      self._device)
        logger.info("captured CUDA graphs for window buckets (frames): %s", sorted(self._graphs))

    def _graph_for(self, batch: int, steps: int) -> _CapturedDecode | None:
        fitting = [s for s in self._graphs if s >= steps and self._graphs[s].max_batch >= batch]
        return self._graphs[min(fitting)] if fitting else None

    def warm_up(self, lengths: Sequence[int]) -> None:
        """Run each window length once so first requests do not pay allocator/compile costs."""
        for steps in lengths:
            self.decode_frames(
                np.zeros((1, steps, self.info.layout.codes_per_frame), dtype=np.int64))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _CapturedDecode:
    """One CUDA graph decoding a (max_batch, steps, 7) window; shorter inputs are padded.

    Padding repeats the last frame to the right; only samples near a padded window's right
    edge can differ from an unpadded decode, and the planner keeps right context there.
    """

    def __init__(
        self, decode: Callable[[torch.Tensor], torch.Tensor], max_batch: int, steps: int,
        codes_per_frame: int, device: torch.device,
    ):
        self.max_batch = max_batch
        self.steps = steps
        self._input = torch.zeros((max_batch, steps, codes_per_frame), dtype=torch.int64,
                                  device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up iterations before capture, as CUDA graphs require
                decode(self._input)
        torch.cuda.current_stream(device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._output = decode(self._input)  # (max_batch, steps * 2048)

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = frames.shape
        padded = frames
        if steps < self.steps:
            padded = torch.cat([frames, frames[:, -1:, :].expand(batch, self.steps - steps, -1)],
                               dim=1)
        self._input[:batch].copy_(padded, non_blocking=True)
        self._graph.replay()
        samples = steps * (self._output.shape[1] // self.steps)
        return self._output[:batch, :samples].clone()
