"""GPU-only codec paths (CUDA graphs per window bucket, torch.compile). Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def codec():
    from app.codec.snac import SnacCodec

    codec = SnacCodec.load("random", device="cuda")
    codec.set_noise(False)
    return codec


def test_cuda_graph_decode_matches_eager_for_exact_bucket_lengths(codec):
    frames = np.random.default_rng(0).integers(0, 4096, (3, 6, 7))
    eager = codec.decode_frames(frames)
    codec.prepare_accelerated(bucket_seconds=[6 * 2048 / 24000], max_batch=4,
                              compile_model=False)
    graphed = codec.decode_frames(frames)
    np.testing.assert_allclose(graphed, eager, atol=1e-4)


def test_cuda_graph_pads_shorter_windows_and_keeps_the_real_part(codec):
    frames = np.random.default_rng(1).integers(0, 4096, (2, 8, 7))
    eager = codec.decode_frames(frames[:, :5])
    codec.prepare_accelerated(bucket_seconds=[8 * 2048 / 24000], max_batch=4,
                              compile_model=False)
    graphed = codec.decode_frames(frames[:, :5])
    assert graphed.shape == eager.shape
    # Samples away from the padded right edge are unaffected by the padding.
    np.testing.assert_allclose(graphed[:, :3 * 2048], eager[:, :3 * 2048], atol=1e-4)
