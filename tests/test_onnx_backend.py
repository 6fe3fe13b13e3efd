"""CODEC_BACKEND=onnxruntime on random SNAC weights: export, check, cache, fall-back.

Each export of the real 24 kHz architecture takes about 10-20 s on a small CPU; this module
exports three times (first build, a corrupted cache file, a check set to fail).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from pydantic import ValidationError

from app.codec.loader import load_codec
from app.codec.onnx_backend import MIN_SNR_DB, OnnxSnacCodec, snr_db, with_onnxruntime
from app.codec.snac import SnacCodec
from app.codec.worker import CodecWorker
from app.config import Settings


@pytest.fixture(scope="module")
def torch_codec() -> SnacCodec:
    return SnacCodec.load("random", device="cpu")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("codec-cache")


@pytest.fixture(scope="module")
def onnx_codec(torch_codec, cache_dir) -> OnnxSnacCodec:
    codec = with_onnxruntime(torch_codec, cache_dir=cache_dir, threads=1)
    assert isinstance(codec, OnnxSnacCodec)
    return codec


@pytest.fixture
def quiet(torch_codec, onnx_codec):
    """Both codecs with their NoiseBlocks off for the test (they share the torch model)."""
    torch_codec.set_noise(False)
    onnx_codec.set_noise(False)
    yield
    torch_codec.set_noise(True)
    onnx_codec.set_noise(True)


def codes(batch: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (batch, steps, 7))  # (B, T, 7)


def test_with_onnxruntime_exports_a_checked_decoder_into_the_cache(onnx_codec, cache_dir):
    assert onnx_codec.backend == "onnxruntime" and not onnx_codec.cache_hit
    assert onnx_codec.export_s > 0 and onnx_codec.snr_db >= MIN_SNR_DB
    assert onnx_codec.graph_path.parent == cache_dir and onnx_codec.graph_path.is_file()
    assert onnx_codec.noise  # production default: NoiseBlocks on


@pytest.mark.parametrize("batch,steps", [(1, 1), (3, 5), (2, 17)])
def test_onnx_decode_matches_torch_with_noise_off(onnx_codec, torch_codec, quiet, batch, steps):
    frames = codes(batch, steps)
    reference = torch_codec.decode_frames(frames)
    audio = onnx_codec.decode_frames(frames)
    assert audio.shape == reference.shape == (batch, steps * 2048)
    assert audio.dtype == np.float32
    assert snr_db(reference, audio) >= MIN_SNR_DB


def test_onnx_noise_is_fresh_per_call_and_as_loud_as_torchs(onnx_codec, torch_codec):
    frames = codes(2, 8)
    onnx_codec.set_noise(False)
    torch_codec.set_noise(False)
    clean = torch_codec.decode_frames(frames)
    onnx_codec.set_noise(True)
    torch_codec.set_noise(True)
    first, second = onnx_codec.decode_frames(frames), onnx_codec.decode_frames(frames)
    assert not np.array_equal(first, second)
    onnx_rms = np.sqrt(np.mean((first - clean) ** 2))
    torch_rms = np.sqrt(np.mean((torch_codec.decode_frames(frames) - clean) ** 2))
    assert 0.5 < onnx_rms / torch_rms < 2.0


async def test_onnx_codec_runs_in_the_worker_batches(onnx_codec, quiet):
    windows = [codes(1, 4, seed)[0] for seed in range(3)]
    worker = CodecWorker(onnx_codec, dynamic_batching=True, max_batch_size=8, batch_wait_s=0.05)
    worker.start()
    try:
        results = await asyncio.gather(*[worker.decode(w) for w in windows])
    finally:
        worker.stop()
    assert worker.stats.max_batch == 3
    for window, audio in zip(windows, results):
        np.testing.assert_array_equal(audio, onnx_codec.decode_frames(window[None])[0])


def test_with_onnxruntime_reuses_the_cached_graph(onnx_codec, torch_codec, cache_dir):
    written = onnx_codec.graph_path.stat().st_mtime_ns
    again = with_onnxruntime(torch_codec, cache_dir=cache_dir, threads=1)
    assert isinstance(again, OnnxSnacCodec)
    assert again.cache_hit and again.export_s == 0 and again.snr_db >= MIN_SNR_DB
    assert again.graph_path == onnx_codec.graph_path
    assert again.graph_path.stat().st_mtime_ns == written
    assert [p.name for p in cache_dir.iterdir()] == [onnx_codec.graph_path.name]


def test_with_onnxruntime_exports_again_over_a_corrupted_cache_file(torch_codec, tmp_path,
                                                                    caplog):
    path = tmp_path / f"snac-decoder-{OnnxSnacCodec.cache_key(torch_codec)}.onnx"
    path.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING):
        codec = with_onnxruntime(torch_codec, cache_dir=tmp_path, threads=1)
    assert "does not load" in caplog.text
    assert isinstance(codec, OnnxSnacCodec) and not codec.cache_hit
    assert path.read_bytes() != b"not an onnx model"


def test_with_onnxruntime_falls_back_to_torch_when_the_check_fails(onnx_codec, torch_codec,
                                                                   cache_dir, caplog):
    # The threshold stands in for a mismatching graph: the cached one fails, then a fresh
    # export fails too, and that unchecked export does not replace the cached file.
    written = onnx_codec.graph_path.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        codec = with_onnxruntime(torch_codec, cache_dir=cache_dir, threads=1,
                                 min_snr_db=onnx_codec.snr_db + 1)
    assert codec is torch_codec and codec.backend == "torch"
    assert "exporting again" in caplog.text and "decoding with torch" in caplog.text
    assert onnx_codec.graph_path.stat().st_mtime_ns == written
    assert [p.name for p in cache_dir.iterdir()] == [onnx_codec.graph_path.name]


def test_with_onnxruntime_keeps_torch_unless_float32_on_cpu(tmp_path, caplog):
    codec = SnacCodec.load("random", device="cpu", dtype="bfloat16")
    with caplog.at_level(logging.WARNING):
        assert with_onnxruntime(codec, cache_dir=tmp_path) is codec
    assert "float32 on CPU only" in caplog.text
    assert not list(tmp_path.iterdir())


def test_load_codec_applies_codec_backend(onnx_codec, cache_dir):
    codec = load_codec(Settings(CODEC="snac", SNAC_MODEL="random", CODEC_DEVICE="cpu",
                                CODEC_BACKEND="onnxruntime", CODEC_CACHE_DIR=str(cache_dir),
                                CODEC_THREADS=1))
    assert isinstance(codec, OnnxSnacCodec) and codec.cache_hit
    plain = load_codec(Settings(CODEC="snac", SNAC_MODEL="random", CODEC_DEVICE="cpu",
                                CODEC_THREADS=1))
    assert type(plain) is SnacCodec and plain.backend == "torch"


def test_load_codec_keeps_torch_for_neucodec(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        codec = load_codec(Settings(CODEC="neucodec", NEUCODEC_MODEL="random",
                                    NEUCODEC_ENCODER=False, CODEC_DEVICE="cpu",
                                    CODEC_BACKEND="onnxruntime", CODEC_CACHE_DIR=str(tmp_path),
                                    CODEC_THREADS=1))
    assert codec.info.name == "neucodec"
    assert "SNAC-only" in caplog.text and not list(tmp_path.iterdir())


def test_settings_codec_backend_names_the_allowed_values():
    assert Settings(_env_file=None).codec_backend == "torch"
    with pytest.raises(ValidationError, match="CODEC_BACKEND") as error:
        Settings(CODEC_BACKEND="tensorrt")
    assert "onnxruntime" in str(error.value)


def test_health_names_the_backend_that_decodes(engine_url, onnx_codec):
    """The service built with the ONNX codec says so in /health (and a speech request is
    decoded by it)."""
    import httpx

    from app.server import create_app
    from tests.servers import serve

    app = create_app(Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10),
                     codec_factory=lambda s: onnx_codec)
    with serve(app) as url:
        health = httpx.get(url + "/health", timeout=10).json()
        assert health["codec"]["backend"] == "onnxruntime"
        speech = httpx.post(url + "/v1/audio/speech", json={"input": "Hello"}, timeout=30)
        assert speech.status_code == 200 and len(speech.content) > 0
