"""Our NeuCodec encoder against the `neucodec` package's own parts, on the same weights.

The package's `NeuCodec` cannot be built here (its constructor downloads w2v-bert-2.0 and its
module imports torchaudio), so its encoder's parts are imported alone from the reference
install (see tests/test_neucodec_reference.py): `CodecEncoder`, `SemanticEncoder` and
vector-quantize-pytorch's `ResidualFSQ`, and `NeuCodec.encode_code` is followed step by step,
on a w2v-bert that is DEEPER than ours (18 layers) so that taking `hidden_states[16]` as the
package does is checked against our 16-layer truncation. Weights are random and REDUCED
(`NeuCodecEncoder.random`): the package's classes take the same widths as arguments.
"""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from app.codec.neucodec_encoder import (
    INPUT_RATE,
    REDUCED_BASE_CHANNELS,
    SEMANTIC_LAYER,
    ClipEncoder,
    NeuCodecEncoder,
    feature_extractor,
)

REFERENCE = Path(__file__).resolve().parent.parent / ".cache" / "neucodec-reference"
INSTALL = ("pip install --no-deps --target .cache/neucodec-reference "
           "-r requirements-neucodec-reference.txt")


@pytest.fixture(scope="module")
def reference():
    """(CodecEncoder, SemanticEncoder, ResidualFSQ), imported without the rest of neucodec."""
    if not (REFERENCE / "neucodec" / "codec_encoder.py").is_file():
        pytest.skip(f"the reference neucodec package is not installed; run `{INSTALL}`")
    before = set(sys.modules)
    sys.path.insert(0, str(REFERENCE))
    package = types.ModuleType("neucodec")
    package.__path__ = [str(REFERENCE / "neucodec")]
    sys.modules["neucodec"] = package
    try:
        from neucodec.codec_encoder import CodecEncoder
        from neucodec.module import SemanticEncoder
        from vector_quantize_pytorch import ResidualFSQ

        yield CodecEncoder, SemanticEncoder, ResidualFSQ
    finally:
        sys.path.remove(str(REFERENCE))
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("neucodec", "vector_quantize_pytorch"):
                del sys.modules[name]


@pytest.fixture(scope="module")
def ours() -> NeuCodecEncoder:
    return NeuCodecEncoder.random(seed=5).eval()


def _package_state(ours: NeuCodecEncoder, package_acoustic: torch.nn.Module) -> dict:
    """Our acoustic weights in the package's weight-normalized form (v = w, g = |w|)."""
    state = {}
    wanted = package_acoustic.state_dict()
    for key, value in ours.acoustic.state_dict().items():
        stem = key.removesuffix("weight")
        if stem + "weight_v" in wanted:
            state[stem + "weight_v"] = value
            state[stem + "weight_g"] = value.flatten(1).norm(dim=1).view(-1, 1, 1)
        else:
            state[key] = value
    return state


def package_encode_code(reference, ours: NeuCodecEncoder, audio: np.ndarray) -> torch.Tensor:
    """NeuCodec.encode_code, step by step, with package modules holding our weights."""
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    codec_encoder_cls, semantic_encoder_cls, residual_fsq_cls = reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's deprecated weight_norm
        acoustic = codec_encoder_cls(ngf=REDUCED_BASE_CHANNELS)
    acoustic.load_state_dict(_package_state(ours, acoustic), strict=True)
    width = ours.semantic_model.config.hidden_size
    semantic_convs = semantic_encoder_cls(width, 1024, 1024)
    semantic_convs.load_state_dict(ours.semantic_convs.state_dict(), strict=True)
    config = Wav2Vec2BertConfig(**{**ours.semantic_model.config.to_dict(),
                                   "num_hidden_layers": SEMANTIC_LAYER + 2})
    semantic_model = Wav2Vec2BertModel(config)
    loaded = semantic_model.load_state_dict(ours.semantic_model.state_dict(), strict=False)
    assert loaded.unexpected_keys == []
    extra_layers = (f"encoder.layers.{SEMANTIC_LAYER}.", f"encoder.layers.{SEMANTIC_LAYER + 1}.")
    assert loaded.missing_keys and all(k.startswith(extra_layers) for k in loaded.missing_keys)
    fc_prior = ours.fc_prior
    quantizer = residual_fsq_cls(dim=2048, levels=[4] * 8, num_quantizers=1)
    quantizer.project_in.load_state_dict(ours.project_in.state_dict())
    for module in (acoustic, semantic_convs, semantic_model, quantizer):
        module.eval()
    extractor = feature_extractor(None)
    with torch.inference_mode():
        y = torch.from_numpy(audio)[None, None]  # (B, 1, N)
        y = torch.nn.functional.pad(y, (0, 320 - (y.shape[-1] % 320)))
        features = extractor(y[0, :], sampling_rate=INPUT_RATE,
                             return_tensors="pt").input_features
        acoustic_emb = acoustic(y).transpose(1, 2)
        hidden = semantic_model(features, output_hidden_states=True).hidden_states
        semantic = semantic_convs(hidden[SEMANTIC_LAYER].transpose(1, 2))
        steps = min(acoustic_emb.shape[-1], semantic.shape[-1])
        joint = torch.cat([semantic[..., :steps], acoustic_emb[..., :steps]], dim=1)
        joint = fc_prior(joint.transpose(1, 2)).transpose(1, 2)
        _, codes = quantizer(joint.transpose(1, 2))  # the generator's vq=True path
    return codes[..., 0]  # (B, T)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope: varied enough that codes vary."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * INPUT_RATE)) / INPUT_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    tone = np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return (0.2 * envelope * (tone + 0.3 * rng.standard_normal(t.size))).astype(np.float32)


@pytest.mark.parametrize("samples", [INPUT_RATE * 2, INPUT_RATE * 2 + 123])
def test_our_encoder_equals_the_packages_on_the_same_weights(reference, ours, samples):
    audio = speech_like(samples / INPUT_RATE)[:samples]
    expected = package_encode_code(reference, ours, audio)
    got = ClipEncoder(ours, feature_extractor(None)).encode(audio)  # (T, 1)
    assert got.shape == (samples // 320, 1)
    assert expected.shape == (1, samples // 320)
    assert len(np.unique(got)) > 10  # the random weights give varied codes: a real test
    np.testing.assert_array_equal(got[:, 0], expected[0].numpy())
