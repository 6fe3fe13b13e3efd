"""First audio for a 2,000-character article vs one sentence (issue 8's claim).

`python -m bench.long_text [--url URL] [--repeats N] [--json FILE]`

Four cases, N repeats each, interleaved so drift on a shared machine hits them alike, one at
a time (no concurrency):

- http sentence / http article: `POST /v1/audio/speech` (streamed PCM); first audio is the
  first PCM byte, from the moment the request was sent.
- ws sentence / ws article: seed 004's `/ws/synthesize`, the text sent in 20-character pieces
  every 50 ms like an LLM's tokens; first audio from the moment the first complete sentence
  was sent (stress_test's `--ws` measure).

Each row gives the median and p90 of first audio, and the audio seconds, wall time and RTF
(wall / audio) medians. The requests are stress_test's own (`run_load`), so the numbers mean
what the stress test's report means. Without `--url` the real stack is started here: vLLM on
the generated demo model (random weights: timing, not speech) and the proxy with a random
SNAC decoder, on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, fmt, format_table, free_port, load_average, machine_info, write_json
from stress_test.load import LoadConfig, LoadMode, run_load
from stress_test.report import RequestRecord

CACHE = ROOT / ".cache"
PIECE_CHARS = 20
PIECE_DELAY_S = 0.05

ARTICLE = (
    "The city council approved a new plan on Monday. It adds twelve "
    "kilometres of cycle lanes along Jalan Ampang and Jalan Tun Razak. Work starts next month "
    "and should take about a year. Officials said the lanes would be separated from traffic "
    "by low kerbs. Residents asked about parking; the council promised a survey first. "
    "Shop owners were divided. Some welcomed more customers on bicycles, others feared "
    "losing deliveries. The mayor said the plan was a first step, not the last. A second "
    "phase could reach the suburbs by 2028. Cyclists' groups praised the decision but asked "
    "for better lighting at night. The council will publish maps online this week, and "
    "public meetings are planned in every district. Questions can be sent by e-mail until "
    "the end of the month. Dr. Aminah, who chairs the transport committee, said safety came "
    "first. Nothing will be built, she said, until the designs were checked twice. The "
    "first public meeting is on Saturday at ten in the morning, at the community hall. "
    "Families are welcome, and there will be a children's corner with drawings of the new "
    "lanes. Bus operators have been asked to review their routes where the lanes cross busy "
    "junctions. Traffic police will run a trial on two streets before the main works begin. "
    "If the trial goes well, the first section could open before the school holidays. "
    "Critics say the money would be better spent on trains, which carry far more people. "
    "Supporters answer that short trips by bicycle take cars off the road for the rest. "
    "Both sides agree that the footpaths need repair, and the council has set aside funds "
    "for that too. A report on the first year will be presented to the council next spring. "
    "Until then, residents can follow the works on the council's website, where a weekly "
    "update will show which streets are closed and for how long. Anyone who finds a problem, "
    "from a broken kerb to a missing sign, is asked to report it with a photo and a location. "
    "The council says every report will be answered within three working days."
)
SENTENCE = "The city council approved a new plan on Monday."  # the article's first
CASES: tuple[tuple[str, LoadMode, str], ...] = (
    ("http sentence", "http", SENTENCE),
    ("http article", "http", ARTICLE),
    ("ws sentence", "ws", SENTENCE),
    ("ws article", "ws", ARTICLE),
)


def measure(url: str, mode: LoadMode, text: str, timeout_s: float) -> RequestRecord:
    config = LoadConfig(url=url, requests=1, concurrency=1, mode=mode, timeout_s=timeout_s,
                        piece_chars=PIECE_CHARS, piece_delay_s=PIECE_DELAY_S)
    [record] = asyncio.run(run_load(config, [text]))
    return record


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize_case(name: str, text: str, records: list[RequestRecord]) -> dict[str, Any]:
    ok = [record for record in records if record.ok]
    ttfas = [ttfa for record in ok if (ttfa := record.ttfa_s) is not None]
    return {
        "case": name,
        "chars": len(text),
        "runs": len(records),
        "failed": len(records) - len(ok),
        "errors": sorted({str(record.error) for record in records if not record.ok}),
        "first_audio_median_s": median(ttfas),
        "first_audio_p90_s": percentile(ttfas, 90),
        "audio_s_median": median([record.audio_s for record in ok]),
        "wall_s_median": median([record.latency_s for record in ok]),
        "rtf_median": median([rtf for record in ok if (rtf := record.rtf) is not None]),
        "first_audio_s": ttfas,
    }


def run(url: str, repeats: int, timeout_s: float) -> list[dict[str, Any]]:
    records: dict[str, list[RequestRecord]] = {name: [] for name, _, _ in CASES}
    measure(url, "http", SENTENCE, timeout_s)  # warm-up: engine, codec, connections
    for repeat in range(repeats):
        for name, mode, text in CASES:
            record = measure(url, mode, text, timeout_s)
            records[name].append(record)
            print(f"[{repeat + 1}/{repeats}] {name}: first audio "
                  f"{record.ttfa_s if record.ttfa_s is None else round(record.ttfa_s, 3)} s, "
                  f"{record.audio_s:.1f} s audio in {record.latency_s:.1f} s"
                  f"{'' if record.ok else ' ' + str(record.error)}", file=sys.stderr)
    return [summarize_case(name, text, records[name]) for name, _, text in CASES]


@contextlib.contextmanager
def real_stack() -> Iterator[str]:
    """vLLM on the SNAC demo model and the proxy in a thread; yields the proxy's URL."""
    import uvicorn

    from app.config import Settings
    from app.server import create_app
    from demo_model import ensure_demo_model
    from stack.engine import EngineConfig, EngineProcess

    model_dir = ensure_demo_model(CACHE / "models")
    python = Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    engine = EngineProcess(EngineConfig(model=str(model_dir), python=python, cache_dir=CACHE,
                                        port=free_port()),
                           log_path=CACHE / "bench-long-text-engine.log")
    engine.start()
    try:
        took = engine.wait_healthy(timeout_s=600)
        print(f"vLLM healthy after {took:.1f} s", file=sys.stderr)
        settings = Settings(TTS_API=engine.config.url, SNAC_MODEL="random",
                            ENGINE_STARTUP_TIMEOUT_S=60)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                               port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("the proxy did not start")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(15)
    finally:
        engine.stop()


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["case", "chars", "runs", "failed", "first audio p50 s", "first audio p90 s",
               "audio s", "wall s", "RTF"]
    return format_table(headers, [[
        row["case"], row["chars"], row["runs"], row["failed"],
        fmt(row["first_audio_median_s"], 3), fmt(row["first_audio_p90_s"], 3),
        row["audio_s_median"], row["wall_s_median"],
        row["rtf_median"],
    ] for row in rows])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.long_text",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running proxy (default: start vLLM and the proxy)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    parser.add_argument("--json", help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(real_stack())
        rows = run(url, args.repeats, args.timeout)
    print(table(rows))
    by_case = {row["case"]: row for row in rows}
    for transport in ("http", "ws"):
        article = by_case[f"{transport} article"]["first_audio_median_s"]
        sentence = by_case[f"{transport} sentence"]["first_audio_median_s"]
        if article is not None and sentence:
            print(f"{transport}: article first audio / sentence first audio = "
                  f"{article / sentence:.2f}")
    if args.json:
        write_json(args.json, {
            "machine": info,
            "load_average_at_end": load_average(),
            "url": args.url or "started here: vLLM on the SNAC demo model, random SNAC",
            "piece_chars": PIECE_CHARS,
            "piece_delay_s": PIECE_DELAY_S,
            "repeats": args.repeats,
            "elapsed_s": time.monotonic() - started,
            "cases": rows,
        })
    return 0 if all(row["failed"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
