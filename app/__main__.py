"""Entry point: `python -m app` reads Settings, sets up logging and Sentry, runs uvicorn."""

from __future__ import annotations

import uvicorn

from app.config import Settings
from app.lifecycle import DrainingServer
from app.observability import init_sentry, setup_logging
from app.server import create_app


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    init_sentry(settings.sentry_dsn)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            timeout_graceful_shutdown=10)
    DrainingServer(config, app, grace_s=settings.shutdown_grace_s).run()


if __name__ == "__main__":
    main()
