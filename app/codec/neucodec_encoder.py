"""NeuCodec encoder (neuphonic/neucodec): 16 kHz audio -> FSQ codes at 50 Hz, for voice cloning.

Our own module, written from the architecture and proved equal to the `neucodec` package's
encoder on the same weights (tests/test_neucodec_encoder_reference.py). Two branches, one frame
per 320 input samples (20 ms), concatenated and quantized:

    semantic   SeamlessM4T fbank features (80 mel bins, stacked in pairs: 160 dims at 50 Hz,
               normalized over the whole clip) -> w2v-bert-2.0 (a conformer: relative-position
               attention + depthwise convs), the output of its layer 16 -> SemanticEncoder_module
               (three convs, 1024 channels)
    acoustic   CodecEnc: conv 1 -> 48, five strided blocks (x2, x2, x4, x4, x5 = hop 320, channels
               doubling to 1536; residual units with dilations 1, 3, 9 and anti-aliased SnakeBeta)
               -> conv 1536 -> 1024
    quantizer  fc_prior Linear(2048, 2048) -> generator.quantizer.project_in Linear(2048, 8) ->
               FSQ with 8 levels of 4: code = sum(level_i * 4^i), 65,536 codes

The package bounds the 8 values twice (once in its residual wrapper, once in the FSQ layer);
that is kept, since the codes depend on it. Its convs are weight-normalized for training; here
they are plain convs, and `weight_g`/`weight_v` are folded into one weight when a checkpoint
loads. Only the first 16 w2v-bert layers are built: the package runs all 24 and keeps layer 16.

The output depends on the whole clip (the feature normalization and the attention), so a clip
is encoded in one call; see `ENCODE_SLICE_MEASUREMENT` for what slicing would cost.

`NeuCodecEncoder.random` is a REDUCED configuration for tests and the demo, same structure
and layer index: w2v-bert 16 layers of width 64 (4 heads, FFN 128) instead of 24 x 1024
(~600 M parameters), and an acoustic branch from 8 base channels (16 ... 256) instead of 48
(96 ... 1536); the semantic convs, fc_prior and the quantizer are full size. It encodes a few
seconds in about a second on this 2-core CPU; the full acoustic branch alone takes ~5 s per
second of audio here (measured under load).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.codec.info import CodecInfo, CodecLoadError, EncoderSpec
from app.codec.neucodec import RANDOM_WEIGHTS, NeuCodec, NeuCodecDecoder, checkpoint_path

if TYPE_CHECKING:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

logger = logging.getLogger(__name__)

INPUT_RATE = 16_000  # Hz the encoder takes
INPUT_HOP = 320  # input samples per code (20 ms)
SEMANTIC_LAYER = 16  # the w2v-bert layer whose output feeds the semantic branch
SEMANTIC_MODEL = "facebook/w2v-bert-2.0"
_STRIDES = (2, 2, 4, 4, 5)
_DILATIONS = (1, 3, 9)
_BASE_CHANNELS = 48
_HIDDEN = 1024
_FSQ_LEVELS = 4
_FSQ_DIGITS = 8
_BOUND_EPS = 1e-3
_ANTIALIAS_KERNEL = 12
# Measured on the reduced random encoder, 8 s of speech-like audio (tests'
# `speech_like`), slices as app.cloning.encode_slices cuts them, vs one whole-clip encode.
# Trained weights may be more local, but the clip-wide fbank normalization alone moves every
# feature of a slice, so slicing is not used.
ENCODE_SLICE_MEASUREMENT = ("slices of 100 frames (2 s) with 20 or 50 frames of context each "
                            "side: 94% of codes and 28-29% of FSQ digits differ")
_CHECKPOINT_PREFIXES = {  # our module names -> the checkpoint's
    "acoustic.": "CodecEnc.",
    "semantic_convs.": "SemanticEncoder_module.",
    "fc_prior.": "fc_prior.",
    "project_in.": "generator.quantizer.project_in.",
    "semantic_model.": "semantic_model.",
}
REDUCED_BASE_CHANNELS = 8  # the acoustic branch of `random`: 16 ... 256 channels, not 96 ... 1536
RANDOM_PROJECTION_STD = 2.0
# The reduced semantic model of `NeuCodecEncoder.random` (documented in the module docstring).
REDUCED_SEMANTIC_WIDTH = 64
REDUCED_SEMANTIC_HEADS = 4


def _kaiser_lowpass(ratio: int, kernel: int) -> torch.Tensor:
    """A Kaiser-windowed sinc low-pass at 0.5/ratio of the rate, transition 0.6/ratio, sum 1.

    (1, 1, kernel), the filter the anti-aliased activations resample with; the window's beta
    follows Kaiser's formula for the attenuation the kernel length allows.
    """
    cutoff, half_width, half = 0.5 / ratio, 0.6 / ratio, kernel // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    taps = torch.arange(-half, half) + 0.5 if kernel % 2 == 0 else torch.arange(kernel) - half
    filt = 2 * cutoff * torch.kaiser_window(kernel, periodic=False, beta=beta) * torch.sinc(
        2 * cutoff * taps)
    return (filt / filt.sum()).view(1, 1, kernel)


class _SnakeBeta(nn.Module):
    """x + sin^2(a x) / b per channel, with a and b stored as logs. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


class _Upsample(nn.Module):
    filter: torch.Tensor

    def __init__(self, ratio: int = 2, kernel: int = _ANTIALIAS_KERNEL):
        super().__init__()
        self.ratio, self.pad = ratio, kernel // ratio - 1
        self.trim_left = self.pad * ratio + (kernel - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel - ratio + 1) // 2
        self.register_buffer("filter", _kaiser_lowpass(ratio, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1),
                                            stride=self.ratio, groups=channels)
        return x[..., self.trim_left:-self.trim_right]


class _LowPass(nn.Module):
    filter: torch.Tensor

    def __init__(self, ratio: int, kernel: int):
        super().__init__()
        self.ratio, self.pad = ratio, (kernel // 2 - int(kernel % 2 == 0), kernel // 2)
        self.register_buffer("filter", _kaiser_lowpass(ratio, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pad, mode="replicate")
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=self.ratio,
                        groups=x.shape[1])


class _Downsample(nn.Module):
    def __init__(self, ratio: int = 2, kernel: int = _ANTIALIAS_KERNEL):
        super().__init__()
        self.lowpass = _LowPass(ratio, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class _AntiAliasedSnake(nn.Module):
    """SnakeBeta at twice the rate: upsample, activate, low-pass and decimate."""

    def __init__(self, channels: int):
        super().__init__()
        self.upsample = _Upsample()
        self.act = _SnakeBeta(channels)
        self.downsample = _Downsample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            _AntiAliasedSnake(channels),
            nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            _AntiAliasedSnake(channels),
            nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _DownBlock(nn.Module):
    """Residual units at `channels // 2`, then a strided conv to `channels`: T -> T / stride."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        half = channels // 2
        self.block = nn.Sequential(
            *(_ResidualUnit(half, d) for d in _DILATIONS), _AntiAliasedSnake(half),
            nn.Conv1d(half, channels, 2 * stride, stride=stride,
                      padding=stride // 2 + stride % 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _AcousticEncoder(nn.Module):
    """(B, 1, N) audio at 16 kHz -> (B, N / 320, 1024)."""

    def __init__(self, base_channels: int = _BASE_CHANNELS) -> None:
        super().__init__()
        channels = base_channels
        blocks: list[nn.Module] = [nn.Conv1d(1, channels, 7, padding=3)]
        for stride in _STRIDES:
            channels *= 2
            blocks.append(_DownBlock(channels, stride))
        self.conv_blocks = nn.Sequential(*blocks)
        self.conv_final_block = nn.Sequential(_AntiAliasedSnake(channels),
                                              nn.Conv1d(channels, _HIDDEN, 3, padding=1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.conv_final_block(self.conv_blocks(audio)).transpose(1, 2)


class _SemanticConvs(nn.Module):
    """(B, C_in, T) w2v-bert states -> (B, 1024, T): conv, a two-conv residual, conv.

    The package's residual starts with an in-place ReLU, which rectifies the skip path too:
    the sum is block(relu(h)) + relu(h), not block(h) + h. The checkpoint was trained so.
    """

    def __init__(self, channels_in: int):
        super().__init__()
        self.initial_conv = nn.Conv1d(channels_in, _HIDDEN, 3, padding=1, bias=False)
        self.residual_blocks = nn.Sequential(
            nn.ReLU(), nn.Conv1d(_HIDDEN, _HIDDEN, 3, padding=1),
            nn.ReLU(), nn.Conv1d(_HIDDEN, _HIDDEN, 3, padding=1))
        self.final_conv = nn.Conv1d(_HIDDEN, _HIDDEN, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.initial_conv(x))
        return self.final_conv(self.residual_blocks(x) + x)


def _fsq_bound(z: torch.Tensor) -> torch.Tensor:
    """Squash each value into the 4 levels' range (-2, 1], offset so that rounding is even."""
    half = (_FSQ_LEVELS - 1) * (1 + _BOUND_EPS) / 2
    offset = 0.5
    return torch.tanh(z + math.atanh(offset / half)) * half - offset


class NeuCodecEncoder(nn.Module):
    """(B, 160, F) fbank features + (B, 1, N) audio at 16 kHz -> (B, T) codes in 0..65535."""

    basis: torch.Tensor

    def __init__(self, semantic_model: Wav2Vec2BertModel, base_channels: int = _BASE_CHANNELS):
        super().__init__()
        self.semantic_model = semantic_model
        self.semantic_convs = _SemanticConvs(semantic_model.config.hidden_size)
        self.acoustic = _AcousticEncoder(base_channels)
        self.fc_prior = nn.Linear(2 * _HIDDEN, 2 * _HIDDEN)
        self.project_in = nn.Linear(2 * _HIDDEN, _FSQ_DIGITS)
        self.register_buffer("basis", _FSQ_LEVELS ** torch.arange(_FSQ_DIGITS), persistent=False)

    def forward(self, features: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        states, _ = self.semantic_model.feature_projection(features)  # (B, F, C)
        states = self.semantic_model.encoder(states).last_hidden_state  # layer 16's output
        semantic = self.semantic_convs(states.transpose(1, 2))  # (B, 1024, T_s)
        acoustic = self.acoustic(audio).transpose(1, 2)  # (B, 1024, T_a)
        steps = min(semantic.shape[-1], acoustic.shape[-1])
        joint = torch.cat([semantic[..., :steps], acoustic[..., :steps]], dim=1)
        z = self.project_in(self.fc_prior(joint.transpose(1, 2))).float()  # (B, T, 8)
        levels = torch.round(_fsq_bound(_fsq_bound(z))) + _FSQ_LEVELS // 2  # each in 0..3
        return (levels.long() * self.basis).sum(-1)

    @classmethod
    def random(cls, seed: int = 0) -> NeuCodecEncoder:
        """The real structure with seeded weights and the REDUCED semantic model."""
        from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            semantic = Wav2Vec2BertModel(Wav2Vec2BertConfig(
                hidden_size=REDUCED_SEMANTIC_WIDTH, num_hidden_layers=SEMANTIC_LAYER,
                num_attention_heads=REDUCED_SEMANTIC_HEADS,
                intermediate_size=2 * REDUCED_SEMANTIC_WIDTH,
                output_hidden_size=REDUCED_SEMANTIC_WIDTH))
            model = cls(semantic, REDUCED_BASE_CHANNELS)
            for name, module in model.named_modules():
                if isinstance(module, nn.Conv1d) and not name.startswith("semantic_model."):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            # Untrained, the projection's outputs sit near 0 and every frame gets the same
            # code; widened, random clips give varied codes (tests can tell frames apart).
            nn.init.normal_(model.project_in.weight, std=RANDOM_PROJECTION_STD)
        return model

    @classmethod
    def from_checkpoint(cls, path: Path, semantic_source: str) -> NeuCodecEncoder:
        """The encoder's keys of a NeuCodec checkpoint + w2v-bert-2.0 (HF id or directory).

        Like the package, w2v-bert's own weights are overridden by any `semantic_model.*`
        keys the checkpoint carries.
        """
        from transformers import Wav2Vec2BertModel

        try:
            semantic = Wav2Vec2BertModel.from_pretrained(
                semantic_source, num_hidden_layers=SEMANTIC_LAYER, add_adapter=False,
                use_intermediate_ffn_before_adapter=False)
        except (OSError, ValueError) as exc:
            raise CodecLoadError(f"cannot load the semantic model {semantic_source!r} for "
                                 f"NeuCodec's encoder: {exc}") from exc
        model = cls(semantic)
        state = _read_state(path)
        wanted = model.state_dict()
        loaded: dict[str, torch.Tensor] = {}
        for ours in wanted:
            prefix = next(p for p in _CHECKPOINT_PREFIXES if ours.startswith(p))
            key = _CHECKPOINT_PREFIXES[prefix] + ours.removeprefix(prefix)
            if key in state:
                loaded[ours] = state[key]
            elif key.endswith(".weight") and key[:-len("weight")] + "weight_v" in state:
                loaded[ours] = _fold_weight_norm(state, key[:-len("weight")])
            elif prefix != "semantic_model.":
                raise CodecLoadError(f"{path} lacks NeuCodec encoder weight {key}")
        model.load_state_dict(loaded, strict=False)
        return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) file cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _fold_weight_norm(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """weight = g * v / |v|, the norm over all but the output-channel dim (torch's dim=0)."""
    g, v = state[prefix + "weight_g"], state[prefix + "weight_v"]
    return g * v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def feature_extractor(semantic_source: str | None) -> SeamlessM4TFeatureExtractor:
    """w2v-bert-2.0's fbank front end: from its directory/HF id, or (None) from its values."""
    from transformers import SeamlessM4TFeatureExtractor

    if semantic_source is None:
        return SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, padding_value=1.0,
                                           sampling_rate=INPUT_RATE, stride=2)
    try:
        return SeamlessM4TFeatureExtractor.from_pretrained(semantic_source)
    except OSError as exc:
        raise CodecLoadError(f"cannot load the feature extractor of {semantic_source!r}: "
                             f"{exc}") from exc


class ClipEncoder:
    """A loaded encoder and its feature extractor: one clip at a time, from any thread."""

    def __init__(self, model: NeuCodecEncoder, features: SeamlessM4TFeatureExtractor,
                 device: str = "cpu"):
        self._model = model
        self._features = features
        self._device = torch.device(device)
        self._lock = threading.Lock()  # one model: clips are encoded one after another

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(N,) float32 audio at 16 kHz -> (N // 320, 1) codes. Blocking."""
        # The package pads to the next multiple of 320, a whole hop more when N already is one.
        audio = np.asarray(audio, dtype=np.float32)
        padded = np.pad(audio, (0, INPUT_HOP - audio.size % INPUT_HOP))
        features = self._features(padded, sampling_rate=INPUT_RATE, return_tensors="pt")
        with self._lock:
            codes = self._model(features.input_features.to(self._device),
                                torch.from_numpy(padded)[None, None].to(self._device))  # (1, T)
        return codes[0, :, None].cpu().numpy()


class EncodingNeuCodec(NeuCodec):
    """NeuCodec with its encoder: decodes like NeuCodec, and encodes reference clips.

    `encode` is whole-clip (`encoder_spec.slice_frames` None), so it runs outside the codec
    thread; the encoder is its own model, apart from the decoder the codec thread uses.
    """

    encoder_spec = EncoderSpec(sample_rate=INPUT_RATE, samples_per_frame=INPUT_HOP,
                               slice_frames=None)

    def __init__(self, model: NeuCodecDecoder, info: CodecInfo, encoder: ClipEncoder):
        super().__init__(model, info)
        self._encoder = encoder

    @classmethod
    def load_with_encoder(
        cls, source: str, *, semantic_source: str, device: str = "auto",
        dtype: str = "float32", seed: int = 0,
    ) -> EncodingNeuCodec:
        """The decoder as `NeuCodec.load`, plus the encoder (always float32: rounding to
        codes is sensitive, and a clip is encoded once). `random` builds the reduced one."""
        codec = NeuCodec.load(source, device=device, dtype=dtype, seed=seed)
        if source == RANDOM_WEIGHTS:
            model, features = NeuCodecEncoder.random(seed), feature_extractor(None)
        else:
            model = NeuCodecEncoder.from_checkpoint(checkpoint_path(source), semantic_source)
            features = feature_extractor(semantic_source)
        model = model.to(codec.info.device).eval()
        logger.info("NeuCodec encoder loaded (semantic model %s)",
                    "reduced random" if source == RANDOM_WEIGHTS else semantic_source)
        return cls(codec._model, codec.info, ClipEncoder(model, features, codec.info.device))

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(N,) float32 audio at 16 kHz -> (N // 320, 1) codes. Blocking; any thread."""
        return self._encoder.encode(audio)
