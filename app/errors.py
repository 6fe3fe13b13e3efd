"""Exceptions and their mapping to HTTP status and OpenAI's error envelope.

    TTSError
    ├── InvalidRequest      400  bad field value          (invalid_request_error)
    │   └── Unsupported     400  valid OpenAI value we do not implement
    ├── Unauthorized        401  missing or wrong API key  (invalid_request_error)
    ├── NotFound            404  unknown model or voice id (invalid_request_error)
    ├── PayloadTooLarge     413  upload over the limit
    ├── TooManyRequests     429  per-key rate limit or admission refused (rate_limit_error)
    ├── Overloaded          503  too many streams          (server_error)
    ├── EngineUnavailable   503  vLLM down or failing      (server_error)
    └── Draining            503  shutting down, retry elsewhere (server_error)

Messages are written for clients: never put `str()` of an internal exception in one.
An error with `retry_after_s` set tells the client when to retry: the HTTP mapping sends it as
`Retry-After` (`error_headers`: whole seconds, rounded up, at least 1).
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Literal


class TTSError(Exception):
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    type = "server_error"
    code: str | None = None
    retry_after_s: float | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return error_envelope(self.message, self.type, self.param, self.code)


class InvalidRequest(TTSError):
    status = HTTPStatus.BAD_REQUEST
    type = "invalid_request_error"


class Unsupported(InvalidRequest):
    code = "unsupported_value"


class NotFound(TTSError):
    status = HTTPStatus.NOT_FOUND
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(TTSError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(TTSError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "overloaded"


# What went wrong with the engine, for tts_engine_errors_total{kind}.
EngineFailure = Literal["unreachable", "disconnected", "rejected", "stream_error", "malformed",
                        "stall"]


class EngineUnavailable(TTSError):
    """`kind` says what failed: no connection, the connection lost mid-stream, a non-200
    answer, an error event mid-stream, output we cannot parse, or no token for too long."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "engine_unavailable"
    retry_after_s = 5.0

    def __init__(self, message: str, *, kind: EngineFailure = "unreachable",
                 param: str | None = None, code: str | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message, param=param, code=code, retry_after_s=retry_after_s)
        self.kind: EngineFailure = kind


def error_envelope(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Unauthorized(TTSError):
    status = HTTPStatus.UNAUTHORIZED
    type = "invalid_request_error"
    code = "invalid_api_key"


class TooManyRequests(TTSError):
    """429. `code` says why: `rate_limit_exceeded` (this key's request rate) or
    `server_overloaded` (admission control: streams, queue or latency at their limit)."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Draining(TTSError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "server_draining"


def retry_after_header(seconds: float) -> str:
    """`Retry-After` value: whole seconds, rounded up, at least 1 (0 would invite a hot loop)."""
    return str(max(1, math.ceil(seconds)))


def error_headers(exc: TTSError) -> dict[str, str]:
    """Headers the HTTP mapping adds for `exc`: `Retry-After` when it says when to retry."""
    if exc.retry_after_s is None:
        return {}
    return {"Retry-After": retry_after_header(exc.retry_after_s)}
