"""Entry point: `python -m app` reads Settings, sets up logging and Sentry, runs uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from app.config import Settings
from app.server import create_app
from app.state import REQUEST_ID


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def setup_sentry(dsn: str) -> None:
    if dsn.strip():
        import sentry_sdk

        sentry_sdk.init(dsn=dsn.strip(), traces_sample_rate=0.0)


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    setup_sentry(settings.sentry_dsn)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
