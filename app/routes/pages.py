"""HTML pages served by the app itself: the landing page at `/`."""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.state import AppState

DEMO_BANNER = ('<p class="demo"><strong>Demo mode:</strong> this service runs on generated '
               'weights and makes noise, not speech.</p>')


def _template(name: str) -> Template:
    return Template(resources.files("app").joinpath("static", name).read_text("utf-8"))


async def landing(request: Request) -> HTMLResponse:
    state: AppState = request.app.state.tts
    page = _template("index.html").substitute(
        demo_banner=DEMO_BANNER if state.demo else "",
        model=html.escape(state.settings.model_name),
        speakers=html.escape(", ".join(state.settings.speakers)),
    )
    return HTMLResponse(page)
