"""Our NeuCodec decoder against the `neucodec` package's own, on the same weights.

The package cannot be installed into the app's environment (see requirements-neucodec-
reference.txt), so it is installed apart, without dependencies, under .cache/neucodec-reference.
Only its decoder module is imported: the package's __init__ (the full codec, torchaudio,
w2v-bert) is bypassed, and torchtune, whose package __init__ needs torchao and more, is
replaced by its one RoPE file, loaded as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from app.codec.neucodec import NeuCodecDecoder

REFERENCE = Path(__file__).resolve().parent.parent / ".cache" / "neucodec-reference"
INSTALL = ("pip install --no-deps --target .cache/neucodec-reference "
           "-r requirements-neucodec-reference.txt")
REQUIRED_SNR_DB = 100.0


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-error ratio in dB; infinite when the two are identical."""
    error = float(((reference - other) ** 2).sum())
    return float("inf") if error == 0 else float(10 * np.log10((reference**2).sum() / error))


@pytest.fixture(scope="module")
def reference_decoder_class():
    """neucodec.codec_decoder_vocos.CodecDecoderVocos, imported without the rest of neucodec."""
    if not (REFERENCE / "neucodec" / "codec_decoder_vocos.py").is_file():
        pytest.skip(f"the reference neucodec package is not installed; run `{INSTALL}`")
    before = set(sys.modules)
    sys.path.insert(0, str(REFERENCE))
    package = types.ModuleType("neucodec")
    package.__path__ = [str(REFERENCE / "neucodec")]
    spec = importlib.util.spec_from_file_location(
        "torchtune.modules.position_embeddings",
        REFERENCE / "torchtune" / "modules" / "position_embeddings.py")
    assert spec is not None and spec.loader is not None
    rope = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rope)
    torchtune, modules = types.ModuleType("torchtune"), types.ModuleType("torchtune.modules")
    modules.RotaryPositionalEmbeddings = rope.RotaryPositionalEmbeddings  # type: ignore[attr-defined]
    torchtune.modules = modules  # type: ignore[attr-defined]
    sys.modules.update({"neucodec": package, "torchtune": torchtune,
                        "torchtune.modules": modules})
    try:
        from neucodec.codec_decoder_vocos import CodecDecoderVocos

        yield CodecDecoderVocos
    finally:
        sys.path.remove(str(REFERENCE))
        # Only the stand-ins and the package go: libraries they pulled in stay imported (torch
        # warns when one that registers operators is imported twice).
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("neucodec", "torchtune"):
                del sys.modules[name]


@pytest.fixture(scope="module")
def ours() -> NeuCodecDecoder:
    return NeuCodecDecoder.random(seed=3).eval()


def test_our_decoder_equals_the_packages_on_the_same_weights(reference_decoder_class, ours):
    generator = reference_decoder_class(hop_length=480)
    fc_post_a = torch.nn.Linear(2048, 1024)
    state = ours.state_dict()
    loaded = generator.load_state_dict(
        {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")},
        strict=False)
    # The package's quantizer also holds the encoder side's projection, which decoding never uses.
    assert loaded.unexpected_keys == []
    assert sorted(loaded.missing_keys) == ["quantizer.project_in.bias",
                                           "quantizer.project_in.weight"]
    fc_post_a.load_state_dict({k.removeprefix("fc_post_a."): v for k, v in state.items()
                               if k.startswith("fc_post_a.")})
    generator.eval()
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, 65_536, (2, 1, 75)))
    with torch.inference_mode():
        # NeuCodec.decode_code, step by step: FSQ lookup, fc_post_a, backbone + ISTFT head.
        embedding = generator.quantizer.get_output_from_indices(codes.transpose(1, 2))
        expected = generator(fc_post_a(embedding), vq=False)[0][:, 0].numpy()  # (B, T * 480)
        got = ours(codes[:, 0]).numpy()
    assert got.shape == expected.shape == (2, 75 * 480)
    assert snr_db(expected, got) >= REQUIRED_SNR_DB
