"""How long does cloning a voice cost: decode + resample, and the SNAC encode, per second of
reference audio? The encode runs on the codec thread, so it also delays streaming decodes:
the service encodes in slices (app/cloning.py), and the longest slice is that delay.

    python -m bench.reference_encode --snac random --seconds 1 3 10 30 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import numpy as np
import soundfile as sf

from app.cloning import encode_slices
from app.codec.snac import SnacCodec
from app.reference_audio import ReferenceLimits, decode_reference

LIMITS = ReferenceLimits(min_s=0.1, max_s=300.0, silence_dbfs=-120.0)


def clip(seconds: float, rate: int = 44100) -> bytes:
    """A stereo 44.1 kHz FLAC of pink-ish noise: a realistic upload to decode and resample."""
    rng = np.random.default_rng(0)
    audio = np.cumsum(rng.standard_normal((int(seconds * rate), 2)), axis=0)
    audio = (audio - audio.mean(axis=0)) / (np.abs(audio).max() * 4)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), rate, format="FLAC")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snac", default="random", help="SNAC_MODEL: HF id, dir or random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1, 3, 10, 30])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    codec = SnacCodec.load(args.snac, device=args.device)
    codec.encode(np.zeros(24000, dtype=np.float32))  # allocator warm-up
    results = []
    for seconds in args.seconds:
        data = clip(seconds)
        decode_s, encode_s, sliced_s, longest_s = [], [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            audio = decode_reference(io.BytesIO(data), sample_rate=24000, limits=LIMITS,
                                     param="bench")
            decoded = time.perf_counter()
            frames = codec.encode(audio)
            decode_s.append(decoded - started)
            encode_s.append(time.perf_counter() - decoded)
            jobs = []
            for lo, _, _, hi in encode_slices(frames.shape[0]):
                job_started = time.perf_counter()
                codec.encode(audio[lo * codec.info.samples_per_frame:hi * codec.info.samples_per_frame])
                jobs.append(time.perf_counter() - job_started)
            sliced_s.append(sum(jobs))
            longest_s.append(max(jobs))
        row = {"seconds": seconds, "frames": int(frames.shape[0]),
               "decode_ms_per_s": 1000 * statistics.median(decode_s) / seconds,
               "encode_ms_per_s": 1000 * statistics.median(encode_s) / seconds,
               "sliced_encode_ms_per_s": 1000 * statistics.median(sliced_s) / seconds,
               "longest_slice_s": statistics.median(longest_s)}
        results.append(row)
        print(f"{seconds:5.1f} s clip: decode+resample {row['decode_ms_per_s']:6.1f} ms/s, "
              f"SNAC encode {row['encode_ms_per_s']:6.1f} ms/s whole, "
              f"{row['sliced_encode_ms_per_s']:6.1f} ms/s sliced "
              f"(longest codec job {row['longest_slice_s']:.2f} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"snac": args.snac, "device": args.device, "results": results}, out,
                      indent=2)


if __name__ == "__main__":
    main()
