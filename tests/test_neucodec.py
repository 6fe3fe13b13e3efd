"""NeuCodec decoding: the layout it reports, batching without padding, loading, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.codec.info import NEUCODEC, CodecLoadError
from app.codec.loader import load_codec
from app.codec.neucodec import NeuCodec, NeuCodecDecoder
from app.config import Settings


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-error ratio in dB; infinite when the two are identical."""
    error = float(((reference - other) ** 2).sum())
    return float("inf") if error == 0 else float(10 * np.log10((reference**2).sum() / error))


def codes(batch: int, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65_536, (batch, steps, 1))


@pytest.fixture(scope="module")
def codec() -> NeuCodec:
    return NeuCodec.load("random", device="cpu")


def test_neucodec_reports_its_layout_and_decodes_480_samples_per_code(codec):
    assert codec.info.layout == NEUCODEC and codec.info.random_weights
    audio = codec.decode_frames(codes(2, 30))
    assert audio.shape == (2, 30 * 480) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and audio.std() > 0
    with pytest.raises(ValueError, match="one code"):
        codec.decode_frames(np.zeros((1, 4, 7), dtype=np.int64))


def test_neucodec_batch_of_equal_windows_equals_one_by_one(codec):
    batch = codes(3, 40, seed=1)
    together = codec.decode_frames(batch)
    for row in range(3):
        assert snr_db(codec.decode_frames(batch[row:row + 1])[0], together[row]) > 100


def test_neucodec_zero_padding_a_window_changes_its_audio(codec):
    """Why the worker never pads: attention and GroupNorm see the padding everywhere."""
    window = codes(1, 40, seed=2)
    padded = np.concatenate([window, np.zeros((1, 20, 1), dtype=np.int64)], axis=1)
    alone = codec.decode_frames(window)[0]
    inside = codec.decode_frames(padded)[0, :alone.size]
    assert snr_db(alone, inside) < 40


def test_neucodec_bfloat16_stays_close_to_float32(codec):
    half = NeuCodec.load("random", device="cpu", dtype="bfloat16")
    window = codes(1, 50, seed=4)
    audio = half.decode_frames(window)
    assert audio.dtype == np.float32 and half.info.dtype == "bfloat16"
    assert snr_db(codec.decode_frames(window), audio) > 20


def test_neucodec_loads_the_decoder_keys_of_a_checkpoint_directory(tmp_path, codec):
    state = NeuCodecDecoder.random(seed=0).state_dict()
    state["CodecEnc.conv.weight"] = torch.zeros(2)  # encoder keys are ignored
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = NeuCodec.load(str(tmp_path), device="cpu")
    assert not loaded.info.random_weights
    window = codes(1, 20, seed=5)
    np.testing.assert_array_equal(loaded.decode_frames(window), codec.decode_frames(window))


def test_neucodec_load_errors_name_what_is_missing(tmp_path):
    with pytest.raises(CodecLoadError, match="no NeuCodec checkpoint"):
        NeuCodec.load(str(tmp_path))
    torch.save({"fc_post_a.weight": torch.zeros(1024, 2048)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CodecLoadError, match="lacks NeuCodec decoder weights"):
        NeuCodec.load(str(tmp_path))


def test_load_codec_builds_the_codec_the_setting_names():
    codec = load_codec(Settings(CODEC="neucodec", NEUCODEC_MODEL="random", CODEC_DEVICE="cpu"))
    assert isinstance(codec, NeuCodec) and codec.info.source == "random"
    with pytest.raises(ValueError, match="auto"):
        load_codec(Settings(CODEC="auto"))
