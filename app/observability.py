"""Logs and error reporting for the process: called by the entry point, never at import.

- `setup_logging`: one stderr handler, every line carrying its request id
  (`RequestIdLogFilter`, "-" outside a request).
- `init_sentry`: with a DSN, unhandled errors in routes (Starlette integration) and ERROR log
  records (the default logging integration) go to Sentry. Without one, nothing is set up.
"""

from __future__ import annotations

import logging

from app.middleware import RequestIdLogFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup_logging(level: str) -> None:
    """Replace the root logger's handlers with one that prints the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())  # on the handler: it sees propagated records too
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def init_sentry(dsn: str) -> bool:
    """Start reporting to Sentry at `dsn` (blank: do nothing). True if it was started.

    Request bodies are never attached (`max_request_body_size="never"`): they hold the users'
    text and reference audio, and the integration would otherwise read (and parse) every
    small body before the route sees it. Integrations are named, not auto-enabled, so that
    outgoing engine requests are left as they are. SENTRY_ENVIRONMENT and SENTRY_RELEASE are
    read by sentry-sdk itself.
    """
    dsn = dsn.strip()
    if not dsn:
        return False
    import sentry_sdk  # only a process that reports pays for the import
    from sentry_sdk.integrations.starlette import StarletteIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[StarletteIntegration(transaction_style="endpoint")],
        auto_enabling_integrations=False,
        max_request_body_size="never",
        traces_sample_rate=None,
    )
    return True
