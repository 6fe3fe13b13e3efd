"""``python -m stress_test``: run a bounded load test and print the SLO report.

Default: ``POST /v1/audio/speech`` per text. ``--ws``: one seed-004 WebSocket session per
text (pieces of ``--piece-chars`` every ``--piece-delay-s``; TTFA from the first complete
sentence sent). ``--sentences``: one conversation per text, one HTTP request per sentence,
``--pause-s`` apart. ``--requests`` counts texts: requests, sessions or conversations.

The report goes to stdout; progress and logs go to stderr. With ``--output results.json`` the
config, per-request records and summary are written there, and charts to ``results.png``.
Exit status is 1 when every request failed, 2 on bad arguments, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from stress_test.load import (
    RESPONSE_FORMATS,
    WS_PATH,
    LoadConfig,
    LoadMode,
    StreamMode,
    planned_requests,
    run_load,
)
from stress_test.report import RequestRecord, Summary, format_report, summarize
from stress_test.texts import BUILTIN_TEXTS, read_texts

logger = logging.getLogger("stress_test")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {number}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stress_test",
        description="Load-test POST /v1/audio/speech and print the SLO latency/RTF report.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:9091", help="API base URL")
    parser.add_argument(
        "--requests", type=positive_int, default=50, help="requests to send in total"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=50,
        help="requests in flight: fixed in a closed loop, a cap in an open loop",
    )
    parser.add_argument(
        "--rate",
        type=non_negative_float,
        default=0.0,
        help="open loop: Poisson arrivals at this many requests/s (0: closed loop)",
    )
    parser.add_argument("--format", choices=RESPONSE_FORMATS, default="pcm",
                        dest="response_format")
    parser.add_argument("--stream-format", choices=("audio", "sse"), default="audio",
                        help="sse: OpenAI's speech.audio.delta events (TTFA at the first one)")
    streaming = parser.add_mutually_exclusive_group()
    streaming.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask for a streamed response (default) or a whole one",
    )
    streaming.add_argument(
        "--mix-stream", action="store_true", help="alternate streamed and whole responses"
    )
    parser.add_argument("--voice", default="husein")
    parser.add_argument("--model", default="TTS-model")
    parser.add_argument(
        "--texts-file",
        type=Path,
        help="UTF-8 file, one text per line (default: built-in multilingual sentences)",
    )
    parser.add_argument("--max-tokens", type=positive_int, help="omitted when not given")
    parser.add_argument("--temperature", type=non_negative_float, help="omitted when not given")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="seconds allowed for one request, from send to its last byte",
    )
    parser.add_argument(
        "--output", type=Path, help="write JSON results here and a PNG with the same stem"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for open-loop arrivals")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--ws",
        action="store_true",
        help="one seed-004 WebSocket session per text (TTFA from the first complete sentence)",
    )
    modes.add_argument(
        "--sentences",
        action="store_true",
        help="one conversation per text: one HTTP request per sentence, --pause-s apart",
    )
    parser.add_argument("--ws-path", default=WS_PATH, help="--ws: the WebSocket path")
    parser.add_argument(
        "--piece-chars", type=positive_int, default=20,
        help="--ws: characters per text message (split anywhere, as LLM tokens are)",
    )  # fmt: skip
    parser.add_argument(
        "--piece-delay-s", type=non_negative_float, default=0.05,
        help="--ws: seconds between text messages",
    )  # fmt: skip
    parser.add_argument(
        "--pause-s", type=non_negative_float, default=0.3,
        help="--sentences: seconds from one response's end to the next sentence's request",
    )  # fmt: skip
    return parser


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    stream_mode: StreamMode = "mix" if args.mix_stream else "on" if args.stream else "off"
    mode: LoadMode = "ws" if args.ws else "sentences" if args.sentences else "http"
    return LoadConfig(
        url=args.url,
        requests=args.requests,
        concurrency=args.concurrency,
        rate=args.rate or None,
        response_format=args.response_format,
        stream_format=args.stream_format,
        stream_mode=stream_mode,
        voice=args.voice,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout_s=args.timeout,
        seed=args.seed,
        mode=mode,
        piece_chars=args.piece_chars,
        piece_delay_s=args.piece_delay_s,
        pause_s=args.pause_s,
        ws_path=args.ws_path,
    )


def run_with_progress(config: LoadConfig, texts: Sequence[str]) -> list[RequestRecord]:
    with (
        tqdm(total=planned_requests(config, texts), unit="req", file=sys.stderr, mininterval=0.5) as bar,
        logging_redirect_tqdm(),
    ):
        failed = 0

        def on_complete(record: RequestRecord) -> None:
            nonlocal failed
            failed += not record.ok
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()

        return asyncio.run(run_load(config, texts, on_complete=on_complete))


def write_results(
    path: Path,
    config: LoadConfig,
    texts_file: Path | None,
    records: Sequence[RequestRecord],
    summary: Summary,
) -> None:
    document = {
        "config": {**asdict(config), "texts_file": None if texts_file is None else str(texts_file)},
        "summary": summary.to_dict(),
        "requests": [record.to_dict() for record in records],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %s", path)
    try:
        from stress_test.plot import write_plot
    except ImportError:
        # The report and JSON are the product; charts are a convenience.
        logger.warning("matplotlib is not installed; no chart written")
        return
    png = path.with_suffix(".png")
    write_plot(records, png)
    logger.info("wrote %s", png)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # httpx logs every request at INFO; the progress bar already says that.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        texts = read_texts(args.texts_file) if args.texts_file else list(BUILTIN_TEXTS)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    loop = f"open loop at {config.rate}/s" if config.rate else "closed loop"
    unit = {"http": "requests", "ws": "WebSocket sessions", "sentences": "conversations"}
    logger.info(
        "running %d %s against %s, %s, concurrency %d",
        config.requests,
        unit[config.mode],
        config.url,
        loop,
        config.concurrency,
    )

    records = run_with_progress(config, texts)
    summary = summarize(records)
    print(format_report(summary), flush=True)
    if args.output is not None:
        write_results(args.output, config, args.texts_file, records, summary)
    return 0 if any(record.ok for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
