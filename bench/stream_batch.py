"""`python -m bench.stream_batch`: would batching stream pushes across streams pay on this CPU?

`DECODE_MODE=stream` pushes each stream's new frames through its own layer state, one stream
per codec call. Streams in steady state hold state of equal shapes, so B of them could be
pushed as one batch of B (their states stacked). This measures what that would save before it
is built: SNAC (random weights, noise off, one torch thread) pushed k frames at a time through
B streams at once, for each push size k and batch B, CPU time per stream-frame and the
real-time streams one core would sustain at that cost (a SNAC frame is 85.3 ms of audio).

Rows run interleaved, round by round (row order rotating), so load from other work falls on
each alike. Each row first pushes warm-up frames so every layer's state is at its steady
shape, then times `--pushes` pushes. The batched rows are checked against batch 1: row b of a
batch gets the same audio as that stream pushed alone (SNR, float rounding only).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.codec.info import SNAC_24KHZ
from bench.common import format_table, load_average, machine_info, write_json

FRAME_S = SNAC_24KHZ.frame_s
WARM_FRAMES = 8  # past the decoder's look-ahead (2.75 frames): every state at its steady shape


@dataclass
class Row:
    push_frames: int
    batch: int
    net: Any = None
    codes: np.ndarray | None = None  # (B, frames, 7)
    pushed: int = 0
    cpu_s: float = 0.0
    timed_frames: int = 0  # stream-frames timed (frames x batch)
    audio: list[np.ndarray] = field(default_factory=list)  # (B, samples) per timed push


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    signal = float(np.sum(reference ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def run(push_sizes: list[int], batches: list[int], pushes: int, seed: int
        ) -> list[dict[str, Any]]:
    import torch

    from app.codec.snac import SnacCodec, _frames_to_code_tensors
    from app.codec.snac_stream import _Sequence

    codec = SnacCodec.load("random", device="cpu")
    codec.set_noise(False)
    model = codec._model
    rng = np.random.default_rng(seed)
    most = max(batches)
    rows: list[Row] = []
    for k in push_sizes:
        # Every batch size decodes the same streams (the first B of them), so rows compare.
        codes = rng.integers(0, SNAC_24KHZ.codebook_size,
                             (most, WARM_FRAMES + pushes * k, SNAC_24KHZ.codes_per_frame))
        rows += [Row(k, b, _Sequence(model.decoder.model), codes[:b]) for b in batches]

    def push(row: Row, frames: int) -> np.ndarray:
        assert row.codes is not None
        part = torch.from_numpy(row.codes[:, row.pushed:row.pushed + frames])
        z = model.quantizer.from_codes(_frames_to_code_tensors(part))
        row.pushed += frames
        return row.net.push(z)[:, 0].numpy()

    with torch.inference_mode():
        for row in rows:
            push(row, WARM_FRAMES)
        for round_ in range(pushes):
            shift = round_ % len(rows)
            for row in rows[shift:] + rows[:shift]:
                started = time.process_time()
                audio = push(row, row.push_frames)
                row.cpu_s += time.process_time() - started
                row.timed_frames += row.push_frames * row.batch
                row.audio.append(audio)

    alone = {r.push_frames: np.concatenate(r.audio, axis=1)[0] for r in rows if r.batch == 1}
    results = []
    for row in rows:
        per_frame = row.cpu_s / row.timed_frames
        audio = np.concatenate(row.audio, axis=1)
        single = next(r for r in rows if r.push_frames == row.push_frames and r.batch == 1)
        results.append({
            "push_frames": row.push_frames, "batch": row.batch,
            "cpu_ms_per_stream_frame": 1000 * per_frame,
            "realtime_streams_per_core": FRAME_S / per_frame,
            "vs_batch_1": (single.cpu_s / single.timed_frames) / per_frame,
            "snr_vs_alone_db": (_snr_db(alone[row.push_frames], audio[0])
                                if row.push_frames in alone else None),
        })
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_batch",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--push-frames", type=int, nargs="+", default=[1, 2, 4, 8, 17],
                        help="frames per push (17 = the 1.5 s chunk cap)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--pushes", type=int, default=12, help="timed pushes per row")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if 1 not in args.batches:
        args.batches = [1, *args.batches]  # the baseline every row is compared with
    import torch

    torch.set_num_threads(args.threads)
    info = machine_info()
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    started = time.perf_counter()
    rows = run(sorted(set(args.push_frames)), sorted(set(args.batches)), args.pushes, args.seed)
    print(format_table(
        ["push frames", "batch", "CPU ms / stream-frame", "rt streams / core", "vs batch 1",
         "SNR vs alone dB"],
        [[r["push_frames"], r["batch"], r["cpu_ms_per_stream_frame"],
          r["realtime_streams_per_core"], r["vs_batch_1"], r["snr_vs_alone_db"]]
         for r in rows]))
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s; load average now {load_average()}")
    if args.json:
        write_json(args.json, {"benchmark": "stream_batch", "machine": info,
                               "pushes": args.pushes, "rows": rows, "elapsed_s": elapsed,
                               "load_average_at_end": load_average()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
