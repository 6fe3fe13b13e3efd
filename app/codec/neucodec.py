"""NeuCodec decoder (neuphonic/neucodec): FSQ codes at 50 Hz -> 24 kHz audio. Decode only.

Our own module, written from the architecture and proved equal to the `neucodec` package's
decoder on the same weights (tests/test_neucodec_reference.py); the stock package does not
import beside this project's torch. Module names follow the checkpoint's keys, so the real
weights load as they are:

    fc_post_a                      Linear(2048, 1024), applied after the FSQ lookup
    generator.quantizer.project_out Linear(8, 2048): FSQ levels (4^8 = 65,536 codes) -> embedding
    generator.backbone             conv embed, 2 ResNet blocks, 12 transformer blocks (dim 1024,
                                   16 heads, non-causal), LayerNorm, 2 ResNet blocks
    generator.head                 Linear(1024, 1922) -> magnitude/phase -> ISTFT (n_fft 1920,
                                   hop 480, "same" padding)

The decoder is non-causal: attention and GroupNorm statistics span the whole window, so a
window must never be zero-padded (that changes every sample), and only equal-length windows
are batched. All methods run in the codec worker's thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.codec.info import NEUCODEC, CodecInfo, CodecLoadError

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
CHECKPOINT_FILES = ("pytorch_model.bin", "model.safetensors")
HOP = NEUCODEC.samples_per_frame  # 480 samples per code at 24 kHz
_FSQ_LEVELS = (4,) * 8
_DIM = 1024
_DEPTH = 12
_HEADS = 16
_VQ_DIM = 2048
_WINDOW_KEY = "generator.head.istft.window"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _Attention(nn.Module):
    """Non-causal multi-head self-attention.

    The checkpoint's model applies torchtune's RoPE to tensors laid out (B, heads, T, d), which
    that module reads as (B, seq, heads, d): it rotates each head's q and k by an angle that
    depends on the head index only, never on time. The same rotation of q and k leaves every
    q.k unchanged, so it is left out here (equal up to rounding; see the reference test).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=False)
        self.c_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape  # (B, T, C)
        qkv = self.c_attn(x).view(batch, steps, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.c_proj(y.transpose(1, 2).reshape(batch, steps, dim))


class _MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=False)
        self.fc2 = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.att_norm = _RMSNorm(dim)
        self.ffn_norm = _RMSNorm(dim)
        self.att = _Attention(dim, heads)
        self.mlp = _MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.att_norm(x))
        return x + self.mlp(self.ffn_norm(x))


class _ResnetBlock(nn.Module):
    """GroupNorm(32) -> swish -> conv3, twice, plus the input. (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, dim, eps=1e-6)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(32, dim, eps=1e-6)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class _Backbone(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, kernel_size=7, padding=3)
        self.prior_net = nn.Sequential(_ResnetBlock(dim), _ResnetBlock(dim))
        self.transformers = nn.Sequential(*(_TransformerBlock(dim, heads) for _ in range(depth)))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.post_net = nn.Sequential(_ResnetBlock(dim), _ResnetBlock(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prior_net(self.embed(x.transpose(1, 2)))  # (B, C, T)
        x = self.transformers(x.transpose(1, 2))  # (B, T, C)
        x = self.post_net(x.transpose(1, 2)).transpose(1, 2)
        return self.final_layer_norm(x)


class _ISTFT(nn.Module):
    """Inverse STFT with "same" padding: T spectral frames -> exactly T * hop samples.

    torch.istft only trims `center` padding, and with a Hann window its NOLA check fails at
    the un-padded edges, so the overlap-add is done here and the edges trimmed afterwards.
    """

    window: torch.Tensor

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        _, _, frames = spec.shape  # (B, n_fft/2 + 1, T) complex
        trim = (self.n_fft - self.hop) // 2
        length = (frames - 1) * self.hop + self.n_fft
        pieces = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]
        audio = F.fold(pieces, (1, length), (1, self.n_fft), stride=(1, self.hop))
        envelope = F.fold(self.window.square()[None, :, None].expand(1, -1, frames), (1, length),
                          (1, self.n_fft), stride=(1, self.hop))
        return audio[:, 0, 0, trim:-trim] / envelope[0, 0, 0, trim:-trim]  # (B, T * hop)


class _Head(nn.Module):
    def __init__(self, dim: int, hop: int):
        super().__init__()
        n_fft = 4 * hop
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = _ISTFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The spectrum is built in float32 whatever the model's dtype: exp and the FFT need it.
        pred = self.out(x).float().transpose(1, 2)  # (B, n_fft + 2, T)
        log_mag, phase = pred.chunk(2, dim=1)
        magnitude = torch.exp(log_mag).clamp(max=100.0)
        return self.istft(torch.polar(magnitude, phase))


class _Quantizer(nn.Module):
    """FSQ decode: a code's base-4 digits are its 8 levels, each in {-1, -0.5, 0, 0.5}."""

    basis: torch.Tensor
    levels: torch.Tensor

    def __init__(self, dim: int):
        super().__init__()
        self.project_out = nn.Linear(len(_FSQ_LEVELS), dim)
        levels = torch.tensor(_FSQ_LEVELS)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1, *_FSQ_LEVELS[:-1]]), 0),
                             persistent=False)
        self.register_buffer("levels", levels, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        digits = (codes[..., None] // self.basis) % self.levels  # (B, T, 8)
        half = (self.levels // 2).to(torch.float32)
        return self.project_out(((digits - half) / half).to(self.project_out.weight.dtype))


class _Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quantizer = _Quantizer(_VQ_DIM)
        self.backbone = _Backbone(_DIM, _DEPTH, _HEADS)
        self.head = _Head(_DIM, HOP)


class NeuCodecDecoder(nn.Module):
    """(B, T) int codes in 0..65535 -> (B, T * 480) float audio at 24 kHz."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = _Generator()
        self.fc_post_a = nn.Linear(_VQ_DIM, _DIM)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        embedding = self.fc_post_a(self.generator.quantizer(codes))  # (B, T, 1024)
        return self.generator.head(self.generator.backbone(embedding))

    @classmethod
    def random(cls, seed: int = 0) -> NeuCodecDecoder:
        """The real architecture with seeded weights (convs as the package initialises them)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls()
            for module in model.modules():
                if isinstance(module, nn.Conv1d):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        return model

    @classmethod
    def from_checkpoint(cls, path: Path) -> NeuCodecDecoder:
        """Load the decoder's keys from a full NeuCodec checkpoint (the encoder's are ignored)."""
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            try:  # the full checkpoint holds w2v-bert too: map it, read only the decoder
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a legacy (non-zip) file cannot be mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        wanted = model.state_dict()
        # The ISTFT window is a plain Hann window: a checkpoint without it loses nothing.
        state.setdefault(_WINDOW_KEY, wanted[_WINDOW_KEY])
        missing = sorted(k for k in wanted if k not in state)
        if missing:
            raise CodecLoadError(f"{path} lacks NeuCodec decoder weights: {missing[:5]} "
                                 f"({len(missing)} missing)")
        model.load_state_dict({k: state[k] for k in wanted}, strict=True)
        return model


def checkpoint_path(source: str) -> Path:
    """An HF id (downloaded or cached) or a local directory -> its checkpoint file."""
    if os.path.isdir(source):
        for name in CHECKPOINT_FILES:
            if (Path(source) / name).is_file():
                return Path(source) / name
        raise CodecLoadError(f"no NeuCodec checkpoint ({' or '.join(CHECKPOINT_FILES)}) "
                             f"in directory {source!r}")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, CHECKPOINT_FILES[0]))
    except Exception as exc:  # hub/network/file errors come in many types
        raise CodecLoadError(f"cannot load NeuCodec from Hugging Face id {source!r}: {exc}"
                             ) from exc


class NeuCodec:
    """A loaded NeuCodec decoder. Frames are one code each; audio is float32."""

    def __init__(self, model: NeuCodecDecoder, info: CodecInfo):
        self._model = model
        self.info = info
        self._device = torch.device(info.device)
        self._decode = model.forward

    @classmethod
    def load(
        cls, source: str, *, device: str = "auto", dtype: str = "float32", seed: int = 0
    ) -> NeuCodec:
        """Load from an HF id, a local directory or `random` (real architecture, seeded)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = (NeuCodecDecoder.random(seed) if source == RANDOM_WEIGHTS
                 else NeuCodecDecoder.from_checkpoint(checkpoint_path(source)))
        model = model.to(device=device, dtype=_DTYPES[dtype]).eval()
        # The ISTFT window stays float32: the head's spectrum is float32 in every dtype.
        model.generator.head.istft.window = model.generator.head.istft.window.float()
        info = CodecInfo(source=source, random_weights=source == RANDOM_WEIGHTS, device=device,
                         dtype=dtype, layout=NEUCODEC)
        logger.info("NeuCodec decoder loaded from %s on %s/%s", source, device, dtype)
        return cls(model, info)

    @torch.inference_mode()
    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, 1) codes -> (B, T * 480) float32. Every row is decoded at its full length."""
        width = frames.shape[2]
        if width != NEUCODEC.codes_per_frame:
            raise ValueError(f"NeuCodec frames have one code, got {width}")
        codes = torch.from_numpy(np.ascontiguousarray(frames[:, :, 0], dtype=np.int64))
        audio = self._decode(codes.to(self._device))  # (B, T * 480)
        return audio.float().cpu().numpy()

    def prepare_accelerated(
        self, *, bucket_seconds: Sequence[float], max_batch: int, compile_model: bool
    ) -> None:
        """torch.compile the decoder if asked. CUDA graphs are refused: they pad windows."""
        if compile_model:
            self._decode = torch.compile(self._model.forward, dynamic=False)
            logger.info("NeuCodec decoder wrapped in torch.compile")
        if bucket_seconds:
            logger.warning("CUDA_GRAPH_BATCH is ignored for NeuCodec: graphs decode padded "
                           "windows, and padding changes this non-causal decoder's output")

    def warm_up(self, lengths: Sequence[int]) -> None:
        for steps in lengths:
            self.decode_frames(np.zeros((1, steps, 1), dtype=np.int64))
