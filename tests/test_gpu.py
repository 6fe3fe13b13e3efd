"""GPU-only codec paths (CUDA graphs per window bucket, torch.compile). Skipped without CUDA."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture
def codec():
    """A fresh codec per test: captured graphs stay on the codec, and one test's buckets must
    not serve another's decodes."""
    from app.codec.snac import SnacCodec

    codec = SnacCodec.load("random", device="cuda")
    codec.set_noise(False)
    return codec


def prepare_graphs(codec, caplog, frames: int) -> None:
    """Capture one graph for a `frames`-long window (batch up to 4) and check it was captured."""
    with caplog.at_level(logging.INFO, logger="app.codec.snac"):
        codec.prepare_accelerated(bucket_seconds=[frames * 2048 / 24000], max_batch=4,
                                  compile_model=False)
    assert f"captured CUDA graphs for window buckets (frames): [{frames}]" in caplog.text


def test_cuda_graph_decode_matches_eager_for_exact_bucket_lengths(codec, caplog):
    frames = np.random.default_rng(0).integers(0, 4096, (3, 6, 7))
    eager = codec.decode_frames(frames)
    prepare_graphs(codec, caplog, 6)
    graphed = codec.decode_frames(frames)
    assert graphed.shape == eager.shape == (3, 6 * 2048)
    np.testing.assert_allclose(graphed, eager, atol=1e-4)


def test_cuda_graph_pads_shorter_windows_and_keeps_the_real_part(codec, caplog):
    frames = np.random.default_rng(1).integers(0, 4096, (2, 8, 7))
    eager = codec.decode_frames(frames[:, :5])
    prepare_graphs(codec, caplog, 8)  # the only graph: a 5-frame window is padded to 8
    graphed = codec.decode_frames(frames[:, :5])
    assert graphed.shape == eager.shape == (2, 5 * 2048)
    # Samples away from the padded right edge are unaffected by the padding.
    np.testing.assert_allclose(graphed[:, :3 * 2048], eager[:, :3 * 2048], atol=1e-4)
