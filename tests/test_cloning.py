"""ReferenceEncoder with the real SNAC architecture (random weights) on a real codec worker."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from app.cloning import ENCODE_SLICE_FRAMES, ReferenceEncoder, encode_slices
from app.codec.snac import SnacCodec
from app.codec.worker import CodecWorker
from app.errors import InvalidRequest, Unsupported
from app.reference_audio import ReferenceLimits
from app.uploads import UploadedFile
from tests.audio_clips import chirp, soundfile_bytes
from tests.fakes import RecordingCodec

LIMITS = ReferenceLimits(min_s=1.0, max_s=30.0, silence_dbfs=-60.0)


@pytest.fixture(scope="module")
def worker():
    codec = SnacCodec.load("random")
    codec.set_noise(False)
    worker = CodecWorker(codec, dynamic_batching=False, max_batch_size=1, batch_wait_s=0.0)
    worker.start()
    yield worker
    worker.stop()


def upload(data: bytes, name: str = "ref.flac") -> UploadedFile:
    return UploadedFile("reference_audio", name, "audio/flac", io.BytesIO(data), len(data))


def encoder(worker: CodecWorker) -> ReferenceEncoder:
    return ReferenceEncoder(worker, LIMITS, max_concurrent=2,
                            max_text_chars=100)


async def test_snac_round_trip_keeps_length_and_rate(worker):
    """Random weights: the decoded content is not speech (nor the input), but a 2.5 s clip
    at 44.1 kHz stereo must come back as ceil(2.5 s * 24000 / 2048) frames and decode to
    exactly that many 2048-sample frames at 24 kHz."""
    data = soundfile_bytes(chirp(2.5, 44100, channels=2), 44100, "FLAC")
    frames = await encoder(worker).encode(upload(data), param="reference_audio")
    steps = math.ceil(2.5 * 24000 / 2048)
    assert frames.shape == (steps, 7) and frames.dtype == np.int64
    assert frames.min() >= 0 and frames.max() < 4096
    audio = await worker.decode(frames)
    assert audio.shape == (steps * 2048,) and audio.dtype == np.float32
    assert worker.codec.info.sample_rate == 24000


@pytest.mark.parametrize("signal", ["chirp", "noise"])
async def test_sliced_encode_equals_a_whole_clip_encode(worker, signal):
    """Slices with context give the frames one encode of the whole clip gives."""
    seconds = 5.3  # 63 frames: two full slices and a partial one, ragged last frame
    if signal == "chirp":
        audio = chirp(seconds, 24000)[:, 0]
    else:
        audio = np.random.default_rng(7).uniform(-0.5, 0.5, int(seconds * 24000))
    audio = audio.astype(np.float32)
    data = soundfile_bytes(audio[:, None], 24000, "WAV", "FLOAT")
    sliced = await encoder(worker).encode(upload(data), param="reference_audio")
    whole = await worker.run(lambda: worker.codec.encode(audio))
    assert sliced.shape == whole.shape == (63, 7)
    np.testing.assert_array_equal(sliced, whole)


@pytest.mark.parametrize("total", [1, ENCODE_SLICE_FRAMES, ENCODE_SLICE_FRAMES + 1, 352])
def test_encode_slices_cover_every_frame_once(total):
    kept = [f for _, start, end, _ in encode_slices(total) for f in range(start, end)]
    assert kept == list(range(total))
    assert all(0 <= lo <= start < end <= hi <= total for lo, start, end, hi in
               encode_slices(total))


async def test_encode_is_deterministic(worker):
    data = soundfile_bytes(chirp(1.5, 16000), 16000, "WAV")
    first = await encoder(worker).encode(upload(data), param="p")
    second = await encoder(worker).encode(upload(data), param="p")
    np.testing.assert_array_equal(first, second)


async def test_bad_audio_never_reaches_the_codec(worker):
    with pytest.raises(InvalidRequest) as info:
        await encoder(worker).encode(upload(b"not audio"), param="audio_sample")
    assert info.value.param == "audio_sample"


def idle_worker() -> CodecWorker:
    """A worker (never started) around a codec that cannot encode."""
    return CodecWorker(RecordingCodec(), dynamic_batching=False, max_batch_size=1,
                       batch_wait_s=0.0)


async def test_a_codec_without_encode_is_unsupported():
    with pytest.raises(Unsupported):
        await encoder(idle_worker()).encode(upload(b""), param="reference_audio")


@pytest.mark.parametrize("text,normalize,expected", [
    ("  Hello\x00 world.  ", False, "Hello  world."),
    ("**Hello**   <b>world</b>", True, "Hello world"),
])
def test_reference_text_is_cleaned_like_input(text, normalize, expected):
    assert encoder(idle_worker()).reference_text(text, normalize=normalize, param="t") == expected


@pytest.mark.parametrize("text,message", [("x" * 101, "limit is 100"), (" <i></i> ", "no text")])
def test_reference_text_rejections(text, message):
    with pytest.raises(InvalidRequest, match=message) as info:
        encoder(idle_worker()).reference_text(text, normalize=True, param="reference_text")
    assert info.value.param == "reference_text"
