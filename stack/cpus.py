"""Which CPUs the engine and the API may run on (ENGINE_CPUS, API_CPUS).

On a CPU-only box both compete for the same cores, and they do not share well: vLLM's CPU
worker binds its OpenMP threads to every core it may use and its processes busy-wait between
steps, so the API's event loop and codec thread wait in the run queue. Measured on a 2-core
box, one sentence through the SNAC demo stack: first audio 650-800 ms unpinned, 230-290 ms
with the engine on core 0 and the API on core 1 (`bench.engine_burst` style timing from
X-Timing). `auto` therefore splits the cores on a CPU engine: the API gets the last quarter
(at least one), the engine the rest (vLLM picks its OpenMP cores from what it may use).
"""

from __future__ import annotations

import os

AUTO = "auto"
ALL = ("", "all", "none")


def parse_cpus(spec: str) -> frozenset[int]:
    """'0-3,6' -> {0, 1, 2, 3, 6}."""
    cpus: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r} in {spec!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError(f"no CPUs in {spec!r}")
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def split_cpus(engine_spec: str, api_spec: str, *, device: str,
               available: frozenset[int] | None = None
               ) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(engine CPUs, API CPUs); None = not pinned. `auto` pins only a CPU engine on a box
    of two or more cores; an explicit list is taken as given (within what is available)."""
    allowed = available if available is not None else frozenset(os.sched_getaffinity(0))
    ordered = sorted(allowed)
    api_share = max(1, len(ordered) // 4)
    auto = device == "cpu" and len(ordered) >= 2

    def resolve(spec: str, default: list[int]) -> frozenset[int] | None:
        spec = spec.strip().lower()
        if spec in ALL:
            return None
        if spec == AUTO:
            return frozenset(default) if auto else None
        cpus = parse_cpus(spec) & allowed
        if not cpus:
            raise ValueError(f"none of the CPUs {spec!r} is available (have {ordered})")
        return cpus

    return (resolve(engine_spec, ordered[:-api_share]), resolve(api_spec, ordered[-api_share:]))


def pin(cpus: frozenset[int] | None) -> None:
    """Restrict the calling process (a child, before exec) to `cpus`."""
    if cpus:
        os.sched_setaffinity(0, cpus)
