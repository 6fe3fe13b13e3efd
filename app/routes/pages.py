"""HTML pages served by the app itself: the playground at `/`.

The page is `static/playground.html` with a few values filled in here; its script and styles
load from `/static/`. The demo banner is rendered on the server (so it shows even before the
script runs) and the script also shows it when `/health` or an audio response says demo.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.state import AppState

PLAYGROUND_PAGE = "playground.html"


def _template(name: str) -> Template:
    return Template(resources.files("app").joinpath("static", name).read_text("utf-8"))


async def landing(request: Request) -> HTMLResponse:
    state: AppState = request.app.state.tts
    settings = state.settings
    page = _template(PLAYGROUND_PAGE).substitute(
        demo_hidden="" if state.demo else "hidden",
        model=html.escape(settings.model_name),
        temperature=f"{settings.default_temperature:g}",
        playback_speed=f"{state.speech.default_playback_speed:g}",
        overlap_speed=f"{settings.default_playback_overlap_speed:g}",
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
