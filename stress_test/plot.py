"""PNG charts of a run: latency and TTFA CDFs, and an RTF histogram.

Draws on an Agg canvas directly rather than through ``pyplot``, so importing this module
selects no global backend and needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stress_test.report import RequestRecord

RTF_BINS = 30


def write_plot(records: Sequence[RequestRecord], path: Path) -> None:
    """Write the charts for the successful requests in ``records`` to ``path`` (PNG)."""
    ok = [record for record in records if record.ok]
    latencies = [record.latency_s for record in ok]
    ttfas = [ttfa for record in ok if (ttfa := record.ttfa_s) is not None]
    rtfs = [rtf for record in ok if (rtf := record.rtf) is not None]

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    cdf_axes, rtf_axes = figure.subplots(1, 2)
    figure.suptitle(f"{len(ok)} of {len(records)} requests succeeded")

    for values, label in ((latencies, "latency"), (ttfas, "time to first audio")):
        if values:
            ordered = np.sort(values)
            fraction = np.arange(1, len(ordered) + 1) / len(ordered)
            cdf_axes.step(ordered, fraction, where="post", label=label)
    cdf_axes.set_title("Latency CDF")
    cdf_axes.set_xlabel("seconds")
    cdf_axes.set_ylabel("fraction of requests")
    cdf_axes.set_ylim(0, 1.02)
    cdf_axes.grid(alpha=0.3)
    if latencies:
        cdf_axes.legend(loc="lower right")

    if rtfs:
        rtf_axes.hist(rtfs, bins=RTF_BINS)
    rtf_axes.axvline(1.0, color="red", linestyle="--", label="real time (RTF 1)")
    rtf_axes.set_title("Real-time factor (wall time / audio duration)")
    rtf_axes.set_xlabel("RTF")
    rtf_axes.set_ylabel("requests")
    rtf_axes.legend(loc="upper right")
    rtf_axes.grid(alpha=0.3)

    figure.savefig(path, format="png", dpi=100)
