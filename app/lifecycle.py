"""Graceful shutdown: on SIGTERM stop admitting, let streams in progress finish, then exit.

uvicorn's own SIGTERM handling closes the listening socket at once and only then waits for
open connections, so a load balancer's health check gets connection refused instead of being
told. `DrainingServer` takes the first SIGTERM/SIGINT as "drain": admission refuses new
streams with 503 `server_draining` (and `/health` says draining), the process keeps serving
until every admitted stream has ended or `grace_s` has passed, then uvicorn shuts down as
usual. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette

if TYPE_CHECKING:
    from app.state import AppState

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, *, grace_s: float):
        super().__init__(config)
        self._app = app
        self._grace_s = grace_s
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state: AppState | None = getattr(self._app.state, "tts", None)
        loop = self._loop
        if self._draining or state is None or loop is None or not self._grace_s:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        logger.warning("signal %d: draining (no new streams; %.0f s for %d in progress)",
                       sig, self._grace_s, state.admission.in_use)
        state.admission.start_draining()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain(state)))

    async def _drain(self, state: AppState) -> None:
        idle = await state.admission.wait_idle(self._grace_s)
        if not idle:
            logger.warning("grace period over with streams still running; shutting down")
        self.should_exit = True
