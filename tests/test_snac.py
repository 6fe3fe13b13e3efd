from __future__ import annotations

import numpy as np
import pytest

from app.codec.snac import SnacCodec, fold_weight_norm


@pytest.fixture(scope="module")
def codec() -> SnacCodec:
    codec = SnacCodec.load("random")
    codec.set_noise(False)
    return codec


def test_random_weights_are_the_real_24khz_architecture(codec):
    assert codec.info.sample_rate == 24000 and codec.info.samples_per_frame == 2048
    assert codec.info.random_weights
    params = sum(p.numel() for p in codec._model.parameters())
    assert 19_000_000 < params < 21_000_000


def test_folding_weight_norm_is_bit_identical():
    import torch
    from snac import SNAC

    from app.codec.snac import SNAC_24KHZ_CONFIG, _frames_to_code_tensors

    torch.manual_seed(0)
    model = SNAC(**SNAC_24KHZ_CONFIG).eval()
    for m in model.modules():
        if type(m).__name__ == "NoiseBlock":
            m.forward = lambda x: x
    frames = torch.randint(0, 4096, (1, 5, 7))
    with torch.inference_mode():
        before = model.decode(_frames_to_code_tensors(frames))
        assert fold_weight_norm(model) > 50
        after = model.decode(_frames_to_code_tensors(frames))
    assert torch.equal(before, after)


def test_decode_length_and_range(codec):
    audio = codec.decode_frames(np.random.default_rng(0).integers(0, 4096, (2, 6, 7)))
    assert audio.shape == (2, 6 * 2048) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0


def test_batched_decode_equals_one_by_one(codec):
    frames = np.random.default_rng(1).integers(0, 4096, (4, 8, 7))
    batched = codec.decode_frames(frames)
    for row in range(4):
        single = codec.decode_frames(frames[row:row + 1])[0]
        np.testing.assert_allclose(batched[row], single, atol=1e-5)


def test_noise_is_on_by_default_and_can_be_switched_back():
    codec = SnacCodec.load("random")
    frames = np.zeros((1, 3, 7), dtype=np.int64)
    assert not np.array_equal(codec.decode_frames(frames), codec.decode_frames(frames))
    codec.set_noise(False)
    assert np.array_equal(codec.decode_frames(frames), codec.decode_frames(frames))
    codec.set_noise(True)
    assert not np.array_equal(codec.decode_frames(frames), codec.decode_frames(frames))


def test_encode_decode_round_trip_shapes(codec):
    """Random weights: the content is not speech, but lengths and rates must hold."""
    audio = np.sin(np.linspace(0, 440 * 2 * np.pi, 24000)).astype(np.float32) * 0.5
    frames = codec.encode(audio)
    assert frames.shape == (12, 7)  # ceil(24000 / 2048)
    assert frames.min() >= 0 and frames.max() < 4096
    assert codec.decode_frames(frames[None]).shape == (1, 12 * 2048)


def test_load_from_local_directory(tmp_path):
    import json

    import torch

    from app.codec.snac import SNAC_24KHZ_CONFIG

    source = SnacCodec.load("random", seed=3)
    (tmp_path / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG))
    # A hub checkpoint keeps weight-norm parametrizations; save one the same way.
    from snac import SNAC

    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = SNAC(**SNAC_24KHZ_CONFIG)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = SnacCodec.load(str(tmp_path))
    loaded.set_noise(False)
    source.set_noise(False)
    frames = np.random.default_rng(4).integers(0, 4096, (1, 3, 7))
    np.testing.assert_allclose(loaded.decode_frames(frames), source.decode_frames(frames),
                               atol=1e-6)


def test_load_failure_names_the_source():
    from app.codec.snac import CodecLoadError

    with pytest.raises(CodecLoadError, match="no-such-dir"):
        SnacCodec.load("/no-such-dir/snac")
