"""DECODE_MODE=stream: SNAC decoded frame by frame with layer state equals one offline decode,
however the frames are split; and the service streams it end to end."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from app.codec.snac import SnacCodec
from app.codec.snac_stream import lookahead_samples
from app.config import Settings
from app.server import create_app
from app.synthesis import streamed_decode
from tests.fake_engine import frame_tokens
from tests.fakes import RecordingCodec
from tests.servers import serve

SPF = 2048


@pytest.fixture(scope="module")
def codec() -> SnacCodec:
    codec = SnacCodec.load("random")
    codec.set_noise(False)
    return codec


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = np.sum((estimate.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / error))


def stream_decode(codec: SnacCodec, frames: np.ndarray, sizes) -> tuple[np.ndarray, list]:
    decoder, parts, start = codec.stream_decoder(), [], 0
    for size in sizes:
        parts.append(decoder.push(frames[start:start + size]))
        start += size
    assert start == frames.shape[0]
    parts.append(decoder.flush())
    return np.concatenate(parts), parts


@pytest.mark.parametrize("sizes", [[1] * 24, [5, 3, 6, 10], [24], [2, 0, 7, 15], [9, 1, 14]])
def test_streamed_decode_equals_the_offline_decode_for_any_split(codec, sizes):
    frames = np.random.default_rng(1).integers(0, 4096, (24, 7))
    offline = codec.decode_frames(frames[None])[0]
    audio, _ = stream_decode(codec, frames, sizes)
    assert audio.shape == offline.shape
    assert snr_db(offline, audio) > 100.0  # float rounding only


def test_audio_lags_the_frames_by_the_decoders_lookahead_and_no_more(codec):
    lag = lookahead_samples(codec._model)
    assert 2 * SPF < lag < 3 * SPF  # ~2.75 frames of 2048 samples for SNAC 24 kHz
    frames = np.random.default_rng(2).integers(0, 4096, (12, 7))
    decoder, out = codec.stream_decoder(), 0
    for pushed in range(1, 13):
        out += decoder.push(frames[pushed - 1:pushed]).shape[0]
        assert out >= pushed * SPF - lag  # everything the look-ahead allows is out
    assert out + decoder.flush().shape[0] == 12 * SPF


def test_each_frame_is_decoded_once(codec):
    """No re-decoded context: the decoder sees every frame exactly once."""
    frames = np.random.default_rng(4).integers(0, 4096, (20, 7))
    decoder = codec.stream_decoder()
    for start in range(0, 20, 4):
        decoder.push(frames[start:start + 4])
    decoder.flush()
    assert decoder.frames_in == 20 and decoder.samples_out == 20 * SPF


def test_decode_mode_auto_streams_snac_on_cpu_and_windows_a_codec_without_state(codec):
    assert streamed_decode("auto", codec)
    assert not streamed_decode("windows", codec)
    assert streamed_decode("stream", codec)
    fake = RecordingCodec()  # no stream decoder, like NeuCodec
    assert not streamed_decode("auto", fake) and not streamed_decode("stream", fake)


@pytest.mark.parametrize("mode", ["stream", "windows"])
def test_the_service_streams_the_offline_decode(engine_url, script, codec, mode):
    """Through the proxy (scripted engine, 40 frames): DECODE_MODE=stream returns the
    offline decode of the engine's frames; windows match it only approximately."""
    script.frames, script.delay_s = 40, 0.002
    from tests.fake_engine import BASE, CODES, WIDTH

    ids = frame_tokens(40)
    frames = np.array([[t - BASE - p * CODES for p, t in enumerate(ids[i:i + WIDTH])]
                       for i in range(0, len(ids), WIDTH)])
    offline = codec.decode_frames(frames[None])[0]
    app = create_app(Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10,
                              DECODE_MODE=mode), codec_factory=lambda s: codec)
    try:
        with serve(app) as url:
            response = httpx.post(url + "/v1/audio/speech", timeout=60,
                                  json={"input": "x" * 60, "response_format": "pcm"})
            assert response.status_code == 200
            assert app.state.tts.speech.streamed_decode == (mode == "stream")
    finally:
        script.frames, script.delay_s = 12, 0.0
    audio = np.frombuffer(response.content, np.int16).astype(np.float32) / 32767
    assert audio.shape == offline.shape
    # int16 output (and the 10 ms fade-in) bound what any mode can reach; skip the fade.
    start = 240
    quality = snr_db(np.clip(offline[start:], -1, 1), audio[start:])
    if mode == "stream":
        assert quality > 60.0
    else:
        assert 30.0 < quality
