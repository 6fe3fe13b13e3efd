"""`python -m demo_model --out DIR`: build the demo model under DIR (or reuse it) and print its path."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from demo_model.build import ensure_demo_model
from demo_model.neucodec import ensure_neucodec_demo_model

BUILDERS = {"snac": ensure_demo_model, "neucodec": ensure_neucodec_demo_model}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_model",
        description="Build the tiny demo speech LM (it makes noise, not speech) for vLLM to serve.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="cache directory; the model goes in a versioned subdirectory, reused if present",
    )
    parser.add_argument(
        "--codec",
        choices=sorted(BUILDERS),
        default="snac",
        help="codec whose tokens the model writes: snac (Orpheus-style frames) or neucodec "
        "(Scicom's <|s_N|> tokens; stops by itself)",
    )
    args = parser.parse_args(argv)
    # Logs go to stderr so that stdout carries only the path, for `MODEL=$(python -m demo_model ...)`.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(BUILDERS[args.codec](args.out).resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
