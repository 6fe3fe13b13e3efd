"""The run clock every record's times are on."""

from __future__ import annotations

import time


class Clock:
    """Seconds since the run started (``time.perf_counter``, so monotonic)."""

    def __init__(self) -> None:
        self._origin = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self._origin
