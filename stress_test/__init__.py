"""SLO load generator for the speech API.

``python -m stress_test`` sends a bounded number of ``POST /v1/audio/speech`` requests, seed
004 WebSocket sessions (``--ws``) or sentence-per-request conversations (``--sentences``),
closed loop at a fixed concurrency or open loop with Poisson arrivals, times every audio
chunk, and prints the latency, RTF, time-to-first-audio, throughput, error and stall report.

Modules: :mod:`~stress_test.load` (the load generator), :mod:`~stress_test.ws` (one
WebSocket session), :mod:`~stress_test.report` (records and the maths and text of the
report), :mod:`~stress_test.clock` (the run clock), :mod:`~stress_test.texts` (what to say)
and :mod:`~stress_test.plot` (charts; needs matplotlib, so not imported here).
"""

from __future__ import annotations

from stress_test.load import LoadConfig, run_load
from stress_test.report import RequestRecord, Summary, format_report, summarize

__all__ = ["LoadConfig", "RequestRecord", "Summary", "format_report", "run_load", "summarize"]
