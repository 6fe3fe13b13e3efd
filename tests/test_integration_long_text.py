"""Long text on the real stack: an article is spoken whole, as one continuous stream."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.protocol import SpeechRequest
from app.server import create_app
from app.streams import JOIN_FADE_S
from app.synthesis import SENTENCE_PAUSE_S
from tests.servers import serve
from tests.test_integration import engine_counter

pytestmark = pytest.mark.engine

ARTICLE = (
    "Kuala Lumpur, 3 March. The city council approved a new plan on Monday. It adds twelve "
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
    "first public meeting is on Saturday at ten in the morning, at the community hall."
)


@pytest.fixture(scope="module")
def served(engine):
    settings = Settings(TTS_API=engine.config.url, SNAC_MODEL="random",
                        ENGINE_STARTUP_TIMEOUT_S=60)
    app = create_app(settings)
    with serve(app) as url:
        yield url, app


def zero_runs(pcm: np.ndarray) -> list[int]:
    """Lengths of runs of exact digital silence (inserted pauses; codec noise is never 0)."""
    zero = np.concatenate([[0], (pcm == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return list(edges[1::2] - edges[::2])


def test_article_is_spoken_whole_in_one_stream_with_natural_pauses(served, engine):
    url, app = served
    assert len(ARTICLE) >= 1000
    job = app.state.tts.speech.prepare(SpeechRequest(input=ARTICLE), "req_plan")
    segments = len(job.segments)
    assert segments >= 10 and len(job.segments[0].text) <= 60  # first segment short
    finished = engine_counter(engine, "vllm:request_success_total", "")
    with httpx.stream("POST", url + "/v1/audio/speech", timeout=600,
                      json={"input": ARTICLE, "response_format": "pcm",
                            "temperature": 0.0}) as r:
        assert r.status_code == 200
        pcm = np.frombuffer(b"".join(r.iter_bytes()), "<i2")
    # Every segment was generated to its end, none cut short by a budget.
    assert engine_counter(engine, "vllm:request_success_total", "") - finished == segments
    runs = zero_runs(pcm)
    pauses = [n for n in runs if n > 240]  # more than 10 ms of true silence
    assert len(pauses) == segments - 1  # one pause at each join, none elsewhere
    # The pause itself, plus the few samples of the fades on either side that round to 0.
    assert max(pauses) <= (SENTENCE_PAUSE_S + JOIN_FADE_S) * 24000
    assert pcm.size / 24000 > segments * 0.3
